"""Isolation plots (the playbook's Figure 2): the best trial per scientific value.

Each point is the best objective over the nuisance hyperparameters for one
value (or bucket) of the scientific hyperparameter, labelled with the number
of trials behind it, with a ±1 SE bar when the standard error is known; a
bucket's extent is a horizontal bar. An equally tuned baseline (e.g. no weight
decay) is a dashed horizontal line.
"""

from __future__ import annotations

import math

from refplay.plots import style

__all__ = ["isolation_plot"]


def isolation_plot(iso, baseline_label: str | None = None, title: str | None = None):
    """Draw an ``analysis.Isolation``; returns the Figure."""
    fig, ax = style.new_figure(7.0, 4.5)
    rows = [r for r in iso.rows if math.isfinite(r.objective)]
    categorical = iso.scale == "categorical"
    xs = list(range(len(rows))) if categorical else [r.x for r in rows]
    ys = [r.objective for r in rows]
    yerr = [r.se if r.se is not None else 0.0 for r in rows]
    if iso.bucketed:
        xerr = [[r.x - r.low for r in rows], [r.high - r.x for r in rows]]
    else:
        xerr = None
    # Categorical values are not ordered: no line between them.
    ax.errorbar(xs, ys, yerr=yerr if any(yerr) else None, xerr=xerr,
                fmt="o" if categorical else "o-", color="tab:blue",
                ecolor="0.45", capsize=3, ms=7, lw=1.2,
                label="best trial per " + ("bucket" if iso.bucketed else "value")
                + (" (±1 SE)" if any(yerr) else ""))
    best = iso.best_row()
    if best is not None:
        bx = rows.index(best) if categorical else best.x
        ax.scatter([bx], [best.objective], marker="*", s=260, color=style.STAR,
                   edgecolor="black", zorder=5, label="best value")
    # The number of trials behind each point, along the bottom edge: clear of the error bars.
    for x, r in zip(xs, rows):
        ax.annotate(f"n={r.n_trials}", (x, 0), xycoords=("data", "axes fraction"),
                    textcoords="offset points", xytext=(0, 4), ha="center", va="bottom",
                    fontsize=8, color="0.3")
    empty = [r for r in iso.rows if not math.isfinite(r.objective)]
    if iso.baseline is not None and math.isfinite(iso.baseline.objective):
        ax.axhline(iso.baseline.objective, color="tab:orange", ls="--",
                   label=baseline_label or f"baseline {iso.param}={iso.baseline.x} "
                   f"(n={iso.baseline.n_trials}, equally tuned)")
    if categorical:
        ax.set_xticks(xs, [str(r.x) for r in rows])
        ax.set_xlim(-0.5, len(rows) - 0.5)
    elif iso.scale == "log":
        ax.set_xscale("log")
    ax.set_xlabel(style.param_label(iso.param, iso.scale if iso.scale == "log" else None)
                  + (f"; {len(iso.rows)} buckets" if iso.bucketed else ""))
    ax.set_ylabel(style.metric_label(iso.metric, "best trial"))
    note = f" ({len(empty)} empty bucket{'s' if len(empty) != 1 else ''})" if empty else ""
    ax.set_title(title or f"Which {iso.param} is best, with the other hyperparameters "
                 f"tuned away?{note}", fontsize=11)
    ax.margins(y=0.18)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.25)
    return fig
