"""``refplay.tutorials``: a tutorial run as a script prints its prose between its code cells.

A tiny fake tutorial in a temporary folder stands in for the real ones: its
prose must come out in order and interleaved with what its code prints, a
failing assert must end the run with a non-zero status and a traceback that
names the tutorial's own line, and importing it must do nothing.
"""

import io
import os
import pathlib
import subprocess
import sys

import pytest

from refplay import tutorials
from tests.helpers import optional_import

REPO = pathlib.Path(__file__).parent.parent

FAKE = '''\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       format_name: percent
# ---

# %% [markdown]
# # A fake lesson
#
# First the prose, then the code.

# %%
from refplay.tutorials import lesson
lesson()
COUNT = globals().get("COUNT", 0) + 1
print("code one")

# %% [markdown]
# ## Second section
# x is {x}.

# %%
x = 6 * 7
print(f"x = {x}")
assert x == EXPECTED, f"x is {x}"

# %% [raw]
# not shown

# %%
def half(v):
    return v / 2


print("half", half(x), "count", COUNT)
'''


def write_fake(tmp_path, expected: int) -> pathlib.Path:
    path = tmp_path / "99_fake.py"
    path.write_text(FAKE.replace("EXPECTED", str(expected)))
    return path


def run(path, cwd):
    return subprocess.run([sys.executable, str(path)], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, MPLBACKEND="Agg"), timeout=120)


def test_split_cells_kinds_lines_and_prose():
    cells = tutorials.split_cells(FAKE)
    assert [c.kind for c in cells] == ["markdown", "code", "markdown", "code", "code"]
    assert cells[0].source == "# A fake lesson\n\nFirst the prose, then the code."
    assert cells[2].source == "## Second section\nx is {x}."
    # line numbers are those of the first line after each marker
    lines = FAKE.splitlines()
    for cell in cells:
        if cell.kind == "code":
            assert lines[cell.line - 1] == cell.source.splitlines()[0]
    assert "not shown" not in "".join(c.source for c in cells)


def test_script_run_prints_prose_in_order_and_runs_code(tmp_path):
    proc = run(write_fake(tmp_path, 42), tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    order = ["# A fake lesson", "First the prose, then the code.", "code one",
             "## Second section", "x = 42", "half 21.0"]
    positions = [out.index(s) for s in order]
    assert positions == sorted(positions), out
    # The comment markers are gone, the YAML header and the raw cell are not printed,
    # and the first cell ran once as a lesson (COUNT is 1: lesson() returned at once inside it).
    assert "# %%" not in out and "jupytext" not in out and "not shown" not in out
    assert "count 1" in out
    assert out.count("code one") == 1


def test_failing_assert_exits_non_zero_naming_the_tutorial_line(tmp_path):
    path = write_fake(tmp_path, 41)
    proc = run(path, tmp_path)
    assert proc.returncode == 1
    assert "AssertionError: x is 42" in proc.stderr
    line = FAKE.splitlines().index("assert x == EXPECTED, f\"x is {x}\"") + 1
    assert f'File "{path}", line {line}' in proc.stderr, proc.stderr
    # What came before the failure was printed; what came after was not.
    assert "x = 42" in proc.stdout and "half" not in proc.stdout


def test_import_does_nothing(tmp_path):
    path = write_fake(tmp_path, 42)
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import importlib; "
            f"m = importlib.import_module('99_fake'); print('imported', m.x)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    # The module ran as plain code (once) and printed no prose.
    assert "imported 42" in proc.stdout and "A fake lesson" not in proc.stdout


def test_run_lesson_in_process_returns_the_namespace(tmp_path):
    out = io.StringIO()
    ns = tutorials.run_lesson(write_fake(tmp_path, 42), out=out)
    assert ns["x"] == 42 and ns["half"](10) == 5
    assert "Second section" in out.getvalue()
    with pytest.raises(AssertionError, match="x is 42"):
        tutorials.run_lesson(write_fake(tmp_path, 0), out=io.StringIO())


def test_every_tutorial_calls_lesson_in_its_first_code_cell():
    paths = tutorials.tutorial_paths()
    assert len(paths) >= 5
    for path in paths:
        first = next(c for c in tutorials.split_cells(path.read_text()) if c.kind == "code")
        assert any(line.split("#")[0].strip() == "lesson()"
                   for line in first.source.splitlines()), path.name


def test_notebooks_command_refuses_unknown_tutorial(tmp_path, capsys):
    code = tutorials.main(["notebooks", "--only", "nope", "--out", str(tmp_path)])
    assert code == 2 and "names no tutorial" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_notebooks_command_executes_a_tutorial(tmp_path):
    """The shortest tutorial, converted and executed in a kernel, keeps its outputs."""
    for extra in ("jupytext", "nbclient", "ipykernel"):
        optional_import(extra)
    nbformat = optional_import("nbformat")
    out = tmp_path / "nb"
    proc = subprocess.run([sys.executable, "-m", "refplay.tutorials", "notebooks", "--quick",
                           "--only", "01", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notebook = nbformat.read(out / "01_update_rules.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    markdown = [c for c in notebook.cells if c.cell_type == "markdown"]
    assert markdown and markdown[0].source.startswith("# Tutorial 1")
    assert all(c.execution_count for c in code)
    printed = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "by hand:" in printed and "total steps: 11000" in printed
    # In a notebook lesson() does nothing: the prose is not printed a second time.
    assert "Tutorial 1" not in printed


def test_register_adds_refplay_tutorials_notebooks():
    """``refplay tutorials notebooks`` parses like ``python -m refplay.tutorials notebooks``."""
    import argparse
    parser = argparse.ArgumentParser(prog="refplay")
    tutorials.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tutorials", "notebooks", "--quick", "--only", "06"])
    assert args.quick and args.only == ["06"] and args.out == str(pathlib.Path("runs", "notebooks"))
    assert args.func is not None
