"""Small synthetic datasets for fast tests and tutorials.

Each function returns ``Splits(train, validation, test)``. All three splits
are i.i.d. draws from one distribution; ``SeedSequence(seed)`` spawns one
child per split (and one for whatever the splits share: cluster centres,
the teacher network), so changing ``n_test`` never changes the training set.

* :func:`spirals` -- two interleaved 2-D spirals, a classic task that a linear
  model cannot solve and a small MLP can.
* :func:`blobs` -- Gaussian clusters, one per class; nearly linearly separable.
* :func:`teacher_student` -- regression: a fixed random MLP (the teacher)
  labels Gaussian inputs, and a student of the same shape can reach zero
  loss, so the optimum is known.
"""

from __future__ import annotations

import math

import numpy as np

from refplay import _validate
from refplay.data.dataset import Dataset
from refplay.data.splits import Splits

__all__ = ["spirals", "blobs", "teacher_student"]


def _split_sizes(n: int, n_validation: int, n_test: int) -> tuple[int, int, int]:
    return (_validate.integer("n", n, low=1),
            _validate.integer("n_validation", n_validation, low=1),
            _validate.integer("n_test", n_test, low=1))


def _balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """``n`` labels, each class ``n // num_classes`` or one more times, in random order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def spirals(n: int = 1000, *, noise: float = 0.05, turns: float = 1.5, seed: int = 0,
            n_validation: int = 500, n_test: int = 500, dtype=np.float32) -> Splits:
    r"""Two interleaved spirals in 2-D; label = which spiral.

    For an example of class :math:`c \in \{0, 1\}` with :math:`t \sim U(0, 1)`:

    .. math::  \theta = 2\pi\,\text{turns}\,t + \pi c, \qquad
               x = t\,(\cos\theta, \sin\theta) + \text{noise}\cdot z, \quad z \sim N(0, I_2)

    ``n`` training examples (classes balanced), ``n_validation`` and ``n_test`` more.
    """
    sizes = _split_sizes(n, n_validation, n_test)
    noise = _validate.real("noise", noise, low=0)
    turns = _validate.real("turns", turns, low=0, low_open=True)
    seed = _validate.integer("seed", seed, low=0)
    dtype = _validate.float_dtype("dtype", dtype)

    def draw(rng: np.random.Generator, size: int, name: str) -> Dataset:
        y = _balanced_labels(rng, size, 2)
        t = rng.uniform(0.0, 1.0, size)
        theta = 2 * math.pi * turns * t + math.pi * y
        x = t[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
        x = x + noise * rng.standard_normal((size, 2))
        return Dataset(x.astype(dtype), y, num_classes=2, name=f"spirals/{name}")

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    return Splits(*(draw(r, k, name) for r, k, name in zip(rngs, sizes, Splits._fields)))


def blobs(n: int = 1000, *, num_classes: int = 3, dim: int = 2, cluster_std: float = 1.0,
          center_scale: float = 3.0, seed: int = 0, n_validation: int = 500, n_test: int = 500,
          dtype=np.float32) -> Splits:
    r"""Gaussian clusters: :math:`x = \mu_y + \text{cluster\_std}\cdot z`, :math:`z \sim N(0, I)`.

    The class centres :math:`\mu_c \sim N(0, \text{center\_scale}^2 I)` are drawn once
    from ``seed`` and shared by the three splits; classes are balanced.
    """
    sizes = _split_sizes(n, n_validation, n_test)
    num_classes = _validate.integer("num_classes", num_classes, low=2)
    dim = _validate.integer("dim", dim, low=1)
    cluster_std = _validate.real("cluster_std", cluster_std, low=0)
    center_scale = _validate.real("center_scale", center_scale, low=0)
    seed = _validate.integer("seed", seed, low=0)
    dtype = _validate.float_dtype("dtype", dtype)

    centers_seq, *split_seqs = np.random.SeedSequence(seed).spawn(4)
    centers = center_scale * np.random.default_rng(centers_seq).standard_normal((num_classes, dim))

    def draw(rng: np.random.Generator, size: int, name: str) -> Dataset:
        y = _balanced_labels(rng, size, num_classes)
        x = centers[y] + cluster_std * rng.standard_normal((size, dim))
        return Dataset(x.astype(dtype), y, num_classes=num_classes, name=f"blobs/{name}")

    return Splits(*(draw(np.random.default_rng(s), k, name)
                    for s, k, name in zip(split_seqs, sizes, Splits._fields)))


def teacher_student(n: int = 1000, *, in_dim: int = 10, hidden: int = 32, out_dim: int = 1,
                    noise: float = 0.0, seed: int = 0, n_validation: int = 500,
                    n_test: int = 500, dtype=np.float32) -> Splits:
    r"""Regression targets from a random one-hidden-layer tanh MLP (the teacher).

    .. math::  x \sim N(0, I_{\text{in\_dim}}), \qquad
               y = W_2 \tanh(W_1 x + b_1) + b_2 + \text{noise}\cdot z

    with :math:`W_1 \sim N(0, 1/\text{in\_dim})`, :math:`W_2 \sim N(0, 1/\text{hidden})`
    (so :math:`y` is of order 1), :math:`b_1, b_2 \sim N(0, 0.1^2)`, drawn once
    from ``seed``. ``y`` has shape ``(n, out_dim)`` and ``num_classes`` is None.
    With ``noise = 0`` a student of the teacher's shape can reach zero loss.
    """
    sizes = _split_sizes(n, n_validation, n_test)
    in_dim = _validate.integer("in_dim", in_dim, low=1)
    hidden = _validate.integer("hidden", hidden, low=1)
    out_dim = _validate.integer("out_dim", out_dim, low=1)
    noise = _validate.real("noise", noise, low=0)
    seed = _validate.integer("seed", seed, low=0)
    dtype = _validate.float_dtype("dtype", dtype)

    teacher_seq, *split_seqs = np.random.SeedSequence(seed).spawn(4)
    t = np.random.default_rng(teacher_seq)
    w1 = t.standard_normal((in_dim, hidden)) / math.sqrt(in_dim)
    b1 = 0.1 * t.standard_normal(hidden)
    w2 = t.standard_normal((hidden, out_dim)) / math.sqrt(hidden)
    b2 = 0.1 * t.standard_normal(out_dim)

    def draw(rng: np.random.Generator, size: int, name: str) -> Dataset:
        x = rng.standard_normal((size, in_dim))
        y = np.tanh(x @ w1 + b1) @ w2 + b2 + noise * rng.standard_normal((size, out_dim))
        return Dataset(x.astype(dtype), y.astype(dtype), name=f"teacher_student/{name}")

    return Splits(*(draw(np.random.default_rng(s), k, name)
                    for s, k, name in zip(split_seqs, sizes, Splits._fields)))
