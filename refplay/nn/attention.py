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
``out_proj.weight.T``, ``{name}/out/b`` (D,).

Speed: the batch innermost
--------------------------
The scores, the softmax, its backward and the weighted sums are Numba kernels
(:func:`refplay.nn.kernels.attention_scores`, ``attention_context``,
``attention_backward``) whose loops run along the batch: they read
:math:`[Q\;K\;V]^\top` as (3D, T, N) -- feature, token, example -- and write
(H, T, T, N) probabilities. The projections are BLAS GEMMs that produce and
consume that layout directly: with the tokens in token-major order
:math:`x_{tn}` ((T*N, D), a cheap copy of D-wide rows),
:math:`[Q\;K\;V]^\top = W_{qkv}^\top x_{tn}^\top` and
:math:`y_{tn} = C\, W_o` are plain GEMMs on transposed operands (no copy).
Weights below :math:`\epsilon^2` of a row's largest are set to exactly 0
(:func:`softmax_floor`): they cannot change a sum, and zero keeps a collapsed
run's tiny gradients out of the slow subnormal range.
``impl="numpy"`` runs the plain-numpy twins of :mod:`refplay.nn.reference`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.nn import init as init_lib
from refplay.nn import kernels, reference
from refplay.nn.layers import Layer, WeightInit

__all__ = ["MultiHeadSelfAttention", "AttentionCache", "self_attention_forward",
           "self_attention_backward", "softmax_floor", "IMPLS"]

IMPLS = {"numba": kernels, "numpy": reference}


class AttentionCache(NamedTuple):
    """What :func:`self_attention_backward` needs from the forward pass."""

    x_tn: np.ndarray            # (T*N, D) the input, token-major
    qkv_t: np.ndarray           # (3D, T, N) packed queries, keys, values
    p: np.ndarray               # (H, T, T, N) attention probabilities
    ctx_t: np.ndarray           # (D, T, N) the heads' outputs, concatenated
    w_qkv: np.ndarray
    w_out: np.ndarray
    num_heads: int
    causal: bool
    impl: str


def _token_major(x: np.ndarray) -> np.ndarray:
    """(N, T, D) -> (T*N, D), rows ordered (token, example): a copy of whole D-wide rows."""
    n_, t_, d_ = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(t_ * n_, d_)


def _batch_major(rows: np.ndarray, n_: int, t_: int) -> np.ndarray:
    """(T*N, D) rows ordered (token, example) -> (N, T, D)."""
    return np.ascontiguousarray(rows.reshape(t_, n_, -1).transpose(1, 0, 2))


def softmax_floor(dtype) -> float:
    r"""The shifted score below which an attention weight is set to exactly 0: :math:`2\ln\epsilon`.

    A weight :math:`e^{s}` with :math:`s < 2\ln\epsilon` (:math:`\epsilon` the
    dtype's machine epsilon: -31.9 in float32) is below :math:`\epsilon^2` of the
    row's largest weight (which is 1), so it cannot change the softmax's sum or,
    in practice, the weighted sum of the values. Zeroing it keeps the backward
    pass out of subnormal numbers: in a collapsed run the gradients are tiny,
    their products with such weights fall below the smallest normal float, and
    an x86 core takes ~100 cycles per subnormal operation (a collapsed Post-LN
    trial ran 1.7x slower before this).
    """
    return 2.0 * math.log(float(np.finfo(dtype).eps))


def self_attention_forward(x: np.ndarray, w_qkv: np.ndarray, b_qkv: np.ndarray, w_out: np.ndarray,
                           b_out: np.ndarray, num_heads: int, causal: bool = False,
                           impl: str = "numba") -> tuple[np.ndarray, AttentionCache]:
    r"""Multi-head self-attention of the module docstring; ``x`` (N, T, D) -> (N, T, D).

    .. math::  [Q\;K\;V]^\top = W_{qkv}^\top x_{tn}^\top + b_{qkv}, \quad
               P = \operatorname{softmax}(S), \quad C = P V, \quad y_{tn} = C W_o + b_o
    """
    k = IMPLS[_validate.one_of("impl", impl, tuple(IMPLS))]
    n_, t_, d_ = x.shape
    x_tn = _token_major(x)
    qkv_t = k.add_feature_bias(w_qkv.T @ x_tn.T, b_qkv)       # (3D, T*N): one GEMM
    qkv_t = qkv_t.reshape(3 * d_, t_, n_)
    scale = 1.0 / math.sqrt(d_ // num_heads)
    e = k.attention_scores(qkv_t, num_heads, scale, bool(causal), softmax_floor(qkv_t.dtype))
    np.exp(e, out=e)                                           # numpy's SIMD exp
    ctx_t, p = k.attention_context(qkv_t, e)                   # (D, T, N), (H, T, T, N)
    y_tn = ctx_t.reshape(d_, -1).T @ w_out                     # (T*N, D)
    y_tn += b_out
    return _batch_major(y_tn, n_, t_), AttentionCache(
        x_tn=x_tn, qkv_t=qkv_t, p=p, ctx_t=ctx_t, w_qkv=w_qkv, w_out=w_out,
        num_heads=num_heads, causal=bool(causal), impl=impl)


def self_attention_backward(dy: np.ndarray, cache: AttentionCache, need_dx: bool = True,
                            ) -> tuple[np.ndarray | None, tuple]:
    r"""Backward of :func:`self_attention_forward`.

    .. math::  dW_o = C^\top dy_{tn}, \quad dC^\top = W_o\, dy_{tn}^\top, \quad
               dW_{qkv} = x_{tn}^\top\, d[Q\;K\;V], \quad dx_{tn} = d[Q\;K\;V]\, W_{qkv}^\top

    and the biases' gradients are the sums over tokens. Returns ``dx``
    (N, T, D) (None unless ``need_dx``) and ``(dw_qkv, db_qkv, dw_out, db_out)``.
    """
    c = cache
    n_, t_, d_ = dy.shape
    dy_tn = _token_major(dy)
    ones = np.ones(t_ * n_, dy.dtype)                          # sums as GEMVs: 4-9x numpy's
    ctx_2 = c.ctx_t.reshape(d_, -1)
    dw_out, db_out = ctx_2 @ dy_tn, ones @ dy_tn
    dctx_t = (c.w_out @ dy_tn.T).reshape(d_, t_, n_)
    scale = 1.0 / math.sqrt(d_ // c.num_heads)
    dqkv_t = IMPLS[c.impl].attention_backward(dctx_t, c.qkv_t, c.p, c.num_heads, scale, c.causal)
    dqkv_2 = dqkv_t.reshape(3 * d_, -1)                        # (3D, T*N)
    # (dQKV^T x_tn)^T, not x_tn^T dQKV: BLAS is 1.6x slower with both operands transposed.
    dw_qkv = np.ascontiguousarray((dqkv_2 @ c.x_tn).T)
    db_qkv = dqkv_2 @ ones
    dx = _batch_major(dqkv_2.T @ c.w_qkv.T, n_, t_) if need_dx else None
    return dx, (dw_qkv, db_qkv, dw_out, db_out)


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
