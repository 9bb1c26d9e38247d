"""Wall time of ``refplay reproduce all`` (and ``--quick``), per figure, from an empty workspace.

The goals: ``refplay reproduce all`` in at most 5 minutes on 2 cores
(its defaults: two figures side by side, each training in its own process),
``refplay reproduce all --quick`` in at most 45 seconds --
set before Figures 4-8 moved to the Transformer, whose own goals are 15 minutes
and 2 minutes (a figure that shows its mechanism comes first; both are printed).
This script measures them; it does not assert them (timings depend on the
machine and its load). Each size runs the real command in a fresh process
with a fresh temporary workspace and output folder, so nothing is re-read
from an earlier run and the start-up (imports, Numba's cache) is counted, as a
user would see it. A figure's time is the one its report prints (figures side
by side share the cores, so their times add up to more than the total)::

    python benchmarks/reproduce_budget.py                  # --quick, then full
    python benchmarks/reproduce_budget.py --quick-only --jobs 1 --workers 2   # one at a time
    python benchmarks/reproduce_budget.py --profile fig1   # where a quick fig1 spends its time

The load average is printed beside the times: on a shared machine, a load
above the number of cores stretches every number.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = {"quick": (45, 120), "full": (300, 900)}   # (speed goal, Transformer goal)
# A figure's report ends: "  -> HOLDS (...)", ..., "numbers: OUT/figN.json", "(N s)".
_VERDICT_LINE = re.compile(r"^  -> (HOLDS|DOES NOT HOLD)")
_JSON_LINE = re.compile(r"^numbers: .*\b(fig\d+)\.json$")
_SECONDS_LINE = re.compile(r"^\((\d+) s\)$")


def measure(quick: bool, options: list[str]) -> tuple[float, dict[str, float], dict[str, str]]:
    """Run ``refplay reproduce all`` once; return the total and each figure's seconds and verdict."""
    with tempfile.TemporaryDirectory(prefix="refplay-reproduce-") as tmp:
        command = [sys.executable, "-m", "refplay", "reproduce", "all",
                   "--out", str(Path(tmp) / "figures"), "--workspace", str(Path(tmp) / "ws"),
                   *options] + (["--quick"] if quick else [])
        start = time.perf_counter()
        times, verdicts, verdict, figure = {}, {}, None, None
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:
                line = line.rstrip("\n")
                if m := _VERDICT_LINE.match(line):
                    verdict = m.group(1).lower()
                elif m := _JSON_LINE.match(line):
                    figure = m.group(1)
                    verdicts[figure] = verdict
                elif (m := _SECONDS_LINE.match(line)) and figure is not None:
                    times[figure] = float(m.group(1))
        total = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {proc.returncode}")
    return total, dict(sorted(times.items(), key=lambda kv: int(kv[0][3:]))), verdicts


def profile(figure: str) -> None:
    """cProfile of one quick figure in this process (serial: the profile sees the trials)."""
    from refplay import reproduce  # lazy: --profile only
    with tempfile.TemporaryDirectory(prefix="refplay-reproduce-") as tmp:
        profiler = cProfile.Profile()
        profiler.enable()
        reproduce.get(figure).run(quick=True, out_dir=Path(tmp) / "out",
                                  workspace=Path(tmp) / "ws", workers=0)
        profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None,
                        help="passed to refplay reproduce (default: its own)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="passed to refplay reproduce (default: its own, one per CPU)")
    parser.add_argument("--quick-only", action="store_true")
    parser.add_argument("--profile", metavar="FIGURE", default=None)
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return
    options = [f"--{k}={v}" for k, v in (("jobs", args.jobs), ("workers", args.workers))
               if v is not None]
    print(f"{os.cpu_count()} CPUs; refplay reproduce all {' '.join(options) or '(defaults)'}",
          flush=True)
    sizes = ["quick"] if args.quick_only else ["quick", "full"]
    for size in sizes:
        total, times, verdicts = measure(size == "quick", options)
        for figure, seconds in times.items():
            print(f"  {figure:6s} {size:5s} {seconds:7.1f} s  claim "
                  f"{verdicts.get(figure, '?')}", flush=True)
        print(f"refplay reproduce all{' --quick' if size == 'quick' else ''}: {total:.0f} s "
              f"for {len(times)} figures, start-up included (goal: at most "
              f"{BUDGET_SECONDS[size][0]} s, with the Transformer figures {BUDGET_SECONDS[size][1]} s; "
              f"load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
