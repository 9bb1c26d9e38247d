"""``refplay procedure stability-scan | early-instability | warmup | clipping``.

Adds the instability procedures to the ``procedure`` subcommands of
:mod:`refplay.procedures.cli` (same options: ``--workload``, ``--quick``,
``--out``, ``--workers``, ``--workspace``, ``--seed``) and prints the
procedure's question, decision, numbers and caveats, then where its figures
and numbers went (default ``runs/procedures/<name>/``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "PROCEDURES"]

# name -> (module, function, help); the default workload is the calibrated setup's.
PROCEDURES = {
    "stability-scan": ("instability", "stability_scan",
                       "learning-rate sweep, lr*, and runs at 2x/5x/10x lr* (Figures 7a, 7b)"),
    "early-instability": ("instability", "early_instability_check",
                          "every-step vs every-100-steps view of one run at 2x lr* (Figure 5)"),
    "warmup": ("warmup", "warmup_study",
               "shortest warmup that trains a ~10x learning rate; prepended vs baseline "
               "(Figures 6, 8)"),
    "clipping": ("clipping", "clipping_study",
                 "clipping thresholds from a stable run's gradient norms (Figure 9)"),
}


def register(commands) -> None:
    """Add one subcommand per instability procedure to the ``procedure`` subparsers group."""
    for name, (_, _, help_text) in PROCEDURES.items():
        p = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--workload", default=None,
                       help="the workload (default: the calibrated one, see "
                            "refplay/train/unstable.py)")
        p.add_argument("--quick", action="store_true", help="the small size of the slow tests")
        p.add_argument("--out", default=None,
                       help=f"where figures and numbers go (default: runs/procedures/{name}/)")
        p.add_argument("--workers", type=int, default=0,
                       help="worker processes for the trials (default 0: in this process)")
        p.add_argument("--workspace", default=None,
                       help="study workspace (default: runs/procedures)")
        p.add_argument("--seed", type=int, default=0, help="study seed (default 0)")
        p.set_defaults(func=_run, procedure_name=name)


def _run(args: argparse.Namespace) -> int:
    import importlib  # lazy: keeps `refplay --help` from loading the trainer and matplotlib
    module, function, _ = PROCEDURES[args.procedure_name]
    fn = getattr(importlib.import_module(f"refplay.procedures.{module}"), function)
    result = fn(args.workload, quick=args.quick, workers=args.workers,
                workspace=args.workspace, seed=args.seed)
    out = Path(args.out) if args.out else Path("runs") / "procedures" / args.procedure_name
    paths = result.save_figures(out)
    numbers = result.save_numbers(out / "numbers.json")
    print(result.summary())
    print("Figures:")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    print(f"Numbers: {numbers}")
    return 0
