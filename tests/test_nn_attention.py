"""Multi-head self-attention: the Numba kernels equal their numpy twins, the layer's gradients
equal finite differences in float64, and bad input is refused by name."""

import numpy as np
import pytest

from refplay.nn import kernels, reference
from refplay.nn.attention import (MultiHeadSelfAttention, self_attention_backward,
                                  self_attention_forward, softmax_floor)
from tests.helpers import max_rel_error as _rel, numeric_grad, rel_error

TOL = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n,t,heads,dh", [(3, 5, 2, 4), (2, 11, 4, 8), (1, 1, 1, 3), (17, 3, 1, 2)])
def test_attention_kernels_equal_their_twins(dtype, causal, n, t, heads, dh):
    rng = np.random.default_rng(t * heads)
    qkv_t = (2.0 * rng.standard_normal((3 * heads * dh, t, n))).astype(dtype)
    dctx_t = rng.standard_normal((heads * dh, t, n)).astype(dtype)
    scale = 1.0 / np.sqrt(dh)
    floor = softmax_floor(dtype)
    s = kernels.attention_scores(qkv_t, heads, scale, causal, floor)
    s_ref = reference.attention_scores(qkv_t, heads, scale, causal, floor)
    assert s.dtype == dtype and s.shape == (heads, t, t, n)
    np.testing.assert_array_equal(np.isinf(s), np.isinf(s_ref))       # the causal mask
    finite = np.isfinite(s_ref)
    assert _rel(s[finite], s_ref[finite]) <= TOL[dtype]
    e, e_ref = np.exp(s), np.exp(s_ref)
    ctx_t, p = kernels.attention_context(qkv_t, e)
    ctx_ref, p_ref = reference.attention_context(qkv_t, e_ref)
    assert p is e and p_ref is e_ref                                   # normalized in place
    assert ctx_t.dtype == p.dtype == dtype and ctx_t.shape == (heads * dh, t, n)
    assert _rel(ctx_t, ctx_ref) <= TOL[dtype] and _rel(p, p_ref) <= TOL[dtype]
    np.testing.assert_allclose(p.sum(axis=2), 1.0, rtol=TOL[dtype] * 10)   # rows of a softmax
    if causal:
        assert np.all(np.triu(np.ones((t, t)), k=1)[None, :, :, None] * p == 0)
    dqkv = kernels.attention_backward(dctx_t, qkv_t, p, heads, scale, causal)
    dqkv_ref = reference.attention_backward(dctx_t, qkv_t, p_ref, heads, scale, causal)
    assert dqkv.dtype == dtype and _rel(dqkv, dqkv_ref) <= TOL[dtype] * 10


@pytest.mark.parametrize("impl", [kernels, reference])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_weight_below_the_floor_is_exactly_zero_and_changes_nothing_else(impl, dtype):
    # Token 1's key is far from the query (score -1000 below the row max), token 2's is at
    # -20: the first weight is below eps^2 and is dropped, the second is kept.
    floor = softmax_floor(dtype)
    assert floor == pytest.approx(2 * np.log(np.finfo(dtype).eps))
    qkv_t = np.zeros((3, 3, 1), dtype)                 # one head of width 1, T = 3, N = 1
    qkv_t[0, :, 0] = 1.0                               # every query = 1
    qkv_t[1, :, 0] = [0.0, -1000.0, -20.0]             # keys: scores 0, -1000, -20
    qkv_t[2, :, 0] = [1.0, 5.0, 3.0]                   # values
    s = impl.attention_scores(qkv_t, 1, 1.0, False, floor)
    assert np.all(np.isneginf(s[0, :, 1, 0])) and np.all(s[0, :, 2, 0] == pytest.approx(-20.0))
    ctx_t, p = impl.attention_context(qkv_t, np.exp(s))
    assert np.all(p[0, :, 1, 0] == 0) and np.all(p[0, :, 2, 0] > 0)
    want = (1.0 + 3.0 * np.exp(-20.0)) / (1.0 + np.exp(-20.0))
    np.testing.assert_allclose(ctx_t[0, :, 0], want, rtol=TOL[dtype])


