"""Layers of refplay.nn.layers: finite-difference gradients, shapes, dtypes, dropout, bad input.

Gradient checks use centered differences in float64,
``(f(x + h e_i) - f(x - h e_i)) / 2h`` with ``f = sum(out * R)`` for a fixed
random ``R``, and require ``||analytic - numeric|| / max(||analytic||, ||numeric||) <= 1e-6``
for the input and for every parameter.
"""

from __future__ import annotations

import numpy as np
import pytest

from refplay.nn import layers as L
from tests.helpers import numeric_grad, rel_error

GRAD_TOL = 1e-6


def check_layer_gradients(layer, x: np.ndarray, seed: int = 0, train: bool = False) -> None:
    """Assert dx and every parameter gradient of ``layer`` match finite differences."""
    params = layer.init(np.random.default_rng(seed), np.float64)
    rng_seed = seed + 1

    def run():
        # A fresh Generator per call: a training-mode Dropout draws the same mask each time.
        return layer.forward(params, x, train=train, rng=np.random.default_rng(rng_seed))

    out, cache = run()
    r = np.random.default_rng(seed + 2).standard_normal(out.shape)
    loss = lambda: float(np.sum(run()[0] * r))  # noqa: E731
    dx, grads = layer.backward(params, r, cache)
    assert dx.shape == x.shape and dx.dtype == np.float64
    assert list(grads) == list(params)
    assert rel_error(dx, numeric_grad(lambda _: loss(), x)) <= GRAD_TOL
    for k, g in grads.items():
        assert g.shape == params[k].shape and g.dtype == np.float64
        assert rel_error(g, numeric_grad(lambda _: loss(), params[k])) <= GRAD_TOL, k


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------
# Gradients (float64, centered differences)
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("activation", L.ACTIVATIONS)
def test_dense_gradients(activation):
    rng = np.random.default_rng(10)
    n, i, o = (int(v) for v in rng.integers(1, 7, size=3))
    check_layer_gradients(L.Dense(i, o, name="dense_1", activation=activation), _x((n, i)))


@pytest.mark.parametrize("activation", L.ACTIVATIONS)
def test_dense_without_bias_gradients(activation):
    layer = L.Dense(5, 3, name="d", use_bias=False, activation=activation)
    assert list(layer.init(np.random.default_rng(0))) == ["d/w"]
    check_layer_gradients(layer, _x((4, 5)))


@pytest.mark.parametrize("layer,shape", [
    (L.Conv1D(2, 3, 3, stride=2, padding=1, activation="relu", name="c"), (7, 2, 9)),
    (L.Conv2D(2, 3, (2, 3), stride=(1, 2), padding=(1, 0), activation="tanh", name="c"), (6, 2, 4, 7)),
])
def test_conv_gradients_with_a_batch_wider_than_the_output_rows(layer, shape):
    # N > OW switches im2col/col2im to their batch-innermost loop order (as in MNIST-1D's CNN).
    check_layer_gradients(layer, _x(shape, seed=4))


def _conv_cases(seed: int, n: int, ndim: int):
    rng = np.random.default_rng(seed)
    acts = list(L.ACTIVATIONS)
    cases = []
    for t in range(n):
        k = int(rng.integers(1, 5))
        stride = int(rng.integers(1, 4))
        padding = ["valid", "same", int(rng.integers(0, k))][t % 3]
        size = int(rng.integers(k + 1, 10))
        cases.append((int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 3)), k, stride,
                      padding, size, acts[t % len(acts)]))
    return cases


@pytest.mark.parametrize("case", _conv_cases(11, 8, 2))
def test_conv2d_gradients(case):
    c_in, c_out, n, k, stride, padding, size, act = case
    layer = L.Conv2D(c_in, c_out, (k, max(1, k - 1)), stride=(stride, 1 + stride % 2), padding=padding,
                     activation=act, name="conv_1")
    check_layer_gradients(layer, _x((n, c_in, size, size + 1)))


