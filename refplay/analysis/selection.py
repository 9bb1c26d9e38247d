"""The best trial per scientific value, chosen post hoc from what was recorded.

The playbook ("Detecting whether a change is useful with isolation plots"):
each point of an isolation plot "corresponds to the performance of the *best*
trial across some (or all) of the nuisance hyperparameters", i.e. we compare
scientific values "after 'optimizing away' the nuisance hyperparameters". And
one advantage of quasi-random search is that we can change the objective in
post-hoc analysis without rerunning anything: ``reduce="final"`` ranks trials
by the last evaluation instead of the best checkpoint, ``metric=`` by another
recorded curve.

Only complete trials with a finite objective are ranked: an infeasible trial,
a failed one, or a NaN/Inf value never becomes "best". Ties go to the lower
trial index.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.train.result import TrialStatus

__all__ = ["Best", "best", "ranked", "objective_of", "REDUCTIONS"]

REDUCTIONS = ("best", "final")


class Best(NamedTuple):
    """The best trial of a group: its number, objective and best step."""

    trial: int
    objective: float
    step: int | None


def objective_of(frame, row, metric: str | None = None, reduce: str = "best"
                 ) -> tuple[float, int | None]:
    """``(value, step)`` of one trial under ``metric``/``reduce``; NaN if not rankable.

    ``reduce="best"`` with the study's metric is the stored objective (the
    metric at the best checkpoint); with another metric it is the best value
    of that curve; ``reduce="final"`` is the curve's last value.
    """
    _validate.one_of("reduce", reduce, REDUCTIONS)
    metric = frame.metric if metric is None else metric
    if row.status != TrialStatus.COMPLETE:
        return math.nan, None
    if reduce == "best" and metric == frame.metric:
        return row.objective, row.best_step
    steps, values = frame.curve(row.trial, metric)
    if len(values) == 0:
        return math.nan, None
    if reduce == "final":
        value = float(values[-1])
        return (value, int(steps[-1])) if math.isfinite(value) else (math.nan, None)
    finite = np.isfinite(values)
    if not finite.any():
        return math.nan, None
    keyed = np.where(finite, values if frame.mode == "min" else -values, np.inf)
    i = int(np.argmin(keyed))          # first best, like retrospective selection
    return float(values[i]), int(steps[i])


def ranked(frame, metric: str | None = None, reduce: str = "best") -> list[tuple]:
    """``[(row, value, step)]`` of rankable trials, best first (ties: lower trial first)."""
    out = []
    for r in frame.rows:
        value, step = objective_of(frame, r, metric, reduce)
        if math.isfinite(value):
            out.append((r, value, step))
    sign = 1.0 if frame.mode == "min" else -1.0
    out.sort(key=lambda item: (sign * item[1], item[0].trial))
    return out


def best(frame, by: str | None = "scientific", reduce: str = "best",
         metric: str | None = None) -> dict[tuple, Best]:
    """``{scientific value: Best(trial, objective, step)}``, post hoc.

    ``by=None`` gives ``{(): best trial of the study}``. A value whose trials
    are all infeasible or failed is absent.
    """
    out = {}
    for value, group in frame.groups(by).items():
        order = ranked(group, metric, reduce)
        if order:
            row, v, step = order[0]
            out[value] = Best(row.trial, v, step)
    return out
