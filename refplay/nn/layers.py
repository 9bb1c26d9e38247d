r"""Layers with hand-written forward and backward passes (CS231n style).

Every layer exists twice, and the two agree by construction:

* a pair of **functions** ``<layer>_forward(x, ...) -> (out, cache)`` and
  ``<layer>_backward(dout, cache) -> (dx, ...)`` -- the equations, nothing else;
* a small **layer object** that owns the parameter names and composes into models.

The layer interface (what :mod:`refplay.nn.models` builds on)
-------------------------------------------------------------
A layer is an object with a ``name`` and four methods::

    params = layer.init(rng, dtype=np.float32)            # {"dense_1/w": ..., "dense_1/b": ...}
    out, cache = layer.forward(params, x, train=False, rng=None)
    dx, grads = layer.backward(params, dout, cache, need_dx=True)   # grads: the keys of init()
    out_shape = layer.output_shape(in_shape)               # per-example shapes (no batch axis)

* ``params`` may be the whole model's tree: a layer reads only its own keys
  ``f"{layer.name}/<param>"`` (``w`` and ``b``). Layers without parameters
  return ``{}`` from ``init`` and ``backward``.
* ``train`` switches dropout on; ``rng`` (a ``numpy.random.Generator``) is the
  only source of randomness and is required only by a training-mode Dropout.
* ``cache`` is opaque: hand it back to ``backward`` unchanged, once.
* ``need_dx=False`` lets the first layer of a model skip the input gradient
  (``dx`` is then ``None``): for a first Dense or convolution that is a third
  of its backward pass.
* **The dtype of the parameters decides**: a float64 input to a float32 layer
  is cast to float32, so a model trains in the dtype it was initialised in.
  Parameter-free layers keep the input's dtype.
* Layers are stateless. A layer with non-trainable state (BatchNorm's moving
  averages, in :mod:`refplay.nn.norms`) adds a ``state`` argument of its own.

Layouts (the same as ``torch.nn``)
----------------------------------
* Dense: ``x`` is ``(N, in_dim)``, ``w`` is ``(in_dim, out_dim)``, ``b`` is ``(out_dim,)``.
* Conv1D: ``x`` is ``(N, C, W)`` ("NCW"), ``w`` is ``(C_out, C, KW)``.
* Conv2D: ``x`` is ``(N, C, H, W)`` ("NCHW"), ``w`` is ``(C_out, C, KH, KW)``.

``Dense`` and the convolutions take an ``activation`` ("identity", "relu",
"tanh", "gelu") applied in the same call, in place on the fresh GEMM output;
bias and ReLU are one Numba pass (for a convolution, the pass that moves the
GEMM output to NCHW), and so are the ReLU gradient and the bias gradient of a
Dense layer; a Dense GELU is two Numba passes around numpy's ``tanh`` forward
(the bias in the first) and one backward (with the bias gradient). This
saves full reads and writes of the largest arrays of a small network, and
numpy's per-call overhead, which dominates at MNIST-1D sizes.

Speed
-----
Dense layers are BLAS GEMMs (numpy ``@``). A convolution is a GEMM
on im2col columns built by a Numba kernel (:mod:`refplay.nn.kernels`), run
in cache-sized chunks of the batch (a convolution with few inputs per output,
``C*KH*KW <= 16``, skips the GEMM: :func:`_small_k`); pooling is a Numba
kernel, or part of the convolution's own pass (``Conv2D(max_pool=True)``). Each of these
layers takes ``impl="numpy"`` to run the same algorithm on the plain-numpy
twins of :mod:`refplay.nn.reference` (tests check the two agree), and
``reference.conv2d_direct`` is the convolution written straight from its
definition. Kernels are single-threaded; pin BLAS with
:func:`refplay.threads.pin_threads`, and call
:func:`refplay.threads.keep_freed_memory` once per process so that arrays
re-allocated every step do not page-fault every step.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.nn import kernels, reference


__all__ = [
    "Layer", "Dense", "Conv1D", "Conv2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D",
    "GlobalAvgPool", "Activation", "ReLU", "Tanh", "GELU", "Identity", "Flatten", "Dropout",
    "ACTIVATIONS", "POOLS", "WeightInit", "torch_default_init", "conv_output_size", "same_padding",
    "dense_forward", "dense_backward", "conv2d_forward", "conv2d_backward",
    "pool2d_forward", "pool2d_backward", "global_avg_pool_forward", "global_avg_pool_backward",
    "activation_forward", "activation_backward", "gelu_forward", "gelu_backward",
    "dropout_forward", "dropout_backward",
]

# ----------------------------------------------------------------------------
# Initialization
# ----------------------------------------------------------------------------

#: A weight initializer: ``w_init(rng, shape, fan_in, fan_out, dtype) -> array``.
#: ``fan_in`` is the number of inputs feeding one output unit (``in_dim`` for
#: Dense, ``C * KH * KW`` for Conv2D), ``fan_out`` the number of outputs one
#: input feeds.
WeightInit = Callable[[np.random.Generator, tuple, int, int, type], np.ndarray]


def torch_default_init(rng: np.random.Generator, shape: tuple, fan_in: int, fan_out: int,
                       dtype=np.float32) -> np.ndarray:
    r"""torch's default for Linear/Conv: :math:`w \sim U(-b, b)`, :math:`b = 1/\sqrt{n_{in}}`.

    (``kaiming_uniform_(a=sqrt(5))`` in torch's code works out to this bound.)
    It is the default here so that the MNIST-1D reference models start as in
    the MNIST-1D paper, which used torch's defaults. Biases use the same bound.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


# ----------------------------------------------------------------------------
# Input checks (cheap: shapes only, never a pass over the data)
# ----------------------------------------------------------------------------

def _check_input(name: str, x, ndim: int, layout: str, channels: int | None = None,
                 channel_name: str = "in_dim", dtype=None) -> np.ndarray:
    """Return ``x`` as an array of ``dtype`` after checking its rank and channel axis."""
    x = np.asarray(x, dtype=dtype)
    if x.ndim != ndim:
        raise ValueError(f"{name}: x must have shape {layout} ({ndim} axes), got shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: x has {x.shape[1]} on axis 1 of {layout} but the layer's "
                         f"{channel_name} is {channels}; input shape {x.shape}")
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    return x


def _positive_int(name: str, value) -> int:
    """An integer >= 1 (ValueError, not TypeError, for 1.5: it is a bad *value*)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------

ACTIVATIONS = ("identity", "relu", "tanh", "gelu")

def activation_forward(z: np.ndarray, activation: str) -> tuple[np.ndarray, tuple]:
    r"""Apply an activation elementwise; returns ``(a, cache)``.

    * identity: :math:`a = z`
    * relu: :math:`a = \max(z, 0)`
    * tanh: :math:`a = \tanh z`
    * gelu (tanh approximation, Hendrycks & Gimpel 2016; ``approximate="tanh"`` in torch):
      :math:`a = \tfrac12 z\,(1 + \tanh u)`, :math:`u = \sqrt{2/\pi}\,(z + 0.044715 z^3)`

    ``z`` is overwritten for relu and tanh when the caller owns it (the fused
    Dense/Conv paths); use :func:`activation_forward` on a copy otherwise.
    """
    if activation == "identity":
        return z, ("identity", None)
    if activation == "relu":
        np.maximum(z, 0, out=z)
        return z, ("relu", z)             # dz = da * (a > 0): a is enough
    if activation == "tanh":
        np.tanh(z, out=z)
        return z, ("tanh", z)             # dz = da * (1 - a^2)
    if activation == "gelu":
        a, t = gelu_forward(z)
        return a, ("gelu", (z, t))
    raise ValueError(f"activation={activation!r} is not allowed; choose one of {list(ACTIVATIONS)}")


def activation_backward(da: np.ndarray, cache: tuple) -> np.ndarray:
    r"""Backward of :func:`activation_forward`: :math:`\partial L/\partial z`.

    * relu: :math:`dz = da \cdot [a > 0]`
    * tanh: :math:`dz = da \cdot (1 - a^2)`
    * gelu: :math:`dz = da \cdot \big(\tfrac12(1+t) + \tfrac12 z (1-t^2)\, u'(z)\big)`,
      :math:`t = \tanh u`, :math:`u'(z) = \sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\, z^2)`
    """
    kind, saved = cache
    if kind == "identity":
        return da
    if kind == "relu":
        return da * (saved > 0)
    if kind == "tanh":
        return da * (1.0 - saved * saved)
    z, t = saved
    return gelu_backward(da, z, t)[0]


def gelu_forward(z: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""GELU, tanh form (Hendrycks & Gimpel 2016): :math:`a = \tfrac12 z (1 + t)`,
    :math:`t = \tanh u`, :math:`u = \sqrt{2/\pi}\,(z + 0.044715 z^3)`. Returns ``(a, t)``.

    With a bias ``b`` (K,), ``z`` (N, K) first becomes :math:`z + b` in place
    (the fused Dense path). Two Numba passes around numpy's SIMD ``tanh``
    (:func:`refplay.nn.kernels.gelu_bias_arg`, ``gelu_output``); :math:`z^3`
    is ``z * z * z`` (numpy's float32 ``z ** 3`` is a scalar ``pow`` call,
    measured 200x slower).
    """
    z2 = z.reshape(-1, z.shape[-1]) if z.ndim != 2 else z
    bias = b if b is not None else np.zeros(z2.shape[1], z.dtype)
    t = kernels.gelu_bias_arg(z2, bias)
    np.tanh(t, out=t)
    return kernels.gelu_output(z2, t).reshape(z.shape), t.reshape(z.shape)


def gelu_backward(da: np.ndarray, z: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`dz = da \big(\tfrac12 (1 + t) + \tfrac12 z (1 - t^2)\, u'\big)`,
    :math:`u' = \sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\, z^2)`, with ``t`` from :func:`gelu_forward`.

    Returns ``dz`` and :math:`\sum_n dz_n` over all but the last axis (the
    bias gradient of a fused Dense, float64): one Numba pass
    (:func:`refplay.nn.kernels.gelu_grad`).
    """
    k = z.shape[-1]
    dz, db = kernels.gelu_grad(np.ascontiguousarray(da).reshape(-1, k), z.reshape(-1, k),
                               t.reshape(-1, k))
    return dz.reshape(z.shape), db


def _check_activation(activation: str) -> str:
    return _validate.one_of("activation", activation, ACTIVATIONS)


# ----------------------------------------------------------------------------
# Dense
# ----------------------------------------------------------------------------

def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                  activation: str = "identity") -> tuple[np.ndarray, tuple]:
    r"""Affine map then activation: :math:`z = x W + b`, :math:`a = \phi(z)`.

    Shapes: ``x`` (N, in_dim), ``w`` (in_dim, out_dim), ``b`` (out_dim,) or None -> (N, out_dim).
    For identity and ReLU the bias and the activation are one Numba pass over
    ``z`` (:func:`refplay.nn.kernels.dense_bias_act`); for GELU the bias joins
    :func:`gelu_forward`'s first pass.
    """
    z = x @ w                  # BLAS GEMM; z is a fresh array we may overwrite
    if activation in ("identity", "relu"):
        relu = activation == "relu"
        if b is not None or relu:
            kernels.dense_bias_act(z, b if b is not None else np.zeros(z.shape[1], z.dtype), relu)
        act_cache = ("relu", z) if relu else ("identity", None)
        return z, (x, w, b is not None, act_cache)
    if activation == "gelu":                       # bias fused into the GELU passes
        a, t = gelu_forward(z, b)
        return a, (x, w, b is not None, ("gelu", (z, t)))
    if b is not None:
        z += b
    a, act_cache = activation_forward(z, activation)
    return a, (x, w, b is not None, act_cache)


def dense_backward(dout: np.ndarray, cache: tuple, need_dx: bool = True,
                   ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    r"""Backward of :func:`dense_forward`.

    :math:`dz = \phi'(z) \odot da`, :math:`dx = dz W^\top`, :math:`dW = x^\top dz`,
    :math:`db = \sum_n dz_n`. Shapes: ``dout`` (N, out_dim) -> dx (N, in_dim)
    (None unless ``need_dx``), dw (in_dim, out_dim), db (out_dim,) or None.
    For identity, ReLU and GELU, :math:`dz` and :math:`db` come from one Numba
    pass (:func:`refplay.nn.kernels.dense_relu_grad`, :func:`gelu_backward`).
    """
    x, w, has_bias, act_cache = cache
    kind, saved = act_cache
    if kind in ("identity", "relu"):
        relu = kind == "relu"
        dz, db = kernels.dense_relu_grad(dout, saved if relu else dout, relu)
        db = db.astype(w.dtype) if has_bias else None
    elif kind == "gelu":
        dz, db = gelu_backward(dout, *saved)
        db = db.astype(w.dtype) if has_bias else None
    else:
        dz = activation_backward(dout, act_cache)
        db = dz.sum(axis=0) if has_bias else None
    dw = x.T @ dz
    dx = dz @ w.T if need_dx else None
    return dx, dw, db


# ----------------------------------------------------------------------------
# Convolution (NCHW; a 1-D convolution is the 2-D one with H = 1)
# ----------------------------------------------------------------------------

_IMPLS = {"numba": kernels, "numpy": reference}


def _impl(impl: str):
    return _IMPLS[_validate.one_of("impl", impl, tuple(_IMPLS))]


def conv_output_size(in_len: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    r""":math:`\lfloor (L + p_0 + p_1 - K) / s \rfloor + 1` (torch's and TF's formula)."""
    return (in_len + pad_before + pad_after - kernel) // stride + 1


def same_padding(in_len: int, kernel: int, stride: int) -> tuple[int, int]:
    r"""Padding for ``"same"``: output :math:`\lceil L/s \rceil`; the odd pixel goes after.

    Total :math:`\max((\lceil L/s\rceil - 1)s + K - L, 0)`, split
    ``(total // 2, total - total // 2)`` as in TensorFlow and ``torch``'s
    ``padding="same"`` (which torch allows for stride 1 only).
    """
    out = -(-in_len // stride)
    total = max((out - 1) * stride + kernel - in_len, 0)
    return total // 2, total - total // 2


#: Work on the batch in chunks whose im2col columns and GEMM output fit in
#: about this many bytes, so that each chunk's columns are still in the L2
#: cache when the GEMM reads them (measured: 2.6x faster for the first layer of
#: benchmarks/compare_torch.py's 2-D CNN at batch 128, 1.3x for the second). The chunk size depends
#: only on the shapes, so results stay deterministic.
_CHUNK_BYTES = 1 << 20


def _small_k(k_: int, plane: int) -> bool:
    """Whether a convolution with ``k_ = C*KH*KW`` inputs per output and ``plane = OH*OW``
    outputs per channel skips its GEMMs (:func:`refplay.nn.kernels.conv_small_k_forward`)."""
    return k_ <= kernels.SMALL_K_MAX and plane >= kernels.SMALL_K_MIN_PLANE


def _batch_chunks(n: int, bytes_per_example: int) -> list[slice]:
    size = max(1, min(n, _CHUNK_BYTES // max(1, bytes_per_example)))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class _ConvCache(NamedTuple):
    """What :func:`conv2d_backward` needs from :func:`conv2d_forward`."""

    cols: list                  # im2col columns per batch chunk
    chunks: list                # the chunks (slices of the batch)
    x_shape: tuple
    w: np.ndarray
    has_bias: bool
    geometry: tuple             # (kh, kw, sh, sw, pt, pl, oh, ow)
    relu: bool                  # ReLU fused into the kernels
    a: np.ndarray | None        # the (pooled) ReLU output, when relu
    act_cache: tuple | None     # any other activation's cache
    impl: str
    arg: np.ndarray | None      # the max-pool winners (N, C_out, K), when max_pool


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
                   padding: tuple[tuple[int, int], tuple[int, int]], activation: str = "identity",
                   impl: str = "numba", max_pool: bool = False) -> tuple[np.ndarray, tuple]:
    r"""2-D convolution (cross-correlation, as in every framework), bias, activation.

    .. math:: z_{n,o,p,q} = b_o + \sum_{c,i,j} W_{o,c,i,j}\, \tilde x_{n,c,\,p s_h + i,\,q s_w + j},
              \qquad a = \phi(z)

    where :math:`\tilde x` is ``x`` zero-padded by ``padding = ((top, bottom), (left, right))``.
    Shapes: ``x`` (N, C, H, W), ``w`` (C_out, C, KH, KW), ``b`` (C_out,) or
    None -> (N, C_out, OH, OW), ``OH = (H + top + bottom - KH) // s_h + 1``.
    With ``max_pool`` (ReLU or identity only) the output is then max-pooled
    over 2x2 windows, stride 2, in the same pass: (N, C_out, OH // 2, OW // 2),
    exactly what ``pool2d_forward(a, "max", (2, 2), (2, 2), (0, 0))`` gives.

    Computed as a GEMM on im2col columns, :math:`Z = W_{(C_{out},\,C K_H K_W)}\,\text{cols}`
    (see :mod:`refplay.nn.kernels`), one GEMM per chunk of the batch, or
    without the GEMM when ``C*KH*KW`` is small (:func:`_small_k`);
    ``impl="numpy"`` runs the same algorithm on the plain-numpy twins.
    """
    k = _impl(impl)
    n_, c_, h_, w_ = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), ((pt, pb), (pl, pr)) = stride, padding
    oh = conv_output_size(h_, kh, sh, pt, pb)
    ow = conv_output_size(w_, kw, sw, pl, pr)
    geometry = (kh, kw, sh, sw, pt, pl, oh, ow)
    w2 = w.reshape(c_out, -1)                                      # (C_out, C*KH*KW)
    bias = b if b is not None else np.zeros(c_out, w.dtype)
    relu = activation == "relu"
    out_hw = (oh // 2, ow // 2) if max_pool else (oh, ow)
    z = np.empty((n_, c_out, out_hw[0] * out_hw[1]), w.dtype)
    arg = np.empty(z.shape, np.int32) if max_pool else None
    chunks = _batch_chunks(n_, (c_ * kh * kw + c_out) * oh * ow * w.itemsize)
    cols = []
    for sl in chunks:
        cols_k = k.im2col(x[sl], kh, kw, sh, sw, pt, pl, oh, ow)  # (C*KH*KW, n*OH*OW)
        _conv_chunk_forward(k, cols_k, w2, bias, relu, (oh, ow), z[sl],
                            None if arg is None else arg[sl])
        cols.append(cols_k)
    z = z.reshape(n_, c_out, *out_hw)
    if activation in ("identity", "relu"):                         # fused into the loop above
        a, act_cache = z, None
    else:
        a, act_cache = activation_forward(z, activation)
    return a, _ConvCache(cols=cols, chunks=chunks, x_shape=x.shape, w=w, has_bias=b is not None,
                         geometry=geometry, relu=relu, a=a if relu else None,
                         act_cache=act_cache, impl=impl, arg=arg)


def _conv_chunk_forward(k, cols, w2, bias, relu, plane, z, arg) -> None:
    """One chunk's output from its columns into ``z`` (n, C_out, P), and ``arg`` when pooling."""
    if _small_k(w2.shape[1], plane[0] * plane[1]):                 # no GEMM: see kernels.py
        if arg is None:
            k.conv_small_k_forward(cols, w2, bias, relu, z)
        else:
            k.conv_small_k_pool_forward(cols, w2, bias, relu, *plane, z, arg)
    elif arg is None:
        k.bias_act_to_nchw(w2 @ cols, bias, relu, z)               # GEMM; + b (and ReLU) into NCHW
    else:
        k.bias_act_pool_to_nchw(w2 @ cols, bias, relu, *plane, z, arg)


def conv2d_backward(dout: np.ndarray, cache: tuple, need_dx: bool = True,
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    r"""Backward of :func:`conv2d_forward`.

    With :math:`dZ = \phi'(z) \odot da` laid out as (C_out, N*OH*OW) and the columns ``cols``:
    :math:`dW = dZ\,\text{cols}^\top`, :math:`db_o = \sum dZ_{o,\cdot}`,
    :math:`dx = \text{col2im}(W^\top dZ)` (the adjoint of im2col), summed
    over the same batch chunks as the forward pass. After a fused max-pool,
    :math:`dZ` is the pooled gradient at each window's winner and 0 elsewhere.
    Shapes: ``dout`` (N, C_out, OH, OW), or pooled -> dx (N, C, H, W) or None,
    dw like ``w``, db (C_out,) or None.
    """
    c = cache
    k = _impl(c.impl)
    kh, kw, sh, sw, pt, pl, oh, ow = c.geometry
    c_out = c.w.shape[0]
    if c.act_cache is not None:
        dout = activation_backward(dout, c.act_cache)
    d3 = np.ascontiguousarray(dout, dtype=c.w.dtype).reshape(c.x_shape[0], c_out, -1)
    a3 = c.a.reshape(d3.shape) if c.relu else d3
    w2 = c.w.reshape(c_out, -1)
    dw = db = None
    dx = np.empty(c.x_shape, c.w.dtype) if need_dx else None
    for sl, cols_k in zip(c.chunks, c.cols):
        dz, dw_k, db_k = _conv_chunk_grads(k, c, cols_k, d3[sl], a3[sl],
                                           None if c.arg is None else c.arg[sl], need_dx)
        if dw is None:                                             # the first chunk
            dw, db = dw_k, (db_k if c.has_bias else None)
        else:
            dw += dw_k
            if c.has_bias:
                db += db_k
        if need_dx:
            k.col2im(w2.T @ dz, dx[sl], kh, kw, sh, sw, pt, pl, oh, ow)
    return dx, dw.reshape(c.w.shape), db


def _conv_chunk_grads(k, c: _ConvCache, cols, dout, a, arg, need_dx: bool):
    """One chunk's ``(dz (C_out, n*OH*OW) or None, dw (C_out, C*KH*KW), db (C_out,) or None)``."""
    oh, ow = c.geometry[6:]
    c_out = c.w.shape[0]
    if _small_k(cols.shape[0], oh * ow):                           # no GEMM: see kernels.py
        dz = np.empty((c_out, cols.shape[1]) if need_dx else (0, 0), c.w.dtype)
        if arg is None:
            dw, db = k.conv_small_k_backward(dout, a, cols, c.relu, dz)
        else:
            dw, db = k.conv_small_k_pool_backward(dout, a, arg, cols, c.relu, oh, ow, dz)
        return dz, dw, db
    if arg is None:
        dz = k.relu_grad_to_cn(dout, a, c.relu)                    # (C_out, n*OH*OW)
        db = dz.sum(axis=1) if c.has_bias else None
    else:
        dz, db = k.pool_relu_grad_to_cn(dout, a, arg, c.relu, oh * ow)
    # dW = dZ cols^T, computed as (cols dZ^T)^T: the same sums, 15-30% faster in
    # OpenBLAS when the long N*OH*OW axis is the reduction (measured on the 2-D CNN).
    return dz, (cols @ dz.T).T, db


# ----------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------

POOLS = ("max", "avg")


def pool2d_forward(x: np.ndarray, kind: str, kernel: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int], impl: str = "numba") -> tuple[np.ndarray, tuple]:
    r"""Max or average pooling over (KH, KW) windows of ``x`` padded by ``padding = (ph, pw)``.

    max: :math:`y_{n,c,p,q} = \max_{i,j} \tilde x_{n,c,\,p s_h+i,\,q s_w+j}`
    (padding is :math:`-\infty`); avg: :math:`y = \frac{1}{K_H K_W}\sum_{i,j} \tilde x_{\dots}`
    (zero padding counted, torch's ``count_include_pad=True``).
    Shapes: ``x`` (N, C, H, W) -> (N, C, OH, OW).
    """
    k = _impl(impl)
    _validate.one_of("kind", kind, POOLS)
    n_, c_, h_, w_ = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh = conv_output_size(h_, kh, sh, ph, ph)
    ow = conv_output_size(w_, kw, sw, pw, pw)
    xp = x
    if ph or pw:
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)),
                    constant_values=-np.inf if kind == "max" else 0.0)
    geometry = (h_, w_, kh, kw, sh, sw, ph, pw)
    if kind == "max":
        out, arg = k.maxpool2d_forward(xp, kh, kw, sh, sw, oh, ow)
        return out, ("max", arg, geometry, impl)
    return k.avgpool2d_forward(xp, kh, kw, sh, sw, oh, ow), ("avg", None, geometry, impl)


def pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    r"""Backward of :func:`pool2d_forward`.

    max: the gradient goes to the maximum of each window; avg: each input in a
    window receives :math:`dy / (K_H K_W)`. Overlapping windows add.
    """
    kind, arg, (h_, w_, kh, kw, sh, sw, ph, pw), impl = cache
    k = _impl(impl)
    dout = np.ascontiguousarray(dout)
    hp, wp = h_ + 2 * ph, w_ + 2 * pw
    if kind == "max":
        dxp = k.maxpool2d_backward(dout, arg, hp, wp)
    else:
        dxp = k.avgpool2d_backward(dout, hp, wp, kh, kw, sh, sw)
    return dxp[:, :, ph:ph + h_, pw:pw + w_] if (ph or pw) else dxp


def global_avg_pool_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    r""":math:`y_{n,c} = \frac{1}{|S|}\sum_{s \in S} x_{n,c,s}` over the spatial positions S.

    Shapes: (N, C, ...) -> (N, C).
    """
    return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2), x.shape


