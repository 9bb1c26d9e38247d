"""Study runner throughput and overhead, measured side by side in one run.

1. Throughput: the same 32-trial study of a small workload run by a local
   process pool of 1 and of 2 workers; wall times, trials per second and the
   2-worker / 1-worker ratio (target >= 1.8 on 2 free cores), next to the
   ratio of the same trials on a bare process pool (no runner, no store),
   which is what the machine allows at that moment.
2. Overhead: a 1-worker pool running 1-second trials (a real trial of the
   synthetic workload, padded to 1 s). The runner's overhead is the time
   outside the trial function — start-up (forkserver, imports, first
   submission), pickling, saving each result, the SQLite transaction,
   scheduling — reported as the start-up and as the fraction of the wall time
   not spent in trials (target < 5 %). The pool hands a worker its next trial
   while the driver records the previous one, so recording mostly overlaps
   with the next trial.

    python benchmarks/study_throughput.py [--workload spirals_mlp] [--steps 1000] [--quick]

Timings are wall-clock on a possibly shared machine: run it on an idle one.
"""

from __future__ import annotations

from refplay import threads

threads.set_thread_env(1)   # before NumPy loads: the driver, too, runs one BLAS thread

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

from refplay import search, study  # noqa: E402
from refplay.study import executors, runner  # noqa: E402
from refplay.study.synthetic import LinearRegressionTrial  # noqa: E402


class OneSecondTrial:
    """A real synthetic trial, padded with sleep to ``seconds`` in total."""

    def __init__(self, seconds: float = 1.0):
        self.seconds = seconds
        self.inner = LinearRegressionTrial(max_train_steps=500, eval_every=25)

    def __call__(self, config, seed, *, trial_dir):
        start = time.perf_counter()
        result = self.inner(config, seed, trial_dir=trial_dir)
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - start)))
        return result


def throughput(workload: str, steps: int, num_trials: int, repeats: int) -> None:
    space = search.SearchSpace(optimizer=search.Choice(["nesterov", "adam"], role="scientific"),
                               lr=search.Float(1e-3, 1e-1, scale="log"))
    spec = study.StudySpec(name="throughput", workload=workload, search_space=space,
                           num_trials=num_trials, max_train_steps=steps,
                           eval_every=max(1, steps // 10), metric="validation/loss")
    # Warm the Numba on-disk cache so neither measurement pays for compilation.
    with tempfile.TemporaryDirectory() as ws:
        warm = study.StudySpec(name="warm", workload=workload, search_space=space,
                               num_trials=1, max_train_steps=2, eval_every=1,
                               metric="validation/loss")
        study.run(warm, store=ws, workers=0, progress=False)
    trial_fn = runner.WorkloadTrial.from_spec(spec)
    walls: dict[str, list[float]] = {"1": [], "2": [], "1 plain": [], "2 plain": []}
    inside: dict[str, list[float]] = {"1": [], "2": []}
    for _ in range(repeats):            # alternate everything: drifting load hits all alike
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as ws:
                start = time.perf_counter()
                status = study.run(spec, store=ws, workers=workers, progress=False)
                walls[str(workers)].append(time.perf_counter() - start)
                with study.Store(ws, readonly=True) as store:
                    inside[str(workers)].append(
                        statistics.mean(t.trial_seconds for t in store.trials(spec.name)))
            assert status.done == num_trials
            walls[f"{workers} plain"].append(_plain_pool(trial_fn, spec, workers))
    for workers in (1, 2):
        wall = min(walls[str(workers)])
        print(f"  {workers} worker{'s' if workers > 1 else ' '}: {wall:7.2f} s wall (best of "
              f"{repeats}), {num_trials / wall:6.2f} trials/s, "
              f"{min(inside[str(workers)]):.3f} s inside each trial on average")
    ratio = min(walls["1"]) / min(walls["2"])
    ceiling = min(walls["1 plain"]) / min(walls["2 plain"])
    print(f"  2-worker / 1-worker throughput ratio: {ratio:.2f}  (target >= 1.8)")
    print(f"  the same trials on a bare process pool (no runner, no store): 1 worker "
          f"{min(walls['1 plain']):.2f} s, 2 workers {min(walls['2 plain']):.2f} s, ratio "
          f"{ceiling:.2f} -- what this machine allows right now")


def _plain_pool(trial_fn, spec, workers: int) -> float:
    """Wall time of the study's trials on a bare process pool: the machine's own scaling."""
    with tempfile.TemporaryDirectory() as ws:
        start = time.perf_counter()
        with ProcessPoolExecutor(workers, initializer=executors._init_worker,
                                 mp_context=executors._forkserver_context()) as pool:
            futures = [pool.submit(trial_fn, t.config, t.seed, trial_dir=f"{ws}/{t.index}")
                       for t in spec.trials()]
            for f in futures:
                f.result()
        return time.perf_counter() - start


def overhead(num_trials: int) -> None:
    space = search.SearchSpace(optimizer=search.Fixed("adam"),
                               lr=search.Float(1e-3, 1e-2, scale="log"))
    spec = study.StudySpec(name="overhead", workload=None, search_space=space,
                           num_trials=num_trials, max_train_steps=500, eval_every=25,
                           metric="validation/loss")
    with tempfile.TemporaryDirectory() as ws:
        began = datetime.datetime.now(datetime.timezone.utc)
        start = time.perf_counter()
        study.run(spec, store=ws, trial_fn=OneSecondTrial(1.0), workers=1, progress=False)
        wall = time.perf_counter() - start
        with study.Store(ws, readonly=True) as store:
            trials = sorted(store.trials(spec.name), key=lambda t: t.finished_at)
    first_finished = datetime.datetime.fromisoformat(trials[0].finished_at)
    inside = [t.trial_seconds for t in trials]
    startup = (first_finished - began).total_seconds() - inside[0]
    outside = wall - sum(inside)
    print(f"  {num_trials} trials of {statistics.mean(inside):.3f} s on 1 worker: "
          f"{wall:.2f} s wall")
    print(f"  start-up until the first result is recorded (outside the trial): "
          f"{1e3 * startup:.0f} ms")
    print(f"  time outside trials, start-up included: {outside:.3f} s = "
          f"{1e3 * outside / num_trials:.1f} ms per trial = "
          f"{100 * outside / wall:.2f} % of the wall time  (target < 5 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="spirals_mlp")
    parser.add_argument("--steps", type=int, default=1000, help="max_train_steps per trial")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--overhead-trials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="alternating 1/2-worker runs")
    parser.add_argument("--quick", action="store_true", help="8 trials of 200 steps; 4 x 1 s")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.trials, args.overhead_trials, args.repeats = 200, 8, 4, 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} at start")
    print(f"throughput: {args.trials}-trial study of {args.workload}, "
          f"{args.steps} steps per trial")
    throughput(args.workload, args.steps, args.trials, args.repeats)
    print("runner overhead: 1-second trials")
    overhead(args.overhead_trials)


if __name__ == "__main__":
    main()
