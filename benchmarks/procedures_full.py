"""Run the procedures at their full (documented) sizes and print each claim's numbers.

    nice -n 10 python benchmarks/procedures_full.py [NAME ...] [--workers 2]

Names: initial-steps, steps-to-result, batch-fair, batch-throughput, retrain-variance,
two-rounds, schedule-family, gradient-noise (default: all). Figures and numbers go to
runs/procedures_full/<name>/; studies to runs/procedures (resumable).
"""

import argparse
import time
from pathlib import Path

from refplay import procedures

RUNS = {
    "initial-steps": lambda w: procedures.initial_max_train_steps("mnist1d_mlp", workers=w),
    "steps-to-result": lambda w: procedures.steps_to_result(workers=w),
    "batch-fair": lambda w: procedures.batch_size_fair_comparison(workers=w),
    "batch-throughput": lambda w: procedures.batch_throughput("mnist1d_mlp"),
    "retrain-variance": lambda w: procedures.retrain_variance(workers=w),
    "two-rounds": lambda w: procedures.two_rounds(workers=w),
    "schedule-family": lambda w: procedures.schedule_family(workers=w),
    "gradient-noise": lambda w: procedures.gradient_noise_steps(workers=w),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(RUNS), choices=[*RUNS, []])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    for name in args.names or RUNS:
        start = time.perf_counter()
        result = RUNS[name](args.workers)
        out = Path("runs") / "procedures_full" / name
        result.save_figures(out)
        result.save_numbers(out / "numbers.json")
        print(f"=== {name} ({time.perf_counter() - start:.0f} s)")
        print(result.summary(), flush=True)


if __name__ == "__main__":
    main()
