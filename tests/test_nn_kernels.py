"""Every convolution/pooling kernel in refplay.nn.kernels equals its numpy twin in refplay.nn.reference.

Tolerances (issue 4): <= 1e-12 relative in float64, <= 1e-5 in float32, where
"relative" is max|kernel - twin| / max|twin| over the whole array.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from refplay.nn import kernels, reference
from refplay.nn.layers import conv_output_size

TOL = {np.float64: 1e-12, np.float32: 1e-5}


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(float(np.max(np.abs(b))), 1e-300) if b.size else 1.0
    return float(np.max(np.abs(a - b))) / scale if b.size else 0.0


def _geometries(seed: int, n: int):
    """Random conv geometries, including 1-D (H = 1), strides 1-3 and asymmetric padding."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        one_d = rng.random() < 0.3
        kh = 1 if one_d else int(rng.integers(1, 5))
        kw = int(rng.integers(1, 6))
        sh = 1 if one_d else int(rng.integers(1, 4))
        sw = int(rng.integers(1, 4))
        pt = 0 if one_d else int(rng.integers(0, kh))
        pb = 0 if one_d else int(rng.integers(0, kh))
        pl, pr = int(rng.integers(0, kw)), int(rng.integers(0, kw))
        h = 1 if one_d else int(rng.integers(kh, 9))
        w = int(rng.integers(kw, 12))
        oh, ow = conv_output_size(h, kh, sh, pt, pb), conv_output_size(w, kw, sw, pl, pr)
        if oh >= 1 and ow >= 1:
            out.append((int(rng.integers(1, 4)), int(rng.integers(1, 4)), h, w, kh, kw, sh, sw, pt, pl, oh, ow))
    return out


GEOMETRIES = _geometries(0, 12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("wide_batch", [False, True], ids=["rows", "batch_innermost"])
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_im2col_col2im_match_twins(geom, wide_batch, dtype):
    # The kernels copy along output rows when N <= OW (or the rows or planes are large) and
    # along the batch otherwise: run every geometry with a batch on each side of N = OW.
    n, c, h, w, kh, kw, sh, sw, pt, pl, oh, ow = geom
    n = ow + 1 + n if wide_batch else min(n, ow)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    cols = kernels.im2col(x, kh, kw, sh, sw, pt, pl, oh, ow)
    assert cols.dtype == dtype and cols.shape == (c * kh * kw, n * oh * ow)
    np.testing.assert_array_equal(cols, reference.im2col(x, kh, kw, sh, sw, pt, pl, oh, ow))  # a pure copy

    g = rng.standard_normal(cols.shape).astype(dtype)
    dx = kernels.col2im(g, np.full(x.shape, np.nan, dtype), kh, kw, sh, sw, pt, pl, oh, ow)  # overwrites
    assert dx.dtype == dtype and dx.shape == x.shape
    ref = reference.col2im(g, np.empty_like(x), kh, kw, sh, sw, pt, pl, oh, ow)
    assert _rel(dx, ref) <= TOL[dtype]


@pytest.mark.parametrize("extra", [4, 2 * kernels._BATCH_BLOCK + 3], ids=["one_block", "blocks"])
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_both_loop_orders_build_and_fold_the_same_columns(geom, extra):
    # im2col/col2im pick a loop order by shape; the two orders must agree bit for bit
    # (the same copies; the same additions in the same kernel-offset order), also when
    # the batch-innermost order visits the batch in blocks (the last one partial).
    n, c, h, w, kh, kw, sh, sw, pt, pl, oh, ow = geom
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n + extra, c, h, w))
    rows = kernels._im2col_rows(x, kh, kw, sh, sw, pt, pl, oh, ow)
    inner = np.full((c * kh * kw, n + extra, oh, ow), np.nan)
    kernels._im2col_batch_innermost(x, inner, kh, kw, sh, sw, pt, pl)
    np.testing.assert_array_equal(inner.reshape(rows.shape), rows)
    g = rng.standard_normal(rows.shape)
    dx_rows = np.zeros_like(x)
    kernels._col2im_rows(g, dx_rows, kh, kw, sh, sw, pt, pl, oh, ow)
    dx_inner = np.zeros_like(x)
    kernels._col2im_batch_innermost(g.reshape(inner.shape), dx_inner, kh, kw, sh, sw, pt, pl)
    np.testing.assert_array_equal(dx_inner, dx_rows)


