"""Crash safety, end to end in real processes: a study SIGKILLed at random moments and
resumed ends with exactly the records of an uninterrupted run; Ctrl-C stops a pooled run
cleanly; readers see consistent snapshots while a study runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refplay import search, study
from refplay.cli import main as refplay_main
from refplay.study import DB_NAME, Store, StudySpec, executors
from refplay.study.synthetic import LinearRegressionTrial
from refplay.train.result import TrialResult, TrialStatus
from tests.helpers import blocked_trials, open_trial_gate, trial_gate_env

REPO = Path(__file__).resolve().parents[1]

DRIVER = """
import json, sys
from refplay import study
from refplay.study.synthetic import LinearRegressionTrial
spec = study.StudySpec.load(sys.argv[1])
trial_fn = LinearRegressionTrial(**json.loads(sys.argv[3]))
try:
    study.run(spec, store=sys.argv[2], trial_fn=trial_fn, workers=int(sys.argv[4]),
              progress=False)
except KeyboardInterrupt:
    sys.exit(130)
"""

TRIAL = dict(max_train_steps=60, eval_every=10)


def synthetic_spec(name: str, num_trials: int, high_lr: float) -> StudySpec:
    space = search.SearchSpace({
        "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
        "lr": search.Float(1e-3, high_lr, scale="log"),
        "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
    })
    return StudySpec(name=name, workload=None, search_space=space, num_trials=num_trials,
                     max_train_steps=TRIAL["max_train_steps"], eval_every=TRIAL["eval_every"],
                     metric="validation/loss")


def launch(args: list[str]) -> subprocess.Popen:
    """A process in its own session, so that the whole group (pool workers too) can be killed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def launch_driver(spec_path, ws, trial_kwargs, workers) -> subprocess.Popen:
    return launch(["-c", DRIVER, str(spec_path), str(ws), json.dumps(trial_kwargs),
                   str(workers)])


def recorded(ws: Path) -> int:
    """Trials recorded so far, read the way any outside reader would (0 before the db exists)."""
    path = ws / DB_NAME
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:     # the schema is being created
        return 0


