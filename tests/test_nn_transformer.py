"""Transformer pieces and ``models.vit1d``: the token layer norm is the existing LayerNorm on
the token matrix, every layer and the whole model match finite differences in
float64, and bad hyperparameters are refused by name."""

import numpy as np
import pytest

from refplay.nn import models
from refplay.nn.layers import gelu_backward, gelu_forward
from refplay.nn.norms import layernorm_forward
from refplay.nn.transformer import (PatchEmbedding, TokenDense, TokenLayerNorm, TokenPool,
                                    token_layernorm_backward, token_layernorm_forward)
from tests.helpers import max_rel_error as _rel, numeric_grad, rel_error

TOL = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_equals_its_formula_in_float64(dtype):
    rng = np.random.default_rng(3)
    z = (2.0 * rng.standard_normal((9, 7))).astype(dtype)
    da = rng.standard_normal((9, 7)).astype(dtype)
    z64, c = z.astype(np.float64), np.sqrt(2.0 / np.pi)
    t = np.tanh(c * (z64 + 0.044715 * z64 ** 3))
    dudz = c * (1.0 + 3.0 * 0.044715 * z64 ** 2)
    a, t_kept = gelu_forward(z)
    assert a.dtype == dtype and _rel(a, 0.5 * z64 * (1.0 + t)) <= TOL[dtype]
    dz, db = gelu_backward(da, z, t_kept)
    want = da * (0.5 * (1.0 + t) + 0.5 * z64 * (1.0 - t * t) * dudz)
    assert dz.dtype == dtype and _rel(dz, want) <= TOL[dtype]
    assert db.dtype == np.float64 and _rel(db, want.sum(axis=0)) <= TOL[dtype]
    b = rng.standard_normal(7).astype(dtype)                      # the fused bias of a Dense
    zb = z.copy()
    a_b, _ = gelu_forward(zb, b)
    assert _rel(zb, z64 + b) <= TOL[dtype] and _rel(a_b, gelu_forward(z + b)[0]) <= TOL[dtype]


def test_token_layernorm_is_the_existing_layernorm_on_the_token_matrix():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4))
    scale, bias = rng.standard_normal(4), rng.standard_normal(4)
    y, _ = token_layernorm_forward(x, scale, bias)
    y_ref, _ = layernorm_forward(x.reshape(15, 4), scale, bias)
    assert _rel(y, y_ref.reshape(3, 5, 4)) <= 1e-13


def _check_layer(layer, x, seed=0, tol=1e-7):
    """Every parameter gradient and dx of ``layer`` against central differences (float64)."""
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.standard_normal(v.shape)
              for k, v in layer.init(rng, np.float64).items()}
    out, cache = layer.forward(params, x)
    dy = rng.standard_normal(out.shape)
    dx, grads = layer.backward(params, dy, cache)
    assert rel_error(dx, numeric_grad(lambda v: float(np.sum(layer.forward(params, v)[0] * dy)),
                                      x.copy())) < tol
    assert sorted(grads) == sorted(params)
    for key in params:
        def f(v, key=key):
            return float(np.sum(layer.forward({**params, key: v}, x)[0] * dy))
        assert rel_error(grads[key], numeric_grad(f, params[key].copy())) < tol, key


@pytest.mark.parametrize("layer,shape", [
    (TokenLayerNorm(4, name="ln"), (2, 3, 4)),
    (TokenLayerNorm(4, name="ln", impl="numpy"), (2, 3, 4)),
    (TokenDense(4, 5, name="d", activation="gelu"), (2, 3, 4)),
    (TokenDense(4, 5, name="d", activation="relu"), (2, 3, 4)),
    (PatchEmbedding(12, 3, 4, name="e"), (2, 12)),
    (PatchEmbedding(12, 4, 5, cls_token=False, name="e"), (2, 12)),
])
def test_layer_gradients_match_finite_differences(layer, shape):
    _check_layer(layer, np.random.default_rng(9).standard_normal(shape))


@pytest.mark.parametrize("mode", ["cls", "mean"])
def test_token_pool_gradient(mode):
    pool = TokenPool(mode)
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    out, cache = pool.forward({}, x)
    dy = np.random.default_rng(1).standard_normal(out.shape)
    dx, _ = pool.backward({}, dy, cache)
    num = numeric_grad(lambda v: float(np.sum(pool.forward({}, v)[0] * dy)), x.copy())
    assert rel_error(dx, num) < 1e-8


