"""The spread of retrains: every value as a dot, the mean with a ±2 standard-error bar.

Used by the variance procedures (:mod:`refplay.procedures.variance`) and the
batch-size fair comparison; the standard error is
:func:`refplay.analysis.uncertainty.standard_error` (one home for it).
"""

from __future__ import annotations

import numpy as np

from refplay.analysis.uncertainty import standard_error
from refplay.plots import style

__all__ = ["strip_plot"]


def strip_plot(groups: dict, metric: str, *, title: str, xlabel: str = ""):
    """One column per group: every value as a dot, the mean with a ±2 SE bar."""
    fig, ax = style.new_figure(max(5.0, 1.6 * len(groups) + 2), 4.3)
    for i, (label, values) in enumerate(groups.items()):
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        jitter = (np.arange(len(v)) - (len(v) - 1) / 2) * 0.04
        ax.plot(i + jitter, v, "o", color=style.colour(i), alpha=0.7)
        if len(v) >= 2:
            se = standard_error(v)
            ax.errorbar(i + 0.25, v.mean(), yerr=2 * se, fmt="_", color="black", capsize=5,
                        ms=14, label="mean ± 2 SE" if i == 0 else None)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.2)      # room for the last group's ±2 SE bar
    ax.set_ylabel(style.metric_label(metric))
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig
