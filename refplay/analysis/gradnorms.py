"""Gradient norms and the clipping threshold (the playbook's Figure 9).

The playbook ("Gradient clipping"): *"Choose a gradient clipping threshold
based on the 90th percentile of gradient norms"*, and *"If gradient
clipping is needed for more than 50 % of the updates, the gradient clipping
threshold is too aggressive"*: any threshold below the median norm clips more
than half the steps.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["GradNormSummary", "grad_norm_summary"]


class GradNormSummary(NamedTuple):
    """Quantiles of a trial's per-step gradient norms, for choosing a clipping threshold."""

    steps: int
    p50: float                  # below this threshold more than half of the steps are clipped
    p90: float                  # the playbook's starting threshold
    max: float
    clipped_fraction_at_p90: float
    n_nonfinite: int


def grad_norm_summary(grad_norms) -> GradNormSummary:
    """Median, 90th percentile and max of the finite norms; the share clipped at the 90th."""
    g = np.asarray(grad_norms, dtype=np.float64).ravel()
    finite = g[np.isfinite(g)]
    if finite.size == 0:
        nan = float("nan")
        return GradNormSummary(len(g), nan, nan, nan, nan, int(len(g)))
    p50, p90 = (float(v) for v in np.quantile(finite, [0.5, 0.9]))
    return GradNormSummary(len(g), p50, p90, float(finite.max()),
                           float(np.mean(finite > p90)), int(len(g) - finite.size))
