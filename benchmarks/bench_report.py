"""How long does the report of a 200-trial study take? (a benchmark, not a test)

    python benchmarks/bench_report.py [--trials 200] [--workspace runs/bench_report]

Runs a ``LinearRegressionTrial`` study once (milliseconds per trial), then
times ``analysis.load`` and ``report.write_report`` on it, on one core.
Target: the report in under 5 s.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from refplay import analysis, report, search, study
from refplay.study.synthetic import LinearRegressionTrial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workspace", default="runs/bench_report")
    args = parser.parse_args()
    ws = Path(args.workspace)
    shutil.rmtree(ws, ignore_errors=True)
    space = search.SearchSpace({
        "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
        "nesterov/lr": search.Float(1e-3, 3.0, scale="log", when={"optimizer": "nesterov"}),
        "adam/lr": search.Float(1e-3, 3.0, scale="log", when={"optimizer": "adam"}),
        "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
        "beta1": search.Float(0.8, 0.99, when={"optimizer": "adam"})})
    spec = study.StudySpec(name="bench", workload=None, num_trials=args.trials,
                           max_train_steps=200, eval_every=20, metric="validation/loss",
                           search_space=space, goal="Nesterov or Adam?")
    study.run(spec, store=ws, workers=0, trial_fn=LinearRegressionTrial(200, 20), progress=False)
    with study.Store(ws, readonly=True) as store:
        start = time.perf_counter()
        analysis.load(store, "bench")
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        rep = report.write_report(store, "bench", ws / "report")
        report_s = time.perf_counter() - start
    print(f"{args.trials} trials: analysis.load {load_s * 1000:.0f} ms, write_report "
          f"{report_s:.2f} s ({len(rep.images)} PNGs) -> {rep.html}")


if __name__ == "__main__":
    main()
