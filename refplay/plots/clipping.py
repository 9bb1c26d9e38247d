"""Figure 9 of the playbook: gradient norms, clipping thresholds, and the loss of each run.

Drawn from what :func:`refplay.procedures.clipping.clipping_study` measured (the
unstable run's norms, each threshold's row, every run's per-step loss); nothing
here trains or decides. A threshold that clips more than half of the updates is
drawn as "too aggressive": in essence a lower learning rate.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from refplay.plots import style
from refplay.plots.instability import smooth
from refplay.train.result import TrialStatus

__all__ = ["clipping_plot"]


def clipping_plot(norms, rows, chosen, losses, *, reference_norms=None):
    """Figure 9: gradient norm vs step (log y) with thresholds, its histogram, and the losses.

    ``norms``: the unclipped per-step norms of the run shown (the unstable
    config clipped at the chosen threshold); ``rows``: one
    ``clipping.ThresholdRun`` per threshold; ``losses``: per-step training
    losses of the unclipped run then of each threshold's run.
    """
    fig = Figure(figsize=(11.0, 7.4), dpi=100, layout="constrained")
    axd = fig.subplot_mosaic([["norm", "norm", "hist"], ["loss", "loss", "loss"]],
                             height_ratios=[1.1, 1])
    _norm_panel(axd["norm"], axd["hist"], norms, rows, chosen, reference_norms)
    _loss_panel(axd["loss"], rows, chosen, losses)
    fig.suptitle("Figure 9: which clipping threshold stabilizes the unstable run? "
                 "Just above the typical norm, not below most of them", fontsize=11)
    return fig


def _norm_panel(ax, hx, norms, rows, chosen, reference_norms) -> None:
    """The norms against the step, each threshold a line; beside them, their histogram."""
    s, g = style.positive_points(norms)
    if reference_norms is not None:
        rs, rg = style.positive_points(reference_norms)
        ax.plot(rs, rg, lw=0.6, color="0.6", label="stable reference run (thresholds from it)")
    ax.plot(s, g, lw=0.8, color=style.FEASIBLE, label="unstable run: unclipped norm |g_t|")
    for row in rows:
        if row is chosen:
            c, ls, lw, tag = style.STAR, "-", 1.8, "better"
        elif row.clipped_fraction > 0.5:
            c, ls, lw, tag = style.INFEASIBLE, "--", 1.5, "too aggressive (> 50% clipped)"
        else:
            c, ls, lw, tag = "0.35", ":", 1.2, ("trains" if row.status == TrialStatus.COMPLETE
                                                 else row.status)
        label = (f"λ = {row.threshold:.3g} (p{row.percentile:g}): clips "
                 f"{row.clipped_fraction:.0%}, {tag}")
        ax.axhline(row.threshold, color=c, ls=ls, lw=lw, label=label)
        hx.axvline(row.threshold, color=c, ls=ls, lw=lw)
    ax.set_yscale("log")
    style.plain_log(ax.yaxis)
    ax.set_xlabel("training step")
    ax.set_ylabel("global gradient L2 norm (log)")
    ax.legend(fontsize=7.5, loc="upper right")
    ax.grid(alpha=0.25)
    if g.size:
        bins = np.geomspace(g.min(), g.max() * 1.0001, 40) if g.max() > g.min() else 10
        hx.hist(g, bins=bins, color=style.FEASIBLE, alpha=0.7)
        hx.set_xscale("log")
        style.plain_log(hx.xaxis, numticks=4)
    hx.set_xlabel("gradient norm (log)")
    hx.set_ylabel("number of steps")
    hx.set_title("histogram of the norms (unstable run)", fontsize=9)


def _loss_panel(lx, rows, chosen, losses) -> None:
    """Each run's training loss, labelled with its best validation error.

    A threshold that clips every step is a per-step learning-rate cut: its
    training loss can end lowest while its validation error is worse, which
    the title says when it happens.
    """
    labels = ["no clipping"] + [f"λ = {r.threshold:.3g} (p{r.percentile:g}), best validation "
                                f"error {r.best_error:.3f}" for r in rows]
    statuses = [TrialStatus.INFEASIBLE if len(losses[0]) < max(len(x) for x in losses)
                else TrialStatus.COMPLETE]
    statuses += [r.status for r in rows]
    first = [float(x[0]) for x in losses if len(x) and np.isfinite(x[0])]
    cap = 10.0 * max(first) if first else 10.0          # the divergence rule's blow-up level
    for i, (label, loss) in enumerate(zip(labels, losses)):
        c = "black" if i == 0 else style.colour(i)
        xs, ys = style.positive_points(smooth(loss, 10))
        keep = ys <= cap
        lx.plot(xs[keep], ys[keep], color=c, lw=1.3 if i else 1.8, label=label)
        if statuses[i] == TrialStatus.INFEASIBLE:
            lx.plot(len(loss) - 1, cap, "x", color=style.INFEASIBLE, ms=11, mew=2.5)
            lx.annotate(f"{label}: infeasible at step {len(loss) - 1}", (len(loss) - 1, cap),
                        xytext=(12, -4), textcoords="offset points", fontsize=8,
                        color=style.INFEASIBLE)
    lx.plot([], [], "x", color=style.INFEASIBLE, ms=8, mew=2,
            label="infeasible (NaN or blow-up), drawn at the cap 10 × step-0 loss")
    aggressive = [r for r in rows if r.clipped_fraction > 0.5 and r is not chosen]
    if aggressive and chosen is not None:
        a = aggressive[0]
        lx.set_title(f"λ = {a.threshold:.3g} clips {a.clipped_fraction:.0%} of the steps: in "
                     f"essence a lower learning rate. Its training loss may end lowest, but its "
                     f"best validation error is {a.best_error:.3f} against "
                     f"{chosen.best_error:.3f} at λ = {chosen.threshold:.3g}", fontsize=9)
    lx.set_yscale("log")
    style.plain_log(lx.yaxis)
    lx.set_xlabel("training step")
    lx.set_ylabel("training loss (10-step mean, log)")
    lx.legend(fontsize=7.5, loc="upper right", ncol=2)
    lx.grid(alpha=0.25)