@pytest.mark.parametrize("activation", ["relu", "identity", "tanh"])
def test_conv2d_gradients_on_the_small_k_path(activation):
    # A first layer on one channel (K = 9 inputs per output) on planes of >= 64 outputs
    # skips its GEMMs (kernels.conv_small_k_*): its gradients, dx included, still meet
    # finite differences.
    layer = L.Conv2D(1, 3, 3, padding=1, activation=activation, name="conv_1")
    assert L._small_k(9, 8 * 9)
    check_layer_gradients(layer, _x((2, 1, 8, 9), seed=5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c_in,shape", [(1, (3, 9, 10)), (3, (2, 7, 7))], ids=["small_k", "gemm"])
@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_conv2d_max_pool_equals_conv2d_then_maxpool2d(activation, c_in, shape, dtype):
    # Pooling fused into the convolution's pass computes exactly the two layers, both ways.
    n, h, w = shape
    fused = L.Conv2D(c_in, 4, 3, padding=1, activation=activation, name="c", max_pool=True)
    conv = L.Conv2D(c_in, 4, 3, padding=1, activation=activation, name="c")
    pool = L.MaxPool2D(2)
    params = conv.init(np.random.default_rng(0), dtype)
    x = _x((n, c_in, h, w), seed=6).astype(dtype)
    out, cache = fused.forward(params, x)
    z, conv_cache = conv.forward(params, x)
    want, pool_cache = pool.forward({}, z)
    assert out.shape == want.shape == (n, 4, *fused.output_shape((c_in, h, w))[1:])
    np.testing.assert_array_equal(out, want)
    dout = _x(out.shape, seed=7).astype(dtype)
    dx, grads = fused.backward(params, dout, cache)
    dx_ref, grads_ref = conv.backward(params, pool.backward({}, dout, pool_cache)[0], conv_cache)
    np.testing.assert_array_equal(dx, dx_ref)
    for key in grads:                  # the small-K bias gradient adds the same terms in another order
        np.testing.assert_allclose(grads[key], grads_ref[key], rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("c_in,shape", [(1, (2, 8, 9)), (2, (2, 5, 6))], ids=["small_k", "gemm"])
def test_conv2d_max_pool_gradients(c_in, shape):
    n, h, w = shape
    check_layer_gradients(L.Conv2D(c_in, 3, 3, padding=1, activation="relu", name="conv_1",
                                   max_pool=True), _x((n, c_in, h, w), seed=8))


def test_max_pool_needs_a_conv2d_with_relu_or_identity():
    with pytest.raises(ValueError, match="max_pool"):
        L.Conv2D(1, 2, 3, activation="tanh", max_pool=True)
    with pytest.raises(ValueError, match="max_pool"):
        L.Conv1D(1, 2, 3, activation="relu", max_pool=True)


@pytest.mark.parametrize("case", _conv_cases(12, 6, 1))
def test_conv1d_gradients(case):
    c_in, c_out, n, k, stride, padding, size, act = case
    layer = L.Conv1D(c_in, c_out, k, stride=stride, padding=padding, activation=act, name="conv_1")
    check_layer_gradients(layer, _x((n, c_in, size)))


@pytest.mark.parametrize("cls,pool,stride,padding,shape", [
    (L.MaxPool2D, 2, None, "valid", (2, 3, 6, 7)),
    (L.MaxPool2D, (3, 2), (2, 1), (1, 1), (2, 2, 7, 5)),
    (L.AvgPool2D, 2, None, "valid", (2, 3, 6, 7)),
    (L.AvgPool2D, 3, 2, 1, (1, 2, 7, 8)),
    (L.MaxPool1D, 3, 2, 1, (2, 3, 9)),
    (L.AvgPool1D, 2, None, "valid", (2, 3, 9)),
])
def test_pool_gradients(cls, pool, stride, padding, shape):
    check_layer_gradients(cls(pool, stride=stride, padding=padding), _x(shape, seed=3))


def _pool_cases(seed: int, n: int):
    """Random pools: kind, 1-D or 2-D, window, stride, padding (at most half the window), shape."""
    rng = np.random.default_rng(seed)
    classes = [L.MaxPool2D, L.AvgPool2D, L.MaxPool1D, L.AvgPool1D]
    cases = []
    for t in range(n):
        cls = classes[t % 4]
        k = int(rng.integers(1, 4))
        stride, pad = int(rng.integers(1, 4)), int(rng.integers(0, k // 2 + 1))
        spatial = tuple(int(v) for v in rng.integers(k, 9, size=2 if cls._ndim == 2 else 1))
        cases.append((cls, k, stride, pad, (int(rng.integers(1, 4)), int(rng.integers(1, 4)), *spatial)))
    return cases


@pytest.mark.parametrize("cls,pool,stride,padding,shape", _pool_cases(13, 8))
def test_pool_gradients_on_random_shapes(cls, pool, stride, padding, shape):
    check_layer_gradients(cls(pool, stride=stride, padding=padding), _x(shape, seed=5))


@pytest.mark.parametrize("activation", L.ACTIVATIONS)
def test_activation_layer_gradients(activation):
    check_layer_gradients(L.Activation(activation), _x((3, 4, 5)))


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 5)])
def test_global_avg_pool_and_flatten_gradients(shape):
    check_layer_gradients(L.GlobalAvgPool(), _x(shape))
    check_layer_gradients(L.Flatten(), _x(shape))


def test_dropout_gradients_in_training_mode():
    check_layer_gradients(L.Dropout(0.3), _x((5, 7)), train=True)


# ----------------------------------------------------------------------------
# Shapes, dtypes, options
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("size,k,stride", [(28, 3, 1), (28, 3, 2), (7, 4, 2), (10, 2, 3), (5, 5, 1)])
def test_same_padding_gives_ceil_of_size_over_stride(size, k, stride):
    layer = L.Conv2D(2, 3, k, stride=stride, padding="same", name="c")
    params = layer.init(np.random.default_rng(0))
    out, _ = layer.forward(params, np.zeros((1, 2, size, size), np.float32))
    assert out.shape == (1, 3, -(-size // stride), -(-size // stride))


def test_output_shape_matches_forward():
    rng = np.random.default_rng(0)
    stack = [L.Conv2D(1, 4, 3, padding=1, activation="relu", name="c1"), L.MaxPool2D(2),
             L.Conv2D(4, 6, 3, stride=2, padding="same", name="c2"), L.AvgPool2D(2, stride=1, padding=1),
             L.Flatten(), L.Dense(6 * 5 * 5, 3, name="d")]
    x = rng.standard_normal((2, 1, 17, 17)).astype(np.float32)
    shape = x.shape[1:]
    params = {}
    for layer in stack:
        params.update(layer.init(rng))
    for layer in stack:
        shape = layer.output_shape(shape)
        x, _ = layer.forward(params, x)
        assert x.shape[1:] == shape, layer
    sig = [L.Conv1D(1, 25, 5, stride=2, padding=1, name="a"), L.Conv1D(25, 25, 3, stride=2, padding=1, name="b")]
    assert sig[1].output_shape(sig[0].output_shape((1, 40))) == (25, 10)   # the MNIST-1D CNN's shapes


@pytest.mark.parametrize("make", [
    lambda: L.Dense(6, 4, name="d", activation="gelu"),
    lambda: L.Conv2D(2, 3, 3, padding="same", activation="relu", name="c"),
    lambda: L.Conv1D(2, 3, 3, stride=2, activation="tanh", name="c"),
])
def test_param_dtype_decides_and_float32_matches_float64(make):
    layer = make()
    p64 = layer.init(np.random.default_rng(0), np.float64)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    shape = (3, 6) if isinstance(layer, L.Dense) else ((3, 2, 7, 6) if isinstance(layer, L.Conv2D) else (3, 2, 9))
    x = _x(shape)
    out64, c64 = layer.forward(p64, x)
    out32, c32 = layer.forward(p32, x)                      # float64 input, float32 layer
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-5)
    dout = _x(out64.shape, seed=1)
    dx64, g64 = layer.backward(p64, dout, c64)
    dx32, g32 = layer.backward(p32, dout.astype(np.float32), c32)
    assert dx32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    np.testing.assert_allclose(dx32, dx64, rtol=1e-4, atol=1e-5)
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-4)


def test_init_dtype_shapes_and_torch_default_bound():
    layer = L.Conv2D(3, 8, (3, 2), name="conv_1")
    p = layer.init(np.random.default_rng(0))
    assert list(p) == ["conv_1/w", "conv_1/b"]
    assert p["conv_1/w"].shape == (8, 3, 3, 2) and p["conv_1/w"].dtype == np.float32
    bound = 1 / np.sqrt(3 * 3 * 2)
    assert np.abs(p["conv_1/w"]).max() <= bound and np.abs(p["conv_1/w"]).max() > 0.8 * bound
    p2 = layer.init(np.random.default_rng(0))
    assert all(np.array_equal(p[k], p2[k]) for k in p)                   # same seed, same params


@pytest.mark.parametrize("layer,shape", [
    (L.Conv2D(2, 3, 3, stride=2, padding=1, activation="relu", name="c"), (2, 2, 9, 8)),
    (L.Conv1D(2, 3, 5, stride=2, padding="same", activation="gelu", name="c"), (2, 2, 11)),
    (L.Conv2D(1, 3, 3, padding=1, activation="relu", name="c", max_pool=True), (2, 1, 9, 8)),   # small K
    (L.Conv2D(2, 3, 3, padding=1, activation="relu", name="c", max_pool=True), (2, 2, 9, 8)),   # GEMM
    (L.MaxPool2D(3, stride=2, padding=1), (2, 2, 9, 8)),
    (L.AvgPool1D(3, stride=2, padding=1), (2, 2, 11)),
])
def test_numpy_impl_equals_numba_impl(layer, shape):
    params = layer.init(np.random.default_rng(0), np.float64)
    x = _x(shape)
    out, cache = layer.forward(params, x)
    dout = _x(out.shape, seed=1)
    dx, grads = layer.backward(params, dout, cache)
    layer.impl = "numpy"
    out2, cache2 = layer.forward(params, x)
    dx2, grads2 = layer.backward(params, dout, cache2)
    np.testing.assert_allclose(out2, out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx2, dx, rtol=1e-12, atol=1e-14)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("layer,shape", [
    (L.Dense(4, 3, name="d", activation="relu"), (5, 4)),
    (L.Conv2D(2, 3, 3, padding=1, name="c"), (2, 2, 5, 5)),
    (L.Conv1D(2, 3, 3, name="c"), (2, 2, 6)),
])
def test_need_dx_false_skips_only_the_input_gradient(layer, shape):
    params = layer.init(np.random.default_rng(0), np.float64)
    out, cache = layer.forward(params, _x(shape))
    dout = _x(out.shape, seed=1)
    dx, grads = layer.backward(params, dout, cache)
    none, grads2 = layer.backward(params, dout, cache, need_dx=False)
    assert dx is not None and none is None
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads2[k])


def test_activation_layer_does_not_modify_its_input():
    x = _x((3, 4))
    before = x.copy()
    for act in L.ACTIVATIONS:
        L.Activation(act).forward({}, x)
    np.testing.assert_array_equal(x, before)


# ----------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------

def test_dropout_same_seed_same_mask_and_different_seed_different_mask():
    layer = L.Dropout(0.5)
    x = np.ones((8, 100), np.float32)
    a, _ = layer.forward({}, x, train=True, rng=np.random.default_rng(7))
    b, _ = layer.forward({}, x, train=True, rng=np.random.default_rng(7))
    c, _ = layer.forward({}, x, train=True, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32


def test_dropout_eval_is_identity_and_needs_no_rng():
    layer = L.Dropout(0.9)
    x = _x((4, 5))
    out, cache = layer.forward({}, x, train=False)
    assert out is x or np.array_equal(out, x)
    dx, _ = layer.backward({}, np.ones_like(x), cache)
    np.testing.assert_array_equal(dx, np.ones_like(x))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_expected_scale(rate):
    n = 400_000
    x = np.full(n, 2.0)
    out, mask = L.Dropout(rate).forward({}, x, train=True, rng=np.random.default_rng(0))
    kept = out != 0
    np.testing.assert_allclose(out[kept], 2.0 / (1 - rate))             # survivors scaled by 1/(1-p)
    # Fraction dropped ~ Binomial(n, p)/n: within 5 standard deviations.
    assert abs((1 - kept.mean()) - rate) <= 5 * np.sqrt(rate * (1 - rate) / n)
    # E[out] = x: the mean is within 5 standard errors of 2.
    assert abs(out.mean() - 2.0) <= 5 * out.std() / np.sqrt(n)
    dx, _ = L.Dropout(rate).backward({}, np.ones(n), mask)
    np.testing.assert_array_equal(dx != 0, kept)


def test_dropout_rate_zero_is_identity_in_training():
    x = _x((3, 3))
    out, _ = L.Dropout(0.0).forward({}, x, train=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, x)


# ----------------------------------------------------------------------------
# Bad input -> ValueError naming the argument
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda: L.Conv2D(1, 2, 3, stride=1.5), "stride"),
    (lambda: L.Conv2D(1, 2, 3, stride=0), "stride"),
    (lambda: L.Conv1D(1, 2, 3, stride="2"), "stride"),
    (lambda: L.Conv2D(1, 2, 0), "kernel_size"),
    (lambda: L.Conv2D(1, 2, (3, 3, 3)), "kernel_size"),
    (lambda: L.Conv2D(1, 2, 3, padding="full"), "padding"),
    (lambda: L.Conv2D(1, 2, 3, padding=-1), "padding"),
    (lambda: L.Conv2D(0, 2, 3), "in_channels"),
    (lambda: L.Conv2D(1, 2.5, 3), "out_channels"),
    (lambda: L.Conv2D(1, 2, 3, activation="swish"), "activation"),
    (lambda: L.Conv2D(1, 2, 3, impl="cuda"), "impl"),
    (lambda: L.Dense(0, 3), "in_dim"),
    (lambda: L.Dense(3, 3, activation="sigmoid"), "activation"),
    (lambda: L.MaxPool2D(2, stride=0.5), "stride"),
    (lambda: L.MaxPool2D(2, padding="same"), "padding"),
    (lambda: L.MaxPool2D(2, padding=2), "padding"),
    (lambda: L.AvgPool1D(0), "pool_size"),
    (lambda: L.Dropout(1.0), "rate"),
    (lambda: L.Dropout(-0.1), "rate"),
    (lambda: L.Activation("softplus"), "activation"),
])
def test_bad_constructor_arguments_raise_value_error_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer,x,match", [
    (L.Dense(4, 3, name="d"), np.zeros((2, 5)), "in_dim"),
    (L.Dense(4, 3, name="d"), np.zeros((2, 4, 1)), "shape"),
    (L.Conv2D(3, 2, 3, name="c"), np.zeros((2, 4, 8, 8)), "in_channels"),
    (L.Conv2D(3, 2, 3, name="c"), np.zeros((2, 3, 8)), r"\(N, C, H, W\)"),
    (L.Conv2D(3, 2, 5, name="c"), np.zeros((2, 3, 3, 3)), "too small"),
    (L.Conv1D(1, 2, 3, name="c"), np.zeros((2, 2, 8)), "in_channels"),
    (L.Conv1D(1, 2, 3, name="c"), np.zeros((2, 1, 8, 8)), r"\(N, C, W\)"),
    (L.MaxPool2D(2), np.zeros((2, 3, 8)), r"\(N, C, H, W\)"),
    (L.MaxPool1D(4), np.zeros((2, 3, 3)), "pool_size"),
    (L.GlobalAvgPool(), np.zeros((2, 3)), "shape"),
    (L.Flatten(), np.zeros(3), "shape"),
])
def test_bad_inputs_raise_value_error(layer, x, match):
    params = layer.init(np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        layer.forward(params, x)


def test_dropout_in_training_requires_a_generator():
    with pytest.raises(ValueError, match="rng"):
        L.Dropout(0.5).forward({}, np.ones(3), train=True, rng=None)
    with pytest.raises(ValueError, match="rng"):
        L.Dropout(0.5).forward({}, np.ones(3), train=True, rng=0)


def test_bad_init_dtype_raises():
    with pytest.raises(ValueError, match="dtype"):
        L.Dense(2, 2).init(np.random.default_rng(0), np.int32)


@pytest.mark.parametrize("chunk_bytes", [1, 3000])
def test_conv_batch_chunking_does_not_change_results(monkeypatch, chunk_bytes):
    # Large batches run in chunks (cache locality); chunks of 1 and of a few examples must
    # give the unchunked results, and the gradients must still match finite differences.
    layer = L.Conv2D(2, 3, 3, stride=(1, 2), padding=1, activation="relu", name="c")
    params = layer.init(np.random.default_rng(0), np.float64)
    x = _x((5, 2, 6, 7))
    out, cache = layer.forward(params, x)
    dout = _x(out.shape, seed=1)
    dx, grads = layer.backward(params, dout, cache)
    monkeypatch.setattr(L, "_CHUNK_BYTES", chunk_bytes)
    out2, cache2 = layer.forward(params, x)
    assert len(cache2[0]) > 1                                # really chunked
    dx2, grads2 = layer.backward(params, dout, cache2)
    np.testing.assert_allclose(out2, out, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx2, dx, rtol=1e-13, atol=1e-15)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-12, atol=1e-14)
    check_layer_gradients(layer, x)
