"""The README's Python examples run as written, and its commands exist."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_block_runs(i, tmp_path):
    proc = subprocess.run([sys.executable, "-c", BLOCKS[i]], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, MPLBACKEND="Agg"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_readme_refplay_commands_are_real():
    from refplay.cli import build_parser
    parser = build_parser()
    commands = re.findall(r"^refplay ([a-z]+(?: [a-z]+)?)", README, flags=re.M)
    commands += re.findall(r"`refplay ([a-z]+(?: [a-z]+)?)", README)
    assert commands
    for cmd in set(commands):
        words = cmd.split()
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*words, "--help"])
        assert exc.value.code == 0, cmd


def test_readme_test_command_is_the_one_ci_runs():
    """The README's test command (install, then pytest on both cores) is exactly CI's."""
    ci = (pathlib.Path(__file__).parent.parent / ".ci" / "run").read_text()
    readme_pytest = re.findall(r"&& (python -m pytest[^\n`]*)", README)
    ci_pytest = re.findall(r"^(python -m pytest[^\n]*)", ci, flags=re.M)
    assert len(readme_pytest) == 1 and ci_pytest == readme_pytest
    assert " -n 2" in readme_pytest[0]
