"""Every tutorial runs as a script, top to bottom, and its own asserts hold.

It also writes nothing loose where it runs: every file goes under
``runs/<tutorial>/`` (git-ignored), so running the tutorials from the
repository root leaves no untracked file there.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from refplay.latex import prose_to_text
from refplay.tutorials import split_cells

REPO = pathlib.Path(__file__).parent.parent
TUTORIALS = sorted((REPO / "tutorials").glob("[0-9]*.py"))


def test_there_are_tutorials():
    assert TUTORIALS


def files_under(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs_and_writes_only_under_runs(path, tmp_path):
    # The working directory stands in for the repository root a user runs it from.
    env = {k: v for k, v in os.environ.items() if k != "REFPLAY_OUT"}
    env.update(MPLBACKEND="Agg", REFPLAY_TUTORIAL_QUICK="1")
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    litter = sorted(f for f in files_under(tmp_path)
                    if not f.startswith(f"runs{os.sep}{path.stem}{os.sep}"))
    assert litter == [], f"{path.name} wrote outside runs/{path.stem}/"
    # What it says it wrote, it wrote there ("wrote runs/.../x.png").
    for line in proc.stdout.splitlines():
        if line.startswith("wrote "):
            assert (tmp_path / line.removeprefix("wrote ")).is_file(), line
    # Run as a script, it prints its prose too: every markdown cell, in order (its
    # LaTeX as Unicode text, as a terminal shows it).
    prose = [prose_to_text(c.source) for c in split_cells(path.read_text())
             if c.kind == "markdown"]
    positions = [proc.stdout.find(text) for text in prose]
    assert -1 not in positions, f"{path.name}: prose missing from the script's output"
    assert positions == sorted(positions)


def test_runs_is_ignored_by_git():
    """The default output folder never shows up as untracked files of the repository."""
    ignored = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()]
    assert "/runs/" in ignored or "runs/" in ignored


def test_refplay_out_moves_the_outputs(tmp_path):
    """``REFPLAY_OUT=DIR`` puts a tutorial's files under DIR/<tutorial>/ (the quickest one)."""
    path = REPO / "tutorials" / "03_mnist1d_input_pipeline.py"
    out = tmp_path / "elsewhere"
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    env = dict(os.environ, MPLBACKEND="Agg", REFPLAY_TUTORIAL_QUICK="1", REFPLAY_OUT=str(out))
    proc = subprocess.run([sys.executable, str(path)], cwd=run_dir, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert files_under(run_dir) == set()
    assert files_under(out) == {f"{path.stem}{os.sep}mnist1d_examples.png",
                                f"{path.stem}{os.sep}pipeline_state.npz"}
