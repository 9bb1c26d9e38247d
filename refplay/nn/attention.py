r"""Multi-head self-attention with a hand-written backward pass.

Layout: a batch of sequences is ``x`` (N, T, D) -- batch, tokens, features --
as ``torch.nn.MultiheadAttention(batch_first=True)``. With :math:`H` heads of
width :math:`d_h = D/H`, one self-attention layer computes (Vaswani et al. 2017)

.. math::  [Q\;K\;V] = x W_{qkv} + b_{qkv}, \qquad
           S^{(h)} = \frac{Q^{(h)} K^{(h)\top}}{\sqrt{d_h}} + M, \qquad
           P^{(h)} = \operatorname{softmax}_{\text{row}}\big(S^{(h)}\big),

.. math::  C^{(h)} = P^{(h)} V^{(h)}, \qquad
           y = [C^{(1)} \cdots C^{(H)}]\, W_{o} + b_{o},

where :math:`Q^{(h)}` is columns :math:`h d_h \ldots (h+1) d_h - 1` of
:math:`Q` and the mask :math:`M` is 0, or :math:`-\infty` above the diagonal
when ``causal`` (token :math:`i` sees only tokens :math:`j \le i`). Its backward pass:

.. math::  dV^{(h)} = P^{(h)\top} dC^{(h)}, \quad
           dP = dC^{(h)} V^{(h)\top}, \quad
           dS_{ij} = P_{ij}\big(dP_{ij} - \textstyle\sum_{j'} P_{ij'} dP_{ij'}\big),

.. math::  dQ^{(h)} = dS\, K^{(h)} / \sqrt{d_h}, \qquad dK^{(h)} = dS^\top Q^{(h)} / \sqrt{d_h}.

Parameters (``torch.nn.MultiheadAttention``'s, transposed to refplay's
``x @ w`` convention): ``{name}/qkv/w`` (D, 3D) = ``in_proj_weight.T``,
``{name}/qkv/b`` (3D,) = ``in_proj_bias``, ``{name}/out/w`` (D, D) =
``out_proj.weight.T``, ``{name}/out/b`` (D,). The two projections are BLAS
GEMMs on the (N*T, D) token matrix; the scores, the masked softmax, its
backward and the weighted sums are one Numba kernel each way
(:func:`refplay.nn.kernels.attention_forward` / ``attention_backward``),
reading the packed :math:`[Q\;K\;V]` in place. ``impl="numpy"`` runs the
plain-numpy twins of :mod:`refplay.nn.reference` instead.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.nn import init as init_lib
from refplay.nn import kernels, reference
from refplay.nn.layers import Layer, WeightInit, dense_backward, dense_forward

__all__ = ["MultiHeadSelfAttention", "AttentionCache", "self_attention_forward",
           "self_attention_backward", "IMPLS"]

IMPLS = {"numba": kernels, "numpy": reference}


class AttentionCache(NamedTuple):
    """What :func:`self_attention_backward` needs from the forward pass."""

    qkv_cache: tuple            # dense_forward's cache of the input projection
    qkv: np.ndarray             # (N, T, 3D) packed queries, keys, values
    p: np.ndarray               # (N, H, T, T) attention probabilities
    out_cache: tuple            # dense_forward's cache of the output projection
    num_heads: int
    impl: str


def self_attention_forward(x: np.ndarray, w_qkv: np.ndarray, b_qkv: np.ndarray, w_out: np.ndarray,
                           b_out: np.ndarray, num_heads: int, causal: bool = False,
                           impl: str = "numba") -> tuple[np.ndarray, AttentionCache]:
    r"""Multi-head self-attention of the module docstring; ``x`` (N, T, D) -> (N, T, D)."""
    k = IMPLS[_validate.one_of("impl", impl, tuple(IMPLS))]
    n_, t_, d_ = x.shape
    qkv, qkv_cache = dense_forward(x.reshape(n_ * t_, d_), w_qkv, b_qkv)   # (N*T, 3D)
    qkv = qkv.reshape(n_, t_, 3 * d_)
    scale = 1.0 / math.sqrt(d_ // num_heads)
    ctx, p = k.attention_forward(qkv, num_heads, scale, bool(causal))      # (N, T, D), (N, H, T, T)
    y, out_cache = dense_forward(ctx.reshape(n_ * t_, d_), w_out, b_out)
    return y.reshape(n_, t_, d_), AttentionCache(qkv_cache=qkv_cache, qkv=qkv, p=p,
                                                 out_cache=out_cache, num_heads=num_heads,
                                                 impl=impl)


def self_attention_backward(dy: np.ndarray, cache: AttentionCache, need_dx: bool = True,
                            ) -> tuple[np.ndarray | None, tuple]:
    r"""Backward of :func:`self_attention_forward`.

    Returns ``dx`` (N, T, D) (None unless ``need_dx``) and the gradients
    ``(dw_qkv, db_qkv, dw_out, db_out)``.
    """
    k = IMPLS[cache.impl]
    n_, t_, d_ = dy.shape
    dctx, dw_out, db_out = dense_backward(dy.reshape(n_ * t_, d_), cache.out_cache)
    scale = 1.0 / math.sqrt(d_ // cache.num_heads)
    dqkv = k.attention_backward(dctx.reshape(n_, t_, d_), cache.qkv, cache.p, cache.num_heads,
                                scale)
    dx, dw_qkv, db_qkv = dense_backward(dqkv.reshape(n_ * t_, 3 * d_), cache.qkv_cache, need_dx)
    return (None if dx is None else dx.reshape(n_, t_, d_)), (dw_qkv, db_qkv, dw_out, db_out)


class MultiHeadSelfAttention(Layer):
    r"""Self-attention layer; equations, parameters and layout in the module docstring.

    ``dim`` is :math:`D` (a multiple of ``num_heads``); ``causal`` masks the
    future. ``w_init`` draws both projection matrices (default Glorot
    uniform, as ``torch.nn.MultiheadAttention``'s ``in_proj_weight``); biases
    start at 0 (as torch's).
    """

    def __init__(self, dim: int, num_heads: int, *, causal: bool = False, name: str = "attn",
                 w_init: WeightInit = init_lib.glorot_uniform, impl: str = "numba"):
        self.dim = _validate.integer("dim", dim, low=1)
        self.num_heads = _validate.integer("num_heads", num_heads, low=1)
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim} (each head gets "
                             f"dim / num_heads features)")
        self.causal = bool(causal)
        self.name = name
        self.w_init = w_init
        self.impl = _validate.one_of("impl", impl, tuple(IMPLS))

    def init(self, rng: np.random.Generator, dtype=np.float32) -> Tree:
        d, dt = self.dim, np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dt}")
        return {f"{self.name}/qkv/w": np.asarray(self.w_init(rng, (d, 3 * d), d, 3 * d, dt), dt),
                f"{self.name}/qkv/b": np.zeros(3 * d, dt),
                f"{self.name}/out/w": np.asarray(self.w_init(rng, (d, d), d, d, dt), dt),
                f"{self.name}/out/b": np.zeros(d, dt)}

    def forward(self, params, x, train=False, rng=None):
        p = self.name
        w = params[f"{p}/qkv/w"]
        x = np.asarray(x, dtype=w.dtype)
        if x.ndim != 3 or x.shape[2] != self.dim:
            raise ValueError(f"MultiHeadSelfAttention {p!r}: x must have shape (N, T, {self.dim}), "
                             f"got {x.shape}")
        return self_attention_forward(x, w, params[f"{p}/qkv/b"], params[f"{p}/out/w"],
                                      params[f"{p}/out/b"], self.num_heads, self.causal, self.impl)

    def backward(self, params, dout, cache, need_dx=True):
        dx, (dw_qkv, db_qkv, dw_out, db_out) = self_attention_backward(dout, cache, need_dx)
        p = self.name
        return dx, {f"{p}/qkv/w": dw_qkv, f"{p}/qkv/b": db_qkv, f"{p}/out/w": dw_out,
                    f"{p}/out/b": db_out}

    def output_shape(self, in_shape):
        if len(in_shape) != 2 or in_shape[1] != self.dim:
            raise ValueError(f"MultiHeadSelfAttention {self.name!r}: input shape must be "
                             f"(T, {self.dim}), got {tuple(in_shape)}")
        return tuple(in_shape)
