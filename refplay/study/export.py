"""CSV export of a study, for spreadsheets.

``export_csv(store, name, path)`` writes two files:

* ``path``: one row per recorded trial — index, configuration index, repeat,
  seed, status, reason, steps done, best step, the study metric at the best
  checkpoint (``objective``; empty unless complete), every best metric (``best/<metric>``), every
  hyperparameter (``config/<key>``; empty where a conditional one is
  inactive), throughput and timing;
* ``<path stem>_measurements.csv``: the curves in long form, one row per
  ``(trial, step, split, metric, value)``.

Both are written atomically.
"""

from __future__ import annotations

import csv
import io as _stdio
import os
from pathlib import Path

from refplay import io
from refplay.study.store import Store
from refplay.train.result import TrialStatus

__all__ = ["export_csv"]


def export_csv(store: Store, name: str, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write study ``name``'s trials to ``path`` and its measurements next to it."""
    path = Path(path)
    if path.suffix != ".csv":
        raise ValueError(f"the export file must end in .csv, got {str(path)!r}")
    store.require_study(name)
    trials = store.trials(name)
    config_keys = _union_keys(t.config for t in trials)
    metric_keys = _union_keys(t.best_metrics for t in trials)
    header = (["trial", "config_index", "repeat", "seed", "status", "reason", "steps_done",
               "best_step", "objective"] + [f"best/{k}" for k in metric_keys]
              + [f"config/{k}" for k in config_keys]
              + ["examples_per_second", "seconds_per_step", "wall_seconds", "trial_seconds",
                 "worker", "finished_at"])
    rows = []
    for t in trials:
        # An infeasible or failed trial has no objective: an empty cell, never a number
        # that a plot would draw as a feasible point.
        objective = t.objective if t.status == TrialStatus.COMPLETE else None
        rows.append([t.trial, t.config_index, t.repeat, t.seed, str(t.status), t.reason,
                     t.steps_done, t.best_step, objective]
                    + [t.best_metrics.get(k, "") for k in metric_keys]
                    + [t.config.get(k, "") for k in config_keys]
                    + [t.examples_per_second, t.seconds_per_step, t.wall_seconds,
                       t.trial_seconds, t.worker, t.finished_at])
    trials_path = io.write_text(path, _csv_text(header, rows))

    measurements = [[m.trial, m.step, m.split, m.metric, m.value]
                    for m in store.measurements(name)]
    m_path = path.with_name(f"{path.stem}_measurements.csv")
    io.write_text(m_path, _csv_text(["trial", "step", "split", "metric", "value"], measurements))
    return trials_path, m_path


def _union_keys(dicts) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = _stdio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v)
                         for v in row])
    return buffer.getvalue()
