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

import io as _stdio
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from refplay import io

__all__ = ["INFEASIBLE", "STAR", "FEASIBLE", "PALETTE", "colour", "metric_label", "new_figure",
           "param_label", "cap_for", "plain_log", "positive_points", "add_caveat", "png_bytes",
           "save_png", "DPI"]

#: Resolution of the PNGs refplay writes.
DPI = 100

INFEASIBLE = "tab:red"
STAR = "tab:green"
FEASIBLE = "tab:blue"
# Colours for scientific values; red and green are reserved for infeasible and the top 3.
PALETTE = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")
FONT = 10


def colour(i: int) -> str:
    """The ``i``-th colour of :data:`PALETTE` (cycling), never red or green."""
    return PALETTE[i % len(PALETTE)]


def new_figure(width: float = 7.0, height: float = 4.5, **subplots) -> tuple[Figure, object]:
    """A ``width`` x ``height`` inch figure with constrained layout, and its axes (``subplots``)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(**subplots)
    return fig, axes


def metric_label(metric: str, selection: str = "best checkpoint") -> str:
    """``"validation/error_rate"`` -> ``"validation error rate (best checkpoint)"``."""
    words = metric.replace("_", " ").split("/")
    text = " ".join(words)
    return f"{text} ({selection})" if selection else text


def param_label(name: str, scale: str | None = None) -> str:
    """An axis label for a hyperparameter: ``"adam/lr"``, ``"log"`` -> ``"learning rate [adam/lr]
    (log scale)"``."""
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


def plain_log(axis, numticks: int = 6) -> None:
    """A log axis labelled 0.1, 1, 10 (not 10^k), minor ticks unlabelled."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=numticks))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def positive_points(y) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of a per-step series where it is finite and > 0 (for a log axis)."""
    y = np.asarray(y, dtype=np.float64)
    s = np.arange(y.size)
    ok = np.isfinite(y) & (y > 0)
    return s[ok], y[ok]


def add_caveat(fig, text: str) -> None:
    """Write ``text`` (what a laptop run can and cannot show) under the figure.

    The line sits below the axes, outside the constrained layout; the PNG is
    saved with a tight bounding box, which takes it in.
    """
    fig.text(0.5, -0.01, text, ha="center", va="top", fontsize=8, color="0.25", wrap=True,
             style="italic")


def png_bytes(fig, dpi: int = DPI) -> bytes:
    """``fig`` as PNG bytes, cropped to what is drawn (a caveat under the axes included)."""
    buffer = _stdio.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_png(fig, path: str | os.PathLike, *, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG, atomically (an interrupted run leaves no half file)."""
    return io.write_bytes(path, png_bytes(fig, dpi))
