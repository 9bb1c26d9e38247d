"""The ``refplay`` command (also ``python -m refplay``): the top floor.

Every command group is a module with ``register(subparsers)``; this package
sits above everything they drive (study, procedures, reproduce, oracle,
tutorials) and nothing below imports it. The groups import their heavy
dependencies (the trainer, Numba, matplotlib) inside their handlers, so
``refplay --help`` stays fast.

==============================  ================================================
``refplay demo``                one update rule and its first steps (:mod:`refplay.demo`)
``refplay oracle``              golden vectors, framework checks (:mod:`.oracle`)
``refplay study``               run, resume, inspect, export studies (:mod:`.study`)
``refplay procedure``           one playbook procedure and its decision (:mod:`.procedure`)
``refplay reproduce``           the playbook's figures beside the originals (:mod:`.reproduce`)
``refplay tutorials``           the tutorials as executed notebooks (:mod:`refplay.tutorials`)
==============================  ================================================
"""

from __future__ import annotations

import argparse
import sys

from refplay import __version__, demo, tutorials
from refplay.cli import oracle, procedure, reproduce, study

__all__ = ["build_parser", "main"]

# The command groups, in the order --help lists them.
_COMMANDS = (demo, oracle, study, procedure, reproduce, tutorials)


def build_parser() -> argparse.ArgumentParser:
    """The ``refplay`` parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="refplay",
        description="A runnable, checkable companion to the Deep Learning Tuning Playbook.")
    parser.add_argument("--version", action="version", version=f"refplay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _COMMANDS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``refplay ARGV``; a user's mistake is one line ``refplay: error: ...`` and exit 2."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv        # a study records the command that made it
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        # Boundary errors are the user's to fix: print them plainly, no traceback.
        print(f"refplay: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
