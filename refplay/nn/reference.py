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


def im2col(x, kh, kw, sh, sw, pt, pl, oh, ow):
    """Twin of :func:`refplay.nn.kernels.im2col`: one strided slice per window offset."""
    n_, c_ = x.shape[:2]
    xp = _pad_to(x, kh, kw, sh, sw, pt, pl, oh, ow)
    cols = np.empty((c_, kh, kw, n_, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]  # (N, C, oh, ow)
            cols[:, i, j] = window.transpose(1, 0, 2, 3)
    return cols.reshape(c_ * kh * kw, n_ * oh * ow)


def col2im(cols, n_, c_, h_, w_, kh, kw, sh, sw, pt, pl, oh, ow):
    """Twin of :func:`refplay.nn.kernels.col2im`: add each window offset's slice back."""
    dxp = _pad_to(np.zeros((n_, c_, h_, w_), cols.dtype), kh, kw, sh, sw, pt, pl, oh, ow)
    c6 = cols.reshape(c_, kh, kw, n_, oh, ow)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += c6[:, i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, pt:pt + h_, pl:pl + w_].copy()


def bias_act_to_nchw(y, b, relu, n_):
    """Twin of :func:`refplay.nn.kernels.bias_act_to_nchw`."""
    c_ = y.shape[0]
    out = (y + b[:, None]).reshape(c_, n_, -1).transpose(1, 0, 2)
    return np.ascontiguousarray(np.maximum(out, 0) if relu else out)


def relu_grad_to_cn(dout, a, relu):
    """Twin of :func:`refplay.nn.kernels.relu_grad_to_cn`."""
    dz = dout * (a > 0) if relu else dout
    dz = dz.transpose(1, 0, 2).reshape(dout.shape[1], -1)
    return np.ascontiguousarray(dz), dz.sum(axis=1, dtype=np.float64).astype(dout.dtype)


def _windows(xp, kh, kw, sh, sw, oh, ow):
    """All windows of a padded ``xp`` stacked on a new last axis: (N, C, oh, ow, kh*kw)."""
    return np.stack([xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
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
            dxp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += g
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
