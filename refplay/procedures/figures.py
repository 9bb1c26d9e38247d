"""Figures of the procedures, drawn from the numbers the procedures computed.

Nothing here trains or recomputes a decision: each function takes what a
procedure measured (curves, steps per batch size, ...) and draws it in the
playbook's visual language (:mod:`refplay.plots.style`): infeasible or
never-reached points as red ``x`` at a cap, log axes for log-scaled
quantities, labelled axes with units, a title that states the question, a
legend where colours mean something. Every function returns a ``Figure``.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter

from refplay import plots
from refplay.plots import style

__all__ = ["train_error_curves", "steps_to_fit_plot", "best_step_fractions_plot",
           "throughput_plot", "steps_to_result_plot", "fair_comparison_plot", "strip_plot",
           "rounds_plot", "schedule_family_plot", "noise_plot"]


def _plain_log2(axis) -> None:
    """Log2 axis with plain numbers (16, 64, ...) instead of 2^k."""
    axis.set_major_formatter(ScalarFormatter())


def _lr_colours(n: int):
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1) * 0.9) for i in range(n)]


def train_error_curves(curves: dict, fit_error: float, candidate: int | None, *,
                       title: str | None = None):
    """Training error vs step, one line per learning rate (log y; exact 0 drawn at a floor)."""
    fig, ax = style.new_figure(7.0, 4.5)
    finite = [v for _, vals in curves.values() for v in vals if math.isfinite(v) and v > 0]
    floor = min(finite) / 3 if finite else 1e-4
    for colour, (lr, (steps, vals)) in zip(_lr_colours(len(curves)), sorted(curves.items())):
        vals = np.where(np.asarray(vals) > 0, vals, floor)
        ax.plot(steps, vals, color=colour, lw=1.6, label=f"lr = {lr:.3g}")
    ax.set_yscale("log")
    ax.axhline(floor, color="grey", ls=":", lw=1)
    ax.annotate("0 (perfect fit) drawn here", (0.01, floor), xycoords=("axes fraction", "data"),
                va="bottom", fontsize=8, color="grey")
    if candidate is not None:
        ax.axvline(candidate, color="black", ls="--", lw=1,
                   label=f"candidate max_train_steps = {candidate}")
    if fit_error > 0:
        ax.axhline(fit_error, color=style.INFEASIBLE, ls="--", lw=1, label=f"fit target {fit_error:g}")
    ax.set_xlabel("training step")
    ax.set_ylabel("training error rate (eval mode, whole training split; log)")
    ax.set_title(title or "Constant learning rate, no regularization: when does each trial "
                 "fit the training set?", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def steps_to_fit_plot(sweep, statuses, n_steps: int):
    """Steps to fit vs learning rate (log x); never-fit or diverged as red x at the budget."""
    fig, ax = style.new_figure(6.5, 4.2)
    fit = [(lr, s) for lr, s in zip(sweep.lrs, sweep.steps_to_fit) if s is not None]
    miss = [(lr, st) for lr, s, st in zip(sweep.lrs, sweep.steps_to_fit, statuses) if s is None]
    if fit:
        ax.plot(*zip(*fit), "o-", color=style.FEASIBLE, label="steps to fit")
    if miss:
        ax.plot([m[0] for m in miss], [n_steps * 1.05] * len(miss), "x", color=style.INFEASIBLE,
                ms=10, mew=2, label=f"did not fit in {n_steps} steps (or diverged)")
    if sweep.candidate is not None:
        ax.plot([sweep.fastest_lr], [sweep.candidate], "*", color=style.STAR, ms=16,
                mec="black", label=f"fastest: {sweep.candidate} steps at lr={sweep.fastest_lr:.3g}")
    ax.set_xscale("log")
    ax.set_ylim(0, n_steps * 1.15)
    ax.set_xlabel(style.param_label("lr", "log"))
    ax.set_ylabel("steps to fit the training set (steps)")
    edge = "  (fastest at the grid's edge!)" if sweep.at_upper_edge else ""
    ax.set_title(f"Which learning rate fits the training set fastest?{edge}", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def best_step_fractions_plot(bsf):
    """Where the best checkpoints fall (delegates to :func:`refplay.plots.best_step_histogram`)."""
    return plots.best_step_histogram(bsf)


def throughput_plot(rows, decision):
    """Examples/s vs batch size (log-log) with the ideal-doubling line, and time per step."""
    fig, (ax, bx) = style.new_figure(11.0, 4.3, ncols=2)
    bs = np.array([r.batch_size for r in rows], dtype=float)
    eps = np.array([r.examples_per_second for r in rows])
    ok = np.array([r.feasible for r in rows])
    ax.plot(bs[ok], eps[ok], "o-", color=style.FEASIBLE, label="measured")
    if (~ok).any():
        ax.plot(bs[~ok], eps[~ok], "x", color=style.INFEASIBLE, ms=10, mew=2,
                label="over the memory limit")
    ax.plot(bs, eps[0] * bs / bs[0], ":", color="grey", label="ideal: doubles with the batch")
    ax.axvline(decision.max_useful_batch, color="black", ls="--", lw=1,
               label=f"largest useful batch = {decision.max_useful_batch}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _plain_log2(ax.xaxis)
    ax.set_ylim(eps.min() / 2, eps.max() * 3)
    ax.set_xlabel("batch size (examples, log2 scale)")
    ax.set_ylabel("training throughput (examples / s, log)")
    ax.set_title("Does throughput (nearly) double when the batch doubles?", fontsize=10)
    ax.legend(fontsize=8)
    bx.plot(bs, [1e3 * r.seconds_per_step for r in rows], "o-", color="tab:orange",
            label="time per step")
    bx2 = bx.twinx()
    bx2.plot(bs, [r.peak_mib for r in rows], "s--", color="tab:purple", label="peak memory")
    bx.set_xscale("log", base=2)
    _plain_log2(bx.xaxis)
    bx.set_xlabel("batch size (examples, log2 scale)")
    bx.set_ylabel("time per training step (ms)", color="tab:orange")
    bx2.set_ylabel("peak numpy memory (MiB, tracemalloc)", color="tab:purple")
    bx.set_title("What does each step cost?", fontsize=10)
    return fig


def steps_to_result_plot(numbers: dict, decision):
    """Shallue et al.'s picture: steps to result vs batch size (log-log), and examples to result."""
    fig, (ax, bx) = style.new_figure(11.0, 4.3, ncols=2)
    bs, steps = numbers["batch_sizes"], numbers["steps_to_result"]
    got = [(b, s) for b, s in zip(bs, steps) if s is not None]
    miss = [b for b, s in zip(bs, steps) if s is None]
    gb, gs = map(np.array, zip(*got))
    ax.plot(gb, gs, "o-", color=style.FEASIBLE, label="measured (best config per size)")
    ax.plot(gb, gs[0] * gb[0] / gb, ":", color="grey", label="perfect scaling (slope −1)")
    if miss:
        cap = gs.max() * 1.6
        ax.plot(miss, [cap] * len(miss), "x", color=style.INFEASIBLE, ms=10, mew=2,
                label="target not reached in its budget")
    if decision.critical_batch is not None:
        ax.axvline(decision.critical_batch, color="black", ls="--", lw=1,
                   label=f"critical batch ≈ {decision.critical_batch}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    _plain_log2(ax.xaxis)
    _plain_log2(ax.yaxis)
    ax.set_xlabel("batch size (examples, log2 scale)")
    ax.set_ylabel("steps to reach the target (log2 scale)")
    ax.set_title(f"Steps to {numbers['metric']} ≤ {numbers['target']:g}\n"
                 f"(slopes: small B {decision.small_slope:.2f}, large B "
                 f"{decision.large_slope:.2f})", fontsize=10)
    ax.legend(fontsize=8)
    ex = [(b, e) for b, e in zip(bs, numbers["examples_to_result"]) if e is not None]
    bx.plot(*zip(*ex), "o-", color="tab:orange")
    bx.set_xscale("log", base=2)
    bx.set_yscale("log")
    _plain_log2(bx.xaxis)
    bx.margins(x=0.08, y=0.15)
    bx.set_xlabel("batch size (examples, log2 scale)")
    bx.set_ylabel("examples to reach the target (batch × steps, log)")
    bx.set_title("Resource use: flat while scaling is perfect, then rising", fontsize=10)
    for b, lr in zip(bs, numbers["best_lr"]):
        e = dict(ex).get(b)
        if e is not None:
            bx.annotate(f"lr*={lr:.2g}", (b, e), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    return fig


def fair_comparison_plot(groups: dict, metric: str):
    """Retrained objectives per arm (strip + mean ± 2 SE)."""
    return strip_plot(groups, metric, title="Does the batch size change attainable performance? "
                      "Fixed vs retuned learning rate")


def strip_plot(groups: dict, metric: str, *, title: str, xlabel: str = ""):
    """One column per group: every value as a dot, the mean with a ±2 SE bar."""
    fig, ax = style.new_figure(max(5.0, 1.6 * len(groups) + 2), 4.3)
    for i, (label, values) in enumerate(groups.items()):
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        jitter = (np.arange(len(v)) - (len(v) - 1) / 2) * 0.04
        ax.plot(i + jitter, v, "o", color=style.colour(i), alpha=0.7)
        if len(v) >= 2:
            se = v.std(ddof=1) / math.sqrt(len(v))
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


def rounds_plot(numbers: dict):
    """Round-1 vs Round-2 objective of the top configs (and the rescaled control)."""
    fig, ax = style.new_figure(6.5, 4.5)
    o1, o2 = numbers["round1_objectives"], numbers["round2_objectives"]
    ax.plot(o1, o2, "o", color=style.FEASIBLE, ms=8,
            label=f"Round 2: {numbers['extension']} extension (playbook's Speculation)")
    if "control_objectives" in numbers:
        ax.plot(o1, numbers["control_objectives"], "s", mfc="none", color="tab:orange", ms=8,
                label="Round 2 control: decay rescaled to the new length")
    for i, (a, b) in enumerate(zip(o1, o2)):
        lr = numbers["top_configs"][i]["lr"]
        ax.annotate(f"#{i + 1} lr={lr:.2g}", (a, b), textcoords="offset points", xytext=(5, 4),
                    fontsize=7)
    ax.set_xlabel(f"Round 1 validation error rate ({numbers['round1_steps']} steps)")
    ax.set_ylabel(f"Round 2 validation error rate ({numbers['round2_steps']} steps)")
    ax.set_title(f"Does the Round-1 ranking survive longer training? "
                 f"(Spearman ρ = {numbers['spearman_rho']:.2f})", fontsize=10)
    ax.margins(0.15)
    ax.legend(fontsize=8)
    return fig


def schedule_family_plot(lrs, objectives_by_family: dict, mean: dict, se: dict):
    """Left: objective vs lr per family; right: retrained best per family, mean ± 2 SE."""
    fig, (ax, bx) = style.new_figure(11.0, 4.3, ncols=2)
    order = np.argsort(lrs)
    lrs = np.asarray(lrs)[order]
    for i, (fam, objs) in enumerate(objectives_by_family.items()):
        o = np.asarray(objs)[order]
        ax.plot(lrs, o, "o-", color=style.colour(i), label=fam)
        bx.errorbar(i, mean[fam], yerr=2 * se[fam], fmt="o", color=style.colour(i), capsize=6)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())     # minor labels overlap on a short decade
    ax.set_xlabel(style.param_label("lr", "log"))
    ax.set_ylabel(style.metric_label("validation/error_rate"))
    ax.set_title("Each family's learning rate, tuned", fontsize=10)
    ax.legend(fontsize=8, title="schedule")
    bx.set_xticks(range(len(mean)), list(mean))
    bx.set_xlim(-0.5, len(mean) - 0.5)
    bx.set_ylabel("validation error rate, retrained best (mean ± 2 SE)")
    bx.set_title("Does some decay beat a constant learning rate?", fontsize=10)
    return fig


def noise_plot(numbers: dict):
    """Steps to the training-loss target vs dropout, one line per batch size."""
    fig, ax = style.new_figure(6.5, 4.3)
    d = numbers["dropouts"]
    cap = numbers["max_steps"] * 1.05
    labelled = False
    for i, (label, steps) in enumerate(numbers["steps"].items()):
        ys = [cap if s is None else s for s in steps]
        ax.plot(d, ys, "o-", color=style.colour(i), label=f"batch size {label[2:]}")
        miss = [x for x, s in zip(d, steps) if s is None]
        if miss:
            ax.plot(miss, [cap] * len(miss), "x", color=style.INFEASIBLE, ms=10, mew=2,
                    label=None if labelled else f"not reached in {numbers['max_steps']} steps")
            labelled = True
    ax.set_xlabel("dropout rate")
    ax.set_ylabel(f"steps until training loss ≤ {numbers['target_train_loss']:g}")
    ax.set_ylim(0, cap * 1.1)
    ax.set_title("Does more gradient noise cost more steps? (learning rate fixed)", fontsize=10)
    ax.legend(fontsize=8)
    return fig
