r"""Transformer pieces: token layer norm, position-wise dense, patch embedding, blocks, pooling.

Every layer here works on token sequences ``x`` (N, T, D) and keeps the
layer interface of :mod:`refplay.nn.layers` (``forward`` returns
``(out, cache)``, ``backward(params, dout, cache)`` returns ``(dx, grads)``),
so a Transformer is a :class:`~refplay.nn.residual.Sequential` and each
sub-layer a :class:`~refplay.nn.residual.Residual`:

=============  ===========================================  ==================================
``placement``  block (:math:`A` attention, :math:`F` MLP)   after the last block
=============  ===========================================  ==================================
``"post"``     :math:`h = N_1(x + A(x))`,                   the head
               :math:`y = N_2(h + F(h))`                    (Vaswani et al. 2017)
``"pre"``      :math:`h = x + A(N_1(x))`,                   a final :math:`N`, then the head
               :math:`y = h + F(N_2(h))`                    (Xiong et al. 2020)
=============  ===========================================  ==================================

Playbook, "How can optimization failures be debugged and mitigated?":

    *Normalization should be inside the residual. E.g. x + f(Norm(x)).
    Norm(x + f(x)) known to cause issues.*

Post-LN is the arrangement "known to cause issues": its gradients near the
output are large at initialization, and Adam without warmup takes too large
steps there (Xiong et al. 2020; Liu et al. 2020). Pre-LN keeps an identity
path from the loss to every block.

:math:`N` is :class:`TokenLayerNorm` (the layer norm of
:mod:`refplay.nn.norms` taken over each token's D features, as
``torch.nn.LayerNorm(D)``), :math:`F(h) = \phi(h W_1 + b_1) W_2 + b_2` is two
:class:`TokenDense` layers, :math:`A` is
:class:`~refplay.nn.attention.MultiHeadSelfAttention`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.nn import init as init_lib
from refplay.nn.attention import MultiHeadSelfAttention
from refplay.nn.layers import Dense, Layer, WeightInit, dense_backward, dense_forward
from refplay.nn.norms import (LayerNorm, LayerNormCache, layernorm_rows_backward,
                              layernorm_rows_forward)
from refplay.nn.residual import Residual, Sequential

__all__ = ["TokenLayerNorm", "TokenDense", "PatchEmbedding", "TokenPool", "transformer_block",
           "token_layernorm_forward", "token_layernorm_backward",
           "PLACEMENTS", "POOLS", "PatchCache"]

PLACEMENTS = ("post", "pre")
POOLS = ("cls", "mean")


# ----------------------------------------------------------------------------
# Layer norm over each token's features
# ----------------------------------------------------------------------------

def token_layernorm_forward(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, eps: float = 1e-5,
                            impl: str = "numba") -> tuple[np.ndarray, LayerNormCache]:
    r"""Layer norm of every token over its D features: ``x`` (..., D) -> (..., D).

    .. math::  \mu = \tfrac1D \textstyle\sum_c x_c, \quad
               \sigma^2 = \tfrac1D \textstyle\sum_c (x_c - \mu)^2, \quad
               y_c = \gamma_c \frac{x_c - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta_c

    -- :func:`refplay.nn.norms.layernorm_rows_forward` on the (N*T, D, 1) token
    matrix: the ResNet's layer norm, one row per token instead of per example.
    """
    rows = np.ascontiguousarray(x).reshape(-1, x.shape[-1], 1)
    return layernorm_rows_forward(rows, scale, bias, eps, impl, x.shape)


def token_layernorm_backward(dy: np.ndarray, cache: LayerNormCache, need_dx: bool = True,
                             ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    r"""Backward of :func:`token_layernorm_forward`; with :math:`g = \gamma\,dy`, per token:

    .. math::  dx = \frac{1}{\sqrt{\sigma^2+\epsilon}}\big(g - \overline{g}
                    - \hat x\,\overline{g \hat x}\big), \quad
               d\gamma = \textstyle\sum_{\text{tokens}} dy\,\hat x, \quad
               d\beta = \textstyle\sum_{\text{tokens}} dy.
    """
    return layernorm_rows_backward(dy, cache, need_dx)


class TokenLayerNorm(LayerNorm):
    """:class:`~refplay.nn.norms.LayerNorm` over the last axis of (N, T, D).

    The same as ``torch.nn.LayerNorm(D)``.

    Parameters ``{name}/scale`` (ones) and ``{name}/bias`` (zeros), shape (D,).
    """

    def forward(self, params, x, train=False, rng=None):
        scale, bias = params[f"{self.name}/scale"], params[f"{self.name}/bias"]
        x = np.asarray(x, dtype=scale.dtype)
        if x.ndim < 2 or x.shape[-1] != self.num_features:
            raise ValueError(f"TokenLayerNorm {self.name!r}: x must have shape "
                             f"(N, ..., {self.num_features}), got {x.shape}")
        return token_layernorm_forward(x, scale, bias, self.eps, self.impl)

    def backward(self, params, dout, cache, need_dx=True):
        dx, dscale, dbias = token_layernorm_backward(dout, cache, need_dx)
        return dx, {f"{self.name}/scale": dscale, f"{self.name}/bias": dbias}


# ----------------------------------------------------------------------------
# Position-wise dense layer
# ----------------------------------------------------------------------------

class TokenDense(Dense):
    r""":class:`~refplay.nn.layers.Dense` applied to every token: (N, T, in_dim) -> (N, T, out_dim).

    :math:`a_t = \phi(x_t W + b)` for each token :math:`t`; one GEMM on the
    (N*T, in_dim) token matrix. Parameters as Dense's. ``activation="gelu"``
    is :func:`refplay.nn.layers.gelu_forward`, the tanh form
    (``torch.nn.GELU(approximate="tanh")``).
    """

    def forward(self, params, x, train=False, rng=None):
        w, b = params[f"{self.name}/w"], params.get(f"{self.name}/b")
        x = np.asarray(x, dtype=w.dtype)
        if x.ndim != 3 or x.shape[2] != self.in_dim:
            raise ValueError(f"TokenDense {self.name!r}: x must have shape (N, T, {self.in_dim}), "
                             f"got {x.shape}")
        n_, t_, _ = x.shape
        out, cache = dense_forward(x.reshape(n_ * t_, self.in_dim), w, b, self.activation)
        return out.reshape(n_, t_, self.out_dim), (x.shape, cache)

    def backward(self, params, dout, cache, need_dx=True):
        shape, c = cache
        dx, dw, db = dense_backward(dout.reshape(-1, self.out_dim), c, need_dx)
        grads = {f"{self.name}/w": dw}
        if db is not None:
            grads[f"{self.name}/b"] = db
        return (None if dx is None else dx.reshape(shape)), grads

    def output_shape(self, in_shape):
        if len(in_shape) != 2 or in_shape[1] != self.in_dim:
            raise ValueError(f"TokenDense {self.name!r}: input shape must be (T, {self.in_dim}), "
                             f"got {tuple(in_shape)}")
        return (in_shape[0], self.out_dim)


# ----------------------------------------------------------------------------
# Patch embedding and pooling
# ----------------------------------------------------------------------------

class PatchCache(NamedTuple):
    """What :meth:`PatchEmbedding.backward` needs from the forward pass."""

    dense_cache: tuple
    x_shape: tuple
    num_patches: int


class PatchEmbedding(Layer):
    r"""A signal cut into patches, embedded, with a CLS token and learned positions.

    ``x`` (N, L) is cut into :math:`T = L/P` non-overlapping patches
    :math:`x_t` of ``patch_size`` :math:`P` samples (a ViT on a 1-D signal,
    Dosovitskiy et al. 2021); then

    .. math::  e_t = x_t W + b, \qquad
               z = [\,c;\; e_1;\; \ldots;\; e_T\,] + E_{\text{pos}}

    with the CLS token :math:`c` (D,) only when ``cls_token``. Output
    (N, T + cls_token, D). Parameters ``{name}/w`` (P, D), ``{name}/b`` (D,),
    ``{name}/pos`` (T + cls_token, D), ``{name}/cls`` (D,); positions and
    the CLS token are drawn from :math:`\mathcal N(0, 0.02^2)` (as ViT's).
    """

    def __init__(self, length: int, patch_size: int, dim: int, *, cls_token: bool = True,
                 name: str = "embed", w_init: WeightInit = init_lib.glorot_uniform):
        self.length = _validate.integer("length", length, low=1)
        self.patch_size = _validate.integer("patch_size", patch_size, low=1)
        if self.length % self.patch_size:
            raise ValueError(f"patch_size={patch_size} must divide the signal length {length}")
        self.dim = _validate.integer("dim", dim, low=1)
        self.cls_token = bool(cls_token)
        self.num_tokens = self.length // self.patch_size + int(self.cls_token)
        self.name = name
        self.w_init = w_init

    def init(self, rng: np.random.Generator, dtype=np.float32) -> Tree:
        dt, p, d = np.dtype(dtype), self.patch_size, self.dim
        params = {f"{self.name}/w": np.asarray(self.w_init(rng, (p, d), p, d, dt), dt),
                  f"{self.name}/b": np.zeros(d, dt),
                  f"{self.name}/pos": (0.02 * rng.standard_normal((self.num_tokens, d))).astype(dt)}
        if self.cls_token:
            params[f"{self.name}/cls"] = (0.02 * rng.standard_normal(d)).astype(dt)
        return params

    def forward(self, params, x, train=False, rng=None):
        w = params[f"{self.name}/w"]
        x = np.asarray(x, dtype=w.dtype)
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"PatchEmbedding {self.name!r}: x must have shape (N, {self.length}), "
                             f"got {x.shape}")
        n_, t_ = x.shape[0], self.length // self.patch_size
        e, dense_cache = dense_forward(x.reshape(n_ * t_, self.patch_size), w,
                                       params[f"{self.name}/b"])
        z = np.empty((n_, self.num_tokens, self.dim), w.dtype)
        first = int(self.cls_token)
        if self.cls_token:
            z[:, 0] = params[f"{self.name}/cls"]
        z[:, first:] = e.reshape(n_, t_, self.dim)
        z += params[f"{self.name}/pos"]
        return z, PatchCache(dense_cache=dense_cache, x_shape=x.shape, num_patches=t_)

    def backward(self, params, dout, cache, need_dx=True):
        first = int(self.cls_token)
        de = np.ascontiguousarray(dout[:, first:]).reshape(-1, self.dim)
        dx, dw, db = dense_backward(de, cache.dense_cache, need_dx)
        grads = {f"{self.name}/w": dw, f"{self.name}/b": db,
                 f"{self.name}/pos": dout.sum(axis=0)}
        if self.cls_token:
            grads[f"{self.name}/cls"] = dout[:, 0].sum(axis=0)
        return (None if dx is None else dx.reshape(cache.x_shape)), grads

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.length,):
            raise ValueError(f"PatchEmbedding {self.name!r}: input shape must be ({self.length},), "
                             f"got {tuple(in_shape)}")
        return (self.num_tokens, self.dim)


class TokenPool(Layer):
    r"""(N, T, D) -> (N, D): the CLS token :math:`z_0` (``"cls"``) or the token mean.

    ``"mean"`` is :math:`\tfrac1T\sum_t z_t`.
    """

    def __init__(self, mode: str = "cls", *, name: str = "pool"):
        self.mode = _validate.one_of("pool", mode, POOLS)
        self.name = name

    def forward(self, params, x, train=False, rng=None):
        x = np.asarray(x)
        out = x[:, 0].copy() if self.mode == "cls" else x.mean(axis=1)
        return out, x.shape

    def backward(self, params, dout, cache, need_dx=True):
        if not need_dx:
            return None, {}
        dx = np.zeros(cache, dout.dtype)
        if self.mode == "cls":
            dx[:, 0] = dout
        else:
            dx[...] = (dout / cache[1])[:, None, :]
        return dx, {}

    def output_shape(self, in_shape):
        return (in_shape[-1],)


# ----------------------------------------------------------------------------
# A Transformer block
# ----------------------------------------------------------------------------

def transformer_block(dim: int, num_heads: int, mlp_dim: int, *, name: str,
                      placement: str = "pre", activation: str = "gelu", causal: bool = False,
                      w_init: WeightInit = init_lib.glorot_uniform,
                      impl: str = "numba") -> Sequential:
    """One encoder block: attention, then MLP, each a Residual whose norm ``placement`` places.

    Parameter names: ``{name}/attn/...``, ``{name}/ln_1/...``,
    ``{name}/mlp_1/...``, ``{name}/mlp_2/...``, ``{name}/ln_2/...``.
    Biases start at 0.
    """
    _validate.one_of("norm_placement", placement, PLACEMENTS)
    attn = MultiHeadSelfAttention(dim, num_heads, causal=causal, name=f"{name}/attn",
                                  w_init=w_init, impl=impl)
    mlp = Sequential([TokenDense(dim, mlp_dim, name=f"{name}/mlp_1", activation=activation,
                                 w_init=w_init, b_init=None),
                      TokenDense(mlp_dim, dim, name=f"{name}/mlp_2", w_init=w_init, b_init=None)],
                     name=f"{name}/mlp")
    return Sequential([
        Residual(attn, name=f"{name}/attn_block", placement=placement,
                 norm=TokenLayerNorm(dim, name=f"{name}/ln_1", impl=impl)),
        Residual(mlp, name=f"{name}/mlp_block", placement=placement,
                 norm=TokenLayerNorm(dim, name=f"{name}/ln_2", impl=impl)),
    ], name=name)
