"""``refplay oracle``: golden vectors, verification, framework and user checks.

``refplay oracle export --out DIR`` writes the reference trajectories
(format in :mod:`refplay.oracle.golden`; ``--rule adam --hparams beta2=0.95``
for one rule); ``refplay oracle verify GOLDEN YOURS`` checks trajectories your
code wrote back (:mod:`refplay.oracle.verify`); ``refplay oracle check torch``
(or ``optax``, ``keras``) runs every row of the framework table and prints the
measured differences — the same code the tests run — and ``refplay oracle
check mypkg.module:make_step --rule adam`` runs your own step function
(:mod:`refplay.oracle.check`). Parsing lives in :func:`register`; each handler
is small and raises ``ValueError`` for bad input (``refplay: error: ...``, exit 2).
"""

from __future__ import annotations

import sys

from refplay import _validate
from refplay.optim import RULES
from refplay.oracle import check, frameworks, golden, problems, verify
from refplay.oracle.frameworks import FRAMEWORKS, ROW_NAMES
from refplay.oracle.problems import PROBLEMS

_EXPORT_DTYPES = ["float64", "float32"]


def parse_hparams(text: str | None) -> dict:
    """``"beta2=0.95,eps=1e-6,weight_decay_mode=decoupled"`` → a dict (numbers as floats)."""
    out: dict = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--hparams item {item!r} must be NAME=VALUE "
                             "(e.g. --hparams beta2=0.95,eps=1e-6)")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def _export(args) -> int:
    if args.rule is None and (args.hparams or args.form):
        raise ValueError("--hparams and --form need --rule")
    if args.rule is not None and args.rows:
        raise ValueError("give --rows or --rule, not both")
    path = golden.export(args.out, steps=args.steps, dtypes=tuple(args.dtypes),
                         problems=args.problems or None, rows=args.rows, rule=args.rule,
                         hparams=parse_hparams(args.hparams) if args.rule else None,
                         form=args.form, state=args.state)
    n = len(golden.load_manifest(path.parent)["cases"])
    print(f"wrote {n} cases (format {golden.FORMAT} v{golden.FORMAT_VERSION}) to {path.parent}")
    return 0


def _verify(args) -> int:
    verdicts = verify.verify(args.golden, args.yours)
    if all(v.status == "missing" for v in verdicts):
        raise ValueError(f"{args.yours} has none of the {len(verdicts)} cases of {args.golden} "
                         f"(expected files such as {args.yours}/cases/{verdicts[0].id}.json)")
    print(verify.format_verdicts(verdicts))
    return 0 if all(v.status in ("agrees", "missing") for v in verdicts) else 1


def _check(args) -> int:
    if ":" in args.target:
        return _check_user(args)
    if args.target not in FRAMEWORKS:
        raise ValueError(f"target={args.target!r} is not allowed; choose one of "
                         f"{list(FRAMEWORKS)} or MODULE:FUNCTION (your step factory)")
    if args.rule or args.hparams or args.form:
        raise ValueError("--rule, --hparams and --form are for MODULE:FUNCTION targets")
    return _check_framework(args)


def _check_user(args) -> int:
    if args.rule is None:
        raise ValueError(f"checking {args.target} needs --rule (one of sgd, momentum, "
                         "nesterov, rmsprop, adam, nadam)")
    make_step = check.load_target(args.target)
    probs = args.problems or list(problems.PROBLEMS)
    results = check.check_step(make_step, args.rule, parse_hparams(args.hparams),
                               problems=probs, steps=args.steps, dtype=args.dtype,
                               form=args.form)
    print(f"{args.target} vs the rule {args.rule}: {args.dtype}, {args.steps} steps of "
          f"warmup + cosine, problems {', '.join(probs)}; max|Δθ| per problem.\n")
    print(check.format_results(args.target, results))
    return 0 if all(r.ok for r in results) else 1


def _check_framework(args) -> int:
    _validate.integer("steps", args.steps, low=50)      # the table's claims are for 50+ steps
    try:
        frameworks.require(args.target)                 # before the header: one plain line
    except ImportError as exc:
        print(f"refplay: error: {exc}", file=sys.stderr)
        return 2
    probs = args.problems or list(problems.PROBLEMS)
    print(f"{args.target} vs the playbook rules: {args.dtype}, {args.steps} steps of "
          f"warmup + cosine, problems {', '.join(probs)}; max|Δθ| over problems and steps.")
    if args.dtype == "float64":
        print(f"A configuration 'matches' at max|Δθ| <= {frameworks.MATCH_TOL:g}; each "
              f"'differs' line must exceed {frameworks.CONTROL_MIN:g}.\n")
    else:
        print(f"float32 runs against the float64 reference: a matching configuration must stay "
              f"within {frameworks.FLOAT32_TOL:g}; controls are not run (rounding would hide "
              f"them).\n")
    results = []
    for row in frameworks.rows(args.target):
        res = frameworks.run_row(row, problems=probs, steps=args.steps, dtype=args.dtype)
        print(frameworks.format_table([res]), flush=True)
        results.append(res)
    failed = [r.row.name for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} rows as stated"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def register(sub) -> None:
    """Add ``refplay oracle {export,verify,check}`` to ``sub``."""
    p = sub.add_parser("oracle", help="golden vectors, verification and torch/optax/keras/your "
                                      "own checks against the playbook's update rules")
    osub = p.add_subparsers(dest="oracle_command", metavar="{export,verify,check}", required=True)

    e = osub.add_parser("export", help="write the reference trajectories as JSON + .npz")
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--steps", type=int, default=60)
    e.add_argument("--dtypes", "--dtype", nargs="+", choices=_EXPORT_DTYPES,
                   default=_EXPORT_DTYPES, dest="dtypes")
    e.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=None)
    e.add_argument("--rows", nargs="+", choices=ROW_NAMES, default=None,
                   help="rows of the framework table (default: all)")
    e.add_argument("--rule", choices=sorted(RULES), default=None,
                   help="export one rule (default: every row of the framework table)")
    e.add_argument("--hparams", default=None, help="with --rule: NAME=VALUE,... "
                                                   "e.g. beta2=0.95,eps=1e-6")
    e.add_argument("--form", default=None, help="with --rule: a neighbour form, e.g. torch")
    e.add_argument("--state", action="store_true",
                   help="also write the optimizer state (m, v, ...) after every step")
    e.set_defaults(func=_export)

    v = osub.add_parser("verify", help="check trajectories your code wrote against golden files")
    v.add_argument("golden", metavar="GOLDEN_DIR", help="a directory written by export")
    v.add_argument("yours", metavar="YOUR_DIR", help="YOUR_DIR/cases/<id>.json per case "
                                                     "(layout in docs/oracle.md)")
    v.set_defaults(func=_verify)

    c = osub.add_parser("check", help="run a framework's configurations, or your own step "
                                      "factory MODULE:FUNCTION, against the rules")
    c.add_argument("target", metavar="{torch,optax,keras,MODULE:FUNCTION}")
    c.add_argument("--rule", choices=sorted(RULES), default=None,
                   help="with MODULE:FUNCTION: the rule your step implements")
    c.add_argument("--hparams", default=None, help="with MODULE:FUNCTION: NAME=VALUE,...")
    c.add_argument("--form", default=None, help="with MODULE:FUNCTION: compare with a "
                                                "neighbour form, e.g. torch")
    c.add_argument("--steps", type=int, default=60)
    c.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    c.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=None)
    c.set_defaults(func=_check)
