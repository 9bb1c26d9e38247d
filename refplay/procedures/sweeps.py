"""Learning-rate sweeps repeated over seeds: the numbers Figures 4 and 8 are drawn from.

A playbook comparison of two models (or of warmup and none) across
learning rates is only a fact when it survives another initialization and
data order. These helpers keep the per-seed numbers side by side
(``[seed][lr]`` lists) and read them the same way everywhere:

* a rate *trains* when the run completed on every seed (an infeasible run
  diverged, or ended collapsed: :class:`~refplay.train.settings.TrialSettings`);
* lr* is the rate with the lowest **mean** error over seeds among the rates
  that train (ties: the smaller rate), and each seed's own lr* is kept too.
"""

from __future__ import annotations

import math

import numpy as np

from refplay.train.result import TrialStatus

__all__ = ["METRIC", "best_error_seen", "mean_best", "per_seed_best", "largest_training_lr",
           "index_of", "sweep_caveat"]

METRIC = "validation/error_rate"


def best_error_seen(result, metric: str = METRIC) -> float:
    """The lowest ``metric`` a trial evaluated, whatever its status (NaN: none finite).

    An infeasible trial has no objective, but a collapsed one was evaluated to
    its last step: the playbook draws such runs at their (poor) values.
    """
    values = np.asarray(result.curves.get(metric, ()), dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.min()) if values.size else math.nan


def _trains(statuses_by_seed) -> np.ndarray:
    return np.array([[st == TrialStatus.COMPLETE for st in row]
                     for row in statuses_by_seed]).all(axis=0)


def mean_best(lrs, errors_by_seed, statuses_by_seed) -> tuple[float | None, float]:
    """``(lr*, mean error there)`` over the rates every seed trained; ``(None, nan)``: none."""
    err = np.asarray(errors_by_seed, dtype=np.float64).mean(axis=0)
    ok = _trains(statuses_by_seed) & np.isfinite(err)
    if not ok.any():
        return None, math.nan
    i = min(np.flatnonzero(ok), key=lambda j: (err[j], lrs[j]))
    return float(lrs[i]), float(err[i])


def per_seed_best(lrs, errors_by_seed, statuses_by_seed) -> list:
    """Each seed's own lr* (``None`` where nothing trained on that seed)."""
    return [mean_best(lrs, [errs], [sts])[0]
            for errs, sts in zip(errors_by_seed, statuses_by_seed)]


def largest_training_lr(lrs, statuses_by_seed) -> float | None:
    """The largest rate every seed trained at (``None``: none)."""
    ok = _trains(statuses_by_seed)
    return float(max(np.asarray(lrs)[ok])) if ok.any() else None


def index_of(lrs, lr, name: str) -> int:
    """The position of ``lr`` in ``lrs``; a ``ValueError`` naming ``name`` if absent."""
    for i, x in enumerate(lrs):
        if math.isclose(x, lr, rel_tol=1e-9):
            return i
    raise ValueError(f"{name}={lr!r} must be one of the sweep's learning rates {list(lrs)}")


def sweep_caveat(seeds, max_train_steps: int, lrs, setup) -> str:
    """What one run of a seeded sweep covers, in words (drawn under its figure)."""
    rule = ("" if setup.max_final_loss is None else
            f"; a run whose last steps average a training loss above {setup.max_final_loss:.3g} "
            f"(0.9 ln 10: chance) counts as infeasible, collapsed")
    return (f"{len(seeds)} seed(s), {max_train_steps} steps, learning rates {min(lrs):g} ... "
            f"{max(lrs):g}{rule}.")
