"""Basic hyperparameter axis plots (the playbook's Figure 1 and 7a).

*"we plot the validation objective value versus one of the hyperparameters
(e.g. learning rate). Each point on the plot corresponds to a single
trial."* Infeasible trials are red × at a cap (as are feasible trials worse
than ``cap`` — Figure 1's "very bad results"), the top 3 of each
scientific value are stars, the search range of each value is a pair of
dotted lines, and the x axis is logarithmic for a log-scaled parameter.
"""

from __future__ import annotations

import math

import numpy as np

from refplay import analysis
from refplay.plots import style

__all__ = ["axis_plot"]


def axis_plot(frame, param: str, by: str | None = "scientific", top_k: int = 3,
              cap: float | None = None, title: str | None = None):
    """Objective vs ``param``, one colour per scientific value; returns the Figure.

    Every trial where ``param`` is active is drawn exactly once (a dot or a
    ×); stars are drawn on top of the top-k dots.
    """
    groups = {v: g for v, g in frame.groups(by).items()
              if any(g.parameter_of(r, param) is not None for r in g.rows)}
    if not groups:
        raise ValueError(f"parameter {param!r} is not active in any trial of {frame.name!r}")
    fig, ax = style.new_figure(9.0, 4.8)
    finite = [r.objective for g in groups.values() for r in g.rows if math.isfinite(r.objective)]
    # A loss spanning decades reads better on a log axis (the cap then sits a bit above).
    log_y = (frame.metric.endswith("loss") and finite and min(finite) > 0
             and max(finite) / min(finite) > 30)
    if log_y and cap is None:
        y_cap = max(finite) * (max(finite) / min(finite)) ** 0.08
    else:
        y_cap = style.cap_for(finite, cap)
    single = len(groups) == 1
    scales, crosses, stars = set(), ([], []), []
    n_worse = 0      # finite trials drawn as a cross because they are worse than the cap
    for i, (value, group) in enumerate(groups.items()):
        rows = [r for r in group.rows if group.parameter_of(r, param) is not None]
        names = {group.parameter_of(r, param) for r in rows}
        scales |= ({getattr(frame.space[n], "scale", "linear") for n in names}
                   if frame.space is not None else {"linear"})
        x = np.array([float(r.active[group.parameter_of(r, param)]) for r in rows])
        y = np.array([r.objective for r in rows])
        worse = (y > y_cap) if frame.mode == "min" else (y < y_cap)
        bad = ~np.isfinite(y) | (np.isfinite(y) & worse)
        c = style.FEASIBLE if single else style.colour(i)
        ax.scatter(x[~bad], y[~bad], s=28, color=c, zorder=2, gid="trials",
                   label="feasible trials" if single else frame.label(value))
        crosses[0].extend(x[bad].tolist())
        n_worse += int(np.sum(np.isfinite(y) & worse))
        sub = group.where(lambda r: group.parameter_of(r, param) is not None)
        top = analysis.ranked(sub)[:top_k]
        stars.append(([float(r.active[group.parameter_of(r, param)]) for r, _, _ in top],
                      [v for _, v, _ in top], style.STAR if single else c))
        if frame.space is not None and len(names) == 1:
            p = frame.space[names.pop()]
            if hasattr(p, "low"):
                for edge in (p.low, p.high):
                    ax.axvline(edge, color=c if not single else "0.5", ls=":", lw=1, zorder=1)
    ax.scatter(crosses[0], [y_cap] * len(crosses[0]), marker="x", s=45, color=style.INFEASIBLE,
               zorder=3, gid="infeasible",
               label=(None if not crosses[0] else "infeasible trials (drawn at the cap)"
                      if not n_worse else "infeasible or worse than the cap (drawn at it)"))
    for j, (tx, ty, c) in enumerate(stars):
        ax.scatter(tx, ty, marker="*", s=160 if single else 220, color=c, edgecolor="black",
                   linewidth=0.7, zorder=4, gid="top",
                   label=f"top {top_k} trials" if single else
                   (f"top {top_k} of each value" if j == 0 else None))
    if log_y:
        ax.set_yscale("log")
    if scales == {"log"}:
        ax.set_xscale("log")
    ax.axhline(y_cap, color=style.INFEASIBLE, lw=0.6, alpha=0.4, zorder=0)
    ax.set_xlabel(style.param_label(param, "log" if scales == {"log"} else None)
                  + "; dotted: search range")
    ax.set_ylabel(style.metric_label(frame.metric))
    ax.set_title(title or f"{frame.name}: is the search range of {param} wide enough?",
                 fontsize=11)
    # Outside the axes: a study's points can be anywhere.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.25)
    return fig