def global_avg_pool_backward(dout: np.ndarray, x_shape: tuple) -> np.ndarray:
    r""":math:`dx_{n,c,s} = dy_{n,c} / |S|`."""
    size = int(np.prod(x_shape[2:]))
    dx = np.empty(x_shape, dout.dtype)
    dx.reshape(x_shape[0], x_shape[1], -1)[...] = (dout / size)[:, :, None]
    return dx


# ----------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------

def dropout_forward(x: np.ndarray, rate: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r"""Inverted dropout (training): :math:`y = x \odot m / (1 - p)`, :math:`m_i \sim B(1 - p)`.

    Dividing by :math:`1-p` keeps :math:`E[y] = x`, so evaluation is the
    identity. The mask is drawn from ``rng`` (one uniform per element, in
    ``x``'s dtype); ``cache`` is the scaled mask :math:`m/(1-p)`.
    """
    u = rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
    mask = (u >= rate).astype(x.dtype)
    mask *= np.asarray(1.0 / (1.0 - rate), dtype=x.dtype)
    return x * mask, mask


def dropout_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    r""":math:`dx = dy \odot m / (1-p)`."""
    return dout * mask


# ----------------------------------------------------------------------------
# Layer objects
# ----------------------------------------------------------------------------

class Layer:
    """Base class of the layer interface described in the module docstring.

    Subclasses set ``name`` and override ``forward``/``backward`` (and ``init``
    and ``output_shape`` when they have parameters or change the shape).
    """

    name: str = ""

    def init(self, rng: np.random.Generator, dtype=np.float32) -> Tree:
        return {}

    def forward(self, params: Tree, x: np.ndarray, train: bool = False,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, object]:
        raise NotImplementedError

    def backward(self, params: Tree, dout: np.ndarray, cache,
                 need_dx: bool = True) -> tuple[np.ndarray | None, Tree]:
        raise NotImplementedError

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(in_shape)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if not callable(v))
        return f"{type(self).__name__}({fields})"


