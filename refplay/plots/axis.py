"""Basic hyperparameter axis plots (the playbook's Figure 1 and 7a).

*"we plot the validation objective value versus one of the hyperparameters
(e.g. learning rate). Each point on the plot corresponds to a single
trial."* Infeasible trials are red × at a cap (as are feasible trials worse
than ``cap`` — Figure 1's "very bad results"), with a faint red line at the
cap whenever a cross is drawn; the top 3 of each scientific value are stars;
pruned trials (stopped early on purpose: no objective) are hollow grey
circles at the best value they reported before they were stopped, or at the
cap when they reported none; failed (crashed) trials are not drawn; the
search range of each value is a pair of dotted lines, and the x axis is
logarithmic for a log-scaled parameter.
"""

from __future__ import annotations

import math

import numpy as np

from refplay import analysis
from refplay.plots import style
from refplay.train.result import TrialStatus

__all__ = ["axis_plot", "PRUNED"]

PRUNED = "0.45"     # hollow grey circles: stopped early, no objective


def _pruned_height(frame, row, y_cap: float) -> float:
    """The best value a pruned trial reported before it was stopped (the cap if none)."""
    try:
        _, values = frame.curve(row.trial, frame.metric)
    except ValueError:
        return y_cap
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return y_cap
    best = float(finite.min() if frame.mode == "min" else finite.max())
    worse = best > y_cap if frame.mode == "min" else best < y_cap
    return y_cap if worse else best


def _y_cap(frame, finite: list[float], cap: float | None) -> tuple[float, bool]:
    """Where crosses are drawn, and whether the y axis is logarithmic."""
    # A loss spanning decades reads better on a log axis (the cap then sits a bit above).
    log_y = bool(frame.metric.endswith("loss") and finite and min(finite) > 0
                 and max(finite) / min(finite) > 30)
    if log_y and cap is None:
        return max(finite) * (max(finite) / min(finite)) ** 0.08, True
    return style.cap_for(finite, cap), log_y


def _draw_group(ax, frame, group, param, y_cap, colour, label, marks,
                range_colour) -> set[str]:
    """Dots of one scientific value; collects its crosses, pruned circles and stars in marks."""
    rows = [r for r in group.rows if group.parameter_of(r, param) is not None
            and r.status != TrialStatus.FAILED]
    names = {group.parameter_of(r, param) for r in rows}
    x = np.array([float(r.active[group.parameter_of(r, param)]) for r in rows])
    y = np.array([r.objective for r in rows])
    pruned = np.array([r.status == TrialStatus.PRUNED for r in rows], dtype=bool)
    worse = (y > y_cap) if frame.mode == "min" else (y < y_cap)
    bad = ~pruned & (~np.isfinite(y) | (np.isfinite(y) & worse))
    good = ~pruned & ~bad
    ax.scatter(x[good], y[good], s=28, color=colour, zorder=2, gid="trials", label=label)
    marks["crosses"].extend(x[bad].tolist())
    marks["n_worse"] += int(np.sum(np.isfinite(y) & worse & ~pruned))
    marks["pruned"].extend((float(xi), _pruned_height(frame, r, y_cap))
                           for xi, r, p in zip(x, rows, pruned) if p)
    sub = group.where(lambda r: group.parameter_of(r, param) is not None)
    top = analysis.ranked(sub)[:marks["top_k"]]
    marks["stars"].append(([float(r.active[group.parameter_of(r, param)]) for r, _, _ in top],
                           [v for _, v, _ in top]))
    if frame.space is None:
        return {"linear"}
    if len(names) == 1:
        p = frame.space[next(iter(names))]
        if hasattr(p, "low"):
            for edge in (p.low, p.high):
                ax.axvline(edge, color=range_colour, ls=":", lw=1, zorder=1)
    return {getattr(frame.space[n], "scale", "linear") for n in names}


def _draw_marks(ax, marks, y_cap, colours, single, top_k) -> None:
    """The crosses at the cap (and its line), the pruned circles and the stars."""
    crosses = marks["crosses"]
    if crosses:
        ax.axhline(y_cap, color=style.INFEASIBLE, lw=0.6, alpha=0.4, zorder=0)
        ax.scatter(crosses, [y_cap] * len(crosses), marker="x", s=45, color=style.INFEASIBLE,
                   zorder=3, gid="infeasible",
                   label="infeasible trials (drawn at the cap, red line)" if not marks["n_worse"]
                   else "infeasible or worse than the cap (drawn at it, red line)")
    if marks["pruned"]:
        px, py = zip(*marks["pruned"])
        ax.scatter(px, py, s=30, facecolors="none", edgecolors=PRUNED, linewidths=1.0,
                   zorder=2, gid="pruned",
                   label="pruned (stopped early): best value before it was stopped")
    for j, ((tx, ty), c) in enumerate(zip(marks["stars"], colours)):
        ax.scatter(tx, ty, marker="*", s=160 if single else 220,
                   color=style.STAR if single else c, edgecolor="black", linewidth=0.7,
                   zorder=4, gid="top", label=f"top {top_k} trials" if single else
                   (f"top {top_k} of each value" if j == 0 else None))


def axis_plot(frame, param: str, by: str | None = "scientific", top_k: int = 3,
              cap: float | None = None, title: str | None = None):
    """Objective vs ``param``, one colour per scientific value; returns the Figure.

    Every complete, infeasible or pruned trial where ``param`` is active is
    drawn exactly once (a dot, a × or a hollow circle); stars are drawn on top
    of the top-k dots.
    """
    groups = {v: g for v, g in frame.groups(by).items()
              if any(g.parameter_of(r, param) is not None for r in g.rows)}
    if not groups:
        raise ValueError(f"parameter {param!r} is not active in any trial of {frame.name!r}")
    fig, ax = style.new_figure(9.0, 4.8)
    finite = [r.objective for g in groups.values() for r in g.rows if math.isfinite(r.objective)]
    y_cap, log_y = _y_cap(frame, finite, cap)
    single = len(groups) == 1
    marks = {"crosses": [], "pruned": [], "stars": [], "n_worse": 0, "top_k": top_k}
    colours, scales = [], set()
    for i, (value, group) in enumerate(groups.items()):
        c = style.FEASIBLE if single else style.colour(i)
        colours.append(c)
        scales |= _draw_group(ax, frame, group, param, y_cap, c,
                              "feasible trials" if single else frame.label(value), marks,
                              "0.5" if single else c)
    _draw_marks(ax, marks, y_cap, colours, single, top_k)
    if log_y:
        ax.set_yscale("log")
    if scales == {"log"}:
        ax.set_xscale("log")
    ax.set_xlabel(style.param_label(param, "log" if scales == {"log"} else None)
                  + "; dotted: search range")
    ax.set_ylabel(style.metric_label(frame.metric))
    ax.set_title(title or f"{frame.name}: is the search range of {param} wide enough?",
                 fontsize=11)
    # Outside the axes: a study's points can be anywhere.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.25)
    return fig
