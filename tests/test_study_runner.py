"""study.run end to end on fast synthetic trial functions: records match the spec, serial ==
process pool, failures recorded with reasons, Ctrl-C and resume, the default workload trial
function, and the ``refplay study`` commands."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
import time

import numpy as np
import pytest

from refplay import search, study
from refplay.cli import main as refplay_main
from refplay.study import Store, StudySpec
from refplay.study.synthetic import LinearRegressionTrial
from refplay.train.result import TrialResult

FAST = LinearRegressionTrial(max_train_steps=60, eval_every=10)


def halton_spec(name="toy", num_trials=16, **overrides) -> StudySpec:
    space = search.SearchSpace({
        "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
        "nesterov/lr": search.Float(1e-3, 2.0, scale="log", when={"optimizer": "nesterov"}),
        "adam/lr": search.Float(1e-3, 1.0, scale="log", when={"optimizer": "adam"}),
        "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
        "beta1": search.Float(0.8, 0.99, when={"optimizer": "adam"}),
    })
    kwargs = dict(name=name, workload=None, search_space=space, num_trials=num_trials,
                  max_train_steps=FAST.max_train_steps, eval_every=FAST.eval_every,
                  metric="validation/loss", description="toy study", goal="test the runner")
    kwargs.update(overrides)
    return StudySpec(**kwargs)


# -------------------------------------------------------- trial functions (importable by workers)
def misbehaving_trial(config, seed, *, trial_dir):
    """Does what ``config["behavior"]`` says."""
    behavior = config["behavior"]
    if behavior == "raise":
        raise ValueError("planted failure in the trial function")
    if behavior == "hang":
        time.sleep(60)
    if behavior == "wrong_type":
        return {"loss": 1.0}
    if behavior == "number":
        return 0.25              # the study metric, as a plain objective returns it
    if behavior == "inf":
        return math.inf
    if behavior == "exit":
        os._exit(3)          # a worker process dying (out of memory, segfault, ...)
    result = FAST(config, seed, trial_dir=trial_dir)
    if behavior == "nan":    # NaN losses, but the trial claims success
        result.curves["validation/loss"] = [math.nan] * len(result.eval_steps)
        result.best_metrics["validation/loss"] = math.nan
    if behavior == "no_metric":
        result.best_metrics = {"train/loss": 1.0}
    return result


class Interrupting:
    """Raises KeyboardInterrupt (a Ctrl-C) at call number ``after``; counts calls."""

    def __init__(self, after: int | None):
        self.after, self.calls = after, 0

    def __call__(self, config, seed, *, trial_dir):
        self.calls += 1
        if self.after is not None and self.calls > self.after:
            raise KeyboardInterrupt
        return FAST(config, seed, trial_dir=trial_dir)


def explicit_spec(name, behaviors) -> StudySpec:
    configs = [{"behavior": b, "optimizer": "adam", "lr": 0.01} for b in behaviors]
    return StudySpec(name=name, workload=None, sampler="explicit", configs=configs,
                     max_train_steps=FAST.max_train_steps, eval_every=FAST.eval_every,
                     metric="validation/loss")


# ------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    ws = tmp_path_factory.mktemp("serial")
    spec = halton_spec()
    status = study.run(spec, store=ws, trial_fn=FAST, workers=0, progress=False)
    return spec, ws, status


def test_halton_study_records_match_the_spec(serial_run):
    spec, ws, status = serial_run
    assert status.done == 16 and status.missing == 0
    with Store(ws, readonly=True) as store:
        records = store.records(spec.name)
        trials = store.trials(spec.name)
    assert [r["trial"] for r in records] == list(range(16))
    expected_status = {}
    for record, trial in zip(records, spec.trials()):
        assert record["config"] == trial.config and record["seed"] == trial.seed
        direct = FAST(trial.config, trial.seed)
        expected_status[trial.index] = direct.status
        assert record["status"] == direct.status and record["reason"] == direct.reason
        assert record["best_step"] == direct.best_step
        curves = {}
        for split, metric, step, value in record["measurements"]:
            curves.setdefault(f"{split}/{metric}", []).append((step, value))
        assert set(curves) == set(direct.curves)
        for key, points in curves.items():
            assert [s for s, _ in points] == direct.eval_steps
            assert [math.nan if v is None else v for _, v in points] == pytest.approx(
                direct.curves[key], nan_ok=True, rel=0, abs=0)
        with Store(ws, readonly=True) as store:
            saved = store.load_result(spec.name, trial.index)
        assert np.array_equal(saved.grad_norms, direct.grad_norms)
        assert saved.same_computation(direct)
    assert all(t.trial_seconds > 0 and t.worker for t in trials)
    # The search space reaches learning rates that diverge: infeasible trials are data.
    assert status.counts == {s: list(expected_status.values()).count(s)
                             for s in ("complete", "infeasible", "failed", "pruned")}
    assert status.counts["infeasible"] >= 1 and status.counts["complete"] >= 8


def test_spreadsheet_row(serial_run):
    spec, ws, status = serial_run
    row = status.study
    complete = {t.index: FAST(t.config, t.seed) for t in spec.trials()}
    complete = {i: r for i, r in complete.items() if r.status == "complete"}
    best_index = min(complete, key=lambda i: complete[i].best_metrics["validation/loss"])
    assert (row.name, row.description, row.goal) == ("toy", "toy study", "test the runner")
    assert row.trials_run == 16 and row.budget == 16
    assert row.best_trial == best_index
    assert row.best_value == complete[best_index].best_metrics["validation/loss"]
    assert row.best_step == complete[best_index].best_step
    assert status.best_config == spec.trial(best_index).config
    assert row.trial_function.startswith("refplay.study.synthetic.LinearRegressionTrial(")
    copy = ws / row.spec_copy
    assert StudySpec.load(copy) == spec
    assert str(copy) in row.command and "trial_fn=" in row.command


def test_process_pool_records_equal_serial(serial_run, tmp_path):
    spec, ws, _ = serial_run
    # The same computation, 0.1 s longer: a worker that starts late still gets trials.
    paced = dataclasses.replace(FAST, sleep_seconds=0.1)
    status = study.run(spec, store=tmp_path, trial_fn=paced, workers=2, progress=False)
    assert status.done == 16
    with Store(ws, readonly=True) as a, Store(tmp_path, readonly=True) as b:
        assert a.records(spec.name) == b.records(spec.name)
        workers = {t.worker for t in b.trials(spec.name)}
    assert len(workers) == 2 and f":{os.getpid()}" not in "".join(workers)
    for i in range(16):
        sa = TrialResult.load(ws / spec.name / "trials" / f"{i:05d}")
        sb = TrialResult.load(tmp_path / spec.name / "trials" / f"{i:05d}")
        assert np.array_equal(sa.grad_norms, sb.grad_norms)


# ---------------------------------------------------------------------- failures are data
BEHAVIORS = ["ok", "raise", "nan", "ok", "wrong_type", "no_metric", "hang", "ok"]


@pytest.mark.parametrize("workers", [0, 2])
def test_failing_trials_are_recorded_and_the_study_finishes(tmp_path, workers):
    spec = explicit_spec("bad", BEHAVIORS)
    status = study.run(spec, store=tmp_path, trial_fn=misbehaving_trial, workers=workers,
                       time_limit=1.0, progress=False)
    assert status.done == len(BEHAVIORS)
    with Store(tmp_path, readonly=True) as store:
        trials = store.trials("bad")
    got = {t.config["behavior"] + str(t.trial): t for t in trials}
    for t in trials:
        behavior = t.config["behavior"]
        if behavior == "ok":
            assert t.status == "complete" and t.reason == ""
        elif behavior == "raise":
            assert t.status == "failed"
            assert "ValueError: planted failure in the trial function" in t.reason
            assert "Traceback" in t.reason
        elif behavior == "nan":
            assert t.status == "infeasible"
            assert "validation/loss is nan at step 0" in t.reason
        elif behavior == "wrong_type":
            assert t.status == "failed" and "returned dict, not a TrialResult or a number" in t.reason
        elif behavior == "no_metric":
            assert t.status == "failed" and "no best_metrics['validation/loss']" in t.reason
        elif behavior == "hang":
            assert t.status == "failed" and "time limit of 1 s" in t.reason
            assert 1.0 <= t.trial_seconds < 30
    assert len(got) == len(BEHAVIORS)
    assert status.counts == {"complete": 3, "infeasible": 1, "failed": 4, "pruned": 0}
    # Only complete trials compete for the best.
    assert status.study.best_trial in {t.trial for t in trials if t.status == "complete"}


def test_a_dying_worker_stops_the_study_loudly_and_keeps_finished_trials(tmp_path):
    spec = explicit_spec("dies", ["ok", "ok", "exit", "ok"])
    with pytest.raises(study.StudyError, match="could not run trial"):
        study.run(spec, store=tmp_path, trial_fn=misbehaving_trial, workers=1, progress=False)
    with Store(tmp_path, readonly=True) as store:
        recorded = store.status("dies").recorded
    assert recorded == [0, 1]   # one worker, trials in order: 0 and 1 finished before 2 died


def test_ctrl_c_keeps_finished_trials_and_resume_runs_exactly_the_rest(serial_run, tmp_path):
    spec, ws, _ = serial_run
    first = Interrupting(after=5)
    with pytest.raises(KeyboardInterrupt):
        study.run(spec, store=tmp_path, trial_fn=first, workers=0, progress=False)
    with Store(tmp_path, readonly=True) as store:
        assert store.status(spec.name).recorded == [0, 1, 2, 3, 4]
    second = Interrupting(after=None)
    status = study.run(spec, store=tmp_path, trial_fn=second, workers=0, progress=False)
    assert second.calls == 11 and status.done == 16
    again = Interrupting(after=None)
    study.run(spec, store=tmp_path, trial_fn=again, workers=0, progress=False)
    assert again.calls == 0                      # nothing left to run
    with Store(ws, readonly=True) as a, Store(tmp_path, readonly=True) as b:
        assert a.records(spec.name) == b.records(spec.name)


class _FakePool:
    """Stands in for a ProcessPoolExecutor in the tests of ``stop_pool``."""

    def __init__(self, processes=None, public=False):
        self.calls = []
        if processes is not None:
            self._processes = processes
        if public:
            self.terminate_workers = lambda: self.calls.append("terminate_workers")

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.calls.append(("shutdown", wait, cancel_futures))


class _FakeProcess:
    def __init__(self, calls):
        self.calls = calls

    def terminate(self):
        self.calls.append("terminate")

    def join(self, timeout=None):
        self.calls.append("join")


def test_stop_pool_prefers_the_public_method_and_guards_the_private_table():
    from refplay.study.executors import stop_pool
    # Python >= 3.14: the public terminate_workers(), and nothing private.
    pool = _FakePool(processes={1: "must not be touched"}, public=True)
    stop_pool(pool)
    assert pool.calls == ["terminate_workers"]
    # Python < 3.14: cancel what has not started, then terminate the running workers.
    pool = _FakePool(processes={})
    pool._processes.update({1: _FakeProcess(pool.calls), 2: _FakeProcess(pool.calls)})
    stop_pool(pool)
    assert pool.calls == [("shutdown", False, True), "terminate", "terminate", "join", "join"]
    # A Python without the private table: still shut down, no error.
    for table in (None, "unexpected"):
        pool = _FakePool(processes=table)
        stop_pool(pool)
        assert pool.calls == [("shutdown", False, True)]


def test_run_argument_errors(tmp_path):
    spec = halton_spec(num_trials=2)
    with pytest.raises(ValueError, match="has no workload; pass trial_fn"):
        study.run(spec, store=tmp_path)
    with pytest.raises(ValueError, match="either executor or workers"):
        study.run(spec, store=tmp_path, trial_fn=FAST, workers=1,
                  executor=study.SerialExecutor())
    with pytest.raises(ValueError, match="workers"):
        study.run(spec, store=tmp_path, trial_fn=FAST, workers=-1)
    with pytest.raises(ValueError, match="time_limit"):
        study.run(spec, store=tmp_path, trial_fn=FAST, time_limit=0)
    wl = StudySpec(name="wl", workload="spirals_mlp", max_train_steps=5, eval_every=5,
                   sampler="explicit", configs=[{"optimizer": "adam", "lr": 0.01}])
    with pytest.raises(ValueError, match="custom trial_fn needs workload=None"):
        study.run(wl, store=tmp_path, trial_fn=FAST)
    study.run(spec, store=tmp_path, trial_fn=FAST, workers=0)
    with pytest.raises(ValueError, match="was run with trial function"):
        study.run(spec, store=tmp_path, trial_fn=LinearRegressionTrial(60, 10, dim=4), workers=0)


# ------------------------------------------------------------- the default trial function
def spirals_spec(name="spirals", **overrides) -> StudySpec:
    kwargs = dict(name=name, workload="spirals_mlp", num_trials=3, max_train_steps=30,
                  eval_every=10, metric="validation/error_rate",
                  search_space=search.SearchSpace(
                      optimizer=search.Fixed("adam"), lr=search.Float(1e-3, 1e-1, scale="log"),
                      width=search.Fixed(8)))
    kwargs.update(overrides)
    return StudySpec(**kwargs)


def test_default_trial_function_runs_train_run_trial_with_checkpoints(tmp_path):
    from refplay import train
    spec = spirals_spec()
    status = study.run(spec, store=tmp_path, workers=0, progress=False)
    assert status.counts["complete"] == 3
    assert status.study.trial_function == study.DEFAULT_TRIAL_FUNCTION
    with Store(tmp_path, readonly=True) as store:
        records = store.records(spec.name)
    workload = train.get_workload("spirals_mlp")
    for record, trial in zip(records, spec.trials()):
        direct = train.run_trial(workload, trial.config, seed=trial.seed, max_train_steps=30,
                                 eval_every=10, selection_metric="validation/error_rate")
        assert record["best_metrics"] == direct.best_metrics
        assert record["best_step"] == direct.best_step
        values = [v for split, metric, _, v in record["measurements"]
                  if (split, metric) == ("validation", "loss")]
        assert values == direct.curves["validation/loss"]
        trial_dir = tmp_path / spec.name / "trials" / f"{trial.index:05d}"
        assert any((trial_dir / "checkpoints").iterdir())
        assert TrialResult.load(trial_dir).same_computation(direct)


def test_an_interrupted_trial_continues_from_its_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C in the middle of trial 1; on resume trial 1 starts from its latest checkpoint
    (not from step 0) and the study's records equal an uninterrupted run's."""
    from refplay.train.checkpoints import CheckpointStore
    spec = spirals_spec(name="cont", max_train_steps=40, eval_every=10)
    study.run(spec, store=tmp_path / "reference", workers=0, progress=False)

    ws = tmp_path / "ws"
    trial_1 = ws / "cont" / "trials" / "00001" / "checkpoints"
    real_save, real_load = CheckpointStore.save, CheckpointStore.load_latest

    def save_then_ctrl_c(self, step, arrays, history):
        paths = real_save(self, step, arrays, history)
        if self.directory == trial_1 and step == 20:
            raise KeyboardInterrupt
        return paths

    monkeypatch.setattr(CheckpointStore, "save", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        study.run(spec, store=ws, workers=0, progress=False)
    monkeypatch.setattr(CheckpointStore, "save", real_save)
    with Store(ws, readonly=True) as store:
        assert store.status("cont").recorded == [0]

    started_from: dict = {}

    def spying_load(self):
        arrays = real_load(self)
        started_from[self.directory.parent.name] = None if arrays is None else int(arrays["step"])
        return arrays

    monkeypatch.setattr(CheckpointStore, "load_latest", spying_load)
    status = study.run(spec, store=ws, workers=0, progress=False)
    assert started_from == {"00001": 20, "00002": None}     # trial 0 was not run again
    assert status.done == 3
    with Store(tmp_path / "reference", readonly=True) as a, Store(ws, readonly=True) as b:
        assert b.records("cont") == a.records("cont")
    resumed = TrialResult.load(ws / "cont" / "trials" / "00001")
    reference = TrialResult.load(tmp_path / "reference" / "cont" / "trials" / "00001")
    assert np.array_equal(resumed.grad_norms, reference.grad_norms)


def test_invalid_trial_configs_fail_before_the_study_is_recorded(tmp_path):
    spec = spirals_spec(name="typo", search_space=search.SearchSpace(
        optimizer=search.Fixed("adam"), lr=search.Float(1e-3, 1e-1, scale="log"),
        widht=search.Fixed(8)))
    with pytest.raises(ValueError, match="unknown trial config key 'widht'"):
        study.run(spec, store=tmp_path, workers=0)
    assert not (tmp_path / study.DB_NAME).exists()     # nothing was recorded


# ------------------------------------------------------------------------------ commands
SPEC_TOML = """
name = "cli_spirals"
description = "spirals through the CLI"
goal = "check the commands"
workload = "spirals_mlp"
num_trials = 3
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

[search_space.width]
type = "fixed"
value = 8
"""


def test_study_commands(tmp_path, capsys):
    spec_path = tmp_path / "spirals.toml"
    spec_path.write_text(SPEC_TOML)
    ws = str(tmp_path / "ws")
    assert refplay_main(["study", "run", str(spec_path), "--workspace", ws, "--workers", "0",
                         "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "study cli_spirals  (spirals_mlp)" in out
    assert "3/3 recorded (complete 3, infeasible 0, failed 0), 0 to run" in out

    assert refplay_main(["study", "status", "cli_spirals", "--workspace", ws]) == 0
    status_out = capsys.readouterr().out
    with Store(ws, readonly=True) as store:
        row = store.get_study("cli_spirals")
        trials = store.trials("cli_spirals")
    assert f"best validation/error_rate (min): {row.best_value:.6g}" in status_out
    assert (tmp_path / "ws" / row.spec_copy).read_text() == SPEC_TOML   # the stored copy
    assert row.spec_source == str(spec_path.resolve())
    # The reproduction command runs the stored copy, which outlives edits to the original.
    copy = (tmp_path / "ws" / "cli_spirals" / "spec.toml").resolve()
    assert row.spec_copy == "cli_spirals/spec.toml"
    assert row.command == f"refplay study run {copy} --workspace {(tmp_path / 'ws').resolve()}"

    assert refplay_main(["study", "list", "--workspace", ws]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["study", "trials", "best", "metric"]
    assert lines[1].startswith("cli_spirals") and "3/3" in lines[1]
    assert f"{row.best_value:.4g} (trial {row.best_trial})" in lines[1]
    assert "spirals through the CLI" in out
    # The reproduce command, wrapped at spaces only: its words are all there, in order.
    block = out[out.index("reproduce: "):].split("\n\n")[0]
    assert block.removeprefix("reproduce: ").split() == row.command.split()
    # Readable in 100 columns: only a single unbreakable word (a long path) may be longer.
    assert all(len(line) <= 100 or len(line.split()) == 1 for line in lines)

    out_csv = tmp_path / "export.csv"
    assert refplay_main(["study", "export", "cli_spirals", "--csv", str(out_csv),
                         "--workspace", ws]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [int(r["trial"]) for r in rows] == [t.trial for t in trials]
    assert [float(r["config/lr"]) for r in rows] == [t.config["lr"] for t in trials]
    assert (tmp_path / "export_measurements.csv").exists()

    # Resuming a finished study runs nothing and reports the same row.
    capsys.readouterr()
    assert refplay_main(["study", "resume", "cli_spirals", "--workspace", ws, "--workers", "0",
                         "--quiet"]) == 0
    assert "3/3 recorded" in capsys.readouterr().out
    with Store(ws, readonly=True) as store:
        assert store.trials("cli_spirals") == trials

    # Errors are plain messages and exit code 2.
    assert refplay_main(["study", "status", "nope", "--workspace", ws]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err
    assert refplay_main(["study", "status", "../x", "--workspace", ws]) == 2
    assert "study name '../x' is not allowed" in capsys.readouterr().err
    assert refplay_main(["study", "list", "--workspace", str(tmp_path / "empty")]) == 2
    assert "no study database" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC_TOML.replace("num_trials = 3", "num_trials = 0"))
    assert refplay_main(["study", "run", str(bad), "--workspace", ws]) == 2
    assert "num_trials=0 is out of range" in capsys.readouterr().err
    # A config the workload rejects fails before a database is created (nothing left behind).
    typo = tmp_path / "typo.toml"
    typo.write_text(SPEC_TOML.replace("search_space.width", "search_space.widht"))
    fresh = tmp_path / "fresh"
    assert refplay_main(["study", "run", str(typo), "--workspace", str(fresh)]) == 2
    assert "unknown trial config key 'widht'" in capsys.readouterr().err
    assert not fresh.exists()
    assert refplay_main(["study", "run", str(spec_path), "--workspace", str(fresh),
                         "--dask-workers", "2"]) == 2
    assert "--dask-workers goes with --dask local" in capsys.readouterr().err
    assert not fresh.exists()


def test_commands_on_a_study_with_a_custom_trial_function(tmp_path, capsys):
    spec = halton_spec(name="custom", num_trials=2)
    study.run(spec, store=tmp_path, trial_fn=FAST, workers=0)
    assert refplay_main(["study", "status", "custom", "--workspace", str(tmp_path)]) == 0
    assert "2/2 recorded" in capsys.readouterr().out
    # The command line runs workloads only; it says how to run this study instead.
    spec_file = tmp_path / "custom.json"
    spec_file.write_text(spec.to_json())
    for argv in (["resume", "custom"], ["run", str(spec_file)]):
        assert refplay_main(["study", *argv, "--workspace", str(tmp_path)]) == 2
        assert "trial_fn=" in capsys.readouterr().err


def test_one_driver_per_study(tmp_path):
    from refplay.study.runner import _study_lock
    spec = halton_spec(name="locked", num_trials=2)
    with Store(tmp_path) as store, _study_lock(store, "locked"):
        with pytest.raises(study.StudyError, match=r"being run by another process \(pid "):
            study.run(spec, store=tmp_path, trial_fn=FAST, workers=0)
    # Released: the study runs now.
    assert study.run(spec, store=tmp_path, trial_fn=FAST, workers=0).done == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal, progress, shown", [
    (True, None, True), (False, None, False), (True, False, False), (False, True, True)])
def test_progress_bar_on_terminals_only_unless_asked(tmp_path, monkeypatch, terminal, progress,
                                                     shown):
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    spec = explicit_spec("bar", ["ok", "raise", "nan", "ok"])
    study.run(spec, store=tmp_path, trial_fn=misbehaving_trial, workers=0, progress=progress)
    text = err.getvalue()
    if not shown:
        assert text == ""
        return
    final = text.replace("\r", "\n").strip().splitlines()[-1]
    with Store(tmp_path, readonly=True) as store:
        best = store.get_study("bar").best_value
    assert final.startswith("bar: 100%") and "4/4" in final
    assert f"infeasible=1 failed=1 best={best:.4g}" in final


# -------------------------------------------------------- progress when stdout is not a terminal
def test_one_line_per_finished_trial_when_not_a_terminal(tmp_path, capsys):
    spec = halton_spec(num_trials=4)
    study.run(spec, store=tmp_path, trial_fn=FAST, workers=0)    # progress=None: auto
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    with Store(tmp_path, readonly=True) as store:
        records = store.trials("toy")
    for i, (line, record) in enumerate(zip(lines, records)):
        assert line.startswith(f"toy [{i + 1}/4] trial {i}: {record.status}")
        if record.status == "complete":
            assert f"validation/loss={record.objective:.4g}" in line
        assert " s; best so far " in line


def test_progress_false_prints_nothing_and_bad_progress_is_refused(tmp_path, capsys):
    study.run(halton_spec(num_trials=2), store=tmp_path, trial_fn=FAST, workers=0, progress=False)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="progress='loud' is not allowed"):
        study.run(halton_spec(name="other", num_trials=2), store=tmp_path, trial_fn=FAST,
                  workers=0, progress="loud")


# -------------------------------------------------------- retrying failed trials
def flaky_trial(config, seed, *, trial_dir):
    """Fails while the file named by $REFPLAY_TEST_FLAKY exists, then succeeds."""
    if os.path.exists(os.environ["REFPLAY_TEST_FLAKY"]):
        raise RuntimeError("planted failure, fixed later")
    return FAST(config, seed, trial_dir=trial_dir)


def test_retry_failed_runs_failed_trials_again_and_keeps_their_history(tmp_path, monkeypatch):
    flag = tmp_path / "broken"
    flag.write_text("")
    monkeypatch.setenv("REFPLAY_TEST_FLAKY", str(flag))
    spec = halton_spec(num_trials=3)
    ws = tmp_path / "ws"
    status = study.run(spec, store=ws, trial_fn=flaky_trial, workers=0, progress=False)
    assert status.counts["failed"] == 3 and status.study.best_value is None
    # Resuming alone does nothing: every trial has a result.
    assert study.run(spec, store=ws, trial_fn=flaky_trial, workers=0,
                     progress=False).counts["failed"] == 3
    flag.unlink()
    status = study.run(spec, store=ws, trial_fn=flaky_trial, workers=0, progress=False,
                       retry_failed=True)
    assert status.counts == {"complete": 3, "infeasible": 0, "failed": 0, "pruned": 0}
    with Store(ws, readonly=True) as store:
        retired = store.retired("toy")
        fresh = store.records("toy")
    assert [(r["trial"], r["attempt"]) for r in retired] == [(0, 1), (1, 1), (2, 1)]
    assert all("planted failure" in r["row"]["reason"] for r in retired)
    other = tmp_path / "other"
    study.run(spec, store=other, trial_fn=FAST, workers=0, progress=False)
    with Store(other, readonly=True) as store:
        assert store.records("toy") == fresh     # the retried study equals a clean one


def test_baseline_record(tmp_path):
    spec = halton_spec(num_trials=4)
    study.run(spec, store=tmp_path, trial_fn=FAST, workers=0, progress=False)
    with Store(tmp_path) as store:
        assert store.baseline() is None
        best = store.status("toy").study.best_trial
        row = store.set_baseline("toy", best, note="adopted: beats the old one by 3 SE")
        assert (row.study, row.trial, row.metric) == ("toy", best, "validation/loss")
        assert row.objective == store.status("toy").study.best_value
        with pytest.raises(ValueError, match="no recorded result"):
            store.set_baseline("toy", 99)


def test_study_list_shows_the_baseline(tmp_path, capsys):
    study.run(halton_spec(num_trials=3), store=tmp_path, trial_fn=FAST, workers=0, progress=False)
    assert refplay_main(["study", "list", "--workspace", str(tmp_path)]) == 0
    assert "baseline: none recorded" in capsys.readouterr().out
    with Store(tmp_path, readonly=True) as store:
        best = store.status("toy").study
    assert refplay_main(["study", "baseline", "toy", str(best.best_trial), "--note",
                         "the first study", "--workspace", str(tmp_path)]) == 0
    capsys.readouterr()
    assert refplay_main(["study", "list", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (f"baseline: study toy, trial {best.best_trial} (validation/loss "
            f"{best.best_value:.4g})") in out and "the first study" in " ".join(out.split())
    assert refplay_main(["study", "baseline", "toy", "99", "--workspace", str(tmp_path)]) == 2
    assert "trial 99 of study 'toy' has no recorded result" in capsys.readouterr().err


def test_a_trial_function_may_return_the_metric_as_a_number(tmp_path):
    spec = explicit_spec("numbers", ["number", "inf", "ok"])
    status = study.run(spec, store=tmp_path, trial_fn=misbehaving_trial, workers=0,
                       progress=False)
    with Store(tmp_path, readonly=True) as store:
        number, inf, _ = store.trials("numbers")
    assert (number.status, number.objective, number.best_step) == ("complete", 0.25,
                                                                   spec.max_train_steps)
    assert inf.status == "infeasible" and inf.reason == "the objective returned inf"
    assert status.counts["complete"] == 2