def _init_weight_and_bias(layer, rng, dtype, w_shape: tuple, fan_in: int, fan_out: int) -> Tree:
    dt = _check_dtype(dtype)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    w = layer.w_init(rng, w_shape, fan_in, fan_out, dt)
    params = {f"{layer.name}/w": np.asarray(w, dtype=dt)}
    if layer.use_bias:
        n_out = w_shape[0] if len(w_shape) > 2 else w_shape[1]
        b = (np.zeros(n_out, dt) if layer.b_init is None
             else layer.b_init(rng, (n_out,), fan_in, fan_out, dt))
        params[f"{layer.name}/b"] = np.asarray(b, dtype=dt)
    return params


def _grads(layer, dw, db) -> Tree:
    grads = {f"{layer.name}/w": dw}
    if db is not None:
        grads[f"{layer.name}/b"] = db
    return grads


class Dense(Layer):
    r"""Fully connected layer :math:`a = \phi(xW + b)`.

    ``x`` (N, in_dim) -> (N, out_dim). Parameters ``{name}/w`` (in_dim, out_dim)
    and ``{name}/b`` (out_dim,) (omitted when ``use_bias=False``).
    ``activation`` is fused into the same call (see the module docstring).
    """

    def __init__(self, in_dim: int, out_dim: int, *, name: str = "dense",
                 activation: str = "identity", use_bias: bool = True,
                 w_init: WeightInit = torch_default_init,
                 b_init: WeightInit | None = torch_default_init):
        self.in_dim = _positive_int("in_dim", in_dim)
        self.out_dim = _positive_int("out_dim", out_dim)
        self.name = name
        self.activation = _check_activation(activation)
        self.use_bias = bool(use_bias)
        self.w_init = w_init
        self.b_init = b_init

    def init(self, rng, dtype=np.float32):
        return _init_weight_and_bias(self, rng, dtype, (self.in_dim, self.out_dim),
                                     self.in_dim, self.out_dim)

    def forward(self, params, x, train=False, rng=None):
        w = params[f"{self.name}/w"]
        x = _check_input(f"Dense {self.name!r}", x, 2, "(N, in_dim)", self.in_dim, dtype=w.dtype)
        return dense_forward(x, w, params.get(f"{self.name}/b"), self.activation)

    def backward(self, params, dout, cache, need_dx=True):
        dx, dw, db = dense_backward(dout, cache, need_dx)
        return dx, _grads(self, dw, db)

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.in_dim,):
            raise ValueError(f"Dense {self.name!r}: input shape must be ({self.in_dim},), "
                             f"got {tuple(in_shape)}")
        return (self.out_dim,)


