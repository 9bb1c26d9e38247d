"""Numba kernels used by :mod:`refplay.nn.layers` (``@njit(cache=True)``).

Each kernel has a plain-numpy twin of the same name in
:mod:`refplay.nn.reference`; tests assert they agree. Kernels compile lazily
on first call (nothing compiles at import) and are cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --------------------------------------------------------------------------
# Convolution, pooling (layers.py)
# --------------------------------------------------------------------------
# Layout: images are NCHW (a 1-D signal is NCHW with H = 1). Geometry is given
# explicitly as (kernel kh, kw; stride sh, sw; top/left zero padding pt, pl;
# output size oh, ow); rows and columns past the input's end read as zeros, so
# bottom/right padding is implied by (oh, ow). The pooling kernels take an
# input the caller has already padded (-inf for max, 0 for average).
#
# A convolution is one GEMM on "columns" (im2col, Chellapilla et al. 2006):
#     cols[(c*KH + i)*KW + j, (n*OH + p)*OW + q] = x_pad[n, c, p*sh + i, q*sw + j]
#     y = W.reshape(C_out, C*KH*KW) @ cols                  (C_out, N*OH*OW)
# The columns put the batch in the GEMM's long axis, so a layer is a few large
# BLAS calls (forward, weight gradient and input gradient alike; the layer runs
# them per cache-sized chunk of the batch) instead of N small ones. The kernels
# below build and fold the columns, move results between the GEMM's (C, N*P)
# layout and NCHW (fusing the bias and ReLU), and pool. Dense layers get the
# same bias + ReLU fusion on their (N, K) GEMM output.
#
# Measured choice: a straightforward direct Numba loop (no register blocking)
# reached ~2 GFLOP/s on the 2-D CNN of benchmarks/compare_torch.py; im2col + BLAS reaches
# 60-100 GFLOP/s in the GEMMs, so the convolution is im2col + GEMM -- except
# where the GEMM is tiny in one dimension (K = C*kh*kw <= 16, a first layer):
# there the conv_small_k_* kernels below replace it. A ReLU convolution
# followed by a 2x2 max-pool can pool in the same pass (bias_act_pool_to_nchw
# and friends, for Conv2D(max_pool=True)).


@njit(cache=True)
def _valid_range(k, pad, stride, in_len, out_len):
    """Outputs ``o`` in ``[lo, hi)`` read an input inside ``[0, in_len)`` at offset ``k``."""
    lo = 0
    while lo < out_len and lo * stride + k - pad < 0:
        lo += 1
    hi = out_len
    while hi > lo and (hi - 1) * stride + k - pad >= in_len:
        hi -= 1
    return lo, hi


# The batch-innermost loops below visit the batch in blocks of this many
# examples: a (row, p, q) step touches one cache line per example in the
# source and in the destination, and 2 x 128 lines stay in L1 where 2 x 500 (a
# validation split in one batch) do not (measured: 1.5-3x faster at 500
# examples; a training batch of up to 128 is one block, as before). Blocking
# only reorders independent copies, and each pixel's additions in col2im.
_BATCH_BLOCK = 128
# Output rows at least this long, or output planes at least this large, are
# copied row by row whatever the batch. Measured at batch 100-500: MNIST-1D's
# stride-1 first layer (ow = 40) 1.3-8x faster; benchmarks/compare_torch.py's
# 2-D CNN at batch 128 (28x28 and 14x14 planes) 2-3.5x faster, where the batch
# loop strides across a whole plane per example. Small planes (7x7, 5x5) and
# MNIST-1D's strided layers (ow = 19, 10, 5) stay faster along the batch.
_ROWS_MIN_OW = 32
_ROWS_MIN_PLANE = 64


@njit(cache=True)
def _copy_rows(n_, oh, ow):
    """Whether :func:`im2col` / :func:`col2im` loop along output rows (else along the batch)."""
    return n_ <= ow or ow >= _ROWS_MIN_OW or oh * ow >= _ROWS_MIN_PLANE


@njit(cache=True)
def im2col(x, kh, kw, sh, sw, pt, pl, oh, ow):
    """Columns of ``x`` (N, C, H, W) -> (C*kh*kw, N*oh*ow); see the section comment.

    Three loop orders fill the same columns. A stride-1 convolution that keeps
    the width (``"same"`` padding: every 3x3 layer of a 2-D CNN) shifts whole
    planes (:func:`_im2col_shift`); otherwise the innermost loop runs along
    the output row (``ow``) unless it is a handful of iterations shorter than
    the batch: a 2-D image convolution (unless its planes are tiny), or a long
    1-D signal, copies output rows (:func:`_im2col_rows`); the short strided
    rows of a 1-D convolution such as MNIST-1D's (``ow`` = 10 at batch 100)
    are copied across the batch (:func:`_im2col_batch_innermost`; measured
    2.7-3.8x faster there).
    """
    n_, c_, h_, w_ = x.shape
    if sh == 1 and sw == 1 and ow == w_:
        return _im2col_shift(np.ascontiguousarray(x), kh, kw, pt, pl, oh)
    if _copy_rows(n_, oh, ow):
        return _im2col_rows(x, kh, kw, sh, sw, pt, pl, oh, ow)
    cols = np.empty((c_ * kh * kw, n_, oh, ow), x.dtype)
    _im2col_batch_innermost(x, cols, kh, kw, sh, sw, pt, pl)
    return cols.reshape(c_ * kh * kw, n_ * oh * ow)


# The flat-offset kernels below index with unsigned integers: Numba checks a
# signed index for a negative value (Python's wraparound), which keeps LLVM
# from vectorizing the copy (measured 1.5-2x slower).
_U = np.uint64


@njit(cache=True)
def _plane_shift(i, j, pt, pl, h_, w_, oh):
    """What offset (i, j) of a stride-1, width-keeping convolution reads, per plane.

    Output row p reads input row ``p + i - pt``, so the valid output rows
    ``[p_lo, p_hi)`` form one block of ``size = (p_hi - p_lo) * w_`` values
    whose entry ``k`` reads the input plane at flat offset
    ``(p_lo + i - pt) * w_ + k + (j - pl)``: one long copy, except the
    ``mask``-ed-out columns, which read padding (the shift spills them into
    the neighbouring row). ``k`` in ``[k_lo, k_hi)`` stays inside the plane.
    Returns ``(p_lo, p_hi, first input offset, k_lo, k_hi, mask)``.
    """
    p_lo, p_hi = _valid_range(i, pt, 1, h_, oh)
    lo, hi = _valid_range(j, pl, 1, w_, w_)
    size = (p_hi - p_lo) * w_
    mask = np.zeros(size, np.bool_)
    for p in range(p_hi - p_lo):
        for q in range(lo, hi):
            mask[p * w_ + q] = True
    shift = j - pl
    return p_lo, p_hi, (p_lo + i - pt) * w_ + shift, max(0, -shift), size - max(0, shift), mask


@njit(cache=True)
def _im2col_shift(x, kh, kw, pt, pl, oh):
    """:func:`im2col` for stride 1 and ``ow == W``: one masked copy per (offset, channel, example).

    ``x`` C-contiguous. See :func:`_plane_shift`; rows reading padding, and
    the masked columns, are zeros. 3x faster than copying 14-pixel rows
    (the 2-D CNN's second layer), whose loop never reaches the vector body.
    """
    n_, c_, h_, w_ = x.shape
    plane, m = oh * w_, n_ * oh * w_
    cols = np.empty((c_ * kh * kw, m), x.dtype)
    xf, cf = x.ravel(), cols.reshape(c_ * kh * kw * m)
    for i in range(kh):
        for j in range(kw):
            p_lo, p_hi, s0, k_lo, k_hi, mask = _plane_shift(i, j, pt, pl, h_, w_, oh)
            size = _U(mask.size)
            for c in range(c_):
                for n in range(n_):
                    d = _U(((c * kh + i) * kw + j) * m + n * plane)
                    for k in range(_U(p_lo * w_)):               # rows above the input
                        cf[d + k] = 0
                    for k in range(_U(p_hi * w_), _U(plane)):    # rows below it
                        cf[d + k] = 0
                    d += _U(p_lo * w_)
                    # s + k wraps around (unsigned) to the right offset for k >= k_lo
                    s = _U((n * c_ + c) * h_ * w_ + s0 + k_lo) - _U(k_lo)
                    for k in range(_U(k_lo)):
                        cf[d + k] = 0
                    for k in range(_U(k_lo), _U(k_hi)):
                        cf[d + k] = xf[s + k] if mask[k] else 0
                    for k in range(_U(k_hi), size):
                        cf[d + k] = 0
    return cols


@njit(cache=True)
def _im2col_batch_innermost(x, cols, kh, kw, sh, sw, pt, pl):
    """``cols[(c*kh + i)*kw + j, n, p, q] = x[n, c, p*sh + i - pt, q*sw + j - pl]`` (0 outside x).

    The definition, with ``n`` innermost: one strided copy of up to
    ``_BATCH_BLOCK`` values per (block, row, p, q). ``cols`` is
    (C*kh*kw, N, oh, ow), filled in place.
    """
    n_all, c_, h_, w_ = x.shape
    oh, ow = cols.shape[2], cols.shape[3]
    for n0 in range(0, n_all, _BATCH_BLOCK):
        n_ = min(_BATCH_BLOCK, n_all - n0)
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    dst = cols[(c * kh + i) * kw + j, n0:n0 + n_]   # (n_, oh, ow)
                    for p in range(oh):
                        r = p * sh + i - pt
                        for q in range(ow):
                            s = q * sw + j - pl
                            if 0 <= r < h_ and 0 <= s < w_:
                                src = x[n0:n0 + n_, c, r, s]        # (n_,)
                                for n in range(n_):
                                    dst[n, p, q] = src[n]
                            else:
                                for n in range(n_):
                                    dst[n, p, q] = 0


@njit(cache=True)
def _im2col_rows(x, kh, kw, sh, sw, pt, pl, oh, ow):
    """:func:`im2col` copying output rows: the loop order for wide outputs.

    Starts from zeros and copies, for each kernel offset (i, j), the outputs
    whose input pixel is inside ``x``. Every copy loop indexes views from 0,
    which spares Numba's negative-index checks: with ``sw == 1`` each output
    row is one contiguous (vectorized) copy; otherwise one strided 3-D view per
    offset keeps the per-row overhead out of short rows.
    """
    n_, c_, h_, w_ = x.shape
    cols = np.zeros((c_ * kh * kw, n_ * oh * ow), x.dtype)
    for c in range(c_):
        for i in range(kh):
            p_lo, p_hi = _valid_range(i, pt, sh, h_, oh)   # output rows reading inside x
            r0 = p_lo * sh + i - pt                        # ... starting at input row r0
            for j in range(kw):
                lo, hi = _valid_range(j, pl, sw, w_, ow)   # output columns reading inside x
                s0 = lo * sw + j - pl                      # ... starting at input column s0
                row = cols[(c * kh + i) * kw + j]
                if sw == 1:
                    for n in range(n_):
                        for p in range(p_lo, p_hi):
                            dst = row[(n * oh + p) * ow + lo:(n * oh + p) * ow + hi]
                            src = x[n, c, r0 + (p - p_lo) * sh, s0:s0 + hi - lo]
                            for q in range(hi - lo):
                                dst[q] = src[q]
                else:
                    dst3 = row.reshape(n_, oh, ow)[:, p_lo:p_hi, lo:hi]
                    src3 = x[:, c, r0:r0 + (p_hi - p_lo - 1) * sh + 1:sh,
                             s0:s0 + (hi - lo - 1) * sw + 1:sw]
                    for n in range(n_):
                        for p in range(p_hi - p_lo):
                            for q in range(hi - lo):
                                dst3[n, p, q] = src3[n, p, q]
    return cols


@njit(cache=True)
def col2im(cols, dx, kh, kw, sh, sw, pt, pl, oh, ow):
    """Adjoint of :func:`im2col`: ``dx`` (N, C, H, W) = the sum of each column entry at its pixel.

    Writes into ``dx`` (overwritten, so the caller can hand in a slab of a
    larger array; C-contiguous); ``cols`` is C-contiguous. The same three
    loop orders as :func:`im2col`, with ``+=``; all add a pixel's terms in
    kernel-offset order (i, j), as the numpy twin does.
    """
    n_, c_, h_, w_ = dx.shape
    dx[:] = 0
    if sh == 1 and sw == 1 and ow == w_:
        _col2im_shift(cols, dx, kh, kw, pt, pl, oh)
    elif _copy_rows(n_, oh, ow):
        _col2im_rows(cols, dx, kh, kw, sh, sw, pt, pl, oh, ow)
    else:
        _col2im_batch_innermost(cols.reshape(cols.shape[0], n_, oh, ow), dx, kh, kw, sh, sw,
                                pt, pl)
    return dx


@njit(cache=True)
def _col2im_batch_innermost(cols, dx, kh, kw, sh, sw, pt, pl):
    """``dx[n, c, p*sh + i - pt, q*sw + j - pl] += cols[(c*kh + i)*kw + j, n, p, q]``.

    The adjoint of :func:`_im2col_batch_innermost` (terms outside ``dx`` are
    dropped), in the same blocks of the batch: each pixel still adds its terms
    in kernel-offset order.
    """
    n_all, c_, h_, w_ = dx.shape
    oh, ow = cols.shape[2], cols.shape[3]
    for n0 in range(0, n_all, _BATCH_BLOCK):
        n_ = min(_BATCH_BLOCK, n_all - n0)
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    src = cols[(c * kh + i) * kw + j, n0:n0 + n_]   # (n_, oh, ow)
                    for p in range(oh):
                        r = p * sh + i - pt
                        for q in range(ow):
                            s = q * sw + j - pl
                            if 0 <= r < h_ and 0 <= s < w_:
                                dst = dx[n0:n0 + n_, c, r, s]       # (n_,)
                                for n in range(n_):
                                    dst[n] += src[n, p, q]


@njit(cache=True)
def _col2im_shift(cols, dx, kh, kw, pt, pl, oh):
    """:func:`col2im` for stride 1 and ``ow == W``: the adjoint of :func:`_im2col_shift`.

    The masked-out entries (gradients of padding) add an exact ``+ 0`` to the
    neighbouring row's pixel instead of a branch per row.
    """
    n_, c_, h_, w_ = dx.shape
    plane, m = oh * w_, n_ * oh * w_
    cf, xf = cols.ravel(), dx.reshape(n_ * c_ * h_ * w_)
    for i in range(kh):
        for j in range(kw):
            p_lo, p_hi, s0, k_lo, k_hi, mask = _plane_shift(i, j, pt, pl, h_, w_, oh)
            for c in range(c_):
                for n in range(n_):
                    d = _U(((c * kh + i) * kw + j) * m + n * plane + p_lo * w_)
                    s = _U((n * c_ + c) * h_ * w_ + s0 + k_lo) - _U(k_lo)
                    for k in range(_U(k_lo), _U(k_hi)):
                        xf[s + k] += cf[d + k] if mask[k] else 0


@njit(cache=True)
def _col2im_rows(cols, dx, kh, kw, sh, sw, pt, pl, oh, ow):
    """:func:`col2im` adding output rows back: the loop structure of :func:`_im2col_rows`."""
    n_, c_, h_, w_ = dx.shape
    for c in range(c_):
        for i in range(kh):
            p_lo, p_hi = _valid_range(i, pt, sh, h_, oh)
            r0 = p_lo * sh + i - pt
            for j in range(kw):
                lo, hi = _valid_range(j, pl, sw, w_, ow)
                s0 = lo * sw + j - pl
                row = cols[(c * kh + i) * kw + j]
                if sw == 1:
                    for n in range(n_):
                        for p in range(p_lo, p_hi):
                            src = row[(n * oh + p) * ow + lo:(n * oh + p) * ow + hi]
                            dst = dx[n, c, r0 + (p - p_lo) * sh, s0:s0 + hi - lo]
                            for q in range(hi - lo):
                                dst[q] += src[q]
                else:
                    src3 = row.reshape(n_, oh, ow)[:, p_lo:p_hi, lo:hi]
                    dst3 = dx[:, c, r0:r0 + (p_hi - p_lo - 1) * sh + 1:sh,
                              s0:s0 + (hi - lo - 1) * sw + 1:sw]
                    for n in range(n_):
                        for p in range(p_hi - p_lo):
                            for q in range(hi - lo):
                                dst3[n, p, q] += src3[n, p, q]


@njit(cache=True)
def bias_act_to_nchw(y, b, relu, out):
    """GEMM output ``y`` (C, N*P) + bias ``b`` (C,), then ReLU if ``relu`` -> ``out`` (N, C, P)."""
    n_, c_, p_ = out.shape
    for n in range(n_):
        for c in range(c_):
            bc = b[c]
            src = y[c, n * p_:(n + 1) * p_]
            dst = out[n, c]
            if relu:
                for p in range(p_):
                    v = src[p] + bc
                    dst[p] = 0 if v < 0 else v        # not "v > 0": NaN must pass through
            else:
                for p in range(p_):
                    dst[p] = src[p] + bc
    return out


@njit(cache=True)
def relu_grad_to_cn(dout, a, relu):
    """Back through :func:`bias_act_to_nchw`: ``dout``, ``a`` (N, C, P) -> dz (C, N*P).

    ``dz = dout * [a > 0]`` when ``relu`` (``a`` is the ReLU output), else
    ``dout``, moved to the GEMM's layout. (The bias gradient is ``dz.sum(1)``,
    left to numpy: its pairwise sum is both faster and more accurate than a loop.)
    """
    n_, c_, p_ = dout.shape
    dz = np.empty((c_, n_ * p_), dout.dtype)
    for n in range(n_):
        for c in range(c_):
            src = dout[n, c]
            dst = dz[c, n * p_:(n + 1) * p_]
            if relu:
                act = a[n, c]
                for p in range(p_):
                    dst[p] = src[p] * (act[p] > 0)     # a multiply, not a branch: signs are random
            else:
                for p in range(p_):
                    dst[p] = src[p]
    return dz


# A convolution with few inputs per output (K = C*kh*kw: 9 for a first 3x3
# layer on one channel) is a poor GEMM: BLAS reaches ~40 GFLOP/s on its
# forward product and ~20 on its weight gradient (a 100,000-long reduction
# into a 16 x 9 result), and the bias/ReLU and ReLU-gradient passes around it
# cost as much again. At K <= SMALL_K_MAX, on long planes (at least SMALL_K_MIN_PLANE outputs,
# so that the loops along a plane run in vector registers) the two kernels
# below do it all in one pass each over the layer's output (measured on the
# 2-D CNN's first layer, batch 128: forward 1.1 -> 0.85 ms, backward 2.5 -> 1.0 ms).
SMALL_K_MAX = 16
SMALL_K_MIN_PLANE = 64
# Dots and sums along a plane need reassociation to vectorize; no nnan/ninf
# flags, so a NaN or Inf still propagates.
_CONV_MATH = {"reassoc", "contract"}


@njit(cache=True, fastmath=_CONV_MATH)
def _small_k_plane(cf, w2, o, s, m, p_, acc):
    """``acc`` (P,) = sum_t w2[o, t] * cols[t, s:s + P] (``cf`` the flat columns, rows ``m``
    long), three column rows per pass: ``acc`` is loaded and stored once per three rows."""
    k_ = w2.shape[1]
    acc[:] = 0
    for t in range(0, k_ - 2, 3):
        w0, w1, w2_ = w2[o, t], w2[o, t + 1], w2[o, t + 2]
        s0, s1, s2 = _U(t * m + s), _U((t + 1) * m + s), _U((t + 2) * m + s)
        for k in range(_U(p_)):
            acc[k] += w0 * cf[s0 + k] + w1 * cf[s1 + k] + w2_ * cf[s2 + k]
    for t in range(k_ - k_ % 3, k_):
        wt, s0 = w2[o, t], _U(t * m + s)
        for k in range(_U(p_)):
            acc[k] += wt * cf[s0 + k]


@njit(cache=True, fastmath=_CONV_MATH)
def _small_k_dots(g, cf, s, m, p_, dwo, zero):
    """``dwo[t] += sum_k g[k] * cols[t, s + k]`` for every column row t (three per pass over ``g``)."""
    k_ = dwo.shape[0]
    for t in range(0, k_ - 2, 3):
        s0, s1, s2 = _U(t * m + s), _U((t + 1) * m + s), _U((t + 2) * m + s)
        d0, d1, d2 = zero, zero, zero
        for k in range(_U(p_)):
            d0 += g[k] * cf[s0 + k]
            d1 += g[k] * cf[s1 + k]
            d2 += g[k] * cf[s2 + k]
        dwo[t] += d0
        dwo[t + 1] += d1
        dwo[t + 2] += d2
    for t in range(k_ - k_ % 3, k_):
        s0, dot = _U(t * m + s), zero
        for k in range(_U(p_)):
            dot += g[k] * cf[s0 + k]
        dwo[t] += dot


@njit(cache=True, fastmath=_CONV_MATH)
def conv_small_k_forward(cols, w2, b, relu, out):
    """``out`` (N, C_out, P) = ``w2`` (C_out, K) @ ``cols`` (K, N*P) + ``b``, then ReLU if ``relu``.

    The product, bias and activation of :func:`bias_act_to_nchw` without the
    GEMM: each output plane is accumulated over the K column rows
    (:func:`_small_k_plane`, a vector loop along the plane) and stored in
    NCHW. ``cols`` is C-contiguous. Returns ``out``.
    """
    n_, c_out, p_ = out.shape
    m = n_ * p_
    cf, of = cols.ravel(), out.reshape(n_ * c_out * p_)
    acc = np.empty(p_, out.dtype)
    for n in range(n_):
        for o in range(c_out):
            _small_k_plane(cf, w2, o, n * p_, m, p_, acc)
            bo = b[o]
            d = _U((n * c_out + o) * p_)
            for k in range(_U(p_)):
                v = acc[k] + bo
                of[d + k] = (0 if v < 0 else v) if relu else v   # not "v > 0": NaN passes
    return out


@njit(cache=True)
def conv_small_k_pool_forward(cols, w2, b, relu, oh, ow, out, arg):
    """:func:`conv_small_k_forward` then a 2x2, stride-2 max-pool of each (oh, ow) plane while
    it is in cache: ``out``, ``arg`` (N, C_out, oh//2, ow//2) as :func:`bias_act_pool_to_nchw`."""
    n_, c_out = out.shape[0], out.shape[1]
    p_, pooled = oh * ow, (oh // 2) * (ow // 2)
    cf, of, af = cols.ravel(), out.reshape(out.size), arg.reshape(arg.size)
    acc, zero = np.empty(p_, out.dtype), np.zeros(1, out.dtype)[0]
    for n in range(n_):
        for o in range(c_out):
            _small_k_plane(cf, w2, o, n * p_, n_ * p_, p_, acc)
            _pool_plane_2x2(acc, 0, b[o], relu, oh, ow, of, af, (n * c_out + o) * pooled, zero)
    return out


@njit(cache=True, fastmath=_CONV_MATH)
def conv_small_k_backward(dout, a, cols, relu, dz):
    """Back through :func:`conv_small_k_forward`: ``dw`` (C_out, K) and ``db`` (C_out,).

    ``dz = dout * [a > 0]`` (or ``dout``), with ``dout``, ``a`` (N, C_out, P),
    then ``dw[o, t] = sum_{n,p} dz[n, o, p] * cols[t, n*P + p]`` and
    ``db[o] = sum dz[:, o]``: dots along each plane (:func:`_small_k_dots`),
    summed over the batch in float64, returned in the dtype of ``dout``.
    ``dz`` is also written to ``dz`` (C_out, N*P), the GEMM layout the input
    gradient needs, unless that array is empty.
    """
    n_, c_out, p_ = dout.shape
    m = n_ * p_
    cf, df, af = cols.ravel(), dout.ravel(), a.ravel()
    zf = dz.reshape(dz.size)
    g, zero = np.empty(p_, dout.dtype), np.zeros(1, dout.dtype)
    dw, db = np.zeros((c_out, cols.shape[0])), np.zeros(c_out)
    for n in range(n_):
        for o in range(c_out):
            s = _U((n * c_out + o) * p_)
            tot = zero[0]
            for k in range(_U(p_)):
                g[k] = df[s + k] * (af[s + k] > 0) if relu else df[s + k]
                tot += g[k]
            db[o] += tot
            _small_k_grads(g, cf, n, o, m, p_, dw, zf, zero[0])
    return dw.astype(dout.dtype), db.astype(dout.dtype)


@njit(cache=True, fastmath=_CONV_MATH)
def conv_small_k_pool_backward(dout, a, arg, cols, relu, oh, ow, dz):
    """Back through :func:`conv_small_k_pool_forward`: as :func:`conv_small_k_backward`, with
    each plane's ``dz`` built from the pooled ``dout``, ``a``, ``arg`` (N, C_out, K) as
    :func:`pool_relu_grad_to_cn` builds it (0 except at the winners)."""
    n_, c_out, k_ = dout.shape
    p_ = oh * ow
    m = n_ * p_
    cf, zf = cols.ravel(), dz.reshape(dz.size)
    g, zero = np.empty(p_, dout.dtype), np.zeros(1, dout.dtype)
    dw, db = np.zeros((c_out, cols.shape[0])), np.zeros(c_out)
    for n in range(n_):
        for o in range(c_out):
            g[:] = 0
            tot = zero[0]
            for k in range(k_):
                v = dout[n, o, k] * (a[n, o, k] > 0) if relu else dout[n, o, k]
                g[arg[n, o, k]] = v
                tot += v
            db[o] += tot
            _small_k_grads(g, cf, n, o, m, p_, dw, zf, zero[0])
    return dw.astype(dout.dtype), db.astype(dout.dtype)


@njit(cache=True, fastmath=_CONV_MATH)
def _small_k_grads(g, cf, n, o, m, p_, dw, zf, zero):
    """Plane (n, o)'s ``dz`` = ``g``: into ``zf`` (flat (C_out, N*P), unless empty) and ``dw[o]``."""
    if zf.size:
        d = _U(o * m + n * p_)
        for k in range(_U(p_)):
            zf[d + k] = g[k]
    _small_k_dots(g, cf, n * p_, m, p_, dw[o], zero)


# A ReLU (or identity) convolution followed by a 2x2, stride-2 max-pool
# (every block of the 2-D CNN) can pool its output while it is still in
# cache: the kernels below write the pooled planes and the winners' flat
# indices in the conv plane instead of the full output, and the backward
# pass routes each pooled gradient straight to its winner. The values are
# exactly those of the unfused layers (the same sums, bias and ReLU, then
# the same first-maximum tournament); see Conv2D's ``max_pool``.



@njit(cache=True, inline="always")
def _max_2x2(a, b, c, d, row):
    """The max of the 2x2 window ``a b / c d`` (rows ``row`` apart) and the winner's offset
    from ``a``, by a tournament of selects (no branches: the loop stays vectorizable);
    a NaN anywhere in the window wins, as in numpy's max."""
    tb, td = b > a, d > c
    ab, cd = (b if tb else a), (d if td else c)
    ia, ic = (np.int32(1) if tb else np.int32(0)), (np.int32(row + 1) if td else np.int32(row))
    tc = cd > ab
    nan = (a != a) | (b != b) | (c != c) | (d != d)
    return ((cd if tc else ab) if not nan else np.nan), (ic if tc else ia)

@njit(cache=True)
def _pool_plane_2x2(src, s0, bias, relu, oh, ow, of, af, o0, zero):
    """Pool ``act(src[s0:s0 + oh*ow] + bias)``, an (oh, ow) plane, over 2x2 windows, stride 2.

    Writes ``of[o0 + p*(ow//2) + q]`` (the maximum; NaN if the window has one)
    and ``af[...]`` (its flat index in the plane: the first maximum in
    row-major order, as :func:`maxpool2d_forward`). A last odd row or column is
    dropped, as by ``MaxPool2D(2)``.
    """
    ph, pw = oh // 2, ow // 2
    for p in range(ph):
        r, o = _U(s0 + 2 * p * ow), _U(o0 + p * pw)
        for q in range(_U(pw)):
            i = r + _U(2) * q
            a, b = src[i] + bias, src[i + _U(1)] + bias
            c, d = src[i + _U(ow)] + bias, src[i + _U(ow + 1)] + bias
            if relu:                                   # as bias_act_to_nchw: NaN passes
                a, b = (zero if a < 0 else a), (zero if b < 0 else b)
                c, d = (zero if c < 0 else c), (zero if d < 0 else d)
            of[o + q], winner = _max_2x2(a, b, c, d, ow)
            af[o + q] = np.int32(i - _U(s0)) + winner


@njit(cache=True)
def bias_act_pool_to_nchw(y, b, relu, oh, ow, out, arg):
    """:func:`bias_act_to_nchw` then a 2x2, stride-2 max-pool, in one pass over ``y``.

    ``y`` (C, N*oh*ow) C-contiguous -> ``out`` (N, C, oh//2, ow//2) and the
    winners' flat indices in their (oh, ow) plane, ``arg`` (same shape, int32).
    Returns ``out``.
    """
    n_, c_ = out.shape[0], out.shape[1]
    plane, pooled = oh * ow, (oh // 2) * (ow // 2)
    yf, of, af = y.ravel(), out.reshape(out.size), arg.reshape(arg.size)
    zero = np.zeros(1, y.dtype)[0]         # a typed 0: a literal 0 would make the ReLU float64
    for n in range(n_):
        for c in range(c_):
            _pool_plane_2x2(yf, (c * n_ + n) * plane, b[c], relu, oh, ow, of, af,
                            (n * c_ + c) * pooled, zero)
    return out


@njit(cache=True)
def pool_relu_grad_to_cn(dout, a, arg, relu, plane):
    """Back through :func:`bias_act_pool_to_nchw`: ``dz`` (C, N*plane), in the GEMM's layout,
    and the bias gradient ``db = dz.sum(1)`` (C,).

    Each pooled gradient ``dout[n, c, k] * [a > 0]`` (``a`` the pooled
    output; ``dout``, ``a``, ``arg`` (N, C, K)) goes to its winner
    ``arg[n, c, k]``; every other entry is 0. ``db`` adds only the winners
    (in float64, returned in the dtype of ``dout``): no second pass over ``dz``.
    """
    n_, c_, k_ = dout.shape
    dz = np.zeros((c_, n_ * plane), dout.dtype)
    db = np.zeros(c_)
    zf = dz.reshape(dz.size)
    for n in range(n_):
        for c in range(c_):
            d0 = c * n_ * plane + n * plane
            for k in range(k_):
                g = dout[n, c, k] * (a[n, c, k] > 0) if relu else dout[n, c, k]
                zf[d0 + arg[n, c, k]] = g
                db[c] += g
    return dz, db.astype(dout.dtype)


@njit(cache=True)
def dense_bias_act(z, b, relu):
    """``z`` (N, K) += bias ``b`` (K,), then ReLU if ``relu``; in place, returns ``z``.

    The Dense layer's GEMM output in one pass instead of numpy's two
    (``z += b``; ``np.maximum(z, 0, out=z)``), which on the MNIST-1D MLP's
    (100, 100) activations is ~8x faster: there numpy's per-call overhead is
    most of the cost.
    """
    n_, k_ = z.shape
    for n in range(n_):
        row = z[n]
        if relu:
            for k in range(k_):
                v = row[k] + b[k]
                row[k] = 0 if v < 0 else v            # not "v > 0": NaN must pass through
        else:
            for k in range(k_):
                row[k] += b[k]
    return z


@njit(cache=True)
def dense_relu_grad(dout, a, relu):
    """Back through :func:`dense_bias_act`: ``dz = dout * [a > 0]`` (or ``dout``) and ``db``.

    ``dout``, ``a`` (N, K), ``a`` the ReLU output. Returns ``dz`` (N, K) in
    the dtype of ``dout`` and the bias gradient ``db = sum_n dz_n`` (K,),
    accumulated in float64.
    """
    n_, k_ = dout.shape
    dz = np.empty_like(dout)
    db = np.zeros(k_)
    for n in range(n_):
        src = dout[n]
        dst = dz[n]
        act = a[n]
        for k in range(k_):
            v = src[k] * (act[k] > 0) if relu else src[k]
            dst[k] = v
            db[k] += v
    return dz, db


# GELU, tanh form: a = 0.5 z (1 + tanh u), u = sqrt(2/pi) (z + 0.044715 z^3).
# The tanh itself is left to numpy (its SIMD tanh is ~10x a Numba loop's); the
# passes around it are fused here, computed in float64 and stored in the dtype
# of ``z``. Measured on the Transformer's (1100, 64) float32 MLP activations:
# 2x faster forward, 5x backward than numpy's in-place passes.
_GELU_C = 0.7978845608028654      # sqrt(2 / pi)
_GELU_A = 0.044715


@njit(cache=True)
def gelu_bias_arg(z, b):
    """``z`` (N, K) += bias ``b`` (K,) in place; returns ``u = sqrt(2/pi) (z + 0.044715 z^3)``."""
    n_, k_ = z.shape
    u = np.empty_like(z)
    for n in range(n_):
        zr, ur = z[n], u[n]
        for k in range(k_):
            v = np.float64(zr[k]) + b[k]
            zr[k] = v
            v = np.float64(zr[k])               # the stored z, as the backward pass sees it
            ur[k] = _GELU_C * (v + _GELU_A * v * v * v)
    return u


@njit(cache=True)
def gelu_output(z, t):
    """``a = 0.5 z (1 + t)`` with ``t = tanh u`` (N, K)."""
    n_, k_ = z.shape
    a = np.empty_like(z)
    for n in range(n_):
        zr, tr, ar = z[n], t[n], a[n]
        for k in range(k_):
            ar[k] = 0.5 * np.float64(zr[k]) * (1.0 + np.float64(tr[k]))
    return a


@njit(cache=True)
def gelu_grad(da, z, t):
    """Back through GELU, and the bias gradient, in one pass::

        dz = da * (0.5 (1 + t) + 0.5 z (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 z^2))
        db = sum_n dz_n

    ``da``, ``z``, ``t`` (N, K). Returns ``dz`` in the dtype of ``da`` and
    ``db`` (K,) accumulated in float64.
    """
    n_, k_ = da.shape
    dz = np.empty_like(da)
    db = np.zeros(k_)
    for n in range(n_):
        dar, zr, tr, dzr = da[n], z[n], t[n], dz[n]
        for k in range(k_):
            v, th = np.float64(zr[k]), np.float64(tr[k])
            dudz = _GELU_C * (1.0 + 3.0 * _GELU_A * v * v)
            g = np.float64(dar[k]) * (0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * dudz)
            dzr[k] = g
            db[k] += dzr[k]
    return dz, db


@njit(cache=True)
def _window_offsets(kh, kw, row_len):
    """Flat offsets ``i*row_len + j`` of a (kh, kw) window, row-major.

    One loop over ``kh*kw`` offsets runs several times faster than two nested
    loops whose short trip counts are known only at run time.
    """
    offs = np.empty(kh * kw, np.int64)
    for i in range(kh):
        for j in range(kw):
            offs[i * kw + j] = i * row_len + j
    return offs


@njit(cache=True)
def maxpool2d_forward(xp, kh, kw, sh, sw, oh, ow):
    """Max over each window of the padded ``xp`` (N, C, Hp, Wp) -> out (N, C, oh, ow), argmax.

    ``argmax`` is the winner's flat index ``r*Wp + s`` in its padded plane:
    the first maximum in row-major window order. A NaN anywhere in a window
    makes its output NaN (as in torch: a diverging model must not look finite).
    Planes are walked by flat offsets (a view per plane or row costs more than
    a 14x14 plane's work); 2x2 windows, the common case, get their own loop
    (:func:`_maxpool_2x2`).
    """
    n_, c_, hp, wp = xp.shape
    out = np.empty((n_, c_, oh, ow), xp.dtype)
    arg = np.empty((n_, c_, oh, ow), np.int32)
    xf = xp.ravel()                       # a view when xp is contiguous (the layer's case)
    of, af = out.reshape(n_ * c_ * oh * ow), arg.reshape(n_ * c_ * oh * ow)
    if kh == 2 and kw == 2:
        _maxpool_2x2(xf, of, af, n_ * c_, hp, wp, sh, sw, oh, ow)
        return out, arg
    offs = _window_offsets(kh, kw, wp)
    for plane in range(n_ * c_):
        x0, o0 = plane * hp * wp, plane * oh * ow
        for p in range(oh):
            for q in range(ow):
                base = p * sh * wp + q * sw
                best = xf[x0 + base]
                where = base
                nan = best != best
                for t in range(1, kh * kw):
                    v = xf[x0 + base + offs[t]]
                    nan |= v != v          # a flag, not a branch: 3x faster than testing here
                    if v > best:
                        best = v
                        where = base + offs[t]
                of[o0 + p * ow + q] = best if not nan else np.nan
                af[o0 + p * ow + q] = where
    return out, arg


@njit(cache=True)
def _maxpool_2x2(xf, of, af, planes, hp, wp, sh, sw, oh, ow):
    """:func:`maxpool2d_forward` for 2x2 windows on flat arrays: the same first maximum and NaN rule.

    A tournament of selects, not branches (which of four random values wins
    is unpredictable), on unsigned offsets (see ``_U``): 2-3x faster than the
    general loop on the 2-D CNN's pools.
    """
    for plane in range(planes):
        x0, o0 = _U(plane * hp * wp), _U(plane * oh * ow)
        for p in range(oh):
            r, o = x0 + _U(p * sh * wp), o0 + _U(p * ow)
            for q in range(_U(ow)):
                i = r + q * _U(sw)
                a, b = xf[i], xf[i + _U(1)]
                c, d = xf[i + _U(wp)], xf[i + _U(wp + 1)]
                of[o + q], winner = _max_2x2(a, b, c, d, wp)
                af[o + q] = np.int32(i - x0) + winner


@njit(cache=True)
def maxpool2d_backward(dout, arg, hp, wp):
    """Route ``dout`` (N, C, oh, ow) to the argmax positions -> dxp (N, C, Hp, Wp)."""
    n_, c_, oh, ow = dout.shape
    dxp = np.zeros((n_, c_, hp * wp), dout.dtype)
    for n in range(n_):
        for c in range(c_):
            for p in range(oh):
                for q in range(ow):
                    dxp[n, c, arg[n, c, p, q]] += dout[n, c, p, q]
    return dxp.reshape(n_, c_, hp, wp)


@njit(cache=True)
def avgpool2d_forward(xp, kh, kw, sh, sw, oh, ow):
    """Mean over each window of the zero-padded ``xp`` (N, C, Hp, Wp) -> (N, C, oh, ow)."""
    n_, c_, hp, wp = xp.shape
    out = np.empty((n_, c_, oh, ow), xp.dtype)
    offs = _window_offsets(kh, kw, wp)
    inv = 1.0 / (kh * kw)
    for n in range(n_):
        for c in range(c_):
            plane = xp[n, c].ravel()
            for p in range(oh):
                for q in range(ow):
                    base = p * sh * wp + q * sw
                    acc = 0.0
                    for t in range(kh * kw):
                        acc += plane[base + offs[t]]
                    out[n, c, p, q] = acc * inv
    return out


@njit(cache=True)
def avgpool2d_backward(dout, hp, wp, kh, kw, sh, sw):
    """Spread ``dout`` (N, C, oh, ow) evenly over each window -> dxp (N, C, Hp, Wp)."""
    n_, c_, oh, ow = dout.shape
    dxp = np.zeros((n_, c_, hp * wp), dout.dtype)
    offs = _window_offsets(kh, kw, wp)
    inv = 1.0 / (kh * kw)
    for n in range(n_):
        for c in range(c_):
            d = dxp[n, c]
            for p in range(oh):
                for q in range(ow):
                    base = p * sh * wp + q * sw
                    g = dout[n, c, p, q] * inv
                    for t in range(kh * kw):
                        d[base + offs[t]] += g
    return dxp.reshape(n_, c_, hp, wp)


# --------------------------------------------------------------------------
# Normalization statistics and fused losses (norms.py, losses.py)
# --------------------------------------------------------------------------
# Accumulators are float64 whatever the input dtype: statistics of float32
# activations are then as accurate as the float32 inputs allow, and kernel and
# twin agree to float64 rounding.


@njit(cache=True)
def bn_group_stats(x3, mask, bounds):
    """Per-group count, mean and sum of squared deviations of ``x3`` (B, C, S).

    Group ``g`` holds examples ``bounds[g]:bounds[g+1]``; example ``b`` counts
    with weight ``mask[b]`` (1 real, 0 padding). Returns ``count`` (G,),
    ``mean`` (G, C) and ``m2`` (G, C), all float64, with
    ``m2 = sum_{b,s} mask_b (x - mean)^2`` (two passes, for stability).
    A group without real examples gets count 0, mean 0, m2 0.
    """
    B, C, S = x3.shape
    G = bounds.shape[0] - 1
    count = np.zeros(G)
    mean = np.zeros((G, C))
    m2 = np.zeros((G, C))
    for g in range(G):
        n = 0.0
        for b in range(bounds[g], bounds[g + 1]):
            n += mask[b]
        n *= S
        count[g] = n
        if n == 0.0:
            continue
        for c in range(C):
            acc = 0.0
            for b in range(bounds[g], bounds[g + 1]):
                if mask[b] != 0.0:
                    for s in range(S):
                        acc += x3[b, c, s]
            mu = acc / n
            acc2 = 0.0
            for b in range(bounds[g], bounds[g + 1]):
                if mask[b] != 0.0:
                    for s in range(S):
                        d = x3[b, c, s] - mu
                        acc2 += d * d
            mean[g, c] = mu
            m2[g, c] = acc2
    return count, mean, m2


@njit(cache=True)
def bn_normalize(x3, bounds, mean, rstd, scale, bias):
    """Normalize per group and apply the affine map, in one pass over ``x3`` (B, C, S).

    ``xhat = (x - mean[g, c]) * rstd[g, c]`` and ``y = scale[c] * xhat + bias[c]``
    for every example of group ``g``; computed in float64, stored in the
    dtype of ``x3``. Returns ``(xhat, y)``.
    """
    B, C, S = x3.shape
    xhat = np.empty_like(x3)
    y = np.empty_like(x3)
    for g in range(bounds.shape[0] - 1):
        for b in range(bounds[g], bounds[g + 1]):
            for c in range(C):
                mu = mean[g, c]
                r = rstd[g, c]
                sc = np.float64(scale[c])
                bi = np.float64(bias[c])
                for s in range(S):
                    v = (np.float64(x3[b, c, s]) - mu) * r
                    xhat[b, c, s] = v
                    y[b, c, s] = v * sc + bi
    return xhat, y


@njit(cache=True)
def bn_backward_dx(dy3, xhat3, bounds, mask, k, c1, c2):
    """Input gradient of batch norm in one pass::

        dx = k[g, c] * (dy - mask[b] * (c1[g, c] + xhat * c2[g, c]))

    ``k = scale * rstd``, ``c1 = sum(dy) / n`` and ``c2 = sum(dy * xhat) / n``
    per group and channel (float64, (G, C)); result in the dtype of ``dy3``.
    """
    B, C, S = dy3.shape
    dx = np.empty_like(dy3)
    for g in range(bounds.shape[0] - 1):
        for b in range(bounds[g], bounds[g + 1]):
            m = mask[b]
            for c in range(C):
                kk = k[g, c]
                a1 = m * c1[g, c]
                a2 = m * c2[g, c]
                for s in range(S):
                    v = np.float64(dy3[b, c, s]) - a1 - np.float64(xhat3[b, c, s]) * a2
                    dx[b, c, s] = kk * v
    return dx


@njit(cache=True)
def bn_group_backward_sums(g3, xhat3, bounds):
    """Per-group sums :math:`\\sum g` and :math:`\\sum g\\,\\hat x` over examples and positions.

    ``g3`` and ``xhat3`` are (B, C, S); returns two (G, C) float64 arrays.
    The sums run over *all* examples of the group, padding included: a
    padded example's output still depends on the group statistics.
    """
    B, C, S = g3.shape
    G = bounds.shape[0] - 1
    sum_g = np.zeros((G, C))
    sum_gx = np.zeros((G, C))
    for grp in range(G):
        for b in range(bounds[grp], bounds[grp + 1]):
            for c in range(C):
                a1 = 0.0
                a2 = 0.0
                for s in range(S):
                    v = g3[b, c, s]
                    a1 += v
                    a2 += v * xhat3[b, c, s]
                sum_g[grp, c] += a1
                sum_gx[grp, c] += a2
    return sum_g, sum_gx


@njit(cache=True)
def softmax_xent(logits, labels, label_smoothing, dscale):
    """Fused softmax cross-entropy: per-example loss and its gradient in one pass.

    ``logits`` (B, K), integer ``labels`` (B,), smoothing ``eps`` and per-row
    gradient factors ``dscale`` (B,). With targets
    ``t = (1 - eps) onehot(y) + eps / K``::

        e_ik    = exp(z_ik - m_i),   m_i = max_k z_ik,   s_i = sum_k e_ik
        lse_i   = m_i + log s_i
        loss_i  = lse_i - sum_k t_ik z_ik
        dz_ik   = dscale_i * (e_ik / s_i - t_ik)          (e_ik / s_i = softmax(z_i)_k)

    Each exponential is computed once (a row of ``e`` is kept for the
    gradient). Returns ``loss`` (B,) float64 and ``dlogits`` in the dtype of
    ``logits``.
    """
    B, K = logits.shape
    loss = np.empty(B)
    dlogits = np.empty_like(logits)
    e = np.empty(K)
    off = label_smoothing / K
    on = 1.0 - label_smoothing
    for i in range(B):
        m = np.float64(logits[i, 0])
        for k in range(1, K):
            v = np.float64(logits[i, k])
            if v > m:
                m = v
        s = 0.0
        tz = 0.0
        for k in range(K):
            v = np.float64(logits[i, k])
            e[k] = np.exp(v - m)
            s += e[k]
            tz += off * v
        y = labels[i]
        tz += on * np.float64(logits[i, y])
        loss[i] = m + np.log(s) - tz
        for k in range(K):
            t = off + (on if k == y else 0.0)
            dlogits[i, k] = dscale[i] * (e[k] / s - t)
    return loss, dlogits


# Layer norm: one row per example (norms.LayerNorm over (C, S)) or per token
# (transformer.TokenLayerNorm, S = 1). The kernels compute exactly what numpy
# computes for the equations written with array operations (the twins in
# reference.py): every value rounded to the dtype of ``x`` after each
# operation, and every sum in numpy's pairwise order (:func:`_pairwise_sum`).
# So they are bitwise equal to their twins, and swapping one for the other
# leaves every trained model -- and every calibrated trajectory -- unchanged.
# One pass per row instead of numpy's ten: 2-3x faster.

_PW_BLOCK = 128      # numpy's PW_BLOCKSIZE


@njit(cache=True)
def _pairwise_block(a, start, n):
    """numpy's pairwise sum of ``a[start:start + n]`` for n <= 128: its leaves.

    Fewer than 8 terms: left to right; else eight interleaved partial sums,
    combined as a tree, then the leftover terms. In the dtype of ``a``.
    Unsigned indices spare Numba's negative-index checks (1.8x faster).
    """
    s = np.uint64(start)
    if n < 8:
        res = a[s]
        for i in range(1, n):
            res += a[s + np.uint64(i)]
        return res
    r0, r1, r2, r3 = a[s], a[s + np.uint64(1)], a[s + np.uint64(2)], a[s + np.uint64(3)]
    r4, r5, r6, r7 = a[s + np.uint64(4)], a[s + np.uint64(5)], a[s + np.uint64(6)], a[s + np.uint64(7)]
    m = n - n % 8
    for i in range(8, m, 8):
        b = s + np.uint64(i)
        r0 += a[b]
        r1 += a[b + np.uint64(1)]
        r2 += a[b + np.uint64(2)]
        r3 += a[b + np.uint64(3)]
        r4 += a[b + np.uint64(4)]
        r5 += a[b + np.uint64(5)]
        r6 += a[b + np.uint64(6)]
        r7 += a[b + np.uint64(7)]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(m, n):
        res += a[s + np.uint64(i)]
    return res


@njit(cache=True)
def _pairwise_sum(a, start, n):
    """``a[start:start + n].sum()`` in numpy's order (``pairwise_sum`` in its ``loops_utils``).

    Up to 128 terms: :func:`_pairwise_block`; more: the sum of the two halves
    (the first a multiple of 8 long), each summed the same way (:func:`_pairwise_tree`).
    """
    if n <= _PW_BLOCK:
        return _pairwise_block(a, start, n)
    frames, sums = _pairwise_scratch(a.dtype)
    return _pairwise_tree(a, start, n, frames, sums)


@njit(cache=True)
def _pairwise_tree(a, start, n, frames, sums):
    """numpy's recursive halving for more than 128 terms, walked with an explicit stack
    (``frames``: start, length, halves done; ``sums``: the finished halves; both from
    :func:`_pairwise_scratch`), as a cached Numba function must not call itself."""
    frames[0, 0], frames[0, 1], frames[0, 2] = start, n, 0
    depth, done = 1, 0
    while depth:
        s0, k, stage = frames[depth - 1, 0], frames[depth - 1, 1], frames[depth - 1, 2]
        if k <= _PW_BLOCK:                          # a leaf
            sums[done] = _pairwise_block(a, s0, k)
            done += 1
            depth -= 1
            continue
        half = k // 2 - (k // 2) % 8
        if stage == 2:                              # both halves summed: add them
            sums[done - 2] = sums[done - 2] + sums[done - 1]
            done -= 1
            depth -= 1
            continue
        frames[depth - 1, 2] = stage + 1
        frames[depth, 0] = s0 if stage == 0 else s0 + half
        frames[depth, 1] = half if stage == 0 else k - half
        frames[depth, 2] = 0
        depth += 1
    return sums[0]


@njit(cache=True)
def _pairwise_scratch(dtype):
    """The stack of :func:`_pairwise_tree`: allocated once per kernel call for long rows."""
    return np.empty((64, 3), np.int64), np.empty(64, dtype)


@njit(cache=True)
def _per_value(v, positions):
    """A per-channel vector (C,) repeated for each of a row's S positions: (C*S,)."""
    out = np.empty(v.shape[0] * positions, v.dtype)
    for c in range(v.shape[0]):
        for s in range(positions):
            out[c * positions + s] = v[c]
    return out


@njit(cache=True)
def layernorm_rows(x3, scale, bias, eps):
    """Layer norm of every row ``x3[r]`` (C, S) over its C*S values, scale and offset per channel::

        mu = mean(x_r),  xc = x_r - mu,  var = mean(xc * xc),  rstd = 1 / sqrt(var + eps)
        xhat = xc * rstd,  y = xhat * scale_c + bias_c

    ``x3`` (R, C, S) C-contiguous; ``scale``, ``bias`` (C,); ``eps`` a scalar
    of the dtype of ``x3``. Returns ``y`` and ``xhat`` (R, C, S) and ``rstd``
    (R,), all in that dtype (numpy's rounding and sum order: see the section
    comment). Rows are offsets into flat arrays: a view per row costs more
    than a short row's arithmetic (1.8x slower at D = 32).
    """
    r_, c_, s_ = x3.shape
    m = c_ * s_
    xf = x3.reshape(r_ * m)
    y, xhat = np.empty(r_ * m, x3.dtype), np.empty(r_ * m, x3.dtype)
    rstd = np.empty(r_, x3.dtype)
    sc, bi = _per_value(scale, s_), _per_value(bias, s_)
    xc, sq = np.empty(m, x3.dtype), np.empty(m, x3.dtype)
    st = np.empty(2, x3.dtype)            # mean, var: each rounded to the dtype
    frames, sums = _pairwise_scratch(x3.dtype)       # numpy's halving, for rows over 128
    long_rows = m > _PW_BLOCK
    for r in range(r_):
        o = r * m
        st[0] = (_pairwise_tree(xf, o, m, frames, sums) if long_rows
                 else _pairwise_block(xf, o, m)) / m
        mu = st[0]
        for k in range(m):
            xc[k] = xf[o + k] - mu
            sq[k] = xc[k] * xc[k]
        st[1] = (_pairwise_tree(sq, 0, m, frames, sums) if long_rows
                 else _pairwise_block(sq, 0, m)) / m
        st[1] += eps
        st[1] = np.sqrt(st[1])
        rstd[r] = 1.0 / st[1]
        rs = rstd[r]
        for k in range(m):
            xh = xc[k] * rs
            xhat[o + k] = xh
            y[o + k] = xh * sc[k] + bi[k]
    return y.reshape(x3.shape), xhat.reshape(x3.shape), rstd


@njit(cache=True)
def layernorm_rows_backward(dy3, xhat3, rstd, scale):
    """Backward of :func:`layernorm_rows`; with ``g = dy * scale_c`` and means over a row::

        dx = rstd * ((g - mean(g)) - xhat * mean(g * xhat))
        dscale_c = sum_r sum_s dy * xhat,   dbias_c = sum_r sum_s dy

    Returns ``dx`` (R, C, S), ``dscale`` and ``dbias`` (C,), in the dtype of
    ``dy3`` (numpy's rounding and sum order, as :func:`layernorm_rows`).
    """
    r_, c_, s_ = dy3.shape
    m = c_ * s_
    dyf, hf = dy3.reshape(r_ * m), xhat3.reshape(r_ * m)
    dx = np.empty(r_ * m, dy3.dtype)
    dscale, dbias = np.zeros(c_, dy3.dtype), np.zeros(c_, dy3.dtype)
    sc = _per_value(scale, s_)
    g, gx, prod = np.empty(m, dy3.dtype), np.empty(m, dy3.dtype), np.empty(m, dy3.dtype)
    st = np.empty(2, dy3.dtype)           # mean(g), mean(g * xhat)
    frames, sums = _pairwise_scratch(dy3.dtype)      # numpy's halving, for rows over 128
    long_rows = m > _PW_BLOCK
    for r in range(r_):
        o = r * m
        for k in range(m):
            g[k] = dyf[o + k] * sc[k]
            gx[k] = g[k] * hf[o + k]
            prod[k] = dyf[o + k] * hf[o + k]
        st[0] = (_pairwise_tree(g, 0, m, frames, sums) if long_rows
                 else _pairwise_block(g, 0, m)) / m
        st[1] = (_pairwise_tree(gx, 0, m, frames, sums) if long_rows
                 else _pairwise_block(gx, 0, m)) / m
        rs, g0, g1 = rstd[r], st[0], st[1]
        for k in range(m):
            dx[o + k] = rs * ((g[k] - g0) - hf[o + k] * g1)
        if s_ == 1:                       # one value per channel: plain running sums
            for c in range(c_):
                dscale[c] += prod[c]
                dbias[c] += dyf[o + c]
        else:
            for c in range(c_):
                dscale[c] += _pairwise_sum(prod, c * s_, s_)
                dbias[c] += _pairwise_sum(dyf, o + c * s_, s_)
    return dx.reshape(dy3.shape), dscale, dbias


# --------------------------------------------------------------------------
# Self-attention (attention.py)
# --------------------------------------------------------------------------
# Layout: batch innermost. The packed projection is ``qkv_t`` (3D, T, N) --
# feature, token, example: queries are features [0, D), keys [D, 2D), values
# [2D, 3D), and head h owns features [h*dh, (h+1)*dh) of each, dh = D/H
# (torch.nn.MultiheadAttention's in_proj layout) -- and the probabilities are
# ``p`` (H, T, T, N); a causal mask makes p[h, i, j] = 0 for j > i. Every
# innermost loop then runs along the batch (N = 100 contiguous values, one
# SIMD fused multiply-add per 8 or 16 of them), where the (N, T, D) layout
# gave loops over a head's dh = 8 features: 3-4x faster. The layer gets this
# layout from its projections' GEMMs for free (see attention.py). Sums run in
# the dtype of ``qkv_t`` (float64 to check against torch, float32 to train).


# Reassociation lets LLVM vectorize the sums; no nnan/ninf flags, so a NaN or
# Inf from a diverging run still propagates.
_ATTN_MATH = {"reassoc", "contract"}


@njit(cache=True)
def add_feature_bias(a, b):
    """``a`` (F, M) += ``b[:, None]`` in place: a bias per feature row (numpy's broadcast
    add with a strided bias is 2.5x slower on the (3D, T*N) projection). Returns ``a``."""
    for f in range(a.shape[0]):
        row, bf = a[f], b[f]
        for k in range(row.shape[0]):
            row[k] += bf
    return a


@njit(cache=True, fastmath=_ATTN_MATH)
def attention_scores(qkv_t, num_heads, scale, causal, floor):
    """Scaled scores of every head, each row shifted by its maximum::

        s_ij = scale * <q_i, k_j>,   out_ij = s_ij - max_j' s_ij'    (-inf for j > i if causal)

    and -inf where ``out_ij < floor`` (a weight ``exp(out_ij)`` too small to
    count: see :func:`refplay.nn.attention.softmax_floor`). ``qkv_t`` (3D, T, N)
    -> (H, T, T, N). Exponentiating the result (numpy's SIMD ``exp``, ~10x a
    Numba loop's) gives :func:`attention_context` its input.
    """
    f3, t_, n_ = qkv_t.shape
    d = f3 // 3
    dh = d // num_heads
    s = np.empty((num_heads, t_, t_, n_), qkv_t.dtype)
    m = np.empty(n_, qkv_t.dtype)
    for h in range(num_heads):
        q0, k0 = h * dh, d + h * dh
        for i in range(t_):
            last = i + 1 if causal else t_
            for j in range(last):
                sij = s[h, i, j]
                for n in range(n_):
                    sij[n] = 0
                for c in range(dh):
                    q, k = qkv_t[q0 + c, i], qkv_t[k0 + c, j]
                    for n in range(n_):
                        sij[n] += q[n] * k[n]
            for n in range(n_):
                m[n] = s[h, i, 0, n]
            for j in range(1, last):
                for n in range(n_):
                    m[n] = max(m[n], s[h, i, j, n])
            for j in range(t_):
                sij = s[h, i, j]
                for n in range(n_):
                    v = (sij[n] - m[n]) * scale
                    sij[n] = v if j < last and not v < floor else -np.inf
    return s


@njit(cache=True, fastmath=_ATTN_MATH)
def attention_context(qkv_t, e):
    """Softmax normalization and the weighted sum of the values::

        p_ij = e_ij / sum_j' e_ij',    ctx_i = sum_j p_ij v_j

    ``e`` (H, T, T, N) is ``exp`` of :func:`attention_scores`' output and is
    normalized in place. Returns ``ctx_t`` (D, T, N) (head h in features
    h*dh:(h+1)*dh) and ``p`` (the same array as ``e``).
    """
    f3, t_, n_ = qkv_t.shape
    num_heads = e.shape[0]
    d = f3 // 3
    dh = d // num_heads
    ctx = np.zeros((d, t_, n_), qkv_t.dtype)
    inv = np.empty(n_, qkv_t.dtype)
    for h in range(num_heads):
        for i in range(t_):
            inv[:] = 0
            for j in range(t_):
                for n in range(n_):
                    inv[n] += e[h, i, j, n]
            for n in range(n_):
                inv[n] = 1 / inv[n]
            for j in range(t_):
                pij = e[h, i, j]
                for n in range(n_):
                    pij[n] *= inv[n]
                for c in range(dh):
                    v, out = qkv_t[2 * d + h * dh + c, j], ctx[h * dh + c, i]
                    for n in range(n_):
                        out[n] += pij[n] * v[n]
    return ctx, e


@njit(cache=True, fastmath=_ATTN_MATH)
def attention_backward(dctx_t, qkv_t, p, num_heads, scale, causal):
    """Backward of :func:`attention_scores` + ``exp`` + :func:`attention_context`::

        dv_j  = sum_i p_ij dctx_i
        dp_ij = <dctx_i, v_j>
        ds_ij = p_ij (dp_ij - sum_j' p_ij' dp_ij')
        dq_i  = scale * sum_j ds_ij k_j,      dk_j = scale * sum_i ds_ij q_i

    ``dctx_t`` (D, T, N), ``p`` (H, T, T, N); masked entries (j > i when
    ``causal``) are skipped: they get no gradient. Returns ``dqkv_t``
    (3D, T, N) in the layout of ``qkv_t``.
    """
    f3, t_, n_ = qkv_t.shape
    d = f3 // 3
    dh = d // num_heads
    dqkv = np.zeros(qkv_t.shape, qkv_t.dtype)
    dp = np.empty((t_, n_), qkv_t.dtype)
    dot = np.empty(n_, qkv_t.dtype)
    g = np.empty(n_, qkv_t.dtype)
    for h in range(num_heads):
        q0, k0, v0 = h * dh, d + h * dh, 2 * d + h * dh
        for i in range(t_):
            last = i + 1 if causal else t_
            dot[:] = 0
            for j in range(last):
                pij, dpj = p[h, i, j], dp[j]
                dpj[:] = 0
                for c in range(dh):
                    dc, v, dv = dctx_t[q0 + c, i], qkv_t[v0 + c, j], dqkv[v0 + c, j]
                    for n in range(n_):
                        dpj[n] += dc[n] * v[n]
                        dv[n] += pij[n] * dc[n]
                for n in range(n_):
                    dot[n] += pij[n] * dpj[n]
            for j in range(last):
                pij, dpj = p[h, i, j], dp[j]
                for n in range(n_):
                    g[n] = scale * pij[n] * (dpj[n] - dot[n])
                for c in range(dh):
                    q, k = qkv_t[q0 + c, i], qkv_t[k0 + c, j]
                    dq, dk = dqkv[q0 + c, i], dqkv[k0 + c, j]
                    for n in range(n_):
                        dq[n] += g[n] * k[n]
                        dk[n] += g[n] * q[n]
    return dqkv
