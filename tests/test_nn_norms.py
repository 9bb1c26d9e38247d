"""BatchNorm (ghost batches, devices, EMAs, padding) and LayerNorm."""

import zlib

import numpy as np
import pytest

from tests.helpers import numeric_grad, rel_error
from refplay.nn import kernels, norms, reference
from refplay.nn.norms import BatchNorm, LayerNorm


def _params(layer, rng, dtype=np.float64):
    """Random (not 1/0) scale and bias so their gradients are exercised."""
    p = layer.init(rng, dtype)
    return {k: rng.normal(size=v.shape).astype(dtype) for k, v in p.items()}


def _check_layer_gradients(layer, params, x, *, state=None, train=True, mask=None, seed=0):
    """Loss = <R, layer(x)>; compare analytic gradients of x and params with finite differences."""
    rng = np.random.default_rng(seed)

    def out(p, xx):
        if state is None:
            return layer.forward(p, xx, train=train)[0]
        return layer.apply(p, state, xx, train=train, mask=mask)[0]

    R = rng.normal(size=out(params, x).shape)
    if mask is not None:                 # padded examples carry no loss, as in a model
        R *= (np.asarray(mask) != 0).reshape((-1,) + (1,) * (x.ndim - 1))
    if state is None:
        _, cache = layer.forward(params, x, train=train)
    else:
        _, cache, _ = layer.apply(params, state, x, train=train, mask=mask)
    dx, grads = layer.backward(params, R, cache)
    assert rel_error(dx, numeric_grad(lambda v: np.sum(R * out(params, v)), x.copy())) <= 1e-6
    for k in params:
        f = lambda v, k=k: np.sum(R * out({**params, k: v}, x))   # noqa: E731
        assert rel_error(grads[k], numeric_grad(f, params[k].copy())) <= 1e-6, k
    return dx, grads


SHAPES = [(12, 3), (12, 2, 5), (6, 3, 3, 2)]


# Groups of at least 3 values per channel: with 2 values x_hat is +-1 whatever x,
# the gradient is ~0 and finite differences measure only rounding.
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("config", [
    {}, {"virtual_batch_size": 6}, {"virtual_batch_size": 9, "remainder": "smaller_last"},
    {"num_devices": 2},
    {"num_devices": 2, "sync_stats": True, "virtual_batch_size": 4, "remainder": "smaller_last"}])
def test_batchnorm_train_gradients(shape, config):
    rng = np.random.default_rng(zlib.crc32(repr((shape, config)).encode()))
    bn = BatchNorm(shape[1], **config)
    x = rng.normal(size=shape) * 2 + 1
    _check_layer_gradients(bn, _params(bn, rng), x, state=bn.init_state(np.float64))


def test_batchnorm_gradients_with_padding_mask():
    rng = np.random.default_rng(7)
    bn = BatchNorm(3, virtual_batch_size=4)
    x = rng.normal(size=(8, 3, 2))
    mask = np.array([1, 1, 0, 1, 1, 0, 0, 0])          # the second group has one real example
    _check_layer_gradients(bn, _params(bn, rng), x, state=bn.init_state(np.float64), mask=mask)


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_eval_gradients_and_formula(shape):
    rng = np.random.default_rng(8)
    bn = BatchNorm(shape[1])
    state = {"bn/mean": rng.normal(size=shape[1]), "bn/var": rng.random(shape[1]) + 0.5}
    params = _params(bn, rng)
    x = rng.normal(size=shape)
    _check_layer_gradients(bn, params, x, state=state, train=False)
    y, _, new_state = bn.apply(params, state, x, train=False)
    b = (None, slice(None)) + (None,) * (len(shape) - 2)
    expected = ((x - state["bn/mean"][b]) / np.sqrt(state["bn/var"][b] + bn.eps)
                * params["bn/scale"][b] + params["bn/bias"][b])
    np.testing.assert_allclose(y, expected, rtol=1e-13)
    assert all(new_state[k] is state[k] for k in state)      # evaluation never moves the EMAs


