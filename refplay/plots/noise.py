"""Figure of gradient noise: steps to a training-loss target against dropout and batch size.

Drawn from what :func:`refplay.procedures.noise.gradient_noise_steps` measured.
"""

from __future__ import annotations

from refplay.plots import style

__all__ = ["noise_plot"]


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
