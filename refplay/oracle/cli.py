"""``refplay oracle``: golden vectors and framework checks.

``refplay oracle export --out DIR`` writes the reference trajectories
(format in :mod:`refplay.oracle.golden`); ``refplay oracle check torch``
(or ``optax``, ``keras``) runs every row of the framework table and prints
the measured differences — the same code the tests run.
"""

from __future__ import annotations

import sys


def _export(args) -> int:
    from refplay.oracle import golden
    path = golden.export(args.out, steps=args.steps, dtypes=tuple(args.dtypes),
                         problems=args.problems or None)
    n = len(golden.load_manifest(path.parent)["cases"])
    print(f"wrote {n} cases (format {golden.FORMAT} v{golden.FORMAT_VERSION}) to {path.parent}")
    return 0


def _check(args) -> int:
    from refplay import _validate
    from refplay.oracle import frameworks, problems
    _validate.integer("steps", args.steps, low=50)      # the table's claims are for 50+ steps
    try:
        frameworks.require(args.framework)              # before the header: one plain line
    except ImportError as exc:
        print(f"refplay: error: {exc}", file=sys.stderr)
        return 2
    probs = args.problems or list(problems.PROBLEMS)
    print(f"{args.framework} vs the playbook rules: {args.dtype}, {args.steps} steps of "
          f"warmup + cosine, problems {', '.join(probs)}; max|Δθ| over problems and steps.")
    if args.dtype == "float64":
        print(f"A configuration 'matches' at max|Δθ| <= {frameworks.MATCH_TOL:g}; each "
              f"'differs' line must exceed {frameworks.CONTROL_MIN:g}.\n")
    else:
        print(f"float32 runs against the float64 reference: a matching configuration must stay "
              f"within {frameworks.FLOAT32_TOL:g}; controls are not run (rounding would hide "
              f"them).\n")
    results = []
    for row in frameworks.rows(args.framework):
        res = frameworks.run_row(row, problems=probs, steps=args.steps, dtype=args.dtype)
        print(frameworks.format_table([res]), flush=True)
        results.append(res)
    failed = [r.row.name for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} rows as stated"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def register(sub) -> None:
    from refplay.oracle.frameworks import FRAMEWORKS
    from refplay.oracle.problems import PROBLEMS
    p = sub.add_parser("oracle", help="golden vectors and torch/optax/keras checks against "
                                      "the playbook's update rules")
    osub = p.add_subparsers(dest="oracle_command", metavar="{export,check}", required=True)

    e = osub.add_parser("export", help="write the reference trajectories as JSON + .npz")
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--steps", type=int, default=60)
    e.add_argument("--dtypes", nargs="+", choices=["float64", "float32"],
                   default=["float64", "float32"])
    e.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=None)
    e.set_defaults(func=_export)

    c = osub.add_parser("check", help="run a framework's configurations against each rule")
    c.add_argument("framework", choices=FRAMEWORKS)
    c.add_argument("--steps", type=int, default=60)
    c.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    c.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=None)
    c.set_defaults(func=_check)
