r"""The uncertainty of a compared number.

Two sources, both named in the playbook:

* **the validation set is finite.** An error rate :math:`p` measured on
  :math:`n` validation examples is a binomial proportion with standard error

  .. math:: \mathrm{SE}(p) = \sqrt{p\,(1 - p) / n},

  so on 500 examples an error rate of 0.05 is known to about ±0.010. The
  playbook lists "small validation sets" among the causes of step-to-step
  variance.
* **trial variance**, "the variation we see between training runs that use the
  same hyperparameters, but different random seeds": measured when the spec has
  ``repeats > 1`` as the standard deviation of the objective across repeats of
  each configuration.

Two numbers :math:`a, b` with independent errors differ by more than their
noise when :math:`|a - b| > 2\sqrt{\mathrm{SE}_a^2 + \mathrm{SE}_b^2}`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refplay import _validate

__all__ = ["binomial_se", "metric_se", "repeat_spread", "RepeatSpread", "Comparison", "compare",
           "standard_error", "spread", "Spread", "welch", "Welch", "student_t_cdf",
           "student_t_ppf", "normal_ppf", "two_proportion_z"]


def binomial_se(p: float, n: int) -> float:
    r"""Standard error :math:`\sqrt{p(1-p)/n}` of an error rate ``p`` on ``n`` examples."""
    n = _validate.integer("n", n, low=1)
    p = float(p)
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"p={p!r} is not an error rate; allowed [0, 1]")
    return math.sqrt(p * (1.0 - p) / n)


def is_error_rate(metric: str) -> bool:
    """True for metrics that are proportions of the validation set (``.../error_rate``)."""
    return metric.rsplit("/", 1)[-1] in ("error_rate", "accuracy")


def metric_se(metric: str, value: float, n_validation: int | None) -> float | None:
    """Binomial SE of ``value`` if ``metric`` is an error rate and ``n_validation`` is known."""
    if n_validation is None or not is_error_rate(metric) or not math.isfinite(value):
        return None
    return binomial_se(min(max(value, 0.0), 1.0), n_validation)


class RepeatSpread(NamedTuple):
    """Trial variance from repeats: std of the objective per configuration, and pooled."""

    per_config: dict          # config_index -> sample std over its complete repeats
    pooled_std: float         # sqrt(mean of per-config variances); NaN without repeats
    n_configs: int            # configurations with >= 2 complete repeats


def repeat_spread(frame) -> RepeatSpread:
    """The spread of repeats (``spec.repeats > 1``) of each configuration of ``frame``."""
    by_config: dict[int, list[float]] = {}
    for r in frame.rows:
        if math.isfinite(r.objective):
            by_config.setdefault(r.config_index, []).append(r.objective)
    per = {c: float(np.std(v, ddof=1)) for c, v in by_config.items() if len(v) >= 2}
    pooled = math.sqrt(float(np.mean([s * s for s in per.values()]))) if per else math.nan
    return RepeatSpread(per, pooled, len(per))


class Comparison(NamedTuple):
    """``a - b`` with its standard error and whether it exceeds ``k`` standard errors."""

    difference: float
    se: float | None
    k: float
    significant: bool | None     # None when either SE is unknown


def compare(a: float, se_a: float | None, b: float, se_b: float | None,
            k: float = 2.0) -> Comparison:
    r"""Is :math:`|a - b| > k \sqrt{SE_a^2 + SE_b^2}`?"""
    diff = float(a) - float(b)
    if se_a is None or se_b is None:
        return Comparison(diff, None, k, None)
    se = math.sqrt(se_a ** 2 + se_b ** 2)
    return Comparison(diff, se, k, abs(diff) > k * se)


# ------------------------------------------------------------ retrains: mean, SE, Welch
def standard_error(values) -> float:
    r"""Standard error of the mean :math:`s / \sqrt{n}` of the finite ``values`` (NaN if < 2)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) >= 2 else math.nan


class Spread(NamedTuple):
    """Mean, sample standard deviation and standard error of the finite values of a list."""

    n: int
    mean: float
    std: float       # NaN with fewer than 2 values
    se: float        # std / sqrt(n)


def spread(values) -> Spread:
    """:class:`Spread` of the finite ``values`` (infeasible retrains, NaN, are left out)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if len(v) else math.nan
    std = float(v.std(ddof=1)) if len(v) >= 2 else math.nan
    return Spread(n=len(v), mean=mean, std=std, se=standard_error(v))


class Welch(NamedTuple):
    """Welch's comparison of two means: ``mean(a) - mean(b)``, its SE and degrees of freedom."""

    difference: float
    se: float
    df: float        # Welch–Satterthwaite; NaN when se = 0


def welch(a, b) -> Welch:
    r"""Welch's difference of means with :math:`\mathrm{SE} = \sqrt{s_a^2/n_a + s_b^2/n_b}` and

    .. math:: \nu = \frac{\mathrm{SE}^4}{\frac{(s_a^2/n_a)^2}{n_a - 1} + \frac{(s_b^2/n_b)^2}{n_b - 1}}.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se else math.nan
    return Welch(difference=float(a.mean() - b.mean()), se=se, df=float(df))


# ------------------------------------------------------------ t and normal distributions
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                    -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function :math:`I_x(a, b)`."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    r""":math:`P[T \le t]` for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on :func:`student_t_cdf`)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q={q!r} must lie in (0, 1)")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if student_t_cdf(mid, df) < q else (lo, mid)
    return 0.5 * (lo + hi)


def normal_ppf(q: float) -> float:
    """Standard normal quantile (bisection on erf; exact enough for intervals)."""
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q else (lo, mid)
    return 0.5 * (lo + hi)


def two_proportion_z(p1: float, p2: float, n: int) -> float:
    r"""Unpaired z for two error rates on ``n`` examples each: :math:`(p_1 - p_2) /
    \sqrt{\bar p (1 - \bar p)\,2/n}`."""
    pbar = 0.5 * (p1 + p2)
    var = pbar * (1 - pbar) * 2 / n
    return 0.0 if var == 0 else (p1 - p2) / math.sqrt(var)
