"""Training curves, gradient norms and best steps: the plots behind the curve diagnostics.

* ``training_curves`` — *"For every study, we always look at the training
  curves (training error and validation error plotted versus training step
  [...]) of at least the best few trials"*: one column per scientific value,
  the top k trials in it; validation solid, training dashed (the training
  split evaluated without dropout, ``train_eval/...``, when recorded; else the
  running mean of the minibatch loss, ``train/loss``).
* ``grad_norm_plot`` — the playbook's Figure 9: the per-step gradient norm on
  a log axis with the 90th-percentile threshold (*"Choose a gradient clipping
  threshold based on the 90th percentile"*) and the median (any threshold below
  it clips more than half of the steps: *"too aggressive"*), plus the
  histogram.
* ``best_step_histogram`` — best step ÷ steps run, with the 10 % and 75 %
  marks of the ``max_train_steps`` rule and the counts the rule uses.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from refplay import analysis
from refplay.analysis import steps
from refplay.plots import style

__all__ = ["training_curves", "grad_norm_plot", "best_step_histogram"]


def _families(frame) -> list[tuple[str, str, str]]:
    """(title, validation curve, training curve) per row of panels."""
    if frame.metric.endswith("error_rate"):
        return [("error rate", frame.metric, "train_eval/error_rate"),
                ("loss", "validation/loss", "train_eval/loss")]
    return [("loss", frame.metric, "train_eval/loss")]


def training_curves(frame, top_k: int = 3, by: str | None = "scientific", title: str | None = None):
    """Top-k trials per scientific value: validation (solid) and training (dashed) curves."""
    best = {v: analysis.ranked(g)[:top_k] for v, g in frame.groups(by).items()}
    best = {v: t for v, t in best.items() if t}
    if not best:
        raise ValueError(f"study {frame.name!r} has no complete trial to draw")
    families = _families(frame)
    fig, axes = style.new_figure(4.2 * len(best) + 0.6, 3.0 * len(families) + 0.6,
                                 nrows=len(families), ncols=len(best), squeeze=False,
                                 sharex=True)
    for j, (value, top) in enumerate(best.items()):
        for i, (name, val_key, train_key) in enumerate(families):
            ax = axes[i, j]
            for rank, (row, _, _) in enumerate(top):
                curves = frame.curves(row.trial)
                c = style.colour(rank)
                if val_key in curves:
                    s, v = curves[val_key]
                    ax.plot(s, v, color=c, lw=1.5, label=f"trial {row.trial} validation")
                tk = train_key if train_key in curves else "train/loss" if name == "loss" else None
                if tk is not None and tk in curves:
                    s, v = curves[tk]
                    ax.plot(s, v, color=c, lw=1.2, ls="--",
                            label=f"trial {row.trial} {'training' if tk != 'train/loss' else 'minibatch'}")
                if row.best_step is not None and val_key == frame.metric:
                    ax.axvline(row.best_step, color=c, lw=0.6, ls=":")
            ax.set_ylabel(name if j == 0 else "")
            ax.set_title(f"{frame.label(value)}: top {len(top)} — {name}", fontsize=9)
            ax.grid(alpha=0.25)
            if name == "loss":
                ax.set_yscale("log")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6.5, loc="upper right")
        axes[-1, j].set_xlabel("training step")
    fig.suptitle(title or f"{frame.name}: do the best trials overfit, plateau or still improve?\n"
                 f"solid: validation; dashed: training; dotted line: the trial's best step",
                 fontsize=10)
    return fig


def grad_norm_plot(grad_norms, summary=None, title: str | None = None):
    """Per-step gradient norm (log y) with clipping thresholds, and its histogram."""
    g = np.asarray(grad_norms, dtype=np.float64)
    summary = analysis.grad_norm_summary(g) if summary is None else summary
    fig, (ax, hx) = style.new_figure(10.0, 3.8, ncols=2, width_ratios=[2.2, 1])
    steps = np.arange(len(g))
    ok = np.isfinite(g) & (g > 0)
    ax.plot(steps[ok], g[ok], lw=0.6, color="tab:blue", label="gradient norm")
    lines = [(summary.p90, style.STAR, f"90th percentile {summary.p90:.3g}: clips "
              f"{summary.clipped_fraction_at_p90:.0%} of steps"),
             (summary.p50, style.INFEASIBLE, f"median {summary.p50:.3g}: a threshold below "
              f"clips > 50% (too aggressive)")]
    for y, c, label in lines:
        ax.axhline(y, color=c, ls="--", lw=1.3, label=label)
        hx.axvline(y, color=c, ls="--", lw=1.3)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("global gradient L2 norm (log scale)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.25)
    pos = g[ok]
    if pos.size:
        bins = np.geomspace(pos.min(), pos.max() * 1.0001, 40) if pos.max() > pos.min() else 10
        hx.hist(pos, bins=bins, color="tab:blue", alpha=0.7)
        hx.set_xscale("log")
    hx.set_xlabel("gradient norm (log scale)")
    hx.set_ylabel("number of steps")
    fig.suptitle(title or "Where would gradient clipping bite? (Figure 9)", fontsize=11)
    return fig


def best_step_histogram(bsf, title: str | None = None):
    """Histogram of best_step / steps run (an ``analysis.BestStepFractions``).

    The bins have an edge at each line (10 % and 75 %), and a trial exactly at
    a line is drawn right of it, as the rule counts it: the trials right of
    the 75 % line are the ``bsf.n_late`` the decision counts, and the legend
    says so.
    """
    fig, ax = style.new_figure(6.5, 3.8)
    n = len(bsf.fractions)
    # Bins are [a, b): a fraction of exactly 0.75 falls in [0.75, 0.80), right of the line,
    # and the rule counts it late (>= 0.75); the last bin is closed, so 1.0 is drawn too.
    ax.hist(bsf.fractions, bins=np.arange(21) / 20, color="tab:blue", alpha=0.8,
            edgecolor="white", label=f"{n} complete trials")
    ax.axvline(steps.TOO_HIGH, color=style.INFEASIBLE, ls="--",
               label=f"{steps.TOO_HIGH:.0%}: all {n} left of it → max_train_steps too high "
                     f"(here {bsf.n_early} of {n})")
    ax.axvline(steps.TRAIN_LONGER, color="tab:orange", ls="--",
               label=f"{steps.TRAIN_LONGER:.0%}: ≥ {steps.LATE_SHARE:.0%} of trials at or right "
                     f"of it → train longer (here {bsf.n_late} of {n})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("best step / steps run (fraction of training)")
    ax.set_ylabel("number of trials")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))     # counts: no 1.25 trials
    ax.set_title(title or f"Is max_train_steps right? Decision: {bsf.decision}", fontsize=11)
    ax.legend(fontsize=8)
    return fig
