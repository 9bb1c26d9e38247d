r"""Have we sampled enough points? The distribution of the best of N trials.

The playbook ("How many trials are needed to get good results with
quasi-random search?", Figure 3): box plots of the best validation error of N
trials, "bootstrapped" from one large study; "the interquartile range
[...] shrinks as N grows". Given a study's objectives :math:`x_1 \dots x_M`
(infeasible trials count as the worst possible value), draw N of them with
replacement and keep the best. Two ways to get its distribution:

* **exact**, from order statistics of the empirical distribution. With
  :math:`F` the empirical CDF (for ``mode="min"``),

  .. math:: P(\min_{i \le N} X_i \le x) = 1 - (1 - F(x))^N,

  and the q-quantile is the smallest observed :math:`x` where that reaches q;
* **bootstrap**: ``n_boot`` resamples from a seeded generator.

They agree within Monte-Carlo error (tested). :func:`best_of_n_per_value` does
it for each scientific value of a study apart (pooling values would answer "how
many trials of *some* value"), over its finished trials: pruned and failed ones
are not draws of the search space's outcome and are left out.

Both assume the trials are *exchangeable* draws from the search space, which
quasi-random (Halton), random and grid search give. An adaptive sampler (TPE,
``gp_ei``) chooses later trials from earlier results, so "N trials drawn from
the study" is not "a study of N trials": read the table as a rough guide there
(:func:`exchangeable_caveat`). ``min`` is the best observed
value for every N (the figure's constant lower whisker); the exact ``max``
is the worst trial (drawn N times in a row, probability :math:`M^{-N}`), the
bootstrap ``max`` the worst of the resamples, which is what Figure 3's upper
whiskers show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.train.result import TrialStatus

__all__ = ["Quantiles", "BestOfN", "best_of_n", "best_of_n_per_value", "exchangeable_caveat",
           "exact_cdf", "QUANTILES"]

QUANTILES = (0.25, 0.5, 0.75)


class Quantiles(NamedTuple):
    """Quantiles of the best of ``n`` trials (in the metric's own direction)."""

    n: int
    min: float
    q25: float
    median: float
    q75: float
    max: float

    @property
    def iqr(self) -> float:
        """The interquartile range, ``q75 - q25``."""
        return self.q75 - self.q25


@dataclass(frozen=True)
class BestOfN:
    """The best of N trials for each N in ``budgets``: exact and bootstrapped quantiles."""

    budgets: tuple[int, ...]
    exact: tuple[Quantiles, ...]
    bootstrap: tuple[Quantiles, ...]
    n_trials: int
    n_feasible: int
    n_boot: int
    mode: str

    def table(self, source: str = "exact") -> tuple[Quantiles, ...]:
        """The ``"exact"`` or ``"bootstrap"`` quantiles, one per budget."""
        _validate.one_of("source", source, ("exact", "bootstrap"))
        return self.exact if source == "exact" else self.bootstrap


def _exact(sorted_x: np.ndarray, n: int) -> Quantiles:
    m = len(sorted_x)
    f = np.arange(1, m + 1) / m                 # F at each sorted value (ties: last one wins)
    g = 1.0 - (1.0 - f) ** n                    # P(best of n <= x_(i))
    qs = []
    for q in QUANTILES:
        # smallest x_(i) with G >= q; 1e-12 absorbs rounding in (1 - F)^n
        qs.append(float(sorted_x[int(np.searchsorted(g, q - 1e-12, side="left"))]))
    return Quantiles(n, float(sorted_x[0]), *qs, float(sorted_x[-1]))


def _boot(x: np.ndarray, n: int, n_boot: int, rng: np.random.Generator) -> Quantiles:
    draws = x[rng.integers(0, len(x), size=(n_boot, n))].min(axis=1)
    qs = np.quantile(draws, QUANTILES, method="inverted_cdf")
    return Quantiles(n, float(draws.min()), *map(float, qs), float(draws.max()))


def best_of_n(objectives, budgets=range(6, 21), *, n_boot: int = 2000, seed: int = 0,
              mode: str = "min") -> BestOfN:
    """Quantiles of the best of N trials, exact and bootstrapped, for each N in ``budgets``.

    NaN/Inf objectives (infeasible trials) are the worst value: ``+inf`` for
    ``mode="min"``, ``-inf`` for ``"max"``. Values are returned in the
    metric's own direction.
    """
    _validate.one_of("mode", mode, ("min", "max"))
    _validate.integer("n_boot", n_boot, low=1)
    _validate.integer("seed", seed, low=0)
    x = np.asarray(objectives, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("objectives is empty; best_of_n needs at least one trial")
    budgets = tuple(_validate.integer("budget", b, low=1) for b in budgets)
    if not budgets:
        raise ValueError("budgets is empty")
    sign = 1.0 if mode == "min" else -1.0
    keyed = np.where(np.isfinite(x), sign * x, np.inf)
    sorted_x = np.sort(keyed)
    rng = np.random.default_rng(np.random.SeedSequence(seed))

    def back(q: Quantiles) -> Quantiles:
        if mode == "min":
            return q
        # In max mode the keyed values are negated: flip them back (and the order).
        return Quantiles(q.n, -q.min, -q.q25, -q.median, -q.q75, -q.max)

    exact = tuple(back(_exact(sorted_x, n)) for n in budgets)
    boot = tuple(back(_boot(keyed, n, n_boot, rng)) for n in budgets)
    return BestOfN(budgets, exact, boot, int(x.size), int(np.isfinite(x).sum()), n_boot, mode)


def exact_cdf(objectives, n: int, x: float) -> float:
    """:math:`P(\\text{best of } n \\le x)` for ``mode="min"`` (infeasible = +inf)."""
    v = np.asarray(objectives, dtype=np.float64)
    v = np.where(np.isfinite(v), v, np.inf)
    f = float(np.mean(v <= x))
    return 1.0 - (1.0 - f) ** n if not math.isnan(f) else math.nan


def best_of_n_per_value(frame, budgets=None, *, n_boot: int = 2000, seed: int = 0,
                        max_budget: int = 20) -> dict[tuple, BestOfN]:
    """:func:`best_of_n` for each scientific value of ``frame``, over its finished trials.

    Complete trials give their objective, infeasible ones the worst value;
    failed and pruned trials are left out. ``budgets`` defaults to
    ``2 .. min(max_budget, finished trials of the value)``; a value with fewer
    than 2 finished trials is absent.
    """
    finished = (TrialStatus.COMPLETE, TrialStatus.INFEASIBLE)
    out = {}
    for value, group in frame.groups("scientific").items():
        x = np.array([r.objective for r in group.rows if r.status in finished])
        if x.size < 2 or not np.isfinite(x).any():
            continue
        ns = range(2, min(max_budget, x.size) + 1) if budgets is None else budgets
        out[value] = best_of_n(x, ns, n_boot=n_boot, seed=seed, mode=frame.mode)
    return out


def exchangeable_caveat(frame) -> str | None:
    """Why best-of-N is only a rough guide for ``frame``, or ``None`` for quasi-random trials."""
    if frame.quasi_random:
        return None
    who = "an unknown sampler" if frame.sampler is None else f"sampler {frame.sampler!r}"
    return (f"the trials were chosen by {who}, not by quasi-random search: later trials may "
            f"depend on earlier results, so the best of N trials drawn from this study is not "
            f"the best of a fresh study of N trials; read these boxes as a rough guide")