class _Batch:
    def __init__(self, x, y):
        self.x, self.y, self.weights = x, y, None


@pytest.mark.parametrize("placement,pool,causal", [("post", "cls", False), ("pre", "mean", True)])
def test_vit1d_gradients_match_finite_differences(placement, pool, causal):
    model = models.vit1d(8, 3, patch_size=2, width=4, depth=2, num_heads=2, mlp_ratio=2,
                         norm_placement=placement, pool=pool, causal=causal)
    rng = np.random.default_rng(0)
    params, state = model.init_params(rng, np.float64)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
    batch = _Batch(rng.standard_normal((3, 8)), rng.integers(0, 3, 3))
    _, grads, _, _ = model.loss_and_grads(params, state, batch)
    for key in params:
        def f(v, key=key):
            return model.loss({**params, key: v}, state, batch)[0]
        assert rel_error(grads[key], numeric_grad(f, params[key].copy())) < 1e-6, key


def test_vit1d_structure_float32_and_determinism():
    pre = models.get("vit1d", depth=2, norm_placement="pre")
    post = models.get("vit1d", depth=2, norm_placement="post")
    p_pre, _ = pre.init_params(np.random.default_rng(0))
    p_post, _ = post.init_params(np.random.default_rng(0))
    assert "final_norm/scale" in p_pre and "final_norm/scale" not in p_post
    assert p_pre["embed/pos"].shape == (11, 32)          # 40 / 4 patches + the CLS token
    batch = _Batch(np.random.default_rng(1).standard_normal((6, 40)), np.arange(6) % 10)
    a = pre.loss_and_grads(p_pre, {}, batch)
    b = pre.loss_and_grads(p_pre, {}, batch)
    assert np.float32 == a[1]["block_1/attn/qkv/w"].dtype
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vit1d_predicts_128_examples_at_a_time_bitwise_as_all_at_once(placement, dtype):
    # The validation split (500 examples) in 4 passes, at the speed of a cache-sized batch.
    # Every layer works per example, so only BLAS's blocking can round differently (on
    # this project's machine the float32 outputs are bitwise those of one pass).
    model = models.get("vit1d", depth=3, norm_placement=placement)
    assert model.predict_rows == 128
    params, state = model.init_params(np.random.default_rng(2), dtype)
    x = np.random.default_rng(3).standard_normal((500, 40)).astype(dtype)
    whole, _, _ = model.apply(params, state, x, train=False)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(model.predict(params, state, x), whole, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(model.predict(params, state, x[:7]),
                                  model.apply(params, state, x[:7], train=False)[0])
    with pytest.raises(ValueError, match="predict_rows"):
        models.Model(model.net, input_shape=(40,), predict_rows=0)


@pytest.mark.parametrize("kwargs,field", [
    ({"norm_placement": "branch"}, "norm_placement"), ({"pool": "max"}, "pool"),
    ({"causal": True}, "pool='mean'"), ({"patch_size": 7}, "patch_size"),
    ({"width": 30, "num_heads": 4}, "num_heads"), ({"depth": 0}, "depth"),
    ({"activation": "swish"}, "activation"), ({"init": "orthogonal"}, "orthogonal"),
])
def test_bad_hyperparameters_are_refused_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        models.vit1d(**kwargs)


def test_bad_input_shapes_are_refused():
    ln = TokenLayerNorm(4)
    with pytest.raises(ValueError, match="TokenLayerNorm"):
        ln.forward(ln.init(None, np.float64), np.zeros((2, 3, 5)))
    emb = PatchEmbedding(12, 3, 4)
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        emb.forward(emb.init(np.random.default_rng(0)), np.zeros((2, 13)))
    with pytest.raises(ValueError, match="impl"):
        token_layernorm_forward(np.zeros((1, 2)), np.ones(2), np.zeros(2), impl="c")
    _, cache = token_layernorm_forward(np.ones((1, 2)) * [[1.0, 2.0]], np.ones(2), np.zeros(2))
    dx, ds, db = token_layernorm_backward(np.ones((1, 2)), cache, need_dx=False)
    assert dx is None and ds.shape == db.shape == (2,)
