"""Bad input, as a careless user types it: every mistake gets one plain error line that
names the field or the file, a non-zero exit, no traceback -- and changes nothing on disk.

Each CLI case runs ``refplay.cli.main`` in-process against a workspace holding a finished
study, and compares every file of the workspace (bytes) before and after. Cases that
belong to work in progress elsewhere are marked ``xfail(strict=True)``: they start to
pass, and so fail loudly here, the moment that work lands.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from refplay import search, train
from refplay.cli import main
from refplay.study import DB_NAME, StudySpec

SPEC = """\
name = "tiny"
workload = "spirals_mlp"
num_trials = 2
max_train_steps = 20
eval_every = 10
metric = "validation/error_rate"
[search_space.optimizer]
type = "fixed"
value = "adam"
[search_space.lr]
type = "float"
low = 0.001
high = 0.1
scale = "log"
"""


def spec_with(old: str, new: str, name: str) -> str:
    assert old in SPEC
    return SPEC.replace(old, new).replace('name = "tiny"', f'name = "{name}"')


# --------------------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict[str, str]:
    """Every folder and file under ``root`` with its bytes' hash.

    Left out: SQLite's ``-shm`` index (readers write it), an empty ``-wal`` (the same
    database whether present or not) and ``.lock`` files (they name the last driver).
    """
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel + "/"] = "folder"
        elif p.name.endswith("-shm") or p.name == ".lock":
            continue
        elif p.name.endswith("-wal") and p.stat().st_size == 0:
            continue
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str]) -> int:
    """``refplay ARGV`` in this process; argparse's exit becomes a return code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def refused(capsys, argv: list[str], *names: str) -> str:
    """Run ``argv``; assert a non-zero exit, no traceback, and one error line naming ``names``."""
    code = run_cli([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code not in (0, None), (argv, captured.out, captured.err)
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1, captured.err
    # argparse prints its usage first; anything else on stderr is one more error line
    others = [line for line in captured.err.splitlines()
              if line not in errors and not line.startswith(("usage:", " "))]
    assert others == [], captured.err
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A workspace with the finished study 'tiny' (2 trials of 20 steps) and its spec."""
    root = tmp_path_factory.mktemp("bad_input")
    (root / "tiny.toml").write_text(SPEC)
    ws = root / "ws"
    assert main(["study", "run", str(root / "tiny.toml"), "--workspace", str(ws),
                 "--workers", "0", "--quiet"]) == 0
    return root


@pytest.fixture
def ws(base, capsys):
    """The workspace; the test must leave every byte of it as it found it."""
    capsys.readouterr()
    before = snapshot(base / "ws")
    assert any(k.startswith("tiny/trials/") for k in before) and DB_NAME in before
    yield base / "ws"
    assert snapshot(base / "ws") == before


# --------------------------------------------------------------------------- spec files
SPEC_CASES = {
    "unknown_key": (spec_with('workload = "spirals_mlp"', 'workload = "spirals_mlp"\nnmae = 3',
                              "k"), ["'nmae'", "unknown study spec key"]),
    "toml_syntax": (spec_with('workload = "spirals_mlp"', 'workload = "spirals_mlp', "s"),
                    ["not valid TOML", "spec.toml"]),
    "negative_num_trials": (spec_with("num_trials = 2", "num_trials = -1", "n"),
                            ["num_trials=-1"]),
    "zero_max_train_steps": (spec_with("max_train_steps = 20", "max_train_steps = 0", "z"),
                             ["max_train_steps=0"]),
    "eval_every_text": (spec_with("eval_every = 10", 'eval_every = "ten"', "e"),
                        ["eval_every", "'ten'"]),
    "lr_low_above_high": (spec_with("low = 0.001", "low = 0.5", "l"),
                          ["'lr'", "low=0.5", "high=0.1"]),
    "unknown_parameter_type": (spec_with('type = "float"', 'type = "floot"', "t"),
                               ["'lr'", "type='floot'"]),
    "unknown_optimizer": (spec_with('value = "adam"', 'value = "adamz"', "o"),
                          ["optimizer='adamz'"]),
    "unknown_workload": (spec_with('workload = "spirals_mlp"', 'workload = "spirals_mpl"', "w"),
                         ["workload='spirals_mpl'"]),
    "unknown_sampler": (spec_with("", "", "r") + '[sampler]\nname = "sobol"\n',
                        ["sampler='sobol'"]),
    "metric_not_reported": (spec_with('metric = "validation/error_rate"',
                                      'metric = "validation/nope"', "m"),
                            ["metric='validation/nope'"]),
    "same_name_other_spec": (spec_with("max_train_steps = 20", "max_train_steps = 30", "tiny"),
                             ["'tiny'", "max_train_steps"]),
}


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_a_bad_spec_is_refused_by_name_and_nothing_changes(case, ws, tmp_path, capsys):
    text, names = SPEC_CASES[case]
    path = tmp_path / "spec.toml"
    path.write_text(text)
    refused(capsys, ["study", "run", path, "--workspace", ws, "--workers", "0", "--quiet"],
            *names)


def test_a_missing_or_misnamed_spec_file_is_named(ws, tmp_path, capsys):
    refused(capsys, ["study", "run", tmp_path / "nope.toml", "--workspace", ws], "nope.toml")
    yaml = tmp_path / "tiny.yaml"
    yaml.write_text(SPEC)
    refused(capsys, ["study", "run", yaml, "--workspace", ws], "tiny.yaml", ".toml")


# --------------------------------------------------------------------------- CLI options
OPTION_CASES = {
    "workers_not_a_number": (["study", "run", "{spec}", "--workers", "abc"], ["--workers", "abc"]),
    "unknown_flag": (["study", "run", "{spec}", "--bogus"], ["--bogus"]),
    "unknown_command": (["study", "frobnicate"], ["frobnicate"]),
    "unknown_rule": (["demo", "--rule", "nope"], ["--rule", "nope"]),
    "negative_demo_steps": (["demo", "--steps", "-1"], ["steps=-1"]),
    "oracle_steps_too_few": (["oracle", "check", "torch", "--steps", "3"], ["steps=3"]),
    "dask_workers_without_dask": (["study", "run", "{spec}", "--dask-workers", "2"],
                                  ["--dask-workers"]),
    "status_unknown_study": (["study", "status", "nosuch"], ["'nosuch'"]),
    "resume_unknown_study": (["study", "resume", "nosuch", "--workers", "0"], ["'nosuch'"]),
    "export_unknown_study": (["study", "export", "nosuch", "--csv", "{tmp}/out.csv"],
                             ["'nosuch'"]),
    "report_n_validation_zero": (["study", "report", "tiny", "--n-validation", "0"],
                                 ["--n-validation=0"]),
    "import_missing_csv": (["study", "import", "csv", "{tmp}/nope.csv", "--name", "x"],
                           ["nope.csv"]),
    "import_option_of_optuna_on_a_csv": (["study", "import", "csv", "{tmp}/nope.csv", "--name",
                                          "x", "--sampler", "tpe"], ["--sampler", "optuna"]),
    "import_unknown_kind": (["study", "import", "wandb", "{tmp}/runs.csv", "--name", "x"],
                            ["'wandb'"]),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_a_nonsense_option_is_refused_by_name_and_nothing_changes(case, ws, base, tmp_path,
                                                                   capsys):
    argv, names = OPTION_CASES[case]
    argv = [a.format(spec=base / "tiny.toml", tmp=tmp_path) for a in argv]
    if argv[0] == "study":
        argv += ["--workspace", str(ws)]
    refused(capsys, argv, *names)
    assert list(tmp_path.iterdir()) == []                    # no CSV, no stray file


@pytest.mark.parametrize("option, value, name", [
    ("--n-validation", "0", "n_validation=0"),
    ("--name", "tiny", "'tiny' is already in"),
])
def test_a_bad_import_is_refused_and_changes_nothing(option, value, name, ws, tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    csv.write_text("trial,state,params_lr,value\n0,COMPLETE,0.01,0.5\n1,FAIL,0.1,\n")
    argv = ["study", "import", "csv", csv, "--workspace", ws, option, value]
    refused(capsys, argv if option == "--name" else argv + ["--name", "imported"], name)


@pytest.mark.parametrize("option, value, name", [
    ("--workers", "-1", "workers=-1"),
    ("--time-limit", "-5", "time_limit=-5"),
])
def test_a_bad_run_option_creates_no_workspace(option, value, name, base, tmp_path, capsys):
    """Every check that can fail comes before the database is created."""
    fresh = tmp_path / "fresh"
    refused(capsys, ["study", "run", base / "tiny.toml", "--workspace", fresh, option, value,
                     "--quiet"], name)
    assert not fresh.exists(), sorted(p.name for p in fresh.rglob("*"))


# --------------------------------------------------------------------------- damaged files
@pytest.fixture
def damaged_ws(base, tmp_path):
    """A copy of the workspace, for a test to damage."""
    copy = tmp_path / "ws"
    shutil.copytree(base / "ws", copy)
    return copy


COMMANDS = [["study", "status", "tiny"], ["study", "list"],
            ["study", "resume", "tiny", "--workers", "0", "--quiet"],
            ["study", "run", "{spec}", "--workers", "0", "--quiet"],
            ["study", "export", "tiny", "--csv", "{tmp}/out.csv"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_database_of_garbage_bytes_is_named_and_left_alone(command, base, damaged_ws, capsys):
    db = damaged_ws / DB_NAME
    with open(db, "r+b") as f:                     # the header and first pages overwritten
        f.write(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    before = snapshot(damaged_ws)
    argv = [a.format(spec=base / "tiny.toml", tmp=damaged_ws.parent) for a in command]
    refused(capsys, [*argv, "--workspace", damaged_ws], DB_NAME)
    assert snapshot(damaged_ws) == before
    assert not (damaged_ws.parent / "out.csv").exists()


def test_a_sqlite_database_that_is_not_refplays_is_named(damaged_ws, capsys):
    db = damaged_ws / DB_NAME
    for extra in damaged_ws.glob(DB_NAME + "-*"):
        extra.unlink()
    db.unlink()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    before = snapshot(damaged_ws)
    refused(capsys, ["study", "list", "--workspace", damaged_ws], DB_NAME,
            "not a refplay study database")
    assert snapshot(damaged_ws) == before


def test_an_empty_database_file_is_named_as_empty_not_missing(damaged_ws, capsys):
    for extra in damaged_ws.glob(DB_NAME + "-*"):
        extra.unlink()
    (damaged_ws / DB_NAME).write_bytes(b"")
    before = snapshot(damaged_ws)
    line = refused(capsys, ["study", "status", "tiny", "--workspace", damaged_ws], DB_NAME)
    assert "empty" in line and "no study database" not in line
    assert snapshot(damaged_ws) == before


def test_a_damaged_checkpoint_is_named_kept_and_never_trusted(tmp_path):
    """A garbage ``latest.npz``: the trial starts afresh (the same bits as a fresh run), the
    result names the file, and its bytes are kept (moved aside, not deleted)."""
    config = {"optimizer": "adam", "lr": 1e-2}
    kwargs = dict(seed=0, max_train_steps=20, eval_every=10)
    fresh = train.run_trial("spirals_mlp", config, **kwargs)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    garbage = b"PK\x03\x04 this is not an npz" * 10
    (ckpt / "latest.npz").write_bytes(garbage)
    result = train.run_trial("spirals_mlp", config, checkpoint_dir=ckpt, **kwargs)
    assert result.status == "complete"
    assert result.grad_norms.tobytes() == fresh.grad_norms.tobytes()      # a fresh start
    assert sorted(result.curves) == sorted(fresh.curves) and result.best_step == fresh.best_step
    for name, values in fresh.curves.items():      # NaN-aware: train/loss has no step-0 value
        np.testing.assert_array_equal(result.curves[name], values)
    skipped = result.extras.get("checkpoint_skipped", [])
    assert [Path(s["file"]).name for s in skipped] == ["latest.npz.damaged"], skipped
    assert (ckpt / "latest.npz.damaged").read_bytes() == garbage


# --------------------------------------------------------------------------- Python API
@pytest.mark.parametrize("build, match", [
    (lambda: StudySpec.from_dict({"name": "x", "workload": "spirals_mlp", "nmae": 1}), "'nmae'"),
    (lambda: search.SearchSpace({"lr": search.Float(1.0, 0.1)}), "'lr'.*low=1.0"),
    (lambda: search.SearchSpace({"lr": search.Float(1e-3, 1.0, scale="lgo")}), "scale"),
    (lambda: train.get_workload("spirals_mpl"), "workload='spirals_mpl'"),
    (lambda: train.run_trial("spirals_mlp", {"optimizer": "adamz", "lr": 0.1}, seed=0,
                             max_train_steps=10, eval_every=5), "optimizer='adamz'"),
    (lambda: train.run_trial("spirals_mlp", {"optimizer": "adam", "lr": -1.0}, seed=0,
                             max_train_steps=10, eval_every=5), "lr"),
    (lambda: train.run_trial("spirals_mlp", {"optimizer": "adam", "lr": 0.1}, seed=0,
                             max_train_steps=-3, eval_every=5), "max_train_steps"),
])
def test_the_python_api_refuses_bad_input_by_name(build, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises((ValueError, TypeError), match=match):
        build()
    assert list(tmp_path.iterdir()) == []          # nothing written on the way to the error
