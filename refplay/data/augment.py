"""Data augmentation for 1-D signals: random circular shifts and added noise.

Off by default (``Augmentation()`` returns the batch untouched). The playbook
lists augmentation among the changes that add gradient noise: when it is
introduced, "the starting value for ``max_train_steps`` we find may need to
be increased" ("Deciding how long to train when training is not
compute-bound"). Every draw comes from an explicit
``numpy.random.Generator`` -- give the augmentation its own spawned child
of the trial seed, so turning it on does not change the data order or the
initialization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refplay import _validate
from refplay.data.dataset import Batch

__all__ = ["random_circular_shift", "add_gaussian_noise", "Augmentation"]


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def random_circular_shift(x: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    r"""Roll each example along its last (sequence) axis by its own ``k``.

    ``k`` is uniform in ``{-max_shift, ..., max_shift}`` and
    :math:`x'_{i,j} = x_{i,(j-k_i) \bmod L}` (``np.roll`` per example). ``x``
    is ``(N, L)`` or ``(N, C, L)``; the result is a new array of the same dtype.
    """
    rng = _check_rng(rng)
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must be (N, L) or (N, C, L), got shape {x.shape}")
    max_shift = _validate.integer("max_shift", max_shift, low=0)
    length = x.shape[-1]
    k = rng.integers(-max_shift, max_shift, size=len(x), endpoint=True)
    index = (np.arange(length) - k[:, None]) % length            # (N, L)
    index = index.reshape((len(x),) + (1,) * (x.ndim - 2) + (length,))
    return np.take_along_axis(x, np.broadcast_to(index, x.shape), axis=-1)


def add_gaussian_noise(x: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """``x + scale * z`` with ``z`` standard normal, i.i.d. per entry; keeps ``x``'s dtype."""
    rng = _check_rng(rng)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    scale = _validate.real("scale", scale, low=0)
    return (x + scale * rng.standard_normal(x.shape)).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class Augmentation:
    """Random circular shift by up to ``max_shift`` positions, then noise of std ``noise_scale``.

    Both are 0 by default: augmentation is off unless asked for. Call it on a
    training batch with a Generator: ``batch = aug(batch, rng)``. Labels and
    weights pass through unchanged.
    """

    max_shift: int = 0
    noise_scale: float = 0.0

    def __post_init__(self) -> None:
        _validate.integer("max_shift", self.max_shift, low=0)
        _validate.real("noise_scale", self.noise_scale, low=0)

    @property
    def enabled(self) -> bool:
        """Whether the augmentation changes a batch at all (a shift or noise is set)."""
        return self.max_shift > 0 or self.noise_scale > 0

    def __call__(self, batch: Batch, rng: np.random.Generator) -> Batch:
        rng = _check_rng(rng)
        x = batch.x
        if self.max_shift > 0:
            x = random_circular_shift(x, rng, self.max_shift)
        if self.noise_scale > 0:
            x = add_gaussian_noise(x, rng, self.noise_scale)
        return Batch(x, batch.y, batch.weights)
