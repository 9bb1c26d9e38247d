"""The SQLite store: schema checks that never touch a bad file, one-transaction records,
the spreadsheet row, NaN round trips, CSV export."""

from __future__ import annotations

import csv
import hashlib
import math
import sqlite3

import numpy as np
import pytest

from refplay import search
from refplay.study import (
    DB_NAME, SCHEMA_VERSION, Store, StoreError, StudySpec, export_csv,
)
from refplay.study import store as store_module
from refplay.train.result import TrialResult


def make_spec(name="s", **overrides) -> StudySpec:
    kwargs = dict(name=name, workload=None, num_trials=3, max_train_steps=20, eval_every=10,
                  metric="validation/loss", description="notes", goal="the goal",
                  search_space=search.SearchSpace(lr=search.Float(1e-3, 1e-1, scale="log"),
                                                  optimizer=search.Fixed("adam")))
    kwargs.update(overrides)
    return StudySpec(**kwargs)


def result_for(trial, values, status="complete", reason="") -> TrialResult:
    """A TrialResult whose validation/loss curve is ``values`` at steps 0, 10, 20."""
    best = int(np.nanargmin(values)) if status == "complete" else None
    return TrialResult(
        config=trial.config, seed=trial.seed, status=status, reason=reason, steps_done=20,
        eval_steps=[0, 10, 20], curves={"validation/loss": list(values),
                                        "train/loss": [math.nan, 1.0, 0.5]},
        grad_norms=np.ones(20), best_step=None if best is None else 10 * best,
        best_metrics={} if best is None else {"validation/loss": values[best]},
        wall_seconds=0.1)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_store_has_schema_version_and_wal(tmp_path):
    with Store(tmp_path / "ws") as store:
        assert store.path == tmp_path / "ws" / DB_NAME
    conn = sqlite3.connect(tmp_path / "ws" / DB_NAME)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "studies", "trials", "measurements"} <= tables
    conn.close()


def test_records_and_spreadsheet_row(tmp_path):
    spec = make_spec()
    with Store(tmp_path) as store:
        row = store.begin_study(spec, trial_function="f", command="refplay study run x")
        assert (row.trials_run, row.budget, row.best_value) == (0, 3, None)
        assert (tmp_path / "s" / "spec.json").read_text().strip() == spec.to_json()
        t0, t1, t2 = spec.trials()
        store.record_trial("s", t0, result_for(t0, [1.0, 0.4, 0.6]), objective=0.4,
                           trial_seconds=0.1, worker="w")
        store.record_trial("s", t1, result_for(t1, [1.0, math.nan, math.nan], "infeasible",
                                                "diverged"), objective=None,
                           trial_seconds=0.1, worker="w")
        store.record_trial("s", t2, result_for(t2, [1.0, 0.3, 0.2]), objective=0.2,
                           trial_seconds=0.1, worker="w")
        status = store.status("s")
        assert status.counts == {"complete": 2, "infeasible": 1, "failed": 0, "pruned": 0}
        assert status.missing == 0 and status.recorded == [0, 1, 2]
        row = status.study
        assert (row.name, row.description, row.goal, row.trials_run) == ("s", "notes",
                                                                          "the goal", 3)
        assert (row.best_value, row.best_trial, row.best_step) == (0.2, 2, 20)
        assert row.command == "refplay study run x" and row.spec_copy == "s/spec.json"
        assert status.best_config == t2.config
        # NaN survives the round trip (SQLite stores it as NULL).
        ms = store.measurements("s", trial=1)
        loss = [m.value for m in ms if m.metric == "loss" and m.split == "validation"]
        assert loss[0] == 1.0 and math.isnan(loss[1]) and math.isnan(loss[2])
        records = store.records("s")
        assert [r["status"] for r in records] == ["complete", "infeasible", "complete"]
        assert records[1]["reason"] == "diverged" and records[1]["objective"] is None
        assert records[0]["config"] == t0.config and records[0]["seed"] == t0.seed
        # A trial can never be recorded twice.
        with pytest.raises(sqlite3.IntegrityError):
            store.record_trial("s", t0, result_for(t0, [1.0, 0.4, 0.6]), objective=0.4,
                               trial_seconds=0.1, worker="w")
        assert store.status("s").study.trials_run == 3


