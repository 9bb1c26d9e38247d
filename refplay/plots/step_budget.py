"""Figures of the step-budget procedures: when does each constant-rate trial fit the training set?

Drawn from what :mod:`refplay.procedures.step_budget` measured (training-error
curves per learning rate, steps to fit); nothing here trains or decides.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps

from refplay.plots import style

__all__ = ["train_error_curves", "steps_to_fit_plot"]


def _lr_colours(n: int):
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
        ax.axhline(fit_error, color=style.INFEASIBLE, ls="--", lw=1,
                   label=f"fit target {fit_error:g}")
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
