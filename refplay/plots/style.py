"""Shared conventions of refplay's figures: the playbook's visual language.

* infeasible trials: red ``x`` drawn at a cap above the feasible points;
* the top 3 trials: stars (green with one colour, else the value's colour
  with a black edge);
* log x for log-scaled parameters; every axis labelled with its units; a
  title that states the question; a legend where colours mean something.

Functions return a ``Figure`` and never call ``plt.show()``; figures use the
Agg-safe object API (``matplotlib.figure.Figure``), so no global pyplot state
is touched and nothing needs closing.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure

__all__ = ["INFEASIBLE", "STAR", "FEASIBLE", "PALETTE", "colour", "metric_label", "new_figure",
           "param_label", "cap_for"]

INFEASIBLE = "tab:red"
STAR = "tab:green"
FEASIBLE = "tab:blue"
# Colours for scientific values; red and green are reserved for infeasible and the top 3.
PALETTE = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")
FONT = 10


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def new_figure(width: float = 7.0, height: float = 4.5, **subplots) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(**subplots)
    return fig, axes


def metric_label(metric: str, selection: str = "best checkpoint") -> str:
    """``"validation/error_rate"`` -> ``"validation error rate (best checkpoint)"``."""
    words = metric.replace("_", " ").split("/")
    text = " ".join(words)
    return f"{text} ({selection})" if selection else text


def param_label(name: str, scale: str | None = None) -> str:
    key = name.rsplit("/", 1)[-1]
    pretty = {"lr": "learning rate", "weight_decay": "weight decay", "gamma": "momentum γ",
              "beta1": "β₁", "beta2": "β₂", "eps": "ε", "batch_size": "batch size (examples)"}
    text = pretty.get(key, key.replace("_", " "))
    if name != key:
        text += f" [{name}]"
    return text + (" (log scale)" if scale == "log" else "")


def cap_for(values, cap: float | None) -> float:
    """Where to draw infeasible trials: ``cap``, else 8 % of the range above the worst point."""
    if cap is not None:
        return float(cap)
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 1.0
    lo, hi = min(finite), max(finite)
    return hi + 0.08 * (hi - lo if hi > lo else max(abs(hi), 1e-12))