def test_max_mode_picks_the_largest(tmp_path):
    spec = make_spec(mode="max", metric="validation/accuracy")
    with Store(tmp_path) as store:
        store.begin_study(spec, trial_function="f", command="c")
        for t, v in zip(spec.trials(), [0.5, 0.9, 0.7]):
            r = result_for(t, [0.1, v, 0.2])
            store.record_trial("s", t, r, objective=v, trial_seconds=0.0, worker=None)
        assert store.status("s").study.best_trial == 1


def test_existing_study_with_another_spec_is_refused(tmp_path):
    with Store(tmp_path) as store:
        store.begin_study(make_spec(), trial_function="f", command="c")
        # Notes may change; what the trials compute may not.
        store.begin_study(make_spec(description="new notes"), trial_function="f", command="c")
        with pytest.raises(ValueError, match=r"different spec \(differs in \['num_trials'\]\)"):
            store.begin_study(make_spec(num_trials=4), trial_function="f", command="c")
        with pytest.raises(ValueError, match="trial function 'f', not 'g'"):
            store.begin_study(make_spec(), trial_function="g", command="c")
        assert store.get_spec("s") == make_spec()
        with pytest.raises(ValueError, match="no study named 'nope'"):
            store.get_spec("nope")


def _make_db(tmp_path):
    with Store(tmp_path) as store:
        store.begin_study(make_spec(), trial_function="f", command="c")
    return tmp_path / DB_NAME


def test_newer_schema_is_an_error_and_the_file_is_untouched(tmp_path):
    path = _make_db(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")   # a single file, so the hash covers it all
    conn.close()
    before, files = digest(path), sorted(p.name for p in tmp_path.iterdir())
    for readonly in (False, True):
        with pytest.raises(StoreError, match="newer refplay"):
            Store(tmp_path, readonly=readonly)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_corrupted_file_is_an_error_and_untouched(tmp_path):
    path = tmp_path / DB_NAME
    path.write_bytes(b"this is not a database, just some bytes" * 100)
    before = digest(path)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="not a readable SQLite database"):
            Store(tmp_path, readonly=readonly)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]


def test_damaged_pages_are_detected_and_untouched(tmp_path):
    path = _make_db(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) >= 3 * page
    data[2 * page + 8: 3 * page] = b"\xff" * (page - 8)     # scribble over one b-tree page
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(StoreError, match="corrupted"):
        Store(tmp_path)
    assert digest(path) == before


def test_other_sqlite_database_is_refused(tmp_path):
    path = tmp_path / DB_NAME
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="not a refplay study database"):
        Store(tmp_path)
    assert digest(path) == before


def test_readonly_store_needs_an_existing_database(tmp_path):
    with pytest.raises(FileNotFoundError, match="no study database"):
        Store(tmp_path, readonly=True)
    _make_db(tmp_path)
    with Store(tmp_path, readonly=True) as store:
        assert [r.name for r in store.list_studies()] == ["s"]
        with pytest.raises(StoreError, match="read-only"):
            store.begin_study(make_spec("t"), trial_function="f", command="c")


def test_export_csv(tmp_path):
    spec = make_spec()
    with Store(tmp_path) as store:
        store.begin_study(spec, trial_function="f", command="c")
        t0, t1, _ = spec.trials()
        store.record_trial("s", t0, result_for(t0, [1.0, 0.4, 0.6]), objective=0.4,
                           trial_seconds=0.1, worker="w")
        store.record_trial("s", t1, result_for(t1, [1.0, math.nan, math.nan], "infeasible",
                                                "diverged, badly"), objective=None,
                           trial_seconds=0.1, worker="w")
        trials_csv, measurements_csv = export_csv(store, "s", tmp_path / "out.csv")
        with pytest.raises(ValueError, match=".csv"):
            export_csv(store, "s", tmp_path / "out.txt")
    assert measurements_csv == tmp_path / "out_measurements.csv"
    rows = list(csv.DictReader(trials_csv.open()))
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert rows[0]["status"] == "complete" and float(rows[0]["objective"]) == 0.4
    assert float(rows[0]["best/validation/loss"]) == 0.4
    assert float(rows[0]["config/lr"]) == t0.config["lr"]          # repr: exact round trip
    assert rows[1]["reason"] == "diverged, badly" and rows[1]["objective"] == ""   # no objective
    ms = list(csv.DictReader(measurements_csv.open()))
    assert len(ms) == 2 * 2 * 3
    first = [m for m in ms if m["trial"] == "0" and m["split"] == "validation"]
    assert [float(m["value"]) for m in first] == [1.0, 0.4, 0.6]
    assert [int(m["step"]) for m in first] == [0, 10, 20]


