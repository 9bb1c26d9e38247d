"""Run a tutorial as a lesson: its prose printed between its code cells.

refplay's tutorials are jupytext "percent" scripts: ``# %% [markdown]`` cells
of prose and ``# %%`` cells of code. Opened as a notebook they read like one.
Run as a plain script, Python would skip the prose (it is all comments) and a
student would see bare numbers. So each tutorial's first code cell calls::

    from refplay.tutorials import lesson
    lesson()

When the tutorial is the script being run (``python tutorials/06_x.py``),
:func:`lesson` reads the file, splits it into cells and runs it again, from the
top, cell by cell: a markdown cell's text is printed (without the leading
``# ``), a code cell is executed in the script's own namespace (so functions
and classes defined in it belong to ``__main__`` as usual). Tracebacks point at
the tutorial's own lines. When the last cell is done the process exits with
status 0; a failing ``assert`` ends it with the traceback and status 1, as a
plain script would. In a notebook, or when the file is imported, there is no
script file behind ``__main__`` and :func:`lesson` does nothing.

The other job of this module is ``python -m refplay.tutorials notebooks``
(``refplay tutorials notebooks``): convert every tutorial to ``.ipynb`` with
jupytext and execute it with nbclient, outputs included, into
``runs/notebooks/`` (needs the ``[notebooks]`` extra).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

from refplay.latex import prose_to_text

__all__ = ["Cell", "split_cells", "lesson", "workspace", "run_lesson", "tutorial_paths",
           "to_notebooks", "register", "main", "WORKSPACE_ENV"]

#: Names a study workspace for a tutorial to reuse instead of starting from scratch.
WORKSPACE_ENV = "REFPLAY_TUTORIAL_WORKSPACE"

#: Set in a tutorial's namespace while :func:`run_lesson` runs it, so the
#: ``lesson()`` call inside the re-run first cell returns at once.
_RUNNING = "__refplay_lesson_running__"
#: The environment variable that asks a tutorial for its quick size (what the tests use).
QUICK_ENV = "REFPLAY_TUTORIAL_QUICK"
#: The repository's tutorials folder (tutorials live next to the package in a source checkout).
TUTORIALS_DIR = Path(__file__).resolve().parent.parent / "tutorials"

_CELL_MARKER = re.compile(r"^# %%(?P<rest>.*)$")


class Cell(NamedTuple):
    """One cell of a percent script: ``kind`` is "markdown" or "code"; ``line`` is 1-based."""

    kind: str
    source: str
    line: int


def split_cells(text: str) -> list[Cell]:
    """Split a jupytext percent script into cells, in order.

    The YAML header (the leading ``# ---`` ... ``# ---`` comment block) is left
    out. A line ``# %% [markdown]`` starts a markdown cell, whose lines are
    comments: ``# text`` becomes ``text`` and ``#`` an empty line. Any other
    ``# %% ...`` line starts a code cell (raw cells, ``# %% [raw]``, are left
    out: jupytext does not execute them either). ``line`` is the number of the
    cell's first line after its marker, so code can be compiled at its own lines.
    """
    lines = text.splitlines()
    start = 0
    if lines and lines[0].strip() == "# ---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "# ---"), None)
        if end is not None:
            start = end + 1
    cells: list[Cell] = []
    kind, body, first = None, [], start + 1

    def close():
        if kind is None:
            return
        if kind == "markdown":
            prose = [re.sub(r"^# ?", "", ln) if ln.startswith("#") else ln for ln in body]
            source = "\n".join(prose).strip("\n")
        else:
            source = "\n".join(body).rstrip()
        if source.strip() and kind != "raw":
            cells.append(Cell(kind, source, first))

    for i in range(start, len(lines)):
        marker = _CELL_MARKER.match(lines[i])
        if marker:
            close()
            rest = marker.group("rest")
            kind = ("markdown" if "[markdown]" in rest or "[md]" in rest
                    else "raw" if "[raw]" in rest else "code")
            body, first = [], i + 2
        elif kind is not None:
            body.append(lines[i])
    close()
    return cells


def run_lesson(path: str | os.PathLike, namespace: dict | None = None, out=None) -> dict:
    """Run the tutorial at ``path`` cell by cell: print its prose, execute its code.

    Code runs in ``namespace`` (a new one named ``__main__`` if not given), each
    cell compiled at its own line numbers in ``path``, so a traceback names the
    tutorial's line. Exceptions propagate. Returns the namespace.
    """
    path = Path(path)
    out = sys.stdout if out is None else out
    if namespace is None:
        namespace = {"__name__": "__main__", "__file__": str(path), "__builtins__": __builtins__}
    namespace[_RUNNING] = True
    try:
        for cell in split_cells(path.read_text(encoding="utf-8")):
            if cell.kind == "markdown":
                print(f"\n{prose_to_text(cell.source)}\n", file=out, flush=True)
            else:
                # Blank lines in front put the code at its own line numbers in tracebacks.
                code = compile("\n" * (cell.line - 1) + cell.source, str(path), "exec")
                exec(code, namespace)  # noqa: S102 - running the tutorial is the point
                out.flush()
    finally:
        namespace.pop(_RUNNING, None)
    return namespace


def workspace(out: str | os.PathLike) -> Path:
    """A tutorial's study workspace: ``out/workspace``, emptied on every run -- unless
    ``$REFPLAY_TUTORIAL_WORKSPACE`` names one to reuse, where the studies already finished
    are read, not trained again (the test suite points it at the workspace its procedure
    tests share)."""
    reuse = os.environ.get(WORKSPACE_ENV)
    if reuse:
        return Path(reuse)
    path = Path(out) / "workspace"
    shutil.rmtree(path, ignore_errors=True)        # start from scratch on every run
    return path


def lesson() -> None:
    """Called in a tutorial's first code cell: when it is the script being run, run it as a lesson.

    Does nothing in a notebook, on import, or inside the lesson's own run.
    Otherwise runs the whole file with :func:`run_lesson` in the caller's
    namespace and exits the process with status 0 (an exception ends it with
    its traceback and status 1, like any script).
    """
    caller = sys._getframe(1).f_globals
    path = caller.get("__file__")
    if caller.get("__name__") != "__main__" or not path or caller.get(_RUNNING):
        return
    run_lesson(path, namespace=caller)
    sys.stdout.flush()
    raise SystemExit(0)


def tutorial_paths(folder: str | os.PathLike | None = None) -> list[Path]:
    """The numbered tutorials (``NN_name.py``) in ``folder`` (default: the repository's), sorted."""
    folder = Path(folder) if folder is not None else TUTORIALS_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"tutorials folder {str(folder)!r} does not exist: pass "
                                f"--tutorials DIR (the 'tutorials' folder of a refplay checkout)")
    return sorted(folder.glob("[0-9][0-9]_*.py"))


