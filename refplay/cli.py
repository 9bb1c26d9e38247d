"""The ``refplay`` command (also ``python -m refplay``).

Each command group lives next to the code it drives and exposes
``register(subparsers)``; this module only assembles them. Handlers import
their heavy dependencies lazily so ``refplay --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules providing ``register(subparsers)``, in the order they appear in --help.
_COMMAND_MODULES = (
    "refplay.demo",
    "refplay.oracle.cli",
    "refplay.study.cli",
    "refplay.procedures.cli",
    "refplay.reproduce.cli",
    "refplay.tutorials",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refplay",
        description="A runnable, checkable companion to the Deep Learning Tuning Playbook.",
    )
    from refplay import __version__
    parser.add_argument("--version", action="version", version=f"refplay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
