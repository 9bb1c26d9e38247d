"""Best of N trials as box plots (the playbook's Figure 3): have we sampled enough?

Boxes span the quartiles of the best of N trials drawn from one study, the
line is the median, and the whiskers span min and max (the lower whisker is
the best trial of the study for every N). A whisker that reaches an
infeasible draw (every one of the N trials infeasible) ends in a red × at the
top.
"""

from __future__ import annotations

import math
import textwrap

from refplay.plots import style

__all__ = ["best_of_n_plot"]

_TEAL, _TEAL_LIGHT = "#109a72", "#b3ebdb"


def best_of_n_plot(bon, source: str = "bootstrap", metric: str = "validation/error_rate",
                   title: str | None = None, caveat: str | None = None):
    """Draw an ``analysis.BestOfN`` table, or ``{label: BestOfN}`` side by side; a Figure.

    ``caveat`` (e.g. ``analysis.exchangeable_caveat(frame)``) is printed under
    the title when the trials are not quasi-random draws.
    """
    tables = bon if isinstance(bon, dict) else {None: bon}
    fig, axes = style.new_figure(max(7.0, 4.2 * len(tables)), 4.5 + (0.4 if caveat else 0.0),
                                 ncols=len(tables), squeeze=False, sharey=True)
    # One cap for every panel (they share the y axis): where "all N infeasible" is drawn.
    top = style.cap_for([v for one in tables.values() for v in _values(one, source)], None)
    for ax, (label, one) in zip(axes[0], tables.items()):
        _draw_one(ax, one, source, metric, top)
        if label is not None:
            ax.set_title(f"{label} ({one.n_trials} finished trials)", fontsize=10)
    axes[0, 0].set_ylabel(f"best {style.metric_label(metric, '')} of N trials")
    n_trials = sum(one.n_trials for one in tables.values())
    head = title or (f"Have we sampled enough? Best of N trials ({source}, from {n_trials} "
                     f"trials{', per scientific value' if len(tables) > 1 else ''})")
    if caveat:
        head += "\n" + "\n".join(textwrap.wrap(f"Caveat: {caveat}.", 110))
    fig.suptitle(head, fontsize=11 if not caveat else 9)
    return fig


def _values(bon, source: str) -> list[float]:
    """The finite quantiles of a ``BestOfN`` table."""
    return [v for q in bon.table(source) for v in (q.min, q.q25, q.median, q.q75, q.max)
            if math.isfinite(v)]


def _draw_one(ax, bon, source: str, metric: str, top: float) -> None:
    """Box plots of one ``BestOfN`` on ``ax``; an infinite maximum is drawn at ``top``."""
    table = bon.table(source)
    finite = _values(bon, source)
    stats, capped = [], []
    for q in table:
        if not math.isfinite(q.max):
            capped.append(q.n)
        stats.append({"med": _c(q.median, top), "q1": _c(q.q25, top), "q3": _c(q.q75, top),
                      "whislo": _c(q.min, top), "whishi": _c(q.max, top), "label": str(q.n)})
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
    ax.set_xlabel("number of trials N (drawn with replacement)")
    ax.grid(alpha=0.25)


def _c(v: float, top: float) -> float:
    return v if math.isfinite(v) else top
