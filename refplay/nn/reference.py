"""Plain-numpy twins of every kernel in :mod:`refplay.nn.kernels`.

Obviously-correct, loop-light numpy; the same names and signatures as the
kernels. Tests assert kernel == twin (≤ 1e-12 relative in float64).
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------
# Convolution, pooling (layers.py)
# --------------------------------------------------------------------------
# Same layouts and arguments as the kernels (see the comment there). The twins
# pad explicitly and loop only over the kernel window (i, j), slicing the rest.


def _pad_to(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, pt: int, pl: int,
            oh: int, ow: int, value: float = 0.0) -> np.ndarray:
    """``x`` padded with ``value`` so that every window of the (oh, ow) output fits."""
    n_, c_, h_, w_ = x.shape
    pb = max(0, (oh - 1) * sh + kh - pt - h_)
    pr = max(0, (ow - 1) * sw + kw - pl - w_)
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def _offset(i: int, j: int, sh: int, sw: int, oh: int, ow: int) -> tuple[slice, slice]:
    """The rows and columns of the padded input that kernel offset (i, j) reads for all outputs."""
    return slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)


def im2col(x, kh, kw, sh, sw, pt, pl, oh, ow):
    """Twin of :func:`refplay.nn.kernels.im2col`: one strided slice per window offset."""
    n_, c_ = x.shape[:2]
    xp = _pad_to(x, kh, kw, sh, sw, pt, pl, oh, ow)
    cols = np.empty((c_, kh, kw, n_, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _offset(i, j, sh, sw, oh, ow)
            cols[:, i, j] = xp[:, :, rows, columns].transpose(1, 0, 2, 3)   # (C, N, oh, ow)
    return cols.reshape(c_ * kh * kw, n_ * oh * ow)


def col2im(cols, dx, kh, kw, sh, sw, pt, pl, oh, ow):
    """Twin of :func:`refplay.nn.kernels.col2im`: add each window offset's slice back."""
    n_, c_, h_, w_ = dx.shape
    dxp = _pad_to(np.zeros_like(dx), kh, kw, sh, sw, pt, pl, oh, ow)
    c6 = cols.reshape(c_, kh, kw, n_, oh, ow)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _offset(i, j, sh, sw, oh, ow)
            dxp[:, :, rows, columns] += c6[:, i, j].transpose(1, 0, 2, 3)
    dx[...] = dxp[:, :, pt:pt + h_, pl:pl + w_]
    return dx


def bias_act_to_nchw(y, b, relu, out):
    """Twin of :func:`refplay.nn.kernels.bias_act_to_nchw`."""
    n_, c_, p_ = out.shape
    z = (y + b[:, None]).reshape(c_, n_, p_).transpose(1, 0, 2)
    out[...] = np.maximum(z, 0) if relu else z
    return out


def relu_grad_to_cn(dout, a, relu):
    """Twin of :func:`refplay.nn.kernels.relu_grad_to_cn`."""
    dz = dout * (a > 0) if relu else dout
    return np.ascontiguousarray(dz.transpose(1, 0, 2).reshape(dout.shape[1], -1))


def conv_small_k_forward(cols, w2, b, relu, out):
    """Twin of :func:`refplay.nn.kernels.conv_small_k_forward`: the GEMM, then :func:`bias_act_to_nchw`."""
    return bias_act_to_nchw(w2 @ cols, b, relu, out)


def conv_small_k_backward(dout, a, cols, relu, dz):
    """Twin of :func:`refplay.nn.kernels.conv_small_k_backward`: :func:`relu_grad_to_cn`, then GEMM and sum."""
    g = relu_grad_to_cn(dout, a, relu)
    if dz.size:
        dz[...] = g
    return ((g @ cols.T).astype(dout.dtype),
            g.sum(axis=1, dtype=np.float64).astype(dout.dtype))