def _downgrade_to_version_1(path) -> None:
    """Make ``path`` look like a store written before the 'pruned' status existed."""
    conn = sqlite3.connect(path, isolation_level=None)
    old = next(st for st in store_module._SCHEMA.split(";") if "CREATE TABLE trials" in st)
    old = old.replace(",\n                                                    'pruned'", "")
    assert "'pruned'" not in old
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("BEGIN")
    conn.execute(old.replace("CREATE TABLE trials", "CREATE TABLE trials_v1"))
    conn.execute("INSERT INTO trials_v1 SELECT * FROM trials")
    conn.execute("DROP TABLE trials")
    conn.execute("ALTER TABLE trials_v1 RENAME TO trials")
    conn.execute("UPDATE schema_version SET version = 1")
    conn.execute("COMMIT")
    conn.close()


def test_a_version_1_store_is_read_as_it_is_and_upgraded_when_written(tmp_path):
    spec = make_spec()
    with Store(tmp_path) as store:
        store.begin_study(spec, trial_function="f", command="c")
        t0 = spec.trial(0)
        store.record_trial("s", t0, result_for(t0, [1.0, 0.5, 0.4]), objective=0.4,
                           trial_seconds=0.1, worker="w")
    path = tmp_path / DB_NAME
    _downgrade_to_version_1(path)
    before = digest(path)
    with Store(tmp_path, readonly=True) as store:           # readers need no upgrade
        assert [t.objective for t in store.trials("s")] == [0.4]
    assert digest(path) == before
    with Store(tmp_path) as store:
        t1 = spec.trial(1)
        store.record_trial("s", t1, result_for(t1, [1.0, 0.9, math.nan], status="pruned"),
                           objective=None, trial_seconds=0.1, worker="w")
        assert store.status("s").counts == {"complete": 1, "infeasible": 0, "failed": 0,
                                            "pruned": 1}
        assert [m.value for m in store.measurements("s", 0) if m.split == "validation"] == \
            [1.0, 0.5, 0.4]                                  # the copied rows kept their data
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


class _FailingWrites:
    """A connection whose writes fail as a damaged file's do; reads go through."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, *args):
        if sql.startswith("BEGIN IMMEDIATE"):
            raise sqlite3.DatabaseError("database disk image is malformed")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_write_to_a_damaged_database_names_the_file_and_what_to_do(tmp_path):
    path = _make_db(tmp_path)
    with Store(tmp_path) as store:
        store._conn = _FailingWrites(store._conn)
        assert store.get_study("s").name == "s"               # reading still works
        t0 = make_spec().trial(0)
        with pytest.raises(StoreError) as caught:
            store.record_trial("s", t0, result_for(t0, [1.0, 0.5, 0.4]), objective=0.4,
                               trial_seconds=0.1, worker="w")
        store._conn = store._conn._conn
    message = str(caught.value)
    assert str(path) in message and "damaged" in message and "malformed" in message
    assert "restore" in message and ".recover" in message and "status" in message


def test_study_settings_are_recorded_per_study(tmp_path):
    _make_db(tmp_path)
    with Store(tmp_path) as store:
        store.set_meta("s", "n_validation", 500)
        store.set_meta("s", "source", {"kind": "csv", "path": "/x.csv"})
        store.set_meta("s", "n_validation", 1000)            # replaced, not added
        with pytest.raises(ValueError, match="key='colour' is not a study setting"):
            store.set_meta("s", "colour", "red")
        assert store.meta("s") == {"n_validation": 1000, "source": {"kind": "csv",
                                                                    "path": "/x.csv"}}
        assert store.meta("other") == {}
