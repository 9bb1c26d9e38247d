"""Every tutorial runs as a script, top to bottom, and its own asserts hold.

It also writes nothing loose where it runs: every file goes under
``runs/<tutorial>/`` (git-ignored), so running the tutorials from the
repository root leaves no untracked file there.

Tutorials 08, 09 and 11 run the same quick procedures as
``tests/test_procedures_claims.py``, tutorial 10 two of Figures 5 and 9's: they run in the
suite's shared workspace
(``REFPLAY_TUTORIAL_WORKSPACE``) under the same locks, so each of those studies
is trained once per run and read by the other test.
"""

import contextlib
import os
import pathlib
import subprocess
import sys

import pytest

from refplay.latex import prose_to_text
from refplay.tutorials import split_cells

REPO = pathlib.Path(__file__).parent.parent
#: The locks (``shared_workspace.lock``) of the studies a tutorial shares with
#: ``test_procedures_claims.py``: the same procedure, the same arguments.
SHARED_STUDIES = {
    "08_batch_size": ("batch_size_fair_comparison", "steps_to_result"),
    "09_how_long_to_train": ("initial_max_train_steps", "two_rounds"),
    "11_adopting_a_change": ("retrain_variance",),
    "10_instability": ("clipping", "fig7", "frequent_evals"),   # test_reproduce_instability.py
}
# Those tutorials first: under xdist they start at once and train the shared studies
# while the claim tests that read them wait in the queue, not on a lock.
TUTORIALS = sorted(sorted((REPO / "tutorials").glob("[0-9]*.py")),
                   key=lambda p: p.stem not in SHARED_STUDIES)


def test_there_are_tutorials():
    assert TUTORIALS


def files_under(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs_and_writes_only_under_runs(path, tmp_path, shared_workspace):
    # The working directory stands in for the repository root a user runs it from.
    env = {k: v for k, v in os.environ.items()
           if k not in ("REFPLAY_OUT", "REFPLAY_TUTORIAL_WORKSPACE")}
    env.update(MPLBACKEND="Agg", REFPLAY_TUTORIAL_QUICK="1")
    with contextlib.ExitStack() as held:
        if path.stem in SHARED_STUDIES:
            env["REFPLAY_TUTORIAL_WORKSPACE"] = str(shared_workspace.path)
            for name in sorted(SHARED_STUDIES[path.stem]):   # one order: no deadlock
                held.enter_context(shared_workspace.lock(name))
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