# Stride 1 with the width kept ("same" padding, odd and even kernels, padding on one side
# only, planes narrower than the kernel): im2col/col2im shift whole planes (_im2col_shift).
SAME_WIDTH = [(3, 3, 1, 1), (5, 5, 2, 2), (4, 4, 1, 1), (3, 2, 2, 0), (1, 3, 0, 2), (3, 4, 0, 3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 5, 6), (3, 2, 7, 2), (2, 3, 1, 9)])
@pytest.mark.parametrize("kernel", SAME_WIDTH)
def test_plane_shift_path_matches_twins_and_the_row_path(kernel, shape, dtype):
    kh, kw, pt, pl = kernel
    n, c, h, w = shape
    geometry = (kh, kw, 1, 1, pt, pl, h, w)         # padding kh - 1 rows, kw - 1 columns
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(dtype)
    cols = kernels.im2col(x, *geometry)
    np.testing.assert_array_equal(cols, reference.im2col(x, *geometry))
    np.testing.assert_array_equal(cols, kernels._im2col_rows(x, *geometry))
    g = rng.standard_normal(cols.shape).astype(dtype)
    dx = kernels.col2im(g, np.full(x.shape, np.nan, dtype), *geometry)
    assert _rel(dx, reference.col2im(g, np.empty_like(x), *geometry)) <= TOL[dtype]
    dx_rows = np.zeros_like(x)
    kernels._col2im_rows(g, dx_rows, *geometry)
    np.testing.assert_array_equal(dx, dx_rows)        # the same sums in the same order


@pytest.mark.parametrize("n", [30, 2 * kernels._BATCH_BLOCK + 3])
def test_long_signals_and_large_batches_match_twins(n):
    # MNIST-1D's stride-1 first layer (OW = 40 >= the rows threshold) and a strided
    # one (OW = 10 < N), at a training batch and at a validation-sized batch.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 2, 1, 40)).astype(np.float32)
    for sw, ow in ((1, 40), (4, 10)):
        geometry = (1, 3, 1, sw, 0, 1, 1, ow)
        cols = kernels.im2col(x, *geometry)
        np.testing.assert_array_equal(cols, reference.im2col(x, *geometry))
        g = rng.standard_normal(cols.shape).astype(np.float32)
        dx = kernels.col2im(g, np.empty_like(x), *geometry)
        assert _rel(dx, reference.col2im(g, np.empty_like(x), *geometry)) <= TOL[np.float32]


@pytest.mark.parametrize("geom", GEOMETRIES[:6])
def test_col2im_is_the_adjoint_of_im2col(geom):
    # <im2col(x), g> == <x, col2im(g)>: the backward pass of a convolution is the transpose.
    n, c, h, w, kh, kw, sh, sw, pt, pl, oh, ow = geom
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w))
    g = rng.standard_normal((c * kh * kw, n * oh * ow))
    lhs = np.vdot(kernels.im2col(x, kh, kw, sh, sw, pt, pl, oh, ow), g)
    rhs = np.vdot(x, kernels.col2im(g, np.empty_like(x), kh, kw, sh, sw, pt, pl, oh, ow))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("keep_dz", [True, False])
def test_small_k_conv_kernels_match_twins(keep_dz, relu, dtype):
    # The GEMM-free path of a convolution with few inputs per output (a first layer).
    rng = np.random.default_rng(9)
    n, c_out, k_, p_ = 3, 4, 9, 70
    cols = rng.standard_normal((k_, n * p_)).astype(dtype)
    w2, b = rng.standard_normal((c_out, k_)).astype(dtype), rng.standard_normal(c_out).astype(dtype)
    out = kernels.conv_small_k_forward(cols, w2, b, relu, np.empty((n, c_out, p_), dtype))
    want = reference.conv_small_k_forward(cols, w2, b, relu, np.empty((n, c_out, p_), dtype))
    assert out.dtype == dtype and _rel(out, want) <= TOL[dtype]
    if relu:
        assert (out == 0).any() and (out >= 0).all()
    dout = rng.standard_normal(out.shape).astype(dtype)
    shape = (c_out, n * p_) if keep_dz else (0, 0)
    dz, dz_ref = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
    dw, db = kernels.conv_small_k_backward(dout, want, cols, relu, dz)
    dw_ref, db_ref = reference.conv_small_k_backward(dout, want, cols, relu, dz_ref)
    for got, ref in ((dw, dw_ref), (db, db_ref), (dz, dz_ref)):
        assert got.dtype == dtype and got.shape == ref.shape and _rel(got, ref) <= TOL[dtype]


