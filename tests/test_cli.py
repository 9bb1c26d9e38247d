"""The ``refplay`` command as a new user meets it: help, errors, progress, baselines."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from refplay import search, study
from refplay.cli import build_parser, main
from refplay.study.synthetic import LinearRegressionTrial


def test_every_command_group_is_registered_from_the_cli_package():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert list(commands) == ["demo", "oracle", "study", "procedure", "reproduce", "tutorials"]


def test_demo_help_describes_the_command_and_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Print one of the playbook's update rules" in text
    assert "the update rule to show (default: adam)" in text
    assert "how many updates to print after θ_0 (default: 3)" in text
    assert "the constant learning rate η_t of every step (default: 0.1)" in text


def test_figures_1_to_3_are_procedures_too(capsys):
    parser = build_parser()
    for name in ("search-space", "isolation", "trials-needed"):
        args = parser.parse_args(["procedure", name, "--quick", "--workspace", "ws"])
        assert args.procedure_name == name and args.quick and not hasattr(args, "seed")


# ---------------------------------------------------------------------------- baseline
@pytest.fixture
def toy_workspace(tmp_path):
    spec = study.StudySpec(name="toy", workload=None, num_trials=2, max_train_steps=20,
                           eval_every=10, metric="validation/loss",
                           search_space=search.SearchSpace(
                               optimizer=search.Fixed("adam"),
                               lr=search.Float(1e-3, 1e-1, scale="log")))
    study.run(spec, store=tmp_path, trial_fn=LinearRegressionTrial(20, 10), workers=0,
              progress=False)
    return str(tmp_path)


def test_study_baseline_name_without_trial_shows_the_current_baseline(toy_workspace, capsys):
    assert main(["study", "baseline", "toy", "--workspace", toy_workspace]) == 0
    assert "no baseline recorded; record one with: refplay study baseline NAME TRIAL" in \
        capsys.readouterr().out
    assert main(["study", "baseline", "toy", "1", "--note", "the better lr",
                 "--workspace", toy_workspace]) == 0
    recorded = capsys.readouterr().out
    assert recorded.startswith("baseline: study toy, trial 1 (validation/loss ")
    for argv in (["study", "baseline", "toy"], ["study", "baseline"]):
        assert main([*argv, "--workspace", toy_workspace]) == 0
        assert capsys.readouterr().out == recorded and recorded.rstrip().endswith(": the better lr")


def test_study_baseline_refuses_an_unknown_study_in_one_line(toy_workspace, capsys):
    assert main(["study", "baseline", "nosuch", "--workspace", toy_workspace]) == 2
    err = capsys.readouterr().err
    assert err.startswith("refplay: error: ") and "nosuch" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- tutorials
def test_tutorials_notebooks_without_the_extra_is_one_line_with_the_install_hint(
        monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "jupytext", None)      # as if it were not installed
    assert main(["tutorials", "notebooks", "--out", str(tmp_path / "nb")]) == 2
    err = capsys.readouterr().err
    assert err == ("refplay: error: executing tutorials as notebooks needs jupytext, which is "
                   "not installed: pip install -e '.[notebooks]' (from a clone of refplay)\n")
    assert not (tmp_path / "nb").exists()


# ---------------------------------------------------------------------------- progress
@pytest.mark.slow
def test_procedures_and_reproductions_print_the_header_first_then_a_line_per_trial(tmp_path):
    """With stdout a pipe (not a terminal): the header, flushed, then one line per finished
    trial; a reproduction re-reading the same study prints its header and no trial line."""
    workspace = str(tmp_path / "ws")

    def run(*argv):
        done = subprocess.run([sys.executable, "-m", "refplay", *argv], capture_output=True,
                              text=True, timeout=600, check=True)
        return done.stdout.splitlines()

    # Figure 9's studies: the quickest procedure that trains two studies (5 small trials).
    lines = run("procedure", "clipping", "--quick", "--workspace", workspace,
                "--out", str(tmp_path / "out"))
    assert lines[0].startswith("== refplay procedure clipping: ")
    trials = [i for i, line in enumerate(lines)
              if re.match(r"clipping_(reference|unstable)-\w+ \[\d/[14]\] trial \d: "
                          r"(complete|infeasible) ", line)]
    assert len(trials) == 5
    assert trials[-1] < lines.index(next(x for x in lines if x.startswith("Question:")))
    lines = run("reproduce", "fig9", "--quick", "--workspace", workspace,
                "--out", str(tmp_path / "repro"))
    assert lines[0].startswith("== fig9: ") and lines[0].endswith(" [quick]")
    assert not any(" trial 0: " in line for line in lines)     # read, not run again


# ---------------------------------------------------------------------------- errors
def _always_crashes(config, seed, *, trial_dir=None):
    raise RuntimeError("planted bug: every trial")


def test_a_run_stopped_by_the_same_crash_is_one_line_pointing_to_the_traceback(tmp_path):
    from refplay.cli.study import _error_line
    spec = study.StudySpec(name="crashes", workload=None, num_trials=5, max_train_steps=20,
                           eval_every=10, metric="validation/loss",
                           search_space=search.SearchSpace(lr=search.Float(1e-3, 1e-1)))
    with pytest.raises(study.StudyError) as caught:
        study.run(spec, store=tmp_path, trial_fn=_always_crashes, workers=0, progress=False)
    assert "Traceback" in str(caught.value)                 # the runner keeps the whole story
    line = _error_line(caught.value, str(tmp_path), "crashes")
    assert "\n" not in line
    assert line.startswith("the first 3 trials of study 'crashes' (trials [0, 1, 2]) all failed")
    assert "RuntimeError: planted bug: every trial" in line
    written = tmp_path / "crashes" / "error.txt"
    assert f"({'the full text, with the traceback: '}{written})" in line
    assert written.read_text() == str(caught.value) + "\n"
