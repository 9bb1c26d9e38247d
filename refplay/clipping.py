r"""Gradient clipping by global norm, and how to choose and judge the threshold.

Playbook, "Gradient clipping" (in "Additional guidance for the training
pipeline"):

* "If the norm of the gradient :math:`|g|` is greater than the gradient
  clipping threshold :math:`\lambda`, then do
  :math:`g' = \lambda \times \frac{g}{|g|}` where :math:`g'` is the new
  gradient." -- :func:`clip_by_global_norm`
* "Log the unclipped gradient norm during training." -- ``ClipInfo.norm``
* "Choose a gradient clipping threshold based on the 90th percentile of
  gradient norms." -- :func:`threshold_from_norms`
* "We would usually consider having >50% of the updates getting clipped
  somehow as 'extremely aggressive'. [...] we might as well reduce the
  learning rate." -- :func:`clip_fraction`, :func:`clip_report`

The norm is the global L2 norm over every leaf of the gradient tree,
accumulated in float64 (:func:`refplay.tree.global_norm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay import tree as tree_lib


__all__ = ["ClipInfo", "ClipReport", "clip_by_global_norm", "threshold_from_norms",
           "clip_fraction", "clip_report", "AGGRESSIVE_FRACTION"]

#: More than this fraction of clipped updates is "extremely aggressive" clipping.
AGGRESSIVE_FRACTION = 0.5


class ClipInfo(NamedTuple):
    """What :func:`clip_by_global_norm` did at one step.

    ``norm`` is the *unclipped* global norm :math:`|g|` (log this one),
    ``clipped`` whether :math:`|g| > \\lambda`, and ``scale`` the factor the
    gradient was multiplied by (:math:`\\lambda/|g|` when clipped, else 1).
    """

    norm: float
    clipped: bool
    scale: float


def clip_by_global_norm(grads: Mapping[str, np.ndarray], max_norm: float, *,
                        norm: float | None = None) -> tuple[Tree, ClipInfo]:
    r"""Rescale ``grads`` so their global norm is at most ``max_norm`` (:math:`\lambda`).

    .. math::
        g' = \begin{cases} \lambda \dfrac{g}{|g|} & |g| > \lambda \\
                           g & \text{otherwise} \end{cases}

    Each leaf keeps its dtype; the factor :math:`\lambda/|g|` is computed in
    float64 and rounded once to the leaf's dtype. Leaves that are not rescaled
    are returned as they are (never modified). A non-finite norm (a diverging
    run) cannot be rescaled meaningfully: the gradients are returned unchanged
    and ``info.norm`` reports it, so divergence checks still see it.

    ``norm`` is :math:`|g|` when the caller has computed it already (the
    training loop logs it every step, from its packed gradient buffer:
    :meth:`refplay.tree.FlatLayout.global_norm`); by default
    :func:`refplay.tree.global_norm` of ``grads``.
    """
    max_norm = _validate.real("max_norm", max_norm, low=0.0, low_open=True)
    grads = tree_lib.check_floating(grads, "grads")
    norm = tree_lib.global_norm(grads) if norm is None else float(norm)
    if not (np.isfinite(norm) and norm > max_norm):
        return dict(grads), ClipInfo(norm=norm, clipped=False, scale=1.0)
    scale = max_norm / norm                                   # λ / |g|
    return {k: scale * g for k, g in grads.items()}, ClipInfo(norm=norm, clipped=True, scale=scale)


def _check_norms(norms, *, allow_inf: bool) -> np.ndarray:
    a = np.asarray(norms, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"norms must be a non-empty 1-D sequence of gradient norms, "
                         f"got shape {a.shape}")
    bad = np.isnan(a) | (a < 0) | (np.isinf(a) if not allow_inf else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        allowed = "[0, inf]" if allow_inf else "finite and >= 0"
        raise ValueError(f"norms[{i}]={a[i]!r} is not a valid gradient norm; allowed {allowed}")
    return a


def threshold_from_norms(norms, percentile: float = 90.0) -> float:
    """The playbook's starting clipping threshold: a percentile of the unclipped norms.

    "Choose a gradient clipping threshold based on the 90th percentile of
    gradient norms. The threshold will be workload dependent, but 90% is a
    good starting point. If it doesn't work, this threshold can be tuned."

    ``norms`` are the unclipped global norms logged over training steps;
    the percentile uses linear interpolation (``numpy.percentile``'s default).
    """
    a = _check_norms(norms, allow_inf=False)
    percentile = _validate.real("percentile", percentile, low=0.0, high=100.0, low_open=True)
    return float(np.percentile(a, percentile))


def clip_fraction(norms, threshold: float) -> float:
    r"""Fraction of steps whose norm exceeds ``threshold``: :math:`\#\{|g_s| > \lambda\} / n`."""
    a = _check_norms(norms, allow_inf=True)
    threshold = _validate.real("threshold", threshold, low=0.0, low_open=True)
    return float(np.count_nonzero(a > threshold) / a.size)


class ClipReport(NamedTuple):
    """How often a threshold clips, and whether that is "extremely aggressive".

    ``aggressive`` is ``fraction > 0.5``: the playbook's "extremely aggressive"
    clipping, "in essence a strange way of reducing the learning rate" -- cut
    the learning rate instead.
    """

    threshold: float
    fraction: float
    num_steps: int
    aggressive: bool

    @property
    def advice(self) -> str:
        """One line: the threshold, how often it clips, and a warning above 50%."""
        pct = f"{100 * self.fraction:.1f}% of {self.num_steps} updates"
        if self.aggressive:
            return (f"threshold {self.threshold:.4g} clips {pct}: more than 50% is extremely "
                    f"aggressive clipping; reduce the learning rate instead")
        return f"threshold {self.threshold:.4g} clips {pct}"


def clip_report(norms, threshold: float | None = None, percentile: float = 90.0) -> ClipReport:
    """Judge a clipping threshold on logged unclipped norms.

    With ``threshold=None`` the threshold is :func:`threshold_from_norms` at
    ``percentile``.
    """
    a = _check_norms(norms, allow_inf=True)
    if threshold is None:
        threshold = threshold_from_norms(a, percentile)
    fraction = clip_fraction(a, threshold)
    return ClipReport(threshold=float(threshold), fraction=fraction, num_steps=int(a.size),
                      aggressive=fraction > AGGRESSIVE_FRACTION)
