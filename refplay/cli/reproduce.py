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
                   help="worker processes for the trials (default: one per CPU; 0: run trials "
                        "in this process)")
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
    ids = selected(args.figures)
    out = Path(args.out)
    if args.docs is not None and args.figures != ["all"]:
        raise ValueError("--docs needs 'all': the page shows every reproduced figure")
    entries, results = [], []
    start = time.perf_counter()
    for figure in ids:
        entry = reproduce.get(figure)
        print(f"== {figure}: {entry.title}" + (" [quick]" if args.quick else ""), flush=True)
        result = entry.run(quick=args.quick, out_dir=out, workspace=Path(args.workspace),
                           workers=args.workers)
        json_path = out / f"{figure}.json"
        io.write_text(json_path, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        print(report(entry, result, json_path), flush=True)
        entries.append(entry)
        results.append(result)
    holds = sum(r.claim_holds for r in results)
    print(f"{len(results)} figure(s) in {time.perf_counter() - start:.0f} s; claims: {holds} "
          f"hold, {len(results) - holds} do not")
    if args.figures == ["all"]:
        page = Path(args.docs) if args.docs else out.parent / f"{out.name}.md"
        command = "refplay reproduce all" + (" --quick" if args.quick else "") + \
            f" --out {out.as_posix()}"
        docs.write(entries, results, page, command=command)
        print(f"side-by-side page: {page}")
    return 0


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