def _int_tuple(name: str, value, n: int) -> tuple[int, ...]:
    """A positive int, or a tuple of ``n`` positive ints (ValueError names ``name``)."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{name} must be a positive integer or a tuple of {n}, got {value!r}")
        return tuple(_positive_int(name, v) for v in value)
    return (_positive_int(name, value),) * n


def _check_padding(value, n: int, allow_same: bool) -> str | tuple[int, ...]:
    """``"valid"``, ``"same"`` (convolutions) or non-negative int(s) per spatial axis."""
    allowed = ('"same", "valid", ' if allow_same else '"valid", ')
    allowed += f"an int >= 0 or a tuple of {n}"
    if isinstance(value, str):
        if value == "valid" or (allow_same and value == "same"):
            return value
        raise ValueError(f"padding={value!r} is not allowed; use {allowed}")
    vals = value if isinstance(value, (tuple, list)) else (value,) * n
    if len(vals) != n or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0
                             for v in vals):
        raise ValueError(f"padding={value!r} is not allowed; use {allowed}")
    return tuple(int(v) for v in vals)


@functools.lru_cache(maxsize=1024)
def _conv_geometry(spatial: tuple[int, ...], kernel_size: tuple[int, ...], stride: tuple[int, ...],
                   padding: str | tuple[int, ...]) -> tuple[tuple[tuple[int, int], ...],
                                                         tuple[int, ...]]:
    """``((pad_before, pad_after) per spatial axis, output size per axis)`` of a convolution.

    A pure function of its arguments, cached: a training loop asks for the
    same few input shapes every step.
    """
    if padding == "valid":
        pads = tuple((0, 0) for _ in spatial)
    elif padding == "same":
        pads = tuple(same_padding(n, k, s) for n, k, s in zip(spatial, kernel_size, stride))
    else:
        pads = tuple((p, p) for p in padding)
    out = tuple(conv_output_size(n, k, s, p0, p1)
                for n, k, s, (p0, p1) in zip(spatial, kernel_size, stride, pads))
    return pads, out


class _Conv(Layer):
    """Shared code of :class:`Conv1D` and :class:`Conv2D` (a 1-D input is NCHW with H = 1)."""

    _ndim = 2
    _layout = "(N, C, H, W)"

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding="valid",
                 activation="identity", use_bias=True, name="conv",
                 w_init: WeightInit = torch_default_init,
                 b_init: WeightInit | None = torch_default_init, impl: str = "numba",
                 max_pool: bool = False):
        d = self._ndim
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.kernel_size = _int_tuple("kernel_size", kernel_size, d)
        self.stride = _int_tuple("stride", stride, d)
        self.padding = _check_padding(padding, d, allow_same=True)
        self.activation = _check_activation(activation)
        self.use_bias = bool(use_bias)
        self.name = name
        self.w_init = w_init
        self.b_init = b_init
        self.impl = _validate.one_of("impl", impl, tuple(_IMPLS))
        self.max_pool = bool(max_pool)
        if self.max_pool and (d != 2 or self.activation not in ("relu", "identity")):
            raise ValueError(f"max_pool=True needs a Conv2D with activation 'relu' or 'identity' "
                             f"(pooling then commutes with it); got {type(self).__name__} with "
                             f"activation={activation!r}")

    def _pads(self, spatial: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        return _conv_geometry(tuple(spatial), self.kernel_size, self.stride, self.padding)[0]

    def _out_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        out = _conv_geometry(tuple(spatial), self.kernel_size, self.stride, self.padding)[1]
        if self.max_pool:
            out = tuple(o // 2 for o in out)
        if min(out) < 1:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input spatial size {spatial} "
                             f"is too small for kernel_size={self.kernel_size} with "
                             f"padding={self.padding!r}")
        return out

    def init(self, rng, dtype=np.float32):
        k = int(np.prod(self.kernel_size))
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        return _init_weight_and_bias(self, rng, dtype, shape, self.in_channels * k,
                                     self.out_channels * k)

    def forward(self, params, x, train=False, rng=None):
        w = params[f"{self.name}/w"]
        x = _check_input(f"{type(self).__name__} {self.name!r}", x, 2 + self._ndim, self._layout,
                         self.in_channels, "in_channels", dtype=w.dtype)
        spatial = x.shape[2:]
        self._out_spatial(spatial)                          # size check with a clear message
        pads = self._pads(spatial)
        if self._ndim == 1:                                 # (N, C, W) -> (N, C, 1, W)
            x4, w4 = x[:, :, None, :], w[:, :, None, :]
            stride, pads4 = (1, self.stride[0]), ((0, 0), pads[0])
        else:
            x4, w4, stride, pads4 = x, w, self.stride, pads
        out, cache = conv2d_forward(np.ascontiguousarray(x4), w4, params.get(f"{self.name}/b"),
                                    stride, pads4, self.activation, self.impl, self.max_pool)
        return (out[:, :, 0, :] if self._ndim == 1 else out), cache

    def backward(self, params, dout, cache, need_dx=True):
        if self._ndim == 1:
            dout = dout[:, :, None, :]
        dx, dw, db = conv2d_backward(dout, cache, need_dx)
        if self._ndim == 1:
            dw = dw[:, :, 0, :]
            dx = None if dx is None else dx[:, :, 0, :]
        return dx, _grads(self, dw, db)

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        if len(in_shape) != 1 + self._ndim or in_shape[0] != self.in_channels:
            raise ValueError(f"{type(self).__name__} {self.name!r}: per-example input shape must "
                             f"be {self._layout[4:]} with C={self.in_channels}, got {in_shape}")
        return (self.out_channels, *self._out_spatial(in_shape[1:]))


class Conv2D(_Conv):
    r"""2-D convolution on NCHW images, :math:`a = \phi(W \star x + b)`; see :func:`conv2d_forward`.

    ``x`` (N, C, H, W) -> (N, C_out, OH, OW). Parameters ``{name}/w``
    (C_out, C, KH, KW) and ``{name}/b`` (C_out,). ``kernel_size``/``stride``
    are an int or a pair; ``padding`` is ``"valid"`` (none), ``"same"``
    (output ``ceil(H / stride)``, odd pixel after), an int or a pair of ints
    (symmetric, as torch). ``impl="numpy"`` runs the plain-numpy twins.
    ``max_pool=True`` (activation "relu" or "identity") max-pools the output
    over 2x2 windows, stride 2, in the same pass: the layer then computes
    ``Conv2D`` followed by ``MaxPool2D(2)`` (the same values; on the small-K
    path the bias gradient adds its terms in another order) without writing
    or re-reading the full-size activation (-> (N, C_out, OH // 2, OW // 2)).
    """

    _ndim = 2
    _layout = "(N, C, H, W)"


class Conv1D(_Conv):
    r"""1-D convolution on NCW signals; ``x`` (N, C, W) -> (N, C_out, OW), ``w`` (C_out, C, KW).

    Same arguments as :class:`Conv2D` with ints for ``kernel_size``,
    ``stride`` and ``padding``. Runs the 2-D kernels with H = 1.
    """

    _ndim = 1
    _layout = "(N, C, W)"


class _Pool(Layer):
    """Shared code of the max/average pools (1-D runs the 2-D kernels with H = 1)."""

    _ndim = 2
    _layout = "(N, C, H, W)"
    _kind = "max"

    def __init__(self, pool_size, *, stride=None, padding="valid", name="pool", impl="numba"):
        d = self._ndim
        self.pool_size = _int_tuple("pool_size", pool_size, d)
        self.stride = self.pool_size if stride is None else _int_tuple("stride", stride, d)
        pad = _check_padding(padding, d, allow_same=False)
        self.padding = (0,) * d if pad == "valid" else pad
        if any(p > k // 2 for p, k in zip(self.padding, self.pool_size)):
            raise ValueError(f"padding={padding!r} must be at most half of "
                             f"pool_size={self.pool_size} (a window must overlap the input; "
                             "torch has the same rule)")
        self.name = name
        self.impl = _validate.one_of("impl", impl, tuple(_IMPLS))

    def _geometry4(self):
        if self._ndim == 1:
            return (1, *self.pool_size), (1, *self.stride), (0, *self.padding)
        return self.pool_size, self.stride, self.padding

    def _out_spatial(self, spatial):
        out = tuple(conv_output_size(n, k, s, p, p) for n, k, s, p
                    in zip(spatial, self.pool_size, self.stride, self.padding))
        if min(out) < 1:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input spatial size {spatial} "
                             f"is smaller than pool_size={self.pool_size}")
        return out

    def forward(self, params, x, train=False, rng=None):
        x = _check_input(f"{type(self).__name__} {self.name!r}", x, 2 + self._ndim, self._layout)
        self._out_spatial(x.shape[2:])
        x4 = x[:, :, None, :] if self._ndim == 1 else x
        out, cache = pool2d_forward(np.ascontiguousarray(x4), self._kind, *self._geometry4(),
                                    self.impl)
        return (out[:, :, 0, :] if self._ndim == 1 else out), cache

    def backward(self, params, dout, cache, need_dx=True):
        if not need_dx:
            return None, {}
        dx = pool2d_backward(dout[:, :, None, :] if self._ndim == 1 else dout, cache)
        return (dx[:, :, 0, :] if self._ndim == 1 else dx), {}

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        if len(in_shape) != 1 + self._ndim:
            raise ValueError(f"{type(self).__name__} {self.name!r}: per-example input shape "
                             f"must be {self._layout[4:]}, got {in_shape}")
        return (in_shape[0], *self._out_spatial(in_shape[1:]))


class MaxPool2D(_Pool):
    """Max pooling on NCHW; ``pool_size``, ``stride`` (default ``pool_size``) and ``padding``
    (``"valid"``, an int or a pair, at most half the window; padding never wins) as in torch."""

    _ndim, _layout, _kind = 2, "(N, C, H, W)", "max"


class AvgPool2D(_Pool):
    """Average pooling on NCHW; as :class:`MaxPool2D`, zero padding counted in the mean
    (torch's ``count_include_pad=True``)."""

    _ndim, _layout, _kind = 2, "(N, C, H, W)", "avg"


class MaxPool1D(_Pool):
    """Max pooling on NCW signals; ints for ``pool_size``, ``stride``, ``padding``."""

    _ndim, _layout, _kind = 1, "(N, C, W)", "max"


class AvgPool1D(_Pool):
    """Average pooling on NCW signals; ints for ``pool_size``, ``stride``, ``padding``."""

    _ndim, _layout, _kind = 1, "(N, C, W)", "avg"


class GlobalAvgPool(Layer):
    """Mean over every spatial axis: (N, C, ...) -> (N, C) (1-D and 2-D alike)."""

    def __init__(self, *, name: str = "global_avg_pool"):
        self.name = name

    def forward(self, params, x, train=False, rng=None):
        x = np.asarray(x)
        if x.ndim < 3:
            raise ValueError(f"GlobalAvgPool {self.name!r}: x must be (N, C, ...) with at least "
                             f"one spatial axis, got shape {x.shape}")
        return global_avg_pool_forward(x)

    def backward(self, params, dout, cache, need_dx=True):
        return (global_avg_pool_backward(dout, cache) if need_dx else None), {}

    def output_shape(self, in_shape):
        return (tuple(in_shape)[0],)


class Activation(Layer):
    """An elementwise activation as a layer (no parameters); see :func:`activation_forward`."""

    def __init__(self, activation: str, *, name: str = ""):
        self.activation = _check_activation(activation)
        self.name = name or activation

    def forward(self, params, x, train=False, rng=None):
        x = np.asarray(x)
        # relu/tanh write into their input: give them a copy, never the caller's array.
        return activation_forward(x.copy() if self.activation != "identity" else x, self.activation)

    def backward(self, params, dout, cache, need_dx=True):
        return (activation_backward(dout, cache) if need_dx else None), {}


def ReLU(name: str = "relu") -> Activation:       # noqa: N802 - reads like a class
    """:math:`\\max(x, 0)` as a layer."""
    return Activation("relu", name=name)


def Tanh(name: str = "tanh") -> Activation:       # noqa: N802
    """:math:`\\tanh x` as a layer."""
    return Activation("tanh", name=name)


def GELU(name: str = "gelu") -> Activation:       # noqa: N802
    """GELU, tanh approximation, as a layer."""
    return Activation("gelu", name=name)


def Identity(name: str = "identity") -> Activation:   # noqa: N802
    """The identity as a layer."""
    return Activation("identity", name=name)


class Flatten(Layer):
    """``(N, d1, d2, ...)`` -> ``(N, d1*d2*...)`` (C-order, as ``torch.flatten(x, 1)``)."""

    def __init__(self, *, name: str = "flatten"):
        self.name = name

    def forward(self, params, x, train=False, rng=None):
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"Flatten {self.name!r}: x must have a batch axis and at least "
                             f"one more, got shape {x.shape}")
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, params, dout, cache, need_dx=True):
        return (dout.reshape(cache) if need_dx else None), {}

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)),)


class Dropout(Layer):
    r"""Inverted dropout, rate ``p``: :math:`y = x \odot m/(1-p)` when training, else :math:`y = x`.

    The mask comes from the ``rng`` passed to ``forward`` (required when
    ``train=True`` and ``rate > 0``), so the same Generator state gives the
    same mask. The playbook treats the dropout rate as a nuisance
    hyperparameter once dropout is in the pipeline ("Identifying scientific,
    nuisance, and fixed hyperparameters").
    """

    def __init__(self, rate: float, *, name: str = "dropout"):
        self.rate = _validate.real("rate", rate, low=0.0, high=1.0, high_open=True)
        self.name = name

    def forward(self, params, x, train=False, rng=None):
        x = np.asarray(x)
        if not train or self.rate == 0.0:
            return x, None
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"Dropout {self.name!r}: rng must be a numpy.random.Generator in "
                             f"training mode, got {type(rng).__name__}")
        return dropout_forward(x, self.rate, rng)

    def backward(self, params, dout, cache, need_dx=True):
        if not need_dx:
            return None, {}
        return (dout if cache is None else dropout_backward(dout, cache)), {}
