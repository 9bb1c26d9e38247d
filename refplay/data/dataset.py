"""The two containers every part of refplay passes data in.

``Dataset`` holds a whole split; ``Batch`` is what a model's
``loss_and_grads`` receives. ``Batch.weights`` is 1 for real examples and 0
for padding, so a padded final evaluation batch does not bias the metrics
(playbook: "Additional guidance for the training pipeline", partial batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from refplay import _validate


class Batch(NamedTuple):
    """``x`` of shape ``(B, ...)``, ``y`` of shape ``(B,)`` (labels) or ``(B, ...)``
    (regression targets), and per-example ``weights`` of shape ``(B,)``."""

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class Dataset:
    """Arrays ``x`` and ``y`` with one row per example, plus optional weights.

    Validated at construction (ValueError naming the problem): same number
    of examples in ``x``, ``y`` and ``weights``; finite real features;
    finite, non-negative weights; for classification (``num_classes`` given)
    1-D integer labels in ``[0, num_classes)``, for regression finite real
    targets. The arrays are kept, not copied.
    """

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None = None
    num_classes: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x), np.asarray(self.y)
        where = f"dataset {self.name!r}"
        if x.ndim < 1 or y.ndim < 1:
            raise ValueError(f"{where}: x and y need a leading example axis, "
                             f"got x.shape={x.shape}, y.shape={y.shape}")
        if len(x) != len(y):
            raise ValueError(f"{where}: x has {len(x)} examples but y has {len(y)}; "
                             f"they must have the same length")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{where}: x must hold real numbers (an integer or float dtype), "
                             f"got dtype {x.dtype}")
        _check_finite(where, "x", x)
        if self.weights is not None:
            w = np.asarray(self.weights)
            if w.shape != (len(x),):
                raise ValueError(f"{where}: weights must have shape ({len(x)},), one per example, "
                                 f"got shape {w.shape}")
            if not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
                raise ValueError(f"{where}: weights must be real numbers, got dtype {w.dtype}")
            _check_finite(where, "weights", w)
            if np.any(w < 0):
                i = int(np.flatnonzero(w < 0)[0])
                raise ValueError(f"{where}: weights must be >= 0, got weights[{i}]={w[i]}")
        if self.num_classes is None:          # regression targets: real and finite
            if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
                raise ValueError(f"{where}: y must hold real numbers, got dtype {y.dtype}")
            _check_finite(where, "y", y)
        else:                                 # classification labels
            _validate.integer("num_classes", self.num_classes, low=1)
            if y.ndim != 1:
                raise ValueError(f"{where}: labels y must be 1-D (one class index per example), "
                                 f"got shape {y.shape}")
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"{where}: labels must lie in [0, {self.num_classes}), "
                                 f"got range [{y.min()}, {y.max()}]")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return len(self.x)

    def example_weights(self) -> np.ndarray:
        """The weights, or ones when none were given (float64)."""
        if self.weights is None:
            return np.ones(len(self), dtype=np.float64)
        return np.asarray(self.weights, dtype=np.float64)

    def subset(self, index: np.ndarray, name: str | None = None) -> "Dataset":
        """The examples at ``index`` (an integer array), as a new Dataset."""
        index = np.asarray(index)
        w = None if self.weights is None else np.asarray(self.weights)[index]
        return Dataset(x=self.x[index], y=self.y[index], weights=w, num_classes=self.num_classes,
                       name=self.name if name is None else name)

    def as_batch(self) -> Batch:
        """The whole dataset as one batch."""
        return Batch(self.x, self.y, self.example_weights())


def _check_finite(where: str, field: str, a: np.ndarray) -> None:
    """ValueError naming how many entries of ``a`` are NaN or infinite, and the first one."""
    bad = ~np.isfinite(a)
    if np.any(bad):
        first = np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)
        raise ValueError(f"{where}: {field} must be finite; {int(bad.sum())} entries are NaN or "
                         f"infinite, the first {field}[{', '.join(map(str, first))}]={a[first]}")
