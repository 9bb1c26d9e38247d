"""A trial's objective: one definition for everything above the trainer.

The playbook compares trials by "the best validation performance" of each
(retrospective checkpoint selection): a trial's objective is the value of its
selection metric at its best checkpoint. Only a complete trial has one; an
infeasible (diverged), failed or pruned trial has none, written ``NaN`` here
so a list of objectives keeps one entry per trial and ``np.nanmin`` skips it.

:func:`trial_objective` reads a ``TrialResult`` (what a procedure holds after
running its trials); a stored study's rows already carry theirs
(``TrialsFrame`` rows' ``objective``, and
:func:`refplay.analysis.selection.objective_of` for other metrics and
reductions), which :func:`complete_objectives` collects.
"""

from __future__ import annotations

import math

from refplay.train.result import TrialStatus

__all__ = ["DEFAULT_METRIC", "trial_objective", "complete_objectives"]

#: The metric a trial is judged by when it recorded no selection metric of its own.
DEFAULT_METRIC = "validation/error_rate"


def trial_objective(result, metric: str | None = None) -> float:
    """The best-checkpoint value of ``metric`` of a ``TrialResult``; NaN unless it completed.

    ``metric`` defaults to the metric the trial selected its best checkpoint
    by (``result.extras["selection_metric"]``), else :data:`DEFAULT_METRIC`.
    """
    if not result.feasible:
        return math.nan
    metric = metric or result.extras.get("selection_metric") or DEFAULT_METRIC
    return float(result.best_metrics.get(metric, math.nan))


def complete_objectives(rows) -> list[float]:
    """The objectives of the complete trials among ``rows`` (store or frame rows), in order."""
    return [float(row.objective) for row in rows if row.status == TrialStatus.COMPLETE]