@pytest.mark.parametrize("causal", [False, True])
def test_a_nan_in_the_input_reaches_the_output_and_the_gradient(causal):
    # A diverging trial must look diverged: no NaN may vanish inside the softmax.
    layer, params, x, dy = _layer_case(causal)
    x[1, 0, 2] = np.nan
    y, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, dy, cache)
    assert np.isnan(y[1]).any() and np.isfinite(y[0]).all()
    assert np.isnan(dx[1]).any() and np.isnan(grads["attn/qkv/w"]).any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_feature_bias_kernel_equals_its_twin(dtype):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((6, 13)).astype(dtype), rng.standard_normal(6).astype(dtype)
    got, want = kernels.add_feature_bias(a.copy(), b), reference.add_feature_bias(a.copy(), b)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)                         # one rounding each


def _layer_case(causal, seed=0):
    layer = MultiHeadSelfAttention(6, 3, causal=causal, name="attn")
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.standard_normal(v.shape)
              for k, v in layer.init(rng, np.float64).items()}
    x = rng.standard_normal((2, 4, 6))
    dy = rng.standard_normal((2, 4, 6))
    return layer, params, x, dy


@pytest.mark.parametrize("causal", [False, True])
def test_attention_gradients_match_finite_differences(causal):
    layer, params, x, dy = _layer_case(causal)

    def loss_of_x(v):
        return float(np.sum(layer.forward(params, v)[0] * dy))

    out, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, dy, cache)
    assert rel_error(dx, numeric_grad(loss_of_x, x.copy())) < 1e-7
    for key in params:
        def loss_of_p(v, key=key):
            return float(np.sum(layer.forward({**params, key: v}, x)[0] * dy))
        assert rel_error(grads[key], numeric_grad(loss_of_p, params[key].copy())) < 1e-7, key


def test_causal_output_ignores_the_future():
    layer, params, x, _ = _layer_case(True)
    y, _ = layer.forward(params, x)
    x2 = x.copy()
    x2[:, -1] += 5.0                                    # change only the last token
    y2, _ = layer.forward(params, x2)
    np.testing.assert_array_equal(y[:, :-1], y2[:, :-1])
    assert np.max(np.abs(y[:, -1] - y2[:, -1])) > 1e-3


@pytest.mark.parametrize("causal", [False, True])
def test_numpy_twin_layer_agrees(causal):
    layer, params, x, dy = _layer_case(causal)
    args = (params["attn/qkv/w"], params["attn/qkv/b"], params["attn/out/w"], params["attn/out/b"],
            3, causal)
    y, c = self_attention_forward(x, *args, impl="numba")
    y_ref, c_ref = self_attention_forward(x, *args, impl="numpy")
    assert _rel(y, y_ref) <= 1e-12
    dx, g = self_attention_backward(dy, c)
    dx_ref, g_ref = self_attention_backward(dy, c_ref)
    assert _rel(dx, dx_ref) <= 1e-12
    assert all(_rel(a, b) <= 1e-12 for a, b in zip(g, g_ref))


def test_float32_parameters_give_float32_outputs():
    layer = MultiHeadSelfAttention(8, 2)
    params = layer.init(np.random.default_rng(0), np.float32)
    y, cache = layer.forward(params, np.ones((2, 3, 8)))
    dx, grads = layer.backward(params, np.ones_like(y), cache)
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadSelfAttention(6, 4)
    with pytest.raises(ValueError, match="impl"):
        MultiHeadSelfAttention(6, 3, impl="cuda")
    layer = MultiHeadSelfAttention(6, 3)
    params = layer.init(np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError, match=r"\(N, T, 6\)"):
        layer.forward(params, np.zeros((2, 6)))
    with pytest.raises(ValueError, match="input shape"):
        layer.output_shape((4, 5))
