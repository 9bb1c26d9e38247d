"""``refplay reproduce``: re-run the playbook's figures and print what they show.

::

    refplay reproduce fig1 [fig2 ...] | all  [--quick] [--out DIR] [--workers N]
                                             [--workspace DIR] [--docs FILE]

For each figure: runs its studies (or resumes them, or simply reads them:
they are studies in ``--workspace``), writes its PNG(s) and a JSON of its
numbers under ``--out``, and prints the numbers, the decision the figure
supports and whether the playbook's claim holds. ``all`` runs every
reproduced figure and writes the side-by-side page (``--docs``, by default
``OUT.md`` next to the ``OUT`` folder: ``--out docs/figures`` writes
``docs/figures.md``).

The workspace defaults to ``runs/reproduce/workspace`` whatever ``--out`` is,
so regenerating the docs after a plain ``refplay reproduce all`` re-reads the
same studies instead of training them again (full and ``--quick`` sizes are
different studies).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from refplay import io

DEFAULT_OUT = Path("runs") / "reproduce"
DEFAULT_WORKSPACE = DEFAULT_OUT / "workspace"


def register(sub) -> None:
    """Add ``refplay reproduce`` to the ``refplay`` subparsers ``sub``."""
    p = sub.add_parser(
        "reproduce", help="re-run the playbook's figures on this machine",
        description="Re-run the playbook's figures (laptop analogues), print the numbers, the "
                    "decision each supports and whether its claim holds; write PNGs.")
    p.add_argument("figures", nargs="+", metavar="FIGURE",
                   help="fig1 ... fig9, or 'all' for every reproduced figure")
    p.add_argument("--quick", action="store_true",
                   help="the small size used by the tests (a few seconds to a minute each)")
    p.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR",
                   help=f"where PNGs and numbers go (default: {DEFAULT_OUT})")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes for each figure's trials (default: the CPUs shared "
                        "out among --jobs; 0: run trials in the figure's own process)")
    p.add_argument("--jobs", type=int, default=None,
                   help="figures run at once, each in its own process, the longest first "
                        "(default: as many as leave the longest figure its share of the "
                        "CPUs; two on 2 CPUs)")
    p.add_argument("--workspace", default=str(DEFAULT_WORKSPACE), metavar="DIR",
                   help=f"study workspace; runs resume from it (default: {DEFAULT_WORKSPACE})")
    p.add_argument("--docs", default=None, metavar="FILE",
                   help="with 'all': the side-by-side Markdown page (default: OUT.md)")
    p.set_defaults(func=_reproduce)


def selected(figures: list[str]) -> list[str]:
    """The figure ids asked for, validated before anything runs ('all' = every registered one)."""
    from refplay import reproduce  # lazy: CLI start-up (the trainer, matplotlib)
    if "all" in figures:
        if len(figures) > 1:
            raise ValueError(f"'all' cannot be combined with other figures, got {figures}")
        return reproduce.ids()
    out = []
    for f in figures:
        reproduce.get(f)                    # a ValueError names the reproduced figures
        if f not in out:
            out.append(f)
    return out


def _reproduce(args) -> int:
    from refplay import reproduce  # lazy: CLI start-up (the trainer, matplotlib)
    from refplay.reproduce import docs  # lazy: CLI start-up (matplotlib)
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    ids = selected(args.figures)
    if args.docs is not None and args.figures != ["all"]:
        raise ValueError("--docs needs 'all': the page shows every reproduced figure")
    out, workspace = Path(args.out), Path(args.workspace)
    entries = {f: reproduce.get(f) for f in ids}
    times = [_seconds(e.quick_time if args.quick else e.full_time) for e in entries.values()]
    jobs, workers = share_cpus(times, args.jobs, args.workers)
    start = time.perf_counter()
    runs = dict(quick=args.quick, out=out, workspace=workspace, workers=workers)
    finished = (_one_by_one(ids, **runs) if jobs == 1 else
                _side_by_side(longest_first(entries.values(), quick=args.quick), jobs, **runs))
    results = {}
    try:
        for figure, result in finished:
            json_path = out / f"{figure}.json"
            io.write_text(json_path, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
            print(report(entries[figure], result, json_path), flush=True)
            results[figure] = result
    except KeyboardInterrupt:
        again = shlex.join(["refplay", "reproduce", *args.figures, *(["--quick"] * args.quick),
                            "--workspace", str(workspace), "--out", str(out)])
        print(f"\ninterrupted: finished trials are recorded in the workspace; continue with\n"
              f"  {again}", file=sys.stderr)
        return 130
    results = [results[f] for f in ids]
    holds = sum(r.claim_holds for r in results)
    print(f"{len(results)} figure(s) in {time.perf_counter() - start:.0f} s; claims: {holds} "
          f"hold, {len(results) - holds} do not")
    if args.figures == ["all"]:
        page = Path(args.docs) if args.docs else out.parent / f"{out.name}.md"
        command = "refplay reproduce all" + (" --quick" if args.quick else "") + \
            f" --out {out.as_posix()}"
        docs.write(list(entries.values()), results, page, command=command)
        print(f"side-by-side page: {page}")
    return 0


def share_cpus(seconds: list[float], jobs: int | None, workers: int | None,
               ) -> tuple[int, int | None]:
    """``(jobs, workers)``: figures at once and trial processes per figure, for figures
    that take ``seconds`` each alone (0: not timed).

    Figures side by side keep every core busy where one figure alone would leave
    some idle: while its last trials finish, between its studies, while it draws.
    But the run ends no sooner than its longest figure, which therefore gets
    its share of the CPUs, ``w = ceil(cpus * longest / total)`` workers, and
    ``cpus // w`` figures run at once (2 CPUs: two figures, one CPU each; 8: two
    figures, four each). A figure with one CPU runs its trials in its own
    process (``workers=0``: no pool to start); one figure alone gets a pool over
    every CPU.
    """
    from refplay.study import executors  # lazy: CLI start-up
    cpus, total = executors.available_cpus(), sum(seconds)
    if jobs is None:
        share = max(seconds) / total if total > 0 else 1 / len(seconds)
        jobs = 1 if len(seconds) == 1 else max(1, cpus // min(cpus, math.ceil(cpus * share)))
    if workers is None and jobs > 1:
        workers = cpus // jobs if cpus // jobs > 1 else 0
    return jobs, workers


def run_figure(figure: str, *, quick: bool, out: Path, workspace: Path,
               workers: int | None) -> tuple[str, object]:
    """Run one figure; ``(figure, ReproResult)`` without its in-memory matplotlib figures."""
    import dataclasses  # lazy: with the rest of this function's imports
    from refplay import reproduce  # lazy: CLI start-up (the trainer, matplotlib)
    entry = reproduce.get(figure)
    print(f"== {figure}: {entry.title}" + (" [quick]" if quick else ""), flush=True)
    result = entry.run(quick=quick, out_dir=out, workspace=workspace, workers=workers)
    return figure, dataclasses.replace(result, figures={})


def _one_by_one(ids, **runs):
    for figure in ids:
        yield run_figure(figure, **runs)


def _side_by_side(order, jobs: int, **runs):
    """Run the figures ``jobs`` at a time in worker processes, in ``order``; yield each
    ``(figure, result)`` as it finishes. Their trial lines interleave, each naming its study."""
    from concurrent.futures import as_completed  # lazy: with the pool below
    from refplay.study import executors  # lazy: CLI start-up
    pool = executors.process_pool(jobs)
    try:
        futures = [pool.submit(_run_figure_in_worker, f, **runs) for f in order]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        executors.stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def longest_first(entries, *, quick: bool) -> list[str]:
    """The entries' ids, the longest-running first (by ``quick_time`` or ``full_time``; an
    untimed one last): started in that order, side-by-side figures end close together."""
    return [e.id for e in sorted(
        entries, key=lambda e: -_seconds(e.quick_time if quick else e.full_time))]


def _run_figure_in_worker(figure: str, **runs):
    os.environ["REFPLAY_PROGRESS"] = "lines"   # this worker's studies: no bars fighting over a terminal
    # Stopped (Ctrl-C in the driver), the worker ends at once, not after its trial: the
    # store and the checkpoints are written atomically, and the trial cut short has no
    # record and runs again on resume.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return run_figure(figure, **runs)


def _seconds(duration: str) -> float:
    """``"97 s"``, ``"≈ 12 min"`` -> seconds; 0 when not timed."""
    words = duration.replace("≈", "").split()
    if len(words) != 2:
        return 0.0
    return float(words[0]) * {"s": 1, "min": 60, "h": 3600}.get(words[1], 0)


def report(entry, result, json_path: Path | None = None) -> str:
    """What a figure run printed: numbers, decision, the claim and its check, where files went."""
    lines = ["numbers:"]
    for key, value in result.numbers.items():
        lines.append(f"  {key}: {_short(value)}")
    lines.append(f"decision: {result.decision}")
    claim = f"claim {entry.claim_id}" if entry.claim_id else "claim"
    verdict = "HOLDS" if result.claim_holds else "DOES NOT HOLD"
    lines.append(f"{claim}: {entry.claim}")
    check = ", ".join(f"{k}={_short(v)}" for k, v in result.check.items())
    lines.append(f"  -> {verdict} ({check})")
    lines.append(f"caveat: {result.caveat or entry.caveat}")
    for name, path in result.pngs.items():
        lines.append(f"PNG ({name}): {path}")
    if json_path is not None:
        lines.append(f"numbers: {json_path}")
    lines.append(f"({result.seconds:.0f} s)")
    return "\n".join(lines)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)