def bias_act_pool_to_nchw(y, b, relu, oh, ow, out, arg):
    """Twin of :func:`refplay.nn.kernels.bias_act_pool_to_nchw`: :func:`bias_act_to_nchw`,
    then :func:`maxpool2d_forward` (2x2, stride 2)."""
    n_, c_ = out.shape[:2]
    z = bias_act_to_nchw(y, b, relu, np.empty((n_, c_, oh * ow), y.dtype))
    pooled, winners = maxpool2d_forward(z.reshape(n_, c_, oh, ow), 2, 2, 2, 2, oh // 2, ow // 2)
    out[...], arg[...] = pooled.reshape(out.shape), winners.reshape(arg.shape)   # 3-D or 4-D
    return out


def pool_relu_grad_to_cn(dout, a, arg, relu, plane):
    """Twin of :func:`refplay.nn.kernels.pool_relu_grad_to_cn`: the ReLU gradient at the winners,
    :func:`maxpool2d_backward`, then the GEMM layout; and its sum per channel."""
    n_, c_, k_ = dout.shape
    g = dout * (a > 0) if relu else dout
    dx = maxpool2d_backward(g.reshape(n_, c_, k_, 1), arg.reshape(n_, c_, k_, 1), 1, plane)
    dz = relu_grad_to_cn(dx.reshape(n_, c_, plane), dx, False)
    return dz, dz.sum(axis=1, dtype=np.float64).astype(dout.dtype)


def conv_small_k_pool_forward(cols, w2, b, relu, oh, ow, out, arg):
    """Twin of :func:`refplay.nn.kernels.conv_small_k_pool_forward`: the GEMM, then
    :func:`bias_act_pool_to_nchw`."""
    return bias_act_pool_to_nchw(w2 @ cols, b, relu, oh, ow, out, arg)


def conv_small_k_pool_backward(dout, a, arg, cols, relu, oh, ow, dz):
    """Twin of :func:`refplay.nn.kernels.conv_small_k_pool_backward`: :func:`pool_relu_grad_to_cn`,
    then GEMM and sum."""
    g = pool_relu_grad_to_cn(dout, a, arg, relu, oh * ow)[0]
    if dz.size:
        dz[...] = g
    return ((g @ cols.T).astype(dout.dtype),
            g.sum(axis=1, dtype=np.float64).astype(dout.dtype))


def dense_bias_act(z, b, relu):
    """Twin of :func:`refplay.nn.kernels.dense_bias_act` (in place)."""
    z += b
    if relu:
        np.maximum(z, 0, out=z)
    return z


def dense_relu_grad(dout, a, relu):
    """Twin of :func:`refplay.nn.kernels.dense_relu_grad`."""
    dz = dout * (a > 0) if relu else dout.copy()
    return dz, dz.sum(axis=0, dtype=np.float64)


_GELU_C = np.sqrt(2.0 / np.pi)
_GELU_A = 0.044715


def gelu_bias_arg(z, b):
    """Twin of :func:`refplay.nn.kernels.gelu_bias_arg` (``z`` updated in place)."""
    z += b
    z64 = z.astype(np.float64)
    return (_GELU_C * (z64 + _GELU_A * z64 ** 3)).astype(z.dtype)


def gelu_output(z, t):
    """Twin of :func:`refplay.nn.kernels.gelu_output`."""
    return (0.5 * z.astype(np.float64) * (1.0 + t.astype(np.float64))).astype(z.dtype)


def gelu_grad(da, z, t):
    """Twin of :func:`refplay.nn.kernels.gelu_grad`."""
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    dudz = _GELU_C * (1.0 + 3.0 * _GELU_A * z64 ** 2)
    dz = (da.astype(np.float64) * (0.5 * (1.0 + t64) + 0.5 * z64 * (1.0 - t64 ** 2) * dudz))
    dz = dz.astype(da.dtype)
    return dz, dz.sum(axis=0, dtype=np.float64)


def conv2d_direct(x, w, b, stride, padding):
    r"""The convolution straight from its definition (no im2col): the layer's independent oracle.

    .. math:: z_{n,o,p,q} = b_o + \sum_{c,i,j} W_{o,c,i,j}\, \tilde x_{n,c,\,p s_h + i,\,q s_w + j}

    one term per kernel offset ``(i, j)``. ``x`` (N, C, H, W), ``w`` (C_out, C, KH, KW),
    ``b`` (C_out,) or None, ``stride = (sh, sw)``, ``padding = ((top, bottom), (left, right))``.
    """
    (sh, sw), ((pt, pb), (pl, pr)) = stride, padding
    c_out, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    z = np.zeros((x.shape[0], c_out, oh, ow), np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            rows, cols = _offset(i, j, sh, sw, oh, ow)
            z += np.einsum("ncpq,oc->nopq", xp[:, :, rows, cols], w[:, :, i, j])
    if b is not None:
        z += b[:, None, None]
    return z


def conv2d_direct_backward(dz, x, w, stride, padding):
    r"""Gradients of :func:`conv2d_direct` from the same sum, term by term:

    * :math:`\partial L/\partial W_{o,c,i,j} = \sum_{n,p,q} dz_{n,o,p,q}\,
      \tilde x_{n,c,\,p s_h+i,\,q s_w+j}`
    * :math:`\partial L/\partial \tilde x_{n,c,\,p s_h+i,\,q s_w+j} \mathrel{+}=
      \sum_o dz_{n,o,p,q} W_{o,c,i,j}`
    * :math:`\partial L/\partial b_o = \sum_{n,p,q} dz_{n,o,p,q}`

    Returns ``(dx, dw, db)``.
    """
    (sh, sw), ((pt, pb), (pl, pr)) = stride, padding
    kh, kw = w.shape[2:]
    oh, ow = dz.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            rows, cols = _offset(i, j, sh, sw, oh, ow)
            dw[:, :, i, j] = np.einsum("nopq,ncpq->oc", dz, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("nopq,oc->ncpq", dz, w[:, :, i, j])
    dx = dxp[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]
    return dx, dw, dz.sum(axis=(0, 2, 3))


def _windows(xp, kh, kw, sh, sw, oh, ow):
    """All windows of a padded ``xp`` stacked on a new last axis: (N, C, oh, ow, kh*kw)."""
    return np.stack([xp[(slice(None), slice(None), *_offset(i, j, sh, sw, oh, ow))]
                     for i in range(kh) for j in range(kw)], axis=-1)


def maxpool2d_forward(xp, kh, kw, sh, sw, oh, ow):
    """Twin of :func:`refplay.nn.kernels.maxpool2d_forward` (first maximum wins; NaN propagates)."""
    wp = xp.shape[3]
    win = _windows(xp, kh, kw, sh, sw, oh, ow)
    k = np.argmax(win, axis=-1)                               # row-major order within the window
    out = np.take_along_axis(win, k[..., None], axis=-1)[..., 0]
    rows = np.arange(oh)[:, None] * sh + k // kw              # padded-plane coordinates
    cols = np.arange(ow)[None, :] * sw + k % kw
    return out, (rows * wp + cols).astype(np.int32)


def maxpool2d_backward(dout, arg, hp, wp):
    """Twin of :func:`refplay.nn.kernels.maxpool2d_backward`."""
    n_, c_ = dout.shape[:2]
    dxp = np.zeros((n_ * c_, hp * wp), dout.dtype)
    rows = np.repeat(np.arange(n_ * c_), arg[0, 0].size)
    np.add.at(dxp, (rows, arg.reshape(-1)), dout.reshape(-1))
    return dxp.reshape(n_, c_, hp, wp)


def avgpool2d_forward(xp, kh, kw, sh, sw, oh, ow):
    """Twin of :func:`refplay.nn.kernels.avgpool2d_forward`."""
    return _windows(xp, kh, kw, sh, sw, oh, ow).mean(axis=-1, dtype=np.float64).astype(xp.dtype)


def avgpool2d_backward(dout, hp, wp, kh, kw, sh, sw):
    """Twin of :func:`refplay.nn.kernels.avgpool2d_backward`."""
    n_, c_, oh, ow = dout.shape
    dxp = np.zeros((n_, c_, hp, wp), dout.dtype)
    g = dout / (kh * kw)
    for i in range(kh):
        for j in range(kw):
            rows, cols = _offset(i, j, sh, sw, oh, ow)
            dxp[:, :, rows, cols] += g
    return dxp


# --------------------------------------------------------------------------
# Normalization statistics and fused losses (norms.py, losses.py)
# --------------------------------------------------------------------------


def bn_group_stats(x3: np.ndarray, mask: np.ndarray, bounds: np.ndarray):
    """Twin of :func:`refplay.nn.kernels.bn_group_stats`: one numpy reduction per group."""
    C = x3.shape[1]
    G = len(bounds) - 1
    count, mean, m2 = np.zeros(G), np.zeros((G, C)), np.zeros((G, C))
    for g in range(G):
        xg = x3[bounds[g]:bounds[g + 1]].astype(np.float64)         # (n_g, C, S)
        wg = np.asarray(mask[bounds[g]:bounds[g + 1]], np.float64)[:, None, None]
        n = wg.sum() * x3.shape[2]
        count[g] = n
        if n == 0:
            continue
        mean[g] = (wg * xg).sum(axis=(0, 2)) / n
        m2[g] = (wg * (xg - mean[g][None, :, None]) ** 2).sum(axis=(0, 2))
    return count, mean, m2


def _group_ids(bounds: np.ndarray) -> np.ndarray:
    """The group of every example: ``[0]*n_0 + [1]*n_1 + ...``."""
    return np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))


def bn_normalize(x3: np.ndarray, bounds: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
                 scale: np.ndarray, bias: np.ndarray):
    """Twin of :func:`refplay.nn.kernels.bn_normalize` (broadcasting the group statistics)."""
    gid = _group_ids(bounds)
    xhat = (x3.astype(np.float64) - mean[gid][:, :, None]) * rstd[gid][:, :, None]
    y = xhat * scale.astype(np.float64)[None, :, None] + bias.astype(np.float64)[None, :, None]
    return xhat.astype(x3.dtype), y.astype(x3.dtype)


def bn_backward_dx(dy3: np.ndarray, xhat3: np.ndarray, bounds: np.ndarray, mask: np.ndarray,
                   k: np.ndarray, c1: np.ndarray, c2: np.ndarray):
    """Twin of :func:`refplay.nn.kernels.bn_backward_dx`."""
    gid = _group_ids(bounds)
    m = np.asarray(mask, np.float64)[:, None]
    a1, a2 = (m * c1[gid])[:, :, None], (m * c2[gid])[:, :, None]
    dx = k[gid][:, :, None] * (dy3.astype(np.float64) - a1 - xhat3.astype(np.float64) * a2)
    return dx.astype(dy3.dtype)


def bn_group_backward_sums(g3: np.ndarray, xhat3: np.ndarray, bounds: np.ndarray):
    """Twin of :func:`refplay.nn.kernels.bn_group_backward_sums`."""
    G = len(bounds) - 1
    C = g3.shape[1]
    sum_g, sum_gx = np.zeros((G, C)), np.zeros((G, C))
    for g in range(G):
        gg = g3[bounds[g]:bounds[g + 1]].astype(np.float64)
        xg = xhat3[bounds[g]:bounds[g + 1]].astype(np.float64)
        sum_g[g] = gg.sum(axis=(0, 2))
        sum_gx[g] = (gg * xg).sum(axis=(0, 2))
    return sum_g, sum_gx


def softmax_xent(logits: np.ndarray, labels: np.ndarray, label_smoothing: float,
                 dscale: np.ndarray):
    """Twin of :func:`refplay.nn.kernels.softmax_xent` (log-sum-exp, then ``p - t``)."""
    z = logits.astype(np.float64)
    B, K = z.shape
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    t = np.full((B, K), label_smoothing / K)
    t[np.arange(B), labels] += 1.0 - label_smoothing
    loss = lse - (t * z).sum(axis=1)
    dlogits = np.asarray(dscale, np.float64)[:, None] * (np.exp(z - lse[:, None]) - t)
    return loss, dlogits.astype(logits.dtype)


def layernorm_rows(x3, scale, bias, eps):
    """Twin of :func:`refplay.nn.kernels.layernorm_rows`: the equations as array operations."""
    mu = x3.mean(axis=(1, 2), keepdims=True)
    xc = x3 - mu
    var = (xc * xc).mean(axis=(1, 2), keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat3 = xc * rstd
    y3 = xhat3 * scale[None, :, None] + bias[None, :, None]
    return y3, xhat3, rstd.reshape(-1)


def layernorm_rows_backward(dy3, xhat3, rstd, scale):
    """Twin of :func:`refplay.nn.kernels.layernorm_rows_backward`."""
    dscale = (dy3 * xhat3).sum(axis=(0, 2))
    dbias = dy3.sum(axis=(0, 2))
    g = dy3 * scale[None, :, None]
    dx3 = rstd[:, None, None] * (g - g.mean(axis=(1, 2), keepdims=True)
                                 - xhat3 * (g * xhat3).mean(axis=(1, 2), keepdims=True))
    return dx3, dscale, dbias


# --------------------------------------------------------------------------
# Self-attention (attention.py)
# --------------------------------------------------------------------------
# Same layouts as the kernels (batch innermost): batched float64 matmuls on
# explicit (N, H, T, dh) heads, moved to and from the kernels' layout.


def _heads(qkv_t: np.ndarray, num_heads: int) -> np.ndarray:
    """(3D, T, N) -> (3, N, H, T, dh) float64: queries, keys and values split into heads."""
    f3, t_, n_ = qkv_t.shape
    dh = f3 // 3 // num_heads
    return qkv_t.astype(np.float64).reshape(3, num_heads, dh, t_, n_).transpose(0, 4, 1, 3, 2)


def _features_first(a: np.ndarray) -> np.ndarray:
    """(N, H, T, dh) -> (H*dh, T, N): heads back to the kernels' feature-major layout."""
    n_, h_, t_, dh = a.shape
    return a.transpose(1, 3, 2, 0).reshape(h_ * dh, t_, n_)


def add_feature_bias(a, b):
    """Twin of :func:`refplay.nn.kernels.add_feature_bias` (in place)."""
    a += b[:, None]
    return a


def attention_scores(qkv_t, num_heads, scale, causal, floor):
    """Twin of :func:`refplay.nn.kernels.attention_scores`: ``scale * q k^T`` minus its row max,
    -inf below ``floor``."""
    q, k, _ = _heads(qkv_t, num_heads)
    t_ = qkv_t.shape[1]
    s = (q @ k.transpose(0, 1, 3, 2)) * scale                      # (N, H, T, T)
    if causal:
        s = np.where(np.tril(np.ones((t_, t_), dtype=bool)), s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    s = np.where(s < floor, -np.inf, s)
    return s.transpose(1, 2, 3, 0).astype(qkv_t.dtype)            # (H, T, T, N)


def attention_context(qkv_t, e):
    """Twin of :func:`refplay.nn.kernels.attention_context` (``e`` normalized in place)."""
    _, _, v = _heads(qkv_t, e.shape[0])
    e64 = e.astype(np.float64).transpose(3, 0, 1, 2)               # (N, H, T, T)
    p = e64 / e64.sum(axis=-1, keepdims=True)
    e[...] = p.transpose(1, 2, 3, 0)
    return _features_first(p @ v).astype(qkv_t.dtype), e


def attention_backward(dctx_t, qkv_t, p, num_heads, scale, causal):
    """Twin of :func:`refplay.nn.kernels.attention_backward`.

    ``causal`` needs no handling here: masked probabilities are 0, so their
    ``ds`` is 0 too.
    """
    q, k, v = _heads(qkv_t, num_heads)
    p = p.astype(np.float64).transpose(3, 0, 1, 2)                 # (N, H, T, T)
    d_, t_, n_ = dctx_t.shape
    dc = dctx_t.astype(np.float64).reshape(num_heads, -1, t_, n_).transpose(3, 0, 2, 1)
    dv = p.transpose(0, 1, 3, 2) @ dc
    dp = dc @ v.transpose(0, 1, 3, 2)
    ds = p * (dp - (p * dp).sum(axis=-1, keepdims=True))
    dq = scale * (ds @ k)
    dk = scale * (ds.transpose(0, 1, 3, 2) @ q)
    dqkv = np.concatenate([_features_first(a) for a in (dq, dk, dv)])
    return dqkv.astype(qkv_t.dtype)
