"""Figures of choosing the batch size: throughput, steps to a result, the fair comparison.

Drawn from what :mod:`refplay.procedures.batch_size` measured and decided;
nothing here trains or decides.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import ScalarFormatter

from refplay.plots import style
from refplay.plots.variance import strip_plot

__all__ = ["throughput_plot", "steps_to_result_plot", "fair_comparison_plot"]


def _plain_log2(axis) -> None:
    """Log2 axis with plain numbers (16, 64, ...) instead of 2^k."""
    axis.set_major_formatter(ScalarFormatter())


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