@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_gradients_and_per_example_statistics(shape):
    rng = np.random.default_rng(9)
    ln = LayerNorm(shape[1])
    params = _params(ln, rng)
    x = rng.normal(size=shape) * 3 - 1
    _check_layer_gradients(ln, params, x, state=None)
    y, _ = ln.forward(ln.init(rng, np.float64), x)
    flat = y.reshape(shape[0], -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(flat.var(axis=1), 1, rtol=1e-4)    # eps keeps it just below 1
    y0, _ = ln.forward(params, x[:1])                                # batch-size independent
    np.testing.assert_allclose(y0, ln.forward(params, x)[0][:1], rtol=1e-14)


def _bn_plain(x, scale, bias, eps=1e-5):
    """Plain batch norm written out: statistics over examples and positions."""
    axes = (0,) + tuple(range(2, x.ndim))
    b = (None, slice(None)) + (None,) * (x.ndim - 2)
    mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale[b] + bias[b]


@pytest.mark.parametrize("shape", SHAPES)
def test_ghost_batchnorm_with_virtual_batch_equal_to_batch_is_plain_batchnorm(shape):
    rng = np.random.default_rng(10)
    x = rng.normal(size=shape)
    plain = BatchNorm(shape[1])
    params = _params(plain, rng)
    state = plain.init_state(np.float64)
    y, _, s = plain.apply(params, state, x, train=True)
    np.testing.assert_allclose(y, _bn_plain(x, params["bn/scale"], params["bn/bias"]), rtol=1e-12, atol=1e-12)
    for v in (shape[0], shape[0] + 5):                 # V = B, and V > B (one group)
        yv, _, sv = BatchNorm(shape[1], virtual_batch_size=v).apply(params, state, x, train=True)
        np.testing.assert_array_equal(yv, y)
        for k in s:
            np.testing.assert_array_equal(sv[k], s[k])


def test_ghost_batches_normalize_each_slice_on_its_own():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(12, 3, 4))
    bn = BatchNorm(3, virtual_batch_size=4)
    params = _params(bn, rng)
    y, _, _ = bn.apply(params, bn.init_state(np.float64), x, train=True)
    for g in range(3):
        sl = slice(4 * g, 4 * g + 4)
        np.testing.assert_allclose(y[sl], _bn_plain(x[sl], params["bn/scale"], params["bn/bias"]),
                                   rtol=1e-12, atol=1e-12)


