"""Best of N trials as box plots (the playbook's Figure 3): have we sampled enough?

Boxes span the quartiles of the best of N trials drawn from one study, the
line is the median, and the whiskers span min and max (the lower whisker is
the best trial of the study for every N). A whisker that reaches an
infeasible draw (every one of the N trials infeasible) ends in a red × at the
top.
"""

from __future__ import annotations

import math

from refplay.plots import style

__all__ = ["best_of_n_plot"]

_TEAL, _TEAL_LIGHT = "#109a72", "#b3ebdb"


def best_of_n_plot(bon, source: str = "bootstrap", metric: str = "validation/error_rate",
                   title: str | None = None):
    """Draw an ``analysis.BestOfN`` table; returns the Figure."""
    table = bon.table(source)
    finite = [v for q in table for v in (q.min, q.q25, q.median, q.q75, q.max)
              if math.isfinite(v)]
    top = style.cap_for(finite, None)
    stats, capped = [], []
    for q in table:
        hi = q.max if math.isfinite(q.max) else top
        if not math.isfinite(q.max):
            capped.append(q.n)
        stats.append({"med": _c(q.median, top), "q1": _c(q.q25, top), "q3": _c(q.q75, top),
                      "whislo": _c(q.min, top), "whishi": hi, "label": str(q.n)})
    fig, ax = style.new_figure(7.0, 4.5)
    ax.bxp(stats, positions=list(bon.budgets), showfliers=False, patch_artist=True,
           widths=0.6, boxprops={"facecolor": _TEAL_LIGHT, "edgecolor": _TEAL},
           medianprops={"color": _TEAL, "lw": 2}, whiskerprops={"color": _TEAL, "lw": 2},
           capprops={"color": _TEAL})
    if metric.endswith("loss") and finite and min(finite) > 0 and max(finite) / min(finite) > 30:
        ax.set_yscale("log")       # a loss spanning decades
    if capped:
        ax.scatter(capped, [top] * len(capped), marker="x", color=style.INFEASIBLE, s=40,
                   label="max: all N trials infeasible", zorder=4)
        ax.legend(fontsize=8)
    ax.set_xlabel("number of trials N (drawn with replacement from the study)")
    ax.set_ylabel(f"best {style.metric_label(metric, '')} of N trials")
    ax.set_title(title or f"Have we sampled enough? Best of N trials "
                 f"({source}, from {bon.n_trials} trials)", fontsize=11)
    ax.grid(alpha=0.25)
    return fig


def _c(v: float, top: float) -> float:
    return v if math.isfinite(v) else top
