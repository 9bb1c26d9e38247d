r"""Weight initializers, every draw from an explicit ``numpy.random.Generator``.

Each initializer has the signature of :data:`refplay.nn.layers.WeightInit`::

    w = he_normal(rng, shape, fan_in, fan_out, dtype=np.float32)

``fan_in`` is the number of inputs feeding one output unit (``in_dim`` for a
Dense layer, ``C_in * KW`` for Conv1D, ``C_in * KH * KW`` for Conv2D) and
``fan_out`` the number of outputs one input feeds (``out_dim``,
``C_out * KW``, ...). :func:`fans` computes both from a weight shape in
refplay's layouts. Pass an initializer to a layer as ``w_init=init.he_normal``.

All of them are *variance scaling* rules (Glorot & Bengio 2010; LeCun et al.
1998; He et al. 2015): draw :math:`w` with mean 0 and variance

.. math::  \operatorname{Var}[w] = \frac{s}{n}, \qquad
           n = \text{fan\_in} \;(\text{LeCun, He}) \text{ or }
           \tfrac12(\text{fan\_in} + \text{fan\_out}) \;(\text{Glorot}),\quad
           s = 1 \;(\text{LeCun, Glorot}) \text{ or } 2 \;(\text{He}),

from a normal :math:`N(0, s/n)` (untruncated, as ``torch.nn.init.kaiming_normal_``;
JAX and Keras truncate at two standard deviations instead) or a uniform
:math:`U(-\sqrt{3s/n}, \sqrt{3s/n})`, which has the same variance.

The values are drawn in float64 and then cast, so a float32 and a float64
model initialised from the same seed hold the same numbers up to rounding.
"""

from __future__ import annotations

import math

import numpy as np

from refplay import _validate

__all__ = [
    "fans", "variance_scaling", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
    "glorot_normal", "glorot_uniform", "zeros", "ones", "INITIALIZERS", "get",
]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` in refplay's layouts.

    * 2 axes: a Dense weight ``(in_dim, out_dim)`` -> ``(in_dim, out_dim)``.
    * 3+ axes: a convolution weight ``(C_out, C_in, *kernel)`` ->
      ``(C_in * prod(kernel), C_out * prod(kernel))``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) >= 3:
        receptive = int(np.prod(shape[2:]))
        return shape[1] * receptive, shape[0] * receptive
    raise ValueError(f"shape must have at least 2 axes to define fan_in/fan_out, got {shape}")


def _dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def variance_scaling(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
                     dtype=np.float32, *, scale: float = 1.0, mode: str = "fan_in",
                     distribution: str = "normal") -> np.ndarray:
    r"""Draw ``shape`` values with mean 0 and variance ``scale / n``.

    ``mode`` picks :math:`n`: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``
    (:math:`\tfrac12(\text{fan\_in}+\text{fan\_out})`). ``distribution`` is
    ``"normal"`` (:math:`N(0, s/n)`) or ``"uniform"``
    (:math:`U(-\sqrt{3s/n}, \sqrt{3s/n})`).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    _validate.one_of("mode", mode, ("fan_in", "fan_out", "fan_avg"))
    _validate.one_of("distribution", distribution, ("normal", "uniform"))
    fan_in = _validate.integer("fan_in", fan_in, low=1)
    fan_out = _validate.integer("fan_out", fan_out, low=1)
    scale = _validate.real("scale", scale, low=0.0)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": 0.5 * (fan_in + fan_out)}[mode]
    variance = scale / n
    if distribution == "normal":
        w = rng.normal(0.0, math.sqrt(variance), size=shape)
    else:
        limit = math.sqrt(3.0 * variance)
        w = rng.uniform(-limit, limit, size=shape)
    return w.astype(_dtype(dtype))


def he_normal(rng, shape, fan_in, fan_out, dtype=np.float32) -> np.ndarray:
    r"""He et al. (2015), for ReLU networks: :math:`N(0, 2/\text{fan\_in})`."""
    return variance_scaling(rng, shape, fan_in, fan_out, dtype, scale=2.0, mode="fan_in")


def he_uniform(rng, shape, fan_in, fan_out, dtype=np.float32) -> np.ndarray:
    r""":math:`U(-\sqrt{6/\text{fan\_in}}, \sqrt{6/\text{fan\_in}})`."""
    return variance_scaling(rng, shape, fan_in, fan_out, dtype, scale=2.0, mode="fan_in",
                            distribution="uniform")


def lecun_normal(rng, shape, fan_in, fan_out, dtype=np.float32) -> np.ndarray:
    r"""LeCun et al. (1998): :math:`N(0, 1/\text{fan\_in})`."""
    return variance_scaling(rng, shape, fan_in, fan_out, dtype, scale=1.0, mode="fan_in")


def lecun_uniform(rng, shape, fan_in, fan_out, dtype=np.float32) -> np.ndarray:
    r""":math:`U(-\sqrt{3/\text{fan\_in}}, \sqrt{3/\text{fan\_in}})`."""
    return variance_scaling(rng, shape, fan_in, fan_out, dtype, scale=1.0, mode="fan_in",
                            distribution="uniform")


def glorot_normal(rng, shape, fan_in, fan_out, dtype=np.float32) -> np.ndarray:
    r"""Glorot & Bengio (2010): :math:`N(0, 2/(\text{fan\_in}+\text{fan\_out}))`."""
    return variance_scaling(rng, shape, fan_in, fan_out, dtype, scale=1.0, mode="fan_avg")


def glorot_uniform(rng, shape, fan_in, fan_out, dtype=np.float32) -> np.ndarray:
    r""":math:`U(-\sqrt{6/(\text{fan\_in}+\text{fan\_out})}, +\sqrt{\cdot})`."""
    return variance_scaling(rng, shape, fan_in, fan_out, dtype, scale=1.0, mode="fan_avg",
                            distribution="uniform")


def zeros(rng, shape, fan_in=1, fan_out=1, dtype=np.float32) -> np.ndarray:
    """All zeros (biases; the last layer of a network when starting from zero logits).

    Takes ``rng`` like the others so that any initializer can be swapped in;
    it draws nothing from it.
    """
    return np.zeros(shape, dtype=_dtype(dtype))


def ones(rng, shape, fan_in=1, fan_out=1, dtype=np.float32) -> np.ndarray:
    """All ones (normalization scales). Draws nothing from ``rng``."""
    return np.ones(shape, dtype=_dtype(dtype))


def _torch_default(rng, shape, fan_in, fan_out, dtype=np.float32) -> np.ndarray:
    # Imported lazily: layers.py owns torch's default rule (it is the layers' default).
    from refplay.nn.layers import torch_default_init
    return torch_default_init(rng, shape, fan_in, fan_out, dtype)


#: Initializers by name, for configs (``{"init": "he_normal"}``).
INITIALIZERS = {
    "he_normal": he_normal, "he_uniform": he_uniform,
    "lecun_normal": lecun_normal, "lecun_uniform": lecun_uniform,
    "glorot_normal": glorot_normal, "glorot_uniform": glorot_uniform,
    "zeros": zeros, "torch_default": _torch_default,
}


def get(name: str):
    """The initializer called ``name`` (one of :data:`INITIALIZERS`); unknown names are errors."""
    _validate.one_of("init", name, tuple(INITIALIZERS))
    return INITIALIZERS[name]
