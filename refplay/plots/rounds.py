"""Figures of compute-bound tuning: the Round-1 ranking after Round 2, and schedule families.

Drawn from what :mod:`refplay.procedures.rounds` and
:mod:`refplay.procedures.schedules_family` measured; nothing here trains or decides.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter

from refplay.plots import style

__all__ = ["rounds_plot", "schedule_family_plot"]


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
