"""Training instability from the per-step training loss: spikes, early or mid-run.

The playbook ("How can optimization failures be debugged and mitigated?"):
*"The learning rate sweep should look like [...] a model with
instability"*; early instability is often invisible at the usual evaluation
frequency: Figure 5 shows a stride-(1,1) network whose loss spikes to ~100 at
steps 3-7 and recovers by step ~10, which a curve evaluated every 1,000 steps
does not show ("more frequent evaluations reveal early instability").
Figure 7b shows a mid-training instability: a steady decline, then a jump and
a slow decline to a worse loss.

The detector reads ``TrialResult.train_losses`` (the minibatch loss of every
step). With :math:`\\tilde\\ell_t` the trailing median of the last ``window``
(50) losses, step :math:`t` is *in a spike* when the centred median of three
steps exceeds the typical recent loss by the factor ``min_rise`` (one unlucky
minibatch is not a spike; the running *minimum* would be too strict a
reference late in training, where minibatch noise is large relative to it):

.. math:: \\operatorname{med}(\\ell_{t-1}, \\ell_t, \\ell_{t+1}) >
          \\text{min\\_rise} \\cdot \\tilde\\ell_{t-1} \\quad\\text{(or } \\ell_t
          \\text{ is not finite)}.

Consecutive spike steps (gaps shorter than ``window`` merged) form one
event: its ``start``, ``end``, ``peak_step``, ``height`` = peak ÷
:math:`m_{start}` (the running minimum of :math:`\\tilde\\ell` before the spike), ``kind`` = ``"early"`` if it starts in the first
``early_frac`` (10 %) of the run, else ``"mid"``, and ``recovered`` if the
smoothed loss at the end of the run is within ``1.1 ×`` the pre-spike minimum.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refplay import _validate

__all__ = ["InstabilityEvent", "detect_instability", "collapse_step"]


class InstabilityEvent(NamedTuple):
    """One loss spike: where it starts, peaks and ends, how high, and whether it recovered."""

    start: int
    end: int                  # last step of the spike
    peak_step: int
    kind: str                 # "early" | "mid"
    height: float             # peak loss / running minimum before the spike (inf if NaN)
    baseline: float           # the running minimum before the spike
    recovered: bool
    recovery_step: int | None  # first step after the spike with smoothed loss <= 1.1 x baseline


def _trailing_median(x: np.ndarray, window: int) -> np.ndarray:
    out = np.empty_like(x)
    head = min(window - 1, len(x))
    for t in range(head):                     # the first steps: an expanding window
        out[t] = np.median(x[:t + 1])
    if len(x) >= window:
        out[window - 1:] = np.median(np.lib.stride_tricks.sliding_window_view(x, window), axis=1)
    return out


def detect_instability(train_losses, *, min_rise: float = 2.0, window: int = 50,
                       early_frac: float = 0.1, recover_factor: float = 1.1
                       ) -> tuple[InstabilityEvent, ...]:
    """Spike events of a per-step loss trace (see the module docstring)."""
    _validate.real("min_rise", min_rise, low=1.0, low_open=True)
    _validate.integer("window", window, low=1)
    _validate.real("early_frac", early_frac, low=0.0, high=1.0)
    x = np.asarray(train_losses, dtype=np.float64).ravel()
    n = len(x)
    if n < 2:
        return ()
    finite = np.isfinite(x)
    clean = np.where(finite, x, np.inf)
    smooth = _trailing_median(clean, window)
    running_min = np.minimum.accumulate(smooth)          # m_{t+1} = min(smooth[:t+1])
    # A centred median of 3 steps ignores a single unlucky minibatch; two high steps in a
    # row (Figure 5's spike lasts five) get through.
    padded = np.concatenate([clean[:1], clean, clean[-1:]])
    local = np.median(np.lib.stride_tricks.sliding_window_view(padded, 3), axis=1)
    spike = np.zeros(n, dtype=bool)
    # The reference is the typical recent loss (the trailing median), not the running
    # minimum: late in training a low running minimum would turn minibatch noise into spikes.
    spike[1:] = (~finite[1:]) | (local[1:] > min_rise * smooth[:-1])
    events = []
    t = 1
    while t < n:
        if not spike[t]:
            t += 1
            continue
        start, end = t, t
        gap = 0
        t += 1
        while t < n and gap < window:
            if spike[t]:
                end, gap = t, 0
            else:
                gap += 1
            t += 1
        t = end + 1
        base = float(running_min[start - 1])
        lo = max(1, start - 1)                 # the 3-step medians reach one step either side
        seg = clean[lo:min(n, end + 2)]
        peak = int(lo + np.argmax(seg))
        height = math.inf if not np.isfinite(seg).all() else float(seg.max() / base)
        after = np.nonzero(smooth[end + 1:] <= recover_factor * base)[0]
        recovery = None if after.size == 0 else int(end + 1 + after[0])
        recovered = bool(np.isfinite(smooth[-1]) and smooth[-1] <= recover_factor * base)
        kind = "early" if start < early_frac * n else "mid"
        events.append(InstabilityEvent(start, end, peak, kind, height, base, recovered,
                                       recovery))
    return tuple(events)


def collapse_step(train_losses, threshold: float, *, window: int = 25) -> int | None:
    """The step from which a run stays collapsed: its loss never comes back below ``threshold``.

    With ``m_t`` the mean loss of steps ``t, ..., t + window - 1``, the
    collapse step is the first ``t`` such that ``m_s > threshold`` for every
    later window start ``s >= t``, provided the last window is above it;
    ``None`` when the run ends below ``threshold`` (it trained) or is shorter
    than ``window``. A run that is above from its first window on (it never
    learned) collapses at step 0. The playbook's Figure 6: a warmup "blows
    up" when the ramp reaches a rate the model cannot take, and the loss
    returns to where it started.
    """
    x = np.asarray(train_losses, dtype=np.float64)
    window = int(window)
    if window < 1:
        raise ValueError(f"window={window!r} must be a positive number of steps")
    if x.size < window:
        return None
    x = np.where(np.isfinite(x), x, np.inf)
    c = np.concatenate([[0.0], np.cumsum(np.minimum(x, 1e300))])
    means = (c[window:] - c[:-window]) / window
    above = means > threshold
    if not above[-1]:
        return None
    below = np.flatnonzero(~above)
    return int(below[-1] + 1) if below.size else 0