def wait_until(predicate, proc: subprocess.Popen) -> None:
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"driver exited early with {proc.returncode}:\n{err}")
        time.sleep(0.005)


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    spec = synthetic_spec("crashy", num_trials=20, high_lr=3.0)
    spec_path = tmp_path / "crashy.json"
    spec_path.write_text(spec.to_json())
    trial_kwargs = {**TRIAL, "sleep_seconds": 0.04}
    reference = tmp_path / "reference"
    study.run(spec, store=reference, trial_fn=LinearRegressionTrial(**trial_kwargs), workers=0,
              progress=False)

    ws = tmp_path / "ws"
    rng = np.random.default_rng(20240601)
    mid_study_kills = 0
    for attempt in range(4):
        proc = launch_driver(spec_path, ws, trial_kwargs, workers=2)
        if attempt == 0:
            time.sleep(rng.uniform(0.05, 0.5))      # somewhere in start-up
        else:
            target = min(spec.budget - 4, recorded(ws) + int(rng.integers(1, 5)))
            wait_until(lambda: recorded(ws) >= target, proc)
            time.sleep(rng.uniform(0.0, 0.06))      # somewhere in the next trials
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        n = recorded(ws)
        mid_study_kills += 0 < n < spec.budget
    assert mid_study_kills >= 3, "the kills did not land while the study was running"

    proc = launch_driver(spec_path, ws, trial_kwargs, workers=2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    with Store(reference, readonly=True) as a, Store(ws, readonly=True) as b:
        records = b.records("crashy")
        assert records == a.records("crashy")
        status = b.status("crashy")
    assert [r["trial"] for r in records] == list(range(spec.budget))
    assert status.study.trials_run == spec.budget == status.done
    assert status.counts["infeasible"] >= 1     # the records compared include infeasible ones


def running_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (exited-but-unreaped ones excluded)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:           # exited while we looked
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            pids.append(int(stat.parent.name))
    return pids


def test_pool_workers_exit_when_the_driver_is_sigkilled(tmp_path):
    """Only the driver is killed (kill -9 PID, the OOM killer): its workers must not live on,
    running trials into the folders of a resumed study and then idling forever."""
    spec = synthetic_spec("orphans", num_trials=4, high_lr=1e-2)
    spec_path = tmp_path / "orphans.json"
    spec_path.write_text(spec.to_json())
    proc = launch_driver(spec_path, tmp_path / "ws", {**TRIAL, "sleep_seconds": 60}, workers=2)
    try:
        # The driver, multiprocessing's resource tracker and fork server, and the two workers.
        wait_until(lambda: len(running_members(proc.pid)) >= 5, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()              # not communicate(): orphaned workers would hold its pipes open
        for _ in range(2000):    # the workers are inside 60-second trials: they must not finish
            if not running_members(proc.pid):
                break
            time.sleep(0.01)
        assert running_members(proc.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()


def test_ctrl_c_stops_a_pooled_run_cleanly_and_resume_finishes_it(tmp_path):
    """Ctrl-C while trials are running: exit 130 with the resume command, no traceback, no
    worker left, the finished trials kept; resuming ends where an uninterrupted run ends.

    No timing: the first two trials run, every later one waits at a gate the test never
    opens, and Ctrl-C is sent once a worker is waiting there -- so the study is known to
    be mid-run, with exactly two trials recorded.
    """
    spec_text = """
name = "interrupted"
workload = "spirals_mlp"
num_trials = 8
max_train_steps = 100
eval_every = 25
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
    spec_path = tmp_path / "interrupted.toml"
    spec_path.write_text(spec_text)
    ws = tmp_path / "ws"
    gate = tmp_path / "gate"
    cli = ["-m", "refplay", "study"]
    env = {**os.environ, **trial_gate_env(gate, free_trials=2, repo=REPO)}
    # Ctrl-C's SIGINT back at its default in the driver: a suite started in the background
    # (`pytest &`, nohup) hands its children SIGINT ignored, and a Python started with SIGINT
    # ignored keeps ignoring it -- the driver would then rightly never see this Ctrl-C.
    with_sigint = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
    proc = subprocess.Popen([sys.executable, "-c", with_sigint, *cli, "run", str(spec_path),
                             "--workers", "2", "--workspace", str(ws), "--quiet"],
                            cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: recorded(ws) >= 2 and blocked_trials(gate) >= 1, proc)
        os.killpg(proc.pid, signal.SIGINT)              # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=300)        # a guard against a hang, not a race
    finally:
        open_trial_gate(gate)                           # never leave a worker waiting
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted: finished trials are recorded" in err
    assert "refplay study resume interrupted" in err
    assert "Traceback" not in err
    # The terminated workers ran their finalizers: nothing left to the resource tracker.
    assert "resource_tracker" not in err and "leaked semaphore" not in err, err
    for _ in range(30_000):                             # the pool's workers are gone too
        if group_gone(proc.pid):
            break
        time.sleep(0.01)
    assert group_gone(proc.pid)
    with Store(ws, readonly=True) as store:
        n = store.status("interrupted").done
    assert n == 2                                       # the gated trials left no record

    proc = launch([*cli, "resume", "interrupted", "--workers", "2", "--workspace", str(ws),
                   "--quiet"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "8/8 recorded (complete 8" in out
    reference = tmp_path / "reference"
    study.run(StudySpec.load(spec_path), store=reference, workers=0, progress=False)
    with Store(reference, readonly=True) as a, Store(ws, readonly=True) as b:
        assert b.records("interrupted") == a.records("interrupted")


def test_sigterm_ends_a_trial_but_never_interrupts_the_pools_queues(monkeypatch, tmp_path):
    """A worker's SIGTERM handler raises only inside the trial function: raised inside the
    pool's queue code, it could leave a pipe mid-message and its reader waiting forever."""
    monkeypatch.setattr(executors, "_stopping", False)
    monkeypatch.setattr(executors, "_in_trial", False)
    task = executors._Task(index=3, config={}, seed=0, trial_dir=str(tmp_path), time_limit=None,
                           pin_threads=False)

    def sigterm_mid_trial(config, seed, *, trial_dir):
        executors._on_sigterm(signal.SIGTERM, None)       # what the signal runs, here
        raise AssertionError("SIGTERM did not end the trial")

    with pytest.raises(SystemExit) as stopped:
        executors._run_task(sigterm_mid_trial, task)
    assert stopped.value.code == 128 + signal.SIGTERM and not executors._in_trial
    # Between trials (in the queues): noted, not raised; the queued trials are refused.
    monkeypatch.setattr(executors, "_stopping", False)
    executors._on_sigterm(signal.SIGTERM, None)
    assert executors._stopping
    with pytest.raises(SystemExit, match="trial 3 not started"):
        executors._run_task(sigterm_mid_trial, task)


def test_a_trial_that_sigterm_cut_short_is_not_recorded_whatever_it_returned(monkeypatch,
                                                                            tmp_path):
    # The handler's SystemExit, raised while Numba compiles, reaches the trial as a
    # SystemError: a trial function that catches it returns a 'failed' result, or it
    # escapes as an Exception. Neither is the trial's outcome.
    monkeypatch.setattr(executors, "_stopping", False)
    monkeypatch.setattr(executors, "_in_trial", False)
    task = executors._Task(index=5, config={}, seed=0, trial_dir=str(tmp_path), time_limit=None,
                           pin_threads=False)

    def caught_and_failed(config, seed, *, trial_dir):
        try:
            executors._on_sigterm(signal.SIGTERM, None)
        except SystemExit as exc:
            return TrialResult(config={}, seed=0, status=TrialStatus.FAILED, reason=repr(exc))

    def mangled(config, seed, *, trial_dir):
        try:
            executors._on_sigterm(signal.SIGTERM, None)
        except SystemExit as exc:
            raise SystemError("CPUDispatcher returned a result with an exception set") from exc

    for trial_fn in (caught_and_failed, mangled):
        monkeypatch.setattr(executors, "_stopping", False)
        with pytest.raises(SystemExit, match="stopped during trial 5: not recorded"):
            executors._run_task(trial_fn, task)


def stuck_where_sigterm_cannot_reach(marker: str) -> None:
    """A task that ignores SIGTERM, as a long native call (a Numba kernel) does."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    Path(marker).touch()
    time.sleep(600)


def test_stopping_a_pool_kills_a_worker_that_sigterm_cannot_reach(monkeypatch, tmp_path):
    """The driver's exit joins every worker: one that outlives SIGTERM is killed, or a Ctrl-C
    would hang the driver until the worker's trial ends."""
    monkeypatch.setattr(executors, "_STOP_GRACE_SECONDS", 0.5)
    pool = executors.process_pool(1)
    marker = tmp_path / "stuck"
    future = pool.submit(stuck_where_sigterm_cannot_reach, str(marker))
    while not marker.exists():
        assert not future.done(), future.exception()
        time.sleep(0.01)
    workers = list(pool._processes.values())
    executors.stop_pool(pool)
    assert workers and not any(p.is_alive() for p in workers)
    pool.shutdown(wait=True)           # returns: no worker left to wait for


def snapshot(path: Path, name: str) -> dict:
    """Read everything in one transaction, as a consistent reader must."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10,
                           isolation_level=None)
    try:
        conn.execute("BEGIN")
        trials_run, best_value, best_trial = conn.execute(
            "SELECT trials_run, best_value, best_trial FROM studies WHERE name = ?",
            (name,)).fetchone()
        rows = conn.execute("SELECT trial, status, objective FROM trials WHERE study = ?",
                            (name,)).fetchall()
        per_trial = dict(conn.execute("SELECT trial, COUNT(*) FROM measurements WHERE study = ? "
                                      "GROUP BY trial", (name,)).fetchall())
        conn.execute("COMMIT")
    finally:
        conn.close()
    return dict(trials_run=trials_run, best_value=best_value, best_trial=best_trial,
                rows=rows, per_trial=per_trial)


def test_readers_see_consistent_snapshots_while_a_study_runs(tmp_path, capsys):
    spec = synthetic_spec("watched", num_trials=30, high_lr=1e-2)   # small lr: all complete
    spec_path = tmp_path / "watched.json"
    spec_path.write_text(spec.to_json())
    ws = tmp_path / "ws"
    evals = TRIAL["max_train_steps"] // TRIAL["eval_every"] + 1
    proc = launch_driver(spec_path, ws, {**TRIAL, "sleep_seconds": 0.02}, workers=2)

    def study_exists() -> bool:
        try:
            with Store(ws, readonly=True) as store:
                return store.get_study("watched") is not None
        except (FileNotFoundError, study.StoreError):
            return False

    wait_until(study_exists, proc)
    seen, status_calls = set(), 0
    while proc.poll() is None:
        s = snapshot(ws / DB_NAME, "watched")
        n = len(s["rows"])
        assert s["trials_run"] == n
        assert s["per_trial"] == {t: 2 * evals for t, _, _ in s["rows"]}   # never half a trial
        complete = [(obj, t) for t, status, obj in s["rows"] if status == "complete"]
        if complete:
            assert (s["best_value"], s["best_trial"]) == min(complete)
        seen.add(n)
        if 0 < n < spec.budget and status_calls < 3:  # the command, from another process
            assert refplay_main(["study", "status", "watched", "--workspace", str(ws)]) == 0
            shown = re.search(r"trials: +(\d+)/30 recorded", capsys.readouterr().out)
            assert shown and n <= int(shown.group(1)) <= spec.budget
            with Store(ws, readonly=True) as store:
                st = store.status("watched")
            assert st.study.trials_run == st.done == len(st.recorded)
            status_calls += 1
    assert proc.returncode == 0, proc.communicate()[1]
    assert len({n for n in seen if 0 < n < spec.budget}) >= 3, seen
    assert status_calls == 3
    final = snapshot(ws / DB_NAME, "watched")
    assert final["trials_run"] == spec.budget
    assert all(status == "complete" for _, status, _ in final["rows"])
