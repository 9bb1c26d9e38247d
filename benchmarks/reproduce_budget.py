"""Wall time of ``refplay reproduce`` per figure, from an empty workspace.

The issue's budgets: ``refplay reproduce all`` at most 20 minutes with 2
workers, ``--quick`` at most 3 minutes. This script measures them (it does
not assert them: timings depend on the machine and its load)::

    python benchmarks/reproduce_budget.py                  # --quick and full, 2 workers
    python benchmarks/reproduce_budget.py --quick-only
    python benchmarks/reproduce_budget.py --profile fig1   # where a quick fig1 spends its time

Every run uses a fresh temporary workspace, so nothing is re-read from an
earlier run. The load average is printed beside the times: on a shared
machine, a load above the number of cores stretches every number.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

from refplay import reproduce


def measure(quick: bool, workers: int, figures: list[str]) -> dict[str, float]:
    times = {}
    with tempfile.TemporaryDirectory(prefix="refplay-reproduce-") as tmp:
        for figure in figures:
            start = time.perf_counter()
            result = reproduce.get(figure).run(quick=quick, out_dir=Path(tmp) / "out",
                                               workspace=Path(tmp) / "ws", workers=workers)
            times[figure] = time.perf_counter() - start
            print(f"  {figure:5s} {'quick' if quick else 'full ':5s} {times[figure]:7.1f} s  "
                  f"claim {'holds' if result.claim_holds else 'DOES NOT HOLD'}  "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    return times


def profile(figure: str) -> None:
    with tempfile.TemporaryDirectory(prefix="refplay-reproduce-") as tmp:
        profiler = cProfile.Profile()
        profiler.enable()
        reproduce.get(figure).run(quick=True, out_dir=Path(tmp) / "out",
                                  workspace=Path(tmp) / "ws", workers=0)
        profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick-only", action="store_true")
    parser.add_argument("--profile", metavar="FIGURE", default=None)
    parser.add_argument("figures", nargs="*", default=reproduce.ids())
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return
    print(f"{os.cpu_count()} CPUs, {args.workers} workers")
    sizes = [True] if args.quick_only else [True, False]
    for quick in sizes:
        times = measure(quick, args.workers, args.figures)
        budget = 180 if quick else 1200
        total = sum(times.values())
        print(f"{'--quick' if quick else 'full'}: {total:.0f} s for {len(times)} figure(s) "
              f"(budget for all figures: {budget} s)")


if __name__ == "__main__":
    main()
