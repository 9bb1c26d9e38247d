"""The study store: one SQLite database per workspace, the playbook's spreadsheet.

The playbook ("Setting up experiment tracking"): *"keeping track of experiment
results in a spreadsheet has been helpful [...] It often has the following
columns: Study name; A link to wherever the config for the study is stored;
Notes or a short description of the study; Number of trials run; Performance on
the validation set of the best checkpoint in the study; Specific reproduction
commands [...]. Untracked experiments might as well not exist."*

Layout of a workspace directory::

    WORKSPACE/refplay-studies.sqlite      studies, trials, measurements
    WORKSPACE/NAME/spec.toml | spec.json  stored copy of the study's spec
    WORKSPACE/NAME/trials/00007/          result.json, arrays.npz (gradient norms),
                                          checkpoints/ (written by the trial)

Tables (schema version 2; version 1 lacked the ``pruned`` status and is
upgraded in place the first time it is opened for writing):

* ``studies``: one row per study, the spreadsheet row: ``name``,
  ``spec_source`` (the spec file it was started from) and ``spec_copy`` (the
  stored copy), ``description``, ``goal``, ``trials_run``, ``best_value`` /
  ``best_trial`` / ``best_step`` (the best checkpoint of the study, by
  ``metric`` and ``mode``, among complete trials), ``command`` (how to
  reproduce it), plus the spec itself as JSON.
* ``trials``: one row per *finished* trial (complete, infeasible, failed or pruned):
  index, configuration, seed, status, reason, best step and metrics, the
  ``objective`` (the study metric at the best checkpoint), throughput and
  timing. A row exists if and only if the trial has a result, so resuming is
  "run the indices without a row"; the primary key ``(study, trial)`` makes
  recording a trial twice impossible.
* ``measurements``: ``(study, trial, step, split, metric, value)``, one row
  per point of each evaluation curve. SQLite stores NaN as NULL, so a NULL
  ``value`` means NaN.
* ``retired_trials`` (added, no version change): failed trials moved aside by
  ``refplay study resume NAME --retry-failed``, with their measurements, so
  that the retry runs them again and nothing is forgotten.
* ``study_meta`` (added): per-study settings that are not part of the spec's
  identity, as JSON: ``n_validation`` (the validation set size behind an
  error rate), ``source`` (where an imported study came from), ``sampler``
  (the sampler that chose an imported study's configurations).
* ``baselines`` (added): the configuration to beat — a complete trial recorded
  as the current baseline ("launch"), shown by ``refplay study list``.
* ``proposals`` (added): the ask/tell record of an adaptive study
  (``sampler = "gp_ei"`` or ``"external"``): one row per trial, written
  *before* the trial is submitted, with the configuration, who proposed it
  (``halton`` for the initial trials, ``gp_ei``, or the external proposer's
  name), the seed it was given and how many finished trials it saw. A
  resumed study runs a proposed trial with its recorded configuration and
  never proposes it again.

Concurrency: the driver of ``study.run`` is the only writer; each trial is
recorded in one transaction (trial row, its measurements, the study row
together). The database is in WAL mode, so readers (``refplay study status``
while a study runs) read consistent snapshots without blocking the writer.
All SQL is parameterized.

Safety: a database is first opened read-only and checked (schema version,
``PRAGMA quick_check``) before anything is written, so a corrupted file or one
made by a newer refplay is reported as an error and left untouched.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refplay import __version__, io
from refplay.study.spec import StudySpec, Trial, check_study_name
from refplay.train.result import TrialResult, TrialStatus

__all__ = ["Store", "StoreError", "StudyRow", "StudyStatus", "TrialRecord", "Measurement",
           "BaselineRow", "Proposal", "DB_NAME", "SCHEMA_VERSION", "META_KEYS"]

DB_NAME = "refplay-studies.sqlite"
SCHEMA_VERSION = 2
# Version 1 is upgraded in place (the trials table gains the 'pruned' status) when a
# store is opened for writing; read-only it is read as it is.
_UPGRADABLE = (1,)

_SCHEMA = """
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE studies (
    name            TEXT PRIMARY KEY,
    description     TEXT NOT NULL,
    goal            TEXT NOT NULL,
    workload        TEXT,               -- NULL: a custom trial function
    trial_function  TEXT NOT NULL,
    metric          TEXT NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('min', 'max')),
    budget          INTEGER NOT NULL,
    trials_run      INTEGER NOT NULL DEFAULT 0,
    best_value      REAL,               -- objective of the best complete trial
    best_trial      INTEGER,
    best_step       INTEGER,
    spec_source     TEXT,               -- the spec file the study was started from
    spec_copy       TEXT NOT NULL,      -- stored copy, relative to the workspace
    spec_json       TEXT NOT NULL,
    command         TEXT NOT NULL,      -- how to reproduce the study
    refplay_version TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE TABLE trials (
    study               TEXT NOT NULL REFERENCES studies(name),
    trial               INTEGER NOT NULL,
    config_index        INTEGER NOT NULL,
    repeat              INTEGER NOT NULL,
    seed                INTEGER NOT NULL,
    config_json         TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('complete', 'infeasible', 'failed',
                                                    'pruned')),
    reason              TEXT NOT NULL,
    steps_done          INTEGER NOT NULL,
    best_step           INTEGER,
    objective           REAL,           -- the study metric at the best checkpoint
    best_metrics_json   TEXT NOT NULL,
    result_json         TEXT NOT NULL,  -- the rest of the TrialResult (no arrays, no timings)
    examples_per_second REAL,
    seconds_per_step    REAL,
    wall_seconds        REAL,           -- as reported by the trial
    trial_seconds       REAL,           -- measured by the runner around the trial function
    worker              TEXT,
    finished_at         TEXT NOT NULL,
    PRIMARY KEY (study, trial)
);
CREATE TABLE measurements (
    study  TEXT NOT NULL,
    trial  INTEGER NOT NULL,
    step   INTEGER NOT NULL,
    split  TEXT NOT NULL,
    metric TEXT NOT NULL,
    value  REAL,                        -- NULL means NaN
    PRIMARY KEY (study, trial, split, metric, step),
    FOREIGN KEY (study, trial) REFERENCES trials(study, trial)
);
"""

# Tables added after schema version 1. They are additive (a refplay that does not
# know them reads the database as before), so they are created on every open for
# writing instead of bumping the schema version.
_EXTRA_TABLES = """
CREATE TABLE IF NOT EXISTS retired_trials (
    study       TEXT NOT NULL,
    trial       INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,       -- 1 for the first retired record of this trial
    retired_at  TEXT NOT NULL,
    row_json    TEXT NOT NULL,          -- the trials row, and its measurements
    PRIMARY KEY (study, trial, attempt)
);
CREATE TABLE IF NOT EXISTS proposals (
    study        TEXT NOT NULL,
    trial        INTEGER NOT NULL,
    config_index INTEGER NOT NULL,
    config_json  TEXT NOT NULL,
    proposer     TEXT NOT NULL,         -- 'halton' (initial trials), 'gp_ei', or a callable's name
    seed         INTEGER NOT NULL,      -- the seed the proposer was given
    history_size INTEGER NOT NULL,      -- finished (non-failed) trials the proposer saw
    proposed_at  TEXT NOT NULL,
    PRIMARY KEY (study, trial)
);
CREATE TABLE IF NOT EXISTS study_meta (
    study       TEXT NOT NULL,
    key         TEXT NOT NULL,          -- 'n_validation', 'source', 'sampler'
    value_json  TEXT NOT NULL,
    PRIMARY KEY (study, key)
);
CREATE TABLE IF NOT EXISTS baselines (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    study       TEXT NOT NULL,
    trial       INTEGER NOT NULL,
    metric      TEXT NOT NULL,
    objective   REAL,
    note        TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
"""

_EXTRA_TABLE_NAMES = ("retired_trials", "proposals", "baselines", "study_meta")
#: Keys of the ``study_meta`` table.
META_KEYS = ("n_validation", "source", "sampler")

# Fields of a trial row that measure the machine or the moment, not the computation.
_NONDETERMINISTIC = ("examples_per_second", "seconds_per_step", "wall_seconds",
                     "trial_seconds", "worker", "finished_at")


class StoreError(ValueError):
    """The database cannot be used: not a refplay store, corrupted, or a newer schema."""


@dataclass(frozen=True)
class StudyRow:
    """One row of the tracking table (``refplay study list``)."""

    name: str
    description: str
    goal: str
    workload: str | None
    trial_function: str
    metric: str
    mode: str
    budget: int
    trials_run: int
    best_value: float | None
    best_trial: int | None
    best_step: int | None
    spec_source: str | None
    spec_copy: str
    command: str
    refplay_version: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class StudyStatus:
    """A consistent snapshot of one study (``refplay study status``)."""

    study: StudyRow
    counts: dict[str, int]          # status -> number of recorded trials
    best_config: dict | None
    recorded: list[int] = field(repr=False)

    @property
    def done(self) -> int:
        """Recorded trials, whatever their status."""
        return sum(self.counts.values())

    @property
    def missing(self) -> int:
        """Trials of the budget without a record (to run on resume)."""
        return self.study.budget - self.done


@dataclass(frozen=True)
class TrialRecord:
    """One row of the ``trials`` table, decoded.

    ``objective`` is the study metric at the trial's best checkpoint for a
    complete trial, and NaN (NULL in the database and the CSV) for an
    infeasible or failed one: a diverged trial has no objective to plot.
    """

    trial: int
    config_index: int
    repeat: int
    seed: int
    config: dict
    status: TrialStatus
    reason: str
    steps_done: int
    best_step: int | None
    objective: float
    best_metrics: dict
    result: dict
    examples_per_second: float
    seconds_per_step: float
    wall_seconds: float
    trial_seconds: float
    worker: str | None
    finished_at: str


@dataclass(frozen=True)
class BaselineRow:
    """The configuration to beat: a complete trial recorded as the current baseline."""

    study: str
    trial: int
    metric: str
    objective: float | None
    note: str
    recorded_at: str


@dataclass(frozen=True)
class Proposal:
    """One row of the ``proposals`` table: the configuration trial ``trial`` was given.

    ``history_size`` is the number of ``(config, objective, feasible)``
    entries the proposer saw (the recorded trials before the round, failed
    ones left out); ``seed`` is the seed it was given. ``proposed_at`` is
    when it was recorded (the only field that is not reproducible).
    """

    trial: int
    config_index: int
    config: dict
    proposer: str
    seed: int
    history_size: int
    proposed_at: str


@dataclass(frozen=True)
class Measurement:
    """One point of a curve: ``split/metric`` of ``trial`` at ``step`` (NaN kept)."""

    trial: int
    step: int
    split: str
    metric: str
    value: float


class Store:
    """The SQLite store of a workspace directory.

    ``Store(workspace)`` opens (or creates) ``WORKSPACE/refplay-studies.sqlite``
    for the driver; ``Store(workspace, readonly=True)`` opens an existing one
    for reading only (status, list, export, analysis). Use as a context
    manager or call ``close()``.
    """

    def __init__(self, workspace: str | os.PathLike, *, readonly: bool = False) -> None:
        self.workspace = Path(workspace)
        self.path = self.workspace / DB_NAME
        self.readonly = readonly
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and _has_no_tables(self.path):
            # A first open killed before its schema commit leaves a database with
            # no tables at all (journal_mode=WAL is written first): it holds
            # nothing, so it is new.
            exists = False
        if readonly:
            if not exists and self.path.exists():
                raise StoreError(f"the study database {self.path} is empty (a first run stopped "
                                 f"before it recorded anything): it holds no studies yet; "
                                 f"`refplay study run SPEC` sets it up")
            if not exists:
                raise FileNotFoundError(f"no study database in workspace {str(self.workspace)!r} "
                                        f"(expected {self.path})")
            self._conn = _connect(self.path, readonly=True)
            try:
                _check_schema(self._conn, self.path)
            except BaseException:
                self._conn.close()
                raise
            return
        version = SCHEMA_VERSION
        if exists:
            # Check through a read-only connection first: nothing is written to a
            # file we cannot use (switching to WAL would already modify its header).
            probe = _connect(self.path, readonly=True)
            try:
                version = _check_schema(probe, self.path)
            finally:
                probe.close()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.path, readonly=False)
        try:
            self._prepare(exists, version)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise _damaged(self.path, exc, "preparing it for writing") from None
        except BaseException:
            self._conn.close()
            raise

    def _prepare(self, exists: bool, version: int) -> None:
        """Create the schema of a new database, upgrade an old one, add the extra tables."""
        if not exists:
            self._create_schema()
        elif version < SCHEMA_VERSION:
            self._upgrade_from_1()
        if not all(self._has_table(table) for table in _EXTRA_TABLE_NAMES):
            with self._write() as c:
                for statement in _EXTRA_TABLES.split(";"):
                    if statement.strip():
                        c.execute(statement)

    def _upgrade_from_1(self) -> None:
        """Version 1 -> 2: rebuild ``trials`` so that its status may be ``pruned``.

        SQLite cannot change a CHECK constraint in place; this is its documented
        procedure (create the new table, copy, drop, rename), in one transaction,
        with foreign keys off while the table is swapped.
        """
        create = next(st for st in _SCHEMA.split(";") if "CREATE TABLE trials" in st)
        self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            with self._write() as c:
                c.execute(create.replace("CREATE TABLE trials", "CREATE TABLE trials_v2"))
                c.execute("INSERT INTO trials_v2 SELECT * FROM trials")
                c.execute("DROP TABLE trials")
                c.execute("ALTER TABLE trials_v2 RENAME TO trials")
                c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        finally:
            self._conn.execute("PRAGMA foreign_keys = ON")

    # ----------------------------------------------------------- connection
    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self):
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise          # a refused row (a bug of the caller), not a damaged file
            raise _damaged(self.path, exc) from None

    @contextlib.contextmanager
    def _read(self):
        """One read transaction: every SELECT inside sees the same snapshot."""
        try:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc, "reading it") from None

    def _create_schema(self) -> None:
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._write() as c:
            exists = c.execute("SELECT 1 FROM sqlite_master WHERE name='schema_version'").fetchone()
            if exists is None:   # another driver may have created it meanwhile
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    # ---------------------------------------------------------------- paths
    def study_dir(self, name: str) -> Path:
        """``WORKSPACE/NAME``: the study's folder (stored spec, trials, report)."""
        return self.workspace / check_study_name(name)

    def trial_dir(self, name: str, index: int) -> Path:
        """``WORKSPACE/NAME/trials/00007``: a trial's folder (result, arrays, checkpoints)."""
        return self.study_dir(name) / "trials" / f"{int(index):05d}"

    def spec_copy_path(self, spec: StudySpec, spec_text: str | None) -> Path:
        """Where the stored copy of ``spec`` goes: the original TOML text, else JSON."""
        toml = spec_text is not None and (spec.source or "").endswith(".toml")
        return self.study_dir(spec.name) / ("spec.toml" if toml else "spec.json")

    # -------------------------------------------------------------- studies
    def begin_study(self, spec: StudySpec, *, trial_function: str, command: str,
                    spec_text: str | None = None) -> StudyRow:
        """Create the study's row (and stored spec copy), or check it matches.

        An existing study must have the same identity (``spec.identity()``)
        and trial function; anything else would mix trials of different
        studies under one name, so it is refused with the differing keys.
        ``spec_text`` is the original spec file's text (stored verbatim as
        ``spec.toml``); without it the canonical ``spec.json`` is stored.
        """
        row = self.get_study(spec.name)
        if row is not None:
            stored = json.loads(self._spec_json(spec.name))
            stored_spec = StudySpec.from_dict(stored)
            diff = _differing_keys(stored_spec.identity(), spec.identity())
            if diff:
                raise ValueError(
                    f"study {spec.name!r} already exists in {self.path} with a different spec "
                    f"(differs in {diff}). To go on: give the new spec another name (e.g. "
                    f"'{spec.name}-v2'); or finish the stored study with `refplay study resume "
                    f"{spec.name}` (its spec: {self.workspace / row.spec_copy}); or run its "
                    f"failed trials again with `refplay study resume {spec.name} --retry-failed`")
            if row.trial_function != trial_function:
                raise ValueError(
                    f"study {spec.name!r} was run with trial function {row.trial_function!r}, "
                    f"not {trial_function!r}")
            return row

        spec_json = spec.to_json()
        copy = self.spec_copy_path(spec, spec_text)
        io.write_text(copy, spec_text if copy.suffix == ".toml" else spec_json + "\n")
        now = _now()
        with self._write() as c:
            c.execute(
                "INSERT INTO studies (name, description, goal, workload, trial_function, metric, "
                "mode, budget, spec_source, spec_copy, spec_json, command, refplay_version, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (spec.name, spec.description, spec.goal, spec.workload, trial_function,
                 spec.metric, spec.mode, spec.budget,
                 None if spec.source is None else str(Path(spec.source).resolve()),
                 str(copy.relative_to(self.workspace)), spec_json, command, __version__,
                 now, now))
        return self.get_study(spec.name)

    def get_study(self, name: str) -> StudyRow | None:
        """The tracking-table row of study ``name``, or ``None``."""
        row = self._conn.execute(f"SELECT {_STUDY_COLUMNS} FROM studies WHERE name = ?",
                                 (name,)).fetchone()
        return None if row is None else _study_row(row)

    def require_study(self, name: str) -> StudyRow:
        """The row of study ``name``; a ``ValueError`` listing the known studies otherwise."""
        check_study_name(name)
        row = self.get_study(name)
        if row is None:
            known = [r.name for r in self.list_studies()]
            raise ValueError(f"no study named {name!r} in {self.path}; known studies: {known}")
        return row

    def _spec_json(self, name: str) -> str:
        return self._conn.execute("SELECT spec_json FROM studies WHERE name = ?",
                                  (name,)).fetchone()[0]

    def get_spec(self, name: str) -> StudySpec:
        """The stored spec of study ``name``."""
        row = self.require_study(name)
        return StudySpec.from_dict(json.loads(self._spec_json(name)),
                                   source=str(self.workspace / row.spec_copy))

    def list_studies(self) -> list[StudyRow]:
        """Every study of the workspace, oldest first."""
        rows = self._conn.execute(f"SELECT {_STUDY_COLUMNS} FROM studies ORDER BY created_at, name")
        return [_study_row(r) for r in rows.fetchall()]

    # --------------------------------------------------------------- trials
    def recorded_indices(self, name: str) -> set[int]:
        """The trial numbers of study ``name`` that have a record."""
        rows = self._conn.execute("SELECT trial FROM trials WHERE study = ?", (name,))
        return {r["trial"] for r in rows.fetchall()}

    def record_trial(self, name: str, trial: Trial, result, *, objective: float | None,
                     trial_seconds: float, worker: str | None) -> None:
        """Record one finished trial, its curves and the updated study row, atomically.

        ``result`` is a ``TrialResult``; its arrays (gradient norms) are
        expected to be saved in ``trial_dir`` already.
        """
        study = self.require_study(name)
        best_metrics = {k: float(v) for k, v in result.best_metrics.items()}
        rest = result.deterministic_dict()
        for key in ("grad_norms", "curves", "best_metrics", "config", "seed"):
            rest.pop(key, None)
        rest["returned_config"] = _plain_json(result.config)
        rest["returned_seed"] = int(result.seed)
        points = []
        for key, values in result.curves.items():
            split, _, metric = key.rpartition("/")   # "ema/validation/loss", "lr" -> ""
            if len(values) != len(result.eval_steps):
                raise ValueError(f"trial {trial.index}: curve {key!r} has {len(values)} values "
                                 f"but there are {len(result.eval_steps)} eval_steps")
            for step, value in zip(result.eval_steps, values):
                points.append((name, trial.index, int(step), split, metric, float(value)))
        order = "ASC" if study.mode == "min" else "DESC"
        with self._write() as c:
            c.execute(
                "INSERT INTO trials (study, trial, config_index, repeat, seed, config_json, "
                "status, reason, steps_done, best_step, objective, best_metrics_json, "
                "result_json, examples_per_second, seconds_per_step, wall_seconds, "
                "trial_seconds, worker, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, trial.index, trial.config_index, trial.repeat, trial.seed,
                 json.dumps(trial.config), result.status, result.reason, int(result.steps_done),
                 None if result.best_step is None else int(result.best_step),
                 None if objective is None or result.status != TrialStatus.COMPLETE
                 else float(objective),
                 json.dumps(best_metrics), json.dumps(rest, default=_json_default),
                 float(result.examples_per_second), float(result.seconds_per_step),
                 float(result.wall_seconds), float(trial_seconds), worker, _now()))
            c.executemany("INSERT INTO measurements (study, trial, step, split, metric, value) "
                          "VALUES (?, ?, ?, ?, ?, ?)", points)
            (count,) = c.execute("SELECT COUNT(*) FROM trials WHERE study = ?", (name,)).fetchone()
            # ORDER BY direction cannot be a parameter; it is one of two fixed words.
            best = c.execute(
                "SELECT objective, trial, best_step FROM trials WHERE study = ? AND "
                f"status = ? AND objective IS NOT NULL ORDER BY objective {order}, "
                "trial ASC LIMIT 1", (name, TrialStatus.COMPLETE.value)).fetchone() \
                or (None, None, None)
            c.execute("UPDATE studies SET trials_run = ?, best_value = ?, best_trial = ?, "
                      "best_step = ?, updated_at = ? WHERE name = ?", (count, *best, _now(), name))

    # ------------------------------------------------------------ proposals
    def record_proposals(self, name: str, trials: list[Trial], *, proposer: str, seed: int,
                         history_size: int) -> None:
        """Record the proposed configurations of one round of an adaptive study, atomically.

        Called before any of these trials is submitted: a study killed after
        this commit runs exactly these configurations on resume. A trial that
        already has a proposal is refused (a proposal is never replaced).
        """
        self.require_study(name)
        if not isinstance(proposer, str) or not proposer:
            raise TypeError(f"proposer must be a non-empty string (a name), got {proposer!r}")
        now = _now()
        rows = [(name, t.index, t.config_index, json.dumps(t.config, allow_nan=False), proposer,
                 int(seed), int(history_size), now) for t in trials]
        with self._write() as c:
            taken = [t.index for t in trials if c.execute(
                "SELECT 1 FROM proposals WHERE study = ? AND trial = ?",
                (name, t.index)).fetchone() is not None]
            if taken:
                raise ValueError(f"trials {taken} of study {name!r} already have a recorded "
                                 f"proposal; a proposal is never replaced")
            c.executemany("INSERT INTO proposals (study, trial, config_index, config_json, "
                          "proposer, seed, history_size, proposed_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def proposals(self, name: str) -> list[Proposal]:
        """The recorded proposals of study ``name``, by trial (empty for non-adaptive studies)."""
        if not self._has_table("proposals"):
            return []
        rows = self._conn.execute(
            "SELECT trial, config_index, config_json, proposer, seed, history_size, proposed_at "
            "FROM proposals WHERE study = ? ORDER BY trial", (name,)).fetchall()
        out = []
        for r in rows:
            d = {k: r[k] for k in r.keys()}
            d["config"] = json.loads(d.pop("config_json"))
            out.append(Proposal(**d))
        return out

    def retire_failed(self, name: str) -> list[int]:
        """Move the failed trials of ``name`` to the history, so that resuming runs them again.

        Each retired row (with its measurements) is kept in ``retired_trials``
        with an attempt number; :meth:`retired` reads them back. Returns the
        retired trial indices. Complete and infeasible trials are results and
        stay: only a failure (a bug, a crash, a time limit) is worth a retry.
        """
        self.require_study(name)
        with self._write() as c:
            rows = c.execute("SELECT * FROM trials WHERE study = ? AND status = ? "
                             "ORDER BY trial", (name, TrialStatus.FAILED.value)).fetchall()
            for r in rows:
                row = {k: r[k] for k in r.keys()}
                points = [dict(zip(m.keys(), tuple(m))) for m in c.execute(
                    "SELECT step, split, metric, value FROM measurements WHERE study = ? AND "
                    "trial = ? ORDER BY split, metric, step", (name, row["trial"])).fetchall()]
                (attempts,) = c.execute("SELECT COUNT(*) FROM retired_trials WHERE study = ? AND "
                                        "trial = ?", (name, row["trial"])).fetchone()
                c.execute("INSERT INTO retired_trials (study, trial, attempt, retired_at, "
                          "row_json) VALUES (?, ?, ?, ?, ?)",
                          (name, row["trial"], attempts + 1, _now(),
                           json.dumps({"row": row, "measurements": points})))
                c.execute("DELETE FROM measurements WHERE study = ? AND trial = ?",
                          (name, row["trial"]))
                c.execute("DELETE FROM trials WHERE study = ? AND trial = ?", (name, row["trial"]))
            (count,) = c.execute("SELECT COUNT(*) FROM trials WHERE study = ?", (name,)).fetchone()
            c.execute("UPDATE studies SET trials_run = ?, updated_at = ? WHERE name = ?",
                      (count, _now(), name))
        return [r["trial"] for r in rows]

    def retired(self, name: str) -> list[dict]:
        """The retired (retried) trial records of ``name``: study, trial, attempt, row, measurements."""
        if not self._has_table("retired_trials"):
            return []
        out = []
        for r in self._conn.execute("SELECT trial, attempt, retired_at, row_json FROM "
                                    "retired_trials WHERE study = ? ORDER BY trial, attempt",
                                    (name,)).fetchall():
            d = json.loads(r["row_json"])
            out.append({"trial": r["trial"], "attempt": r["attempt"],
                        "retired_at": r["retired_at"], **d})
        return out

    # ----------------------------------------------------------- study meta
    def set_meta(self, name: str, key: str, value) -> None:
        """Record setting ``key`` (one of :data:`META_KEYS`) of study ``name``; JSON value."""
        self.require_study(name)
        if key not in META_KEYS:
            raise ValueError(f"key={key!r} is not a study setting; allowed {list(META_KEYS)}")
        text = json.dumps(_plain_json(value), allow_nan=False)
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO study_meta (study, key, value_json) "
                      "VALUES (?, ?, ?)", (name, key, text))

    def meta(self, name: str) -> dict:
        """The recorded settings of study ``name`` (``{}`` when none, or in an old store)."""
        if not self._has_table("study_meta"):
            return {}
        rows = self._conn.execute("SELECT key, value_json FROM study_meta WHERE study = ? "
                                  "ORDER BY key", (name,)).fetchall()
        return {r["key"]: json.loads(r["value_json"]) for r in rows}

    # ------------------------------------------------------------ baselines
    def set_baseline(self, name: str, trial: int, *, note: str = "") -> BaselineRow:
        """Record trial ``trial`` of study ``name`` as the current baseline (a "launch").

        The playbook's loop ends each round with "Determine whether to launch
        the new configuration"; the record keeps which configuration is the one
        to beat, with its objective and why it was adopted.
        """
        study = self.require_study(name)
        records = {t.trial: t for t in self.trials(name)}
        if trial not in records:
            raise ValueError(f"trial {trial} of study {name!r} has no recorded result; "
                             f"recorded trials: {sorted(records)}")
        if records[trial].status != TrialStatus.COMPLETE:
            raise ValueError(f"trial {trial} of study {name!r} is {records[trial].status}; only a "
                             f"complete trial can be a baseline")
        if not isinstance(note, str):
            raise TypeError(f"note must be a string, got {note!r}")
        objective = records[trial].objective
        with self._write() as c:
            c.execute("INSERT INTO baselines (study, trial, metric, objective, note, recorded_at) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (name, int(trial), study.metric, objective, note, _now()))
        return self.baseline()

    def baseline(self) -> BaselineRow | None:
        """The current baseline of the workspace (the most recent record), if any."""
        if not self._has_table("baselines"):
            return None
        r = self._conn.execute("SELECT study, trial, metric, objective, note, recorded_at FROM "
                               "baselines ORDER BY id DESC LIMIT 1").fetchone()
        return None if r is None else BaselineRow(**{k: r[k] for k in r.keys()})

    def _has_table(self, table: str) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                  "name = ?", (table,)).fetchone() is not None

    def status(self, name: str) -> StudyStatus:
        """A consistent snapshot of study ``name``: its row and trial counts."""
        with self._read() as c:
            row = c.execute(f"SELECT {_STUDY_COLUMNS} FROM studies WHERE name = ?",
                            (check_study_name(name),)).fetchone()
            if row is None:
                raise ValueError(f"no study named {name!r} in {self.path}")
            study = _study_row(row)
            counts = {status.value: 0 for status in TrialStatus}
            for status, n in c.execute("SELECT status, COUNT(*) FROM trials WHERE study = ? "
                                       "GROUP BY status", (name,)).fetchall():
                counts[status] = n
            recorded = [r["trial"] for r in c.execute("SELECT trial FROM trials WHERE study = ? "
                                                "ORDER BY trial", (name,)).fetchall()]
            best_config = None
            if study.best_trial is not None:
                (cfg,) = c.execute("SELECT config_json FROM trials WHERE study = ? AND trial = ?",
                                   (name, study.best_trial)).fetchone()
                best_config = json.loads(cfg)
        return StudyStatus(study, counts, best_config, recorded)

    def trials(self, name: str) -> list[TrialRecord]:
        """Every recorded trial of study ``name``, by index."""
        rows = self._conn.execute(
            "SELECT trial, config_index, repeat, seed, config_json, status, reason, steps_done, "
            "best_step, objective, best_metrics_json, result_json, examples_per_second, "
            "seconds_per_step, wall_seconds, trial_seconds, worker, finished_at "
            "FROM trials WHERE study = ? ORDER BY trial", (name,)).fetchall()
        out = []
        for r in rows:
            d = {k: r[k] for k in r.keys()}
            d["config"] = json.loads(d.pop("config_json"))
            d["best_metrics"] = json.loads(d.pop("best_metrics_json"))
            d["result"] = json.loads(d.pop("result_json"))
            d["status"] = TrialStatus(d["status"])
            for key in ("objective", "examples_per_second", "seconds_per_step", "wall_seconds",
                        "trial_seconds"):
                d[key] = _nan_if_null(d[key])
            out.append(TrialRecord(**d))
        return out

    def measurements(self, name: str, trial: int | None = None) -> list[Measurement]:
        """The measurements of study ``name`` (of one trial if given), ordered."""
        sql = "SELECT trial, step, split, metric, value FROM measurements WHERE study = ?"
        args: tuple = (name,)
        if trial is not None:
            sql += " AND trial = ?"
            args += (int(trial),)
        rows = self._conn.execute(sql + " ORDER BY trial, split, metric, step", args).fetchall()
        return [Measurement(r["trial"], r["step"], r["split"], r["metric"],
                            _nan_if_null(r["value"])) for r in rows]

    def load_result(self, name: str, index: int):
        """The full ``TrialResult`` of a recorded trial (with its per-step gradient norms).

        Read from the trial folder, which the driver writes before recording
        the trial.
        """
        if index not in self.recorded_indices(name):
            raise ValueError(f"trial {index} of study {name!r} has no recorded result")
        return TrialResult.load(self.trial_dir(name, index))

    def records(self, name: str) -> list[dict]:
        """Everything a study computed, without timings: equal for equal computations.

        Used to check that serial, pooled and Dask runs (and killed-and-resumed
        ones) recorded bitwise the same study. NaN is ``None`` here, so ``==``
        compares it.
        """
        curves: dict[int, list] = {}
        for m in self.measurements(name):
            curves.setdefault(m.trial, []).append((m.split, m.metric, m.step, m.value))
        out = []
        for t in self.trials(name):
            d = {k: getattr(t, k) for k in TrialRecord.__dataclass_fields__
                 if k not in _NONDETERMINISTIC}
            d["measurements"] = curves.get(t.trial, [])
            out.append(_nan_to_none(d))
        return out