def to_notebooks(paths: list[Path], out: str | os.PathLike, *, quick: bool = False,
                 timeout: int = 1800, kernel: str = "python3") -> list[Path]:
    """Convert each tutorial to ``out/<stem>.ipynb`` and execute it there, outputs included.

    The kernel runs with its working directory ``out``, so a tutorial's files
    land in ``out/runs/<stem>/`` beside its notebook. ``quick`` sets
    ``REFPLAY_TUTORIAL_QUICK=1`` for the kernel (the size the tests use).
    """
    jupytext, nbclient, nbformat, config = _notebook_modules()
    # jupyter_client's documented setting: CurveZMQ keys for a kernel whose kernelspec
    # supports them, so ipykernel does not warn that it runs over plain-text TCP.
    config.KernelManager.transport_encryption = "auto"
    if not isinstance(timeout, int) or timeout <= 0:
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds per cell")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline")
    env.pop(QUICK_ENV, None)
    if quick:
        env[QUICK_ENV] = "1"
    written = []
    for path in paths:
        notebook = jupytext.read(path)
        # A notebook names its kernel, so Jupyter opens it without asking.
        notebook.metadata["kernelspec"] = {"name": kernel, "language": "python",
                                           "display_name": "Python 3 (ipykernel)"}
        start = time.perf_counter()
        client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name=kernel,
                                         config=config,
                                         resources={"metadata": {"path": str(out)}})
        client.execute(env=env)          # the kernel's environment, not this process's
        target = out / f"{path.stem}.ipynb"
        nbformat.write(notebook, target)
        print(f"wrote {target} ({time.perf_counter() - start:.0f} s)", flush=True)
        written.append(target)
    return written


