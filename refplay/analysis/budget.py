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

They agree within Monte-Carlo error (tested). ``min`` is the best observed
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

__all__ = ["Quantiles", "BestOfN", "best_of_n", "exact_cdf", "QUANTILES"]

QUANTILES = (0.25, 0.5, 0.75)


class Quantiles(NamedTuple):
    n: int
    min: float
    q25: float
    median: float
    q75: float
    max: float

    @property
    def iqr(self) -> float:
        return self.q75 - self.q25


@dataclass(frozen=True)
class BestOfN:
    budgets: tuple[int, ...]
    exact: tuple[Quantiles, ...]
    bootstrap: tuple[Quantiles, ...]
    n_trials: int
    n_feasible: int
    n_boot: int
    mode: str

    def table(self, source: str = "exact") -> tuple[Quantiles, ...]:
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