def test_small_k_forward_propagates_nan():
    cols = np.ones((2, 64))
    cols[1, 5] = np.nan
    out = kernels.conv_small_k_forward(cols, np.ones((1, 2)), np.zeros(1), True, np.empty((1, 1, 64)))
    assert np.isnan(out[0, 0, 5]) and np.isfinite(np.delete(out[0, 0], 5)).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("plane", [(8, 10), (7, 9)], ids=["even", "odd"])
def test_conv_pool_kernels_match_twins_and_the_unfused_kernels(plane, relu, dtype):
    # Bias + activation + 2x2 max-pool in one pass (GEMM and small-K paths), and the way back:
    # equal to the twins, and bit for bit to bias_act_to_nchw -> maxpool2d -> relu_grad_to_cn.
    oh, ow = plane
    n, c_out, k_, p_ = 3, 4, 5, oh * ow
    rng = np.random.default_rng(10)
    cols = rng.standard_normal((k_, n * p_)).astype(dtype)
    w2, b = rng.standard_normal((c_out, k_)).astype(dtype), rng.standard_normal(c_out).astype(dtype)
    y = w2 @ cols
    pooled = (n, c_out, oh // 2, ow // 2)
    out, arg = np.empty(pooled, dtype), np.empty(pooled, np.int32)
    kernels.bias_act_pool_to_nchw(y, b, relu, oh, ow, out, arg)
    full = kernels.bias_act_to_nchw(y, b, relu, np.empty((n, c_out, p_), dtype))
    out_unfused, arg_unfused = kernels.maxpool2d_forward(full.reshape(n, c_out, oh, ow), 2, 2, 2, 2,
                                                         oh // 2, ow // 2)
    np.testing.assert_array_equal(out, out_unfused)
    np.testing.assert_array_equal(arg, arg_unfused)
    out_ref, arg_ref = np.empty(pooled, dtype), np.empty(pooled, np.int32)
    reference.bias_act_pool_to_nchw(y, b, relu, oh, ow, out_ref, arg_ref)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    y_nan = y.copy()
    y_nan[0, 3] = np.nan                               # a NaN pools to NaN
    assert np.isnan(kernels.bias_act_pool_to_nchw(y_nan, b, relu, oh, ow, out, arg)[0, 0, 0, 1])
    arg[...] = arg_ref

    d3, a3, arg3 = (rng.standard_normal(pooled).astype(dtype).reshape(n, c_out, -1),
                    out_ref.reshape(n, c_out, -1), arg.reshape(n, c_out, -1))
    dz, db = kernels.pool_relu_grad_to_cn(d3, a3, arg3, relu, p_)
    dx = kernels.maxpool2d_backward(d3.reshape(pooled), arg, oh, ow)
    np.testing.assert_array_equal(dz, kernels.relu_grad_to_cn(dx.reshape(n, c_out, p_), full, relu))
    dz_ref, db_ref = reference.pool_relu_grad_to_cn(d3, a3, arg3, relu, p_)
    np.testing.assert_array_equal(dz, dz_ref)
    assert db.dtype == dtype and _rel(db, db_ref) <= TOL[dtype]

    out_k, arg_k = np.empty(pooled, dtype), np.empty(pooled, np.int32)
    kernels.conv_small_k_pool_forward(cols, w2, b, relu, oh, ow, out_k, arg_k)
    out_r, arg_r = np.empty(pooled, dtype), np.empty(pooled, np.int32)
    reference.conv_small_k_pool_forward(cols, w2, b, relu, oh, ow, out_r, arg_r)
    assert _rel(out_k, out_r) <= TOL[dtype]
    a3, arg3 = out_r.reshape(n, c_out, -1), arg_r.reshape(n, c_out, -1)
    dz_k, dz_r = np.empty((c_out, n * p_), dtype), np.empty((c_out, n * p_), dtype)
    got = kernels.conv_small_k_pool_backward(d3, a3, arg3, cols, relu, oh, ow, dz_k)
    want = reference.conv_small_k_pool_backward(d3, a3, arg3, cols, relu, oh, ow, dz_r)
    np.testing.assert_array_equal(dz_k, dz_r)
    for g, r in zip(got, want):
        assert g.dtype == dtype and _rel(g, r) <= TOL[dtype]


def test_im2col_reads_zeros_outside_the_input():
    x = np.ones((1, 1, 2, 2))
    cols = kernels.im2col(x, 3, 3, 1, 1, 1, 1, 2, 2)      # "same" 3x3 on a 2x2 image
    # Output (0, 0) sees the 3x3 window centred on pixel (0, 0): 4 real pixels, 5 zeros.
    np.testing.assert_array_equal(cols[:, 0], [0, 0, 0, 0, 1, 1, 0, 1, 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("relu", [True, False])
def test_bias_and_relu_layout_kernels_match_twins(relu, dtype):
    rng = np.random.default_rng(3)
    n, c, p = 3, 4, 7
    y = rng.standard_normal((c, n * p)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    out = kernels.bias_act_to_nchw(y, b, relu, np.empty((n, c, p), dtype))
    assert out.dtype == dtype and out.shape == (n, c, p)
    assert _rel(out, reference.bias_act_to_nchw(y, b, relu, np.empty((n, c, p), dtype))) <= TOL[dtype]
    if relu:
        assert (out >= 0).all() and (out == 0).any()

    dout = rng.standard_normal((n, c, p)).astype(dtype)
    dz = kernels.relu_grad_to_cn(dout, out, relu)
    assert dz.dtype == dtype and dz.shape == (c, n * p)
    np.testing.assert_array_equal(dz, reference.relu_grad_to_cn(dout, out, relu))   # exact: a masked copy


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("relu", [True, False])
def test_dense_bias_and_relu_kernels_match_twins(relu, dtype):
    rng = np.random.default_rng(8)
    z = rng.standard_normal((6, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    got = kernels.dense_bias_act(z.copy(), b, relu)
    want = reference.dense_bias_act(z.copy(), b, relu)
    assert got.dtype == dtype and _rel(got, want) <= TOL[dtype]
    if relu:
        assert (got >= 0).all() and (got == 0).any()
    z_nan = z.copy()
    z_nan[0, 0] = np.nan                                   # a diverging model must not look finite
    assert np.isnan(kernels.dense_bias_act(z_nan, b, relu)[0, 0])

    dout = rng.standard_normal(z.shape).astype(dtype)
    dz, db = kernels.dense_relu_grad(dout, got, relu)
    dz_ref, db_ref = reference.dense_relu_grad(dout, got, relu)
    assert dz.dtype == dtype and db.dtype == np.float64
    np.testing.assert_array_equal(dz, dz_ref)               # exact: a masked copy
    assert _rel(db, db_ref) <= 1e-12                         # both accumulate in float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_kernels_match_twins(dtype):
    rng = np.random.default_rng(9)
    z = (2.0 * rng.standard_normal((7, 5))).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    z_k, z_r = z.copy(), z.copy()
    u, u_ref = kernels.gelu_bias_arg(z_k, b), reference.gelu_bias_arg(z_r, b)
    np.testing.assert_array_equal(z_k, z_r)                 # z + b in place, rounded alike
    assert u.dtype == dtype and _rel(u, u_ref) <= TOL[dtype]
    t = np.tanh(u_ref)
    a, a_ref = kernels.gelu_output(z_k, t), reference.gelu_output(z_r, t)
    assert a.dtype == dtype and _rel(a, a_ref) <= TOL[dtype]
    da = rng.standard_normal(z.shape).astype(dtype)
    (dz, db), (dz_ref, db_ref) = kernels.gelu_grad(da, z_k, t), reference.gelu_grad(da, z_r, t)
    assert dz.dtype == dtype and db.dtype == np.float64
    assert _rel(dz, dz_ref) <= TOL[dtype] and _rel(db, db_ref) <= TOL[dtype]
    z_nan = z.copy()
    z_nan[0, 0] = np.nan                                   # a diverging model must not look finite
    assert np.isnan(kernels.gelu_bias_arg(z_nan, b)[0, 0])


def _pool_geometries(seed: int, n: int):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
        h, w = int(rng.integers(kh, 10)), int(rng.integers(kw, 10))
        oh, ow = conv_output_size(h, kh, sh, ph, ph), conv_output_size(w, kw, sw, pw, pw)
        out.append((int(rng.integers(1, 4)), int(rng.integers(1, 4)), h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", _pool_geometries(4, 8) + [
    (2, 3, 28, 28, 2, 2, 2, 2, 0, 0, 14, 14),      # the 2-D CNN's pool: 2x2 windows tile the plane
    (2, 2, 7, 9, 2, 2, 2, 2, 0, 0, 3, 4),          # ... leaving a last row and column uncovered
    (1, 2, 7, 6, 2, 2, 2, 2, 1, 1, 4, 4),          # ... padded (-inf never wins)
    (1, 2, 5, 5, 2, 2, 1, 1, 0, 0, 4, 4)])         # overlapping 2x2 windows
def test_pool_kernels_match_twins(geom, dtype):
    n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow = geom
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    pads = ((0, 0), (0, 0), (ph, ph), (pw, pw))
    hp, wp = h + 2 * ph, w + 2 * pw

    xp = np.pad(x, pads, constant_values=-np.inf)
    out, arg = kernels.maxpool2d_forward(xp, kh, kw, sh, sw, oh, ow)
    out_ref, arg_ref = reference.maxpool2d_forward(xp, kh, kw, sh, sw, oh, ow)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dout = rng.standard_normal(out.shape).astype(dtype)
    assert _rel(kernels.maxpool2d_backward(dout, arg, hp, wp),
                reference.maxpool2d_backward(dout, arg_ref, hp, wp)) <= TOL[dtype]

    xp0 = np.pad(x, pads)
    avg = kernels.avgpool2d_forward(xp0, kh, kw, sh, sw, oh, ow)
    assert avg.dtype == dtype
    assert _rel(avg, reference.avgpool2d_forward(xp0, kh, kw, sh, sw, oh, ow)) <= TOL[dtype]
    assert _rel(kernels.avgpool2d_backward(dout, hp, wp, kh, kw, sh, sw),
                reference.avgpool2d_backward(dout, hp, wp, kh, kw, sh, sw)) <= TOL[dtype]


def test_maxpool_picks_the_first_maximum_and_propagates_nan():
    x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    out, arg = kernels.maxpool2d_forward(x, 2, 2, 2, 2, 1, 1)
    assert out[0, 0, 0, 0] == 3.0 and arg[0, 0, 0, 0] == 1        # (0, 1) before (1, 0)
    x[0, 0, 1, 1] = np.nan
    out, _ = kernels.maxpool2d_forward(x, 2, 2, 2, 2, 1, 1)
    assert np.isnan(out[0, 0, 0, 0])


def test_importing_refplay_compiles_no_kernel_and_kernels_are_cached_and_serial():
    # Import must stay cheap: kernels compile on first call, not at import; cache=True lets a
    # second process load them from disk; none runs threads (DESIGN.md principle 4).
    code = ("import numba, refplay, refplay.nn, refplay.nn.layers, refplay.nn.kernels as k\n"
            "from numba.core.caching import NullCache\n"
            "ks = {n: f for n, f in vars(k).items() if isinstance(f, numba.core.registry.CPUDispatcher)}\n"
            "print(len(ks))\n"
            "print(sorted(n for n, f in ks.items() if f.signatures))\n"
            "print(sorted(n for n, f in ks.items() if isinstance(f._cache, NullCache)))\n"
            "print(sorted(n for n, f in ks.items() if f.targetoptions.get('parallel')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, compiled, uncached, parallel = out.stdout.split("\n")[:4]
    assert int(count) >= 20, out.stdout                      # the kernels were found
    assert compiled == "[]", out.stdout + out.stderr
    assert uncached == "[]" and parallel == "[]", out.stdout


def test_every_public_kernel_has_a_numpy_twin_with_the_same_signature():
    import inspect

    import numba
    public = [n for n, f in vars(kernels).items()
              if isinstance(f, numba.core.registry.CPUDispatcher) and not n.startswith("_")]
    for name in public:
        twin = getattr(reference, name, None)
        assert twin is not None, f"kernels.{name} has no twin in reference.py"
        assert (list(inspect.signature(twin).parameters)
                == list(inspect.signature(getattr(kernels, name).py_func).parameters)), name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMETRIES[:8])
def test_conv_layer_path_matches_the_direct_definition(geom, dtype):
    # The im2col + GEMM path of conv2d_forward/backward (Numba kernels) against
    # reference.conv2d_direct, the sum over kernel offsets written out.
    from refplay.nn.layers import conv2d_backward, conv2d_forward
    n, c, h, w, kh, kw, sh, sw, pt, pl, oh, ow = geom
    pb, pr = (oh - 1) * sh + kh - pt - h, (ow - 1) * sw + kw - pl - w    # may be < 0: rows left unread
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((3, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    pads = ((pt, max(pb, 0)), (pl, max(pr, 0)))
    z, cache = conv2d_forward(x, wt, b, (sh, sw), pads)
    z_ref = reference.conv2d_direct(x, wt, b, (sh, sw), pads)
    assert z.dtype == dtype and _rel(z, z_ref) <= TOL[dtype]
    dz = rng.standard_normal(z.shape).astype(dtype)
    dx, dw, db = conv2d_backward(dz, cache)
    dx_ref, dw_ref, db_ref = reference.conv2d_direct_backward(dz, x, wt, (sh, sw), pads)
    for got, ref in ((dx, dx_ref), (dw, dw_ref), (db, db_ref)):
        assert got.dtype == dtype and _rel(got, ref) <= TOL[dtype]
