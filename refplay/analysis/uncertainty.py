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

__all__ = ["binomial_se", "metric_se", "repeat_spread", "RepeatSpread", "Comparison", "compare"]


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