_STUDY_COLUMNS = ("name, description, goal, workload, trial_function, metric, mode, budget, "
                  "trials_run, best_value, best_trial, best_step, spec_source, spec_copy, "
                  "command, refplay_version, created_at, updated_at")


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per record.
    if readonly:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0,
                               isolation_level=None)
        conn.row_factory = sqlite3.Row
    else:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
    conn.row_factory = sqlite3.Row     # rows are decoded by column name
    return conn


_RECOVER = ("Restore it from a backup, or recover what SQLite can read into a new workspace: "
            "sqlite3 {path} .recover | sqlite3 NEW_WORKSPACE/refplay-studies.sqlite")


def _damaged(path: Path, exc: sqlite3.Error, doing: str = "writing to it") -> StoreError:
    """The error for a database that opened and checked fine but fails when used."""
    return StoreError(
        f"the study database {path} is damaged: {doing} failed ({exc}). `refplay study "
        f"status`, `list` and `export` may still read parts of it; to go on, restore "
        f"{path.name} from a backup, or recover what SQLite can read into a new workspace "
        f"(sqlite3 {path} .recover | sqlite3 NEW_WORKSPACE/{path.name}) and run the study "
        f"there. Nothing was changed by the failed transaction.")


def _check_schema(conn: sqlite3.Connection, path: Path) -> int:
    """Refuse a file that is not a healthy refplay store this refplay can read; its version."""
    try:
        tables = {r["name"] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        if "schema_version" not in tables:
            raise StoreError(f"{path} is not a refplay study database (no schema_version table; "
                             f"tables: {sorted(tables)})")
        versions = conn.execute("SELECT version FROM schema_version").fetchall()
        if len(versions) != 1 or not isinstance(versions[0][0], int):
            raise StoreError(f"{path}: the schema_version table is corrupted ({versions!r})")
        version = versions[0][0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path} was written by a newer refplay (schema version {version}; "
                             f"this refplay reads version {SCHEMA_VERSION}); upgrade refplay. "
                             f"The database was not modified.")
        if version < SCHEMA_VERSION and version not in _UPGRADABLE:
            raise StoreError(f"{path} has schema version {version}, older than {SCHEMA_VERSION}, "
                             f"and there is no migration for it")
        check = [tuple(r) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if check != [("ok",)]:
            raise StoreError(f"{path} is corrupted (PRAGMA quick_check: "
                             f"{'; '.join(r[0] for r in check[:5])}). {_RECOVER.format(path=path)}")
        return version
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a readable SQLite database (corrupted?): {exc}. "
                         f"The file was not modified. {_RECOVER.format(path=path)}") from None


def _has_no_tables(path: Path) -> bool:
    """True for a readable SQLite file without a single table (an interrupted first open)."""
    try:
        conn = _connect(path, readonly=True)
    except sqlite3.Error:
        return False
    try:
        return conn.execute("SELECT COUNT(*) AS n FROM sqlite_master").fetchone()["n"] == 0
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def _study_row(row: sqlite3.Row) -> StudyRow:
    return StudyRow(**{k: row[k] for k in row.keys()})


def _differing_keys(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _nan_if_null(value):
    return float("nan") if value is None else value


def _nan_to_none(obj):
    """Replace NaN by None in nested containers, so that ``==`` compares it."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _plain_json(obj):
    return json.loads(json.dumps(obj, allow_nan=True, default=_json_default))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