def test_batch_not_a_multiple_of_virtual_batch_size():
    """Documented behaviour: "error" raises (the default); "smaller_last" normalizes the leftovers alone."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="virtual_batch_size=4 does not divide the batch size 10"):
        BatchNorm(2, virtual_batch_size=4).apply(BatchNorm(2).init(None, np.float64),
                                                 BatchNorm(2).init_state(np.float64), x, train=True)
    bn = BatchNorm(2, virtual_batch_size=4, remainder="smaller_last")
    params = _params(bn, rng)
    y, _, _ = bn.apply(params, bn.init_state(np.float64), x, train=True)
    bounds, _ = bn.groups(10)
    np.testing.assert_array_equal(bounds, [0, 4, 8, 10])
    for a, b in [(0, 4), (4, 8), (8, 10)]:
        np.testing.assert_allclose(y[a:b], _bn_plain(x[a:b], params["bn/scale"], params["bn/bias"]),
                                   rtol=1e-12, atol=1e-12)
    # A leftover group of one example without spatial positions has no variance: refused.
    with pytest.raises(ValueError, match="at least 2"):
        bn.apply(params, bn.init_state(np.float64), rng.normal(size=(9, 2)), train=True)
    # The same leftover with spatial positions is fine (statistics over its 5 positions).
    bn.apply(params, bn.init_state(np.float64), rng.normal(size=(9, 2, 5)), train=True)


def test_unsynchronized_devices_are_ghost_batches_and_synchronized_devices_are_one_batch():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(12, 3))
    params = _params(BatchNorm(3), rng)
    state = BatchNorm(3).init_state(np.float64)
    y_dev, _, _ = BatchNorm(3, num_devices=3).apply(params, state, x, train=True)
    y_ghost, _, _ = BatchNorm(3, virtual_batch_size=4).apply(params, state, x, train=True)
    np.testing.assert_array_equal(y_dev, y_ghost)
    y_sync, _, _ = BatchNorm(3, num_devices=3, sync_stats=True).apply(params, state, x, train=True)
    y_plain, _, _ = BatchNorm(3).apply(params, state, x, train=True)
    np.testing.assert_array_equal(y_sync, y_plain)
    # ghost batches inside each device: 3 devices x 2 virtual batches of 2
    bounds, shards = BatchNorm(3, num_devices=3, virtual_batch_size=2).groups(12)
    np.testing.assert_array_equal(bounds, np.arange(0, 13, 2))
    np.testing.assert_array_equal(shards, [0, 2, 4, 6])


def test_ema_update_as_documented():
    rng = np.random.default_rng(14)
    x = rng.normal(size=(12, 3, 5)) * 2 + 3
    d = 0.8
    flat = x.transpose(1, 0, 2).reshape(3, -1)           # (C, N*S)
    start = {"bn/mean": rng.normal(size=3), "bn/var": rng.random(3) + 0.5}
    for config in ({}, {"virtual_batch_size": 4}, {"virtual_batch_size": 5, "remainder": "smaller_last"},
                   {"num_devices": 2, "sync_stats": True}):
        bn = BatchNorm(3, ema_decay=d, **config)
        _, _, s = bn.apply(_params(bn, rng), start, x, train=True)
        # the EMA sees the whole batch whatever the ghost batches (unbiased variance)
        np.testing.assert_allclose(s["bn/mean"], d * start["bn/mean"] + (1 - d) * flat.mean(axis=1), rtol=1e-13)
        np.testing.assert_allclose(s["bn/var"], d * start["bn/var"] + (1 - d) * flat.var(axis=1, ddof=1),
                                   rtol=1e-13)
    # unsynchronized devices: synchronized EMAs average the devices' statistics...
    halves = [x[:6].transpose(1, 0, 2).reshape(3, -1), x[6:].transpose(1, 0, 2).reshape(3, -1)]
    _, _, s = BatchNorm(3, ema_decay=d, num_devices=2).apply(_params(BatchNorm(3), rng), start, x, train=True)
    np.testing.assert_allclose(s["bn/mean"], d * start["bn/mean"] + (1 - d) * np.mean([h.mean(1) for h in halves], 0),
                               rtol=1e-13)
    np.testing.assert_allclose(s["bn/var"],
                               d * start["bn/var"] + (1 - d) * np.mean([h.var(1, ddof=1) for h in halves], 0),
                               rtol=1e-13)
    # ... while the pitfall (EMA of device 0 only) ignores the second half of the batch.
    _, _, s0 = BatchNorm(3, ema_decay=d, num_devices=2, sync_ema=False).apply(
        _params(BatchNorm(3), rng), start, x, train=True)
    np.testing.assert_allclose(s0["bn/mean"], d * start["bn/mean"] + (1 - d) * halves[0].mean(1), rtol=1e-13)
    np.testing.assert_allclose(s0["bn/var"], d * start["bn/var"] + (1 - d) * halves[0].var(1, ddof=1), rtol=1e-13)


def test_ema_converges_to_population_statistics_and_eval_uses_it():
    rng = np.random.default_rng(15)
    bn = BatchNorm(2, ema_decay=0.9)
    params = bn.init(None, np.float64)
    state = bn.init_state(np.float64)
    mu, sd = np.array([3.0, -1.0]), np.array([2.0, 0.5])
    for _ in range(200):
        _, _, state = bn.apply(params, state, mu + sd * rng.normal(size=(256, 2)), train=True)
    np.testing.assert_allclose(state["bn/mean"], mu, atol=0.1)
    np.testing.assert_allclose(state["bn/var"], sd ** 2, rtol=0.1)
    x = rng.normal(size=(5, 2))
    y, _, _ = bn.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, (x - state["bn/mean"]) / np.sqrt(state["bn/var"] + bn.eps), rtol=1e-13)
    # evaluation is per example: other examples in the batch do not matter
    y1, _, _ = bn.apply(params, state, x[:1], train=False)
    np.testing.assert_array_equal(y1, y[:1])


def test_padding_changes_neither_real_outputs_nor_ema():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(6, 3, 2))
    padded = np.concatenate([x, 100 * rng.normal(size=(2, 3, 2))])
    mask = np.r_[np.ones(6), np.zeros(2)]
    bn = BatchNorm(3)
    params, state = _params(bn, rng), bn.init_state(np.float64)
    y, _, s = bn.apply(params, state, x, train=True)
    yp, _, sp = bn.apply(params, state, padded, train=True, mask=mask)
    np.testing.assert_allclose(yp[:6], y, rtol=1e-12)
    for k in s:
        np.testing.assert_allclose(sp[k], s[k], rtol=1e-12)
    # a device whose shard is all padding does not move the EMA
    _, _, s2 = BatchNorm(3, num_devices=2).apply(params, state, np.concatenate([x[:4], x[:4]]),
                                                train=True, mask=np.r_[np.ones(4), np.zeros(4)])
    _, _, s1 = BatchNorm(3).apply(params, state, x[:4], train=True)
    for k in s1:
        np.testing.assert_allclose(s2[k], s1[k], rtol=1e-12)


def test_float32_follows_the_parameters_and_agrees_with_float64():
    rng = np.random.default_rng(17)
    x = rng.normal(size=(8, 4, 3))
    for layer in (BatchNorm(4, virtual_batch_size=4), LayerNorm(4)):
        p64 = _params(layer, rng)
        p32 = {k: v.astype(np.float32) for k, v in p64.items()}
        if isinstance(layer, BatchNorm):
            y32, c32, s32 = layer.apply(p32, layer.init_state(np.float32), x, train=True)
            y64, c64, _ = layer.apply(p64, layer.init_state(np.float64), x, train=True)
            assert all(v.dtype == np.float32 for v in s32.values())
        else:
            (y32, c32), (y64, c64) = layer.forward(p32, x), layer.forward(p64, x)
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
        R = rng.normal(size=x.shape)
        dx32, g32 = layer.backward(p32, R.astype(np.float32), c32)
        dx64, g64 = layer.backward(p64, R, c64)
        assert dx32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
        np.testing.assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-4)


def _random_bounds(rng, n):
    cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(0, 4), replace=False))
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_batchnorm_kernels_equal_their_numpy_twins(dtype, tol):
    rng = np.random.default_rng(18)
    for trial in range(5):
        n, c, s = rng.integers(2, 12), rng.integers(1, 5), rng.integers(1, 7)
        x = (rng.normal(size=(n, c, s)) * 3 + 5).astype(dtype)
        g = rng.normal(size=(n, c, s)).astype(dtype)
        mask = (rng.random(n) > 0.3).astype(np.float64)
        if trial == 0:
            mask[:] = 0                                   # an all-padding batch: empty groups
        bounds = _random_bounds(rng, n)
        for a, b in zip(kernels.bn_group_stats(x, mask, bounds), reference.bn_group_stats(x, mask, bounds)):
            assert a.dtype == b.dtype == np.float64
            assert rel_error(a, b) <= tol or np.linalg.norm(a - b) == 0
        for a, b in zip(kernels.bn_group_backward_sums(g, x, bounds),
                        reference.bn_group_backward_sums(g, x, bounds)):
            assert rel_error(a, b) <= tol
        G = len(bounds) - 1
        mean, rstd = rng.normal(size=(G, c)), rng.random((G, c)) + 0.5
        scale, bias = rng.normal(size=c).astype(dtype), rng.normal(size=c).astype(dtype)
        for a, b in zip(kernels.bn_normalize(x, bounds, mean, rstd, scale, bias),
                        reference.bn_normalize(x, bounds, mean, rstd, scale, bias)):
            assert a.dtype == b.dtype == dtype
            assert rel_error(a.astype(np.float64), b.astype(np.float64)) <= tol
        k, c1, c2 = rng.normal(size=(G, c)), rng.normal(size=(G, c)), rng.normal(size=(G, c))
        a = kernels.bn_backward_dx(g, x, bounds, mask, k, c1, c2)
        b = reference.bn_backward_dx(g, x, bounds, mask, k, c1, c2)
        assert a.dtype == b.dtype == dtype
        assert rel_error(a.astype(np.float64), b.astype(np.float64)) <= tol


def test_bad_input_raises_value_error_naming_the_argument():
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="virtual_batch_size"):
            BatchNorm(3, virtual_batch_size=bad)
        with pytest.raises(ValueError, match="virtual_batch_size"):
            norms.batchnorm_groups(8, virtual_batch_size=bad)
    with pytest.raises(ValueError, match="num_devices"):
        norms.batchnorm_groups(10, num_devices=3)
    with pytest.raises(ValueError, match="num_devices"):
        BatchNorm(3, num_devices=0)
    with pytest.raises(ValueError, match="remainder"):
        BatchNorm(3, remainder="drop")
    with pytest.raises(ValueError, match="ema_decay"):
        BatchNorm(3, ema_decay=1.5)
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm(0)
    bn = BatchNorm(3)
    p, s = bn.init(None, np.float64), bn.init_state(np.float64)
    with pytest.raises(ValueError, match="num_features is 3"):
        bn.apply(p, s, np.zeros((4, 2)), train=True)
    with pytest.raises(ValueError, match="at least 2"):
        bn.apply(p, s, np.zeros((1, 3)), train=True)      # as torch: one value per channel
    with pytest.raises(ValueError, match="mask"):
        bn.apply(p, s, np.zeros((4, 3)), train=True, mask=np.ones(3))
    with pytest.raises(TypeError, match="apply"):
        bn.forward(p, np.zeros((4, 3)))
    ln = LayerNorm(3)
    with pytest.raises(ValueError, match="num_features=3"):
        ln.forward(ln.init(None, np.float64), np.zeros((4, 2)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(7, 6, 1), (33, 32, 1), (1, 2, 1), (5, 3, 40), (4, 300, 1),
                                   (3, 9, 333)])
def test_layernorm_row_kernels_are_bitwise_their_twins(dtype, shape):
    # Bitwise, not to a tolerance: the kernels round and sum as numpy does (pairwise sums, also
    # past numpy's 128-term blocks), so a model trains the same on either.
    rng = np.random.default_rng(shape[1])
    x = (3.0 * rng.standard_normal(shape) + 1.0).astype(dtype)
    c = shape[1]
    scale, bias = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    eps = np.asarray(1e-5, dtype)[()]
    got = kernels.layernorm_rows(x, scale, bias, eps)
    want = reference.layernorm_rows(x, scale, bias, eps)
    for a, b in zip(got, want):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    back = kernels.layernorm_rows_backward(dy, got[1], got[2], scale)
    back_ref = reference.layernorm_rows_backward(dy, want[1], want[2], scale)
    for a, b in zip(back, back_ref):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_layer_on_kernels_equals_the_layer_on_twins(dtype, shape):
    rng = np.random.default_rng(19)
    fast, slow = LayerNorm(shape[1]), LayerNorm(shape[1], impl="numpy")
    params = _params(fast, rng, dtype)
    x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    (y, c), (y_ref, c_ref) = fast.forward(params, x), slow.forward(params, x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)
    (dx, g), (dx_ref, g_ref) = fast.backward(params, dy, c), slow.backward(params, dy, c_ref)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, dx_ref)
    for k in params:
        assert g[k].dtype == dtype and g[k].shape == params[k].shape
        np.testing.assert_array_equal(g[k], g_ref[k])