#: How to install what ``refplay tutorials notebooks`` needs (pyproject.toml's extra).
NOTEBOOKS_HINT = "pip install -e '.[notebooks]' (from a clone of refplay)"


def _notebook_modules():
    """jupytext, nbclient, nbformat and a fresh traitlets ``Config``, or an ImportError that
    says how to install them."""
    try:
        import jupytext  # lazy: the optional [notebooks] extra, not needed for `refplay --help`
        import nbclient  # lazy: the [notebooks] extra
        import nbformat  # lazy: the [notebooks] extra
        from traitlets.config import Config  # lazy: the [notebooks] extra (with jupyter_client)
    except ImportError as err:
        raise ImportError(f"executing tutorials as notebooks needs {err.name or 'jupytext'}, "
                          f"which is not installed: {NOTEBOOKS_HINT}") from None
    return jupytext, nbclient, nbformat, Config()


def _notebooks_command(args: argparse.Namespace) -> int:
    try:
        _notebook_modules()                     # before any work: one plain line if missing
    except ImportError as exc:
        print(f"refplay: error: {exc}", file=sys.stderr)
        return 2
    paths = tutorial_paths(args.tutorials)
    if args.only:
        wanted = set(args.only)
        unknown = wanted - {p.stem for p in paths} - {p.name for p in paths} - {
            p.stem[:2] for p in paths}
        if unknown:
            raise ValueError(f"--only {sorted(unknown)} names no tutorial; choose from "
                             f"{[p.stem for p in paths]}")
        paths = [p for p in paths if {p.stem, p.name, p.stem[:2]} & wanted]
    to_notebooks(paths, args.out, quick=args.quick, timeout=args.timeout)
    return 0


def register(sub) -> None:
    """``refplay tutorials notebooks [--out DIR] [--quick] [--only NN ...]``."""
    parser = sub.add_parser("tutorials", help="the tutorials as executed notebooks",
                            description="Work with refplay's tutorials (jupytext percent scripts).")
    commands = parser.add_subparsers(dest="tutorials_command", metavar="COMMAND")
    commands.required = True
    _add_notebooks_command(commands)


def _add_notebooks_command(commands) -> None:
    nb = commands.add_parser(
        "notebooks", help="convert every tutorial to .ipynb and execute it",
        description=textwrap.dedent("""\
            Convert each tutorial to a notebook with jupytext and execute it with nbclient
            (needs the [notebooks] extra). Notebooks and the tutorials' output files go
            under --out."""))
    nb.add_argument("--out", default=str(Path("runs") / "notebooks"),
                    help="folder for the executed notebooks (default: runs/notebooks)")
    nb.add_argument("--quick", action="store_true",
                    help=f"run the small size the tests use ({QUICK_ENV}=1)")
    nb.add_argument("--only", nargs="+", metavar="NN",
                    help="only these tutorials (number, stem or file name), e.g. --only 01 06")
    nb.add_argument("--tutorials", default=None,
                    help="the tutorials folder (default: the one in this refplay checkout)")
    nb.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    nb.set_defaults(func=_notebooks_command)


def main(argv: list[str] | None = None) -> int:
    """``python -m refplay.tutorials notebooks ...``."""
    parser = argparse.ArgumentParser(prog="python -m refplay.tutorials")
    _add_notebooks_command(parser.add_subparsers(dest="command", metavar="COMMAND",
                                                 required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"refplay: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
