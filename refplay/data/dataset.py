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


class Batch(NamedTuple):
    """``x`` of shape ``(B, ...)``, ``y`` of shape ``(B,)`` (labels) or ``(B, ...)``
    (regression targets), and per-example ``weights`` of shape ``(B,)``."""

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class Dataset:
    """Arrays ``x`` and ``y`` with one row per example, plus optional weights.

    Validated at construction: same length, finite features, and for
    classification (``num_classes`` given) integer labels in
    ``[0, num_classes)``.
    """

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None = None
    num_classes: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.ndim < 1 or y.ndim < 1:
            raise ValueError(f"dataset {self.name!r}: x and y need a leading example axis, "
                             f"got x.shape={x.shape}, y.shape={y.shape}")
        if len(x) != len(y):
            raise ValueError(f"dataset {self.name!r}: x has {len(x)} examples but y has {len(y)}")
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise ValueError(f"dataset {self.name!r}: x must be finite numbers")
        if self.weights is not None:
            w = np.asarray(self.weights)
            if w.shape != (len(x),) or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(f"dataset {self.name!r}: weights must be finite, non-negative, "
                                 f"shape ({len(x)},), got shape {w.shape}")
        if self.num_classes is not None:
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"dataset {self.name!r}: labels must be integers, got dtype {y.dtype}")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"dataset {self.name!r}: labels must lie in [0, {self.num_classes}), "
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
        return Dataset(self.x[index], self.y[index], w, self.num_classes,
                       self.name if name is None else name)

    def as_batch(self) -> Batch:
        """The whole dataset as one batch."""
        return Batch(self.x, self.y, self.example_weights())
