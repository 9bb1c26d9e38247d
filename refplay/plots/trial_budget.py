"""Figure 3 of the playbook: box plots of the best of N trials, on a log error axis.

:func:`refplay.plots.best_of_n_plot` draws the boxes; a few unlucky draws
reach errors near chance, so this figure puts them on a log axis with plain
labels, keeping the boxes legible.
"""

from __future__ import annotations

from matplotlib import ticker

from refplay.plots.budget import best_of_n_plot

__all__ = ["best_of_n_boxes"]


def best_of_n_boxes(bon, *, metric: str, title: str):
    """The bootstrap's best-of-N boxes (``analysis.best_of_n``), log error axis."""
    fig = best_of_n_plot(bon, source="bootstrap", metric=metric, title=title)
    ax = fig.axes[0]
    ax.set_yscale("log")
    ax.set_ylabel(ax.get_ylabel() + " (log scale)")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    return fig
