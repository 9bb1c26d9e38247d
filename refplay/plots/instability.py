"""Figures of the instability procedures (the playbook's Figures 4-8), drawn from their numbers.

Nothing here trains or decides: each function takes what
:mod:`refplay.procedures.instability` or :mod:`~refplay.procedures.warmup`
measured (per-step losses, statuses, best errors) and draws it in the
playbook's visual language (:mod:`refplay.plots.style`): infeasible runs as red
``x``, the best learning rate as a star, log axes where the playbook uses them,
labelled axes, a title that states the question.
"""

from __future__ import annotations

import math

import numpy as np

from refplay.plots import style
from refplay.train.result import TrialStatus

__all__ = ["smooth", "plain_log_x", "loss_traces_plot", "dense_vs_sparse_plot", "warmup_plot",
           "lr_sweep_plot"]


def smooth(x, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (expanding at the start); NaN/Inf stay out."""
    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or x.size == 0:
        return x.copy()
    finite = np.isfinite(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(finite, x, 0.0))])
    n = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(idx - window, 0)
    count = n[idx] - n[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (c[idx] - c[lo]) / count, np.nan)


def plain_log_x(fig) -> None:
    """Layout only: plain labels (0.02, 0.05, 0.1) on the log x axes of ``fig``."""
    for ax in fig.axes:
        if ax.get_xscale() == "log":
            style.plain_log(ax.xaxis, numticks=8)


def _shade_events(ax, events, colour: str = style.INFEASIBLE) -> None:
    for e in events:
        ax.axvspan(e["start"], e["end"] + 1, color=colour, alpha=0.15, lw=0)


def loss_traces_plot(traces: dict, *, events: dict | None = None, window: int = 10,
                     title: str = ""):
    """Per-step training loss of several runs (log y, ``window``-step mean); spikes shaded."""
    fig, ax = style.new_figure(9.0, 4.6)
    for i, (label, loss) in enumerate(traces.items()):
        c = style.colour(i)
        raw_s, raw = style.positive_points(loss)
        ax.plot(raw_s, raw, color=c, lw=0.4, alpha=0.35)
        xs, ys = style.positive_points(smooth(loss, window))
        ax.plot(xs, ys, color=c, lw=1.6, label=label)
        if TrialStatus.INFEASIBLE in label and len(loss):
            ax.plot(len(loss) - 1, ys[-1] if ys.size else 1.0, "x", color=style.INFEASIBLE,
                    ms=10, mew=2.5)
        for e in (events or {}).get(label, []):
            ax.axvspan(e["start"], e["end"] + 1, color=c, alpha=0.15, lw=0)
    # Legend entries only for what the figure shows.
    if any(TrialStatus.INFEASIBLE in label for label in traces):
        ax.plot([], [], "x", color=style.INFEASIBLE, ms=8, mew=2, label="run stopped: infeasible")
    if any((events or {}).get(label) for label in traces):
        ax.fill_between([], [], color="0.5", alpha=0.2,
                        label="loss spike (analysis.detect_instability)")
    ax.set_yscale("log")
    style.plain_log(ax.yaxis)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training loss (per step faint; {window}-step mean bold; log)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.25)
    return fig


def dense_vs_sparse_plot(dense, sparse_steps, sparse, events, *, lr: float, coarse_every: int):
    """Figure 5: the loss of every step beside the same run seen every ``coarse_every`` steps."""
    fig, (ax, bx) = style.new_figure(11.0, 4.2, ncols=2, sharey=True)
    s, y = style.positive_points(dense)
    ax.plot(s, y, color=style.FEASIBLE, lw=0.8, label="minibatch loss, every step")
    _shade_events(ax, events)
    for e in events:
        ax.annotate(f"{e['height']:.1f}× spike ({e['kind']})",
                    (e["peak_step"], float(np.asarray(dense)[e["peak_step"]])),
                    xytext=(6, 2), textcoords="offset points", fontsize=8,
                    color=style.INFEASIBLE)
    ax.fill_between([], [], color=style.INFEASIBLE, alpha=0.15, label="detected loss spike")
    ax.set_title("evaluated every step: the spike is there", fontsize=10)
    bx.plot(sparse_steps, sparse, "o-", color="tab:orange", lw=1.6,
            label=f"mean loss since the last evaluation, every {coarse_every} steps")
    bx.set_title(f"evaluated every {coarse_every} steps: only goes down", fontsize=10)
    for a in (ax, bx):
        a.set_yscale("log")
        style.plain_log(a.yaxis)
        a.set_xlabel("training step")
        a.grid(alpha=0.25)
        a.legend(fontsize=8, loc="lower left")
        a.set_xlim(0, len(dense))
    ax.set_ylabel("training loss (log)")
    fig.suptitle(f"Figure 5: does a sparse evaluation schedule hide instability? "
                 f"(the same run, lr = {lr:g})", fontsize=11)
    return fig


def warmup_plot(losses: dict, rows, *, target_lr: float, shortest: int | None):
    """Figure 6: training loss vs step (log x) per warmup length, and the schedules (log-log).

    ``losses``: warmup steps -> per-step training loss; ``rows``: the
    procedure's per-candidate dicts (status, stable, and ``why``: the
    decision's reason, shown in the legend).
    """
    fig, (ax, bx) = style.new_figure(11.0, 4.4, ncols=2, width_ratios=[1.6, 1])
    status = {row["warmup_steps"]: row for row in rows}
    first = [float(x[0]) for x in losses.values() if len(x) and np.isfinite(x[0])]
    cap = 10.0 * max(first) if first else 10.0
    n = max(len(x) for x in losses.values())
    for i, (w, loss) in enumerate(sorted(losses.items())):
        c = style.colour(i)
        row = status[w]
        tag = row.get("why") or ("stable" if row["stable"] else row["status"])
        xs, ys = style.positive_points(smooth(loss, 5))
        keep = ys <= cap
        ax.plot(xs[keep] + 1, ys[keep], color=c, lw=2.2 if w == shortest else 1.3,
                label=f"warmup {w} steps: {tag}"
                + ("  ← shortest stable" if w == shortest else ""))
        if row["status"] == TrialStatus.INFEASIBLE:
            ax.plot(len(loss), cap, "x", color=style.INFEASIBLE, ms=10, mew=2.5)
        s = np.arange(1, n + 1)
        lr = target_lr * np.minimum(1.0, (s - 1) / w) if w else np.full(n, target_lr)
        bx.plot(s, np.where(lr > 0, lr, np.nan), color=c, lw=1.5, label=f"warmup {w}")
    if any(row["status"] == TrialStatus.INFEASIBLE for row in rows):
        ax.plot([], [], "x", color=style.INFEASIBLE, ms=8, mew=2,
                label="infeasible (drawn at 10 × step-0 loss)")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xlabel("training step + 1 (log)")
        a.grid(alpha=0.25)
    ax.set_yscale("log")
    style.plain_log(ax.yaxis)
    ax.set_ylabel("training loss (5-step mean, log)")
    ax.legend(fontsize=8, loc="lower left")
    bx.set_yscale("log")
    bx.set_ylabel("learning rate (log)")
    bx.set_title(f"linear ramp 0 → {target_lr:g}, then constant", fontsize=9)
    bx.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Figure 6: how long a warmup does lr = {target_lr:g} need to train stably?",
                 fontsize=11)
    return fig


def lr_sweep_plot(lrs, sweeps: dict, *, warmup_steps: int, variants_labels: dict | None = None):
    """Figure 8: validation error vs learning rate (log x), with and without warmup, per variant.

    ``sweeps``: variant -> the procedure's numbers (``errors``, ``errors_warmup``,
    ``statuses``, ``statuses_warmup``, ``lr_star``, ``lr_star_warmup``).
    """
    fig, axes = style.new_figure(5.4 * len(sweeps) + 0.8, 4.4, ncols=len(sweeps), squeeze=False,
                                 sharey=True)
    all_err = [e for s in sweeps.values() for k in ("errors", "errors_warmup") for e in s[k]]
    cap = style.cap_for([e for e in all_err if math.isfinite(e)], None)
    for ax, (variant, s) in zip(axes[0], sweeps.items()):
        for j, (key, label) in enumerate((("", "no warmup"),
                                          ("_warmup", f"warmup {warmup_steps} steps"))):
            err = np.asarray(s["errors" + key], dtype=np.float64)
            ok = np.array([st == TrialStatus.COMPLETE for st in s["statuses" + key]])
            c = style.colour(j)
            x = np.asarray(lrs)
            ax.plot(x[ok], err[ok], "o-", color=c, lw=1.4, ms=5, label=label)
            ax.plot(x[~ok], np.full((~ok).sum(), cap), "x", color=style.INFEASIBLE, ms=9,
                    mew=2)
            best = s["lr_star" + key]
            if best is not None:
                ax.plot([best], [s["error" + key]], "*", ms=18, color=c, mec="black", mew=0.8,
                        label=f"best lr {'with' if key else 'without'} warmup = {best:g}")
        ax.plot([], [], "x", color=style.INFEASIBLE, ms=8, mew=2,
                label="infeasible (NaN/blow-up), at the cap")
        ratio = s.get("ratio")
        ax.set_title(f"{variant}: {(variants_labels or {}).get(variant, '')}\n"
                     + (f"warmup moves the best lr {ratio:.1f}×" if ratio else ""), fontsize=9)
        ax.set_xscale("log")
        style.plain_log(ax.xaxis, numticks=8)
        ax.set_xlabel("learning rate (log)")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7.5, loc="upper left")
    axes[0, 0].set_ylabel("validation error rate (best checkpoint)")
    fig.suptitle("Figure 8: does warmup let the model use a larger learning rate?", fontsize=11)
    return fig
