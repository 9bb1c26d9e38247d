"""Models and residual blocks: finite-difference gradients, padding, determinism, dtypes, the
MNIST-1D reference architectures against torch, and bad input."""

import zlib

import numpy as np
import pytest

from refplay.data.dataset import Batch
from refplay.nn import init as init_lib
from refplay.nn import layers as L
from refplay.nn import models
from refplay.nn.norms import BatchNorm, LayerNorm
from refplay.nn.residual import Residual, Sequential
from tests.helpers import optional_import


def _rel_ok(a, b, rtol=1e-6, floor=1e-9):
    """|a - b| <= rtol * max(|a|, |b|), plus an absolute floor for gradients that are exactly 0
    (a dead ReLU unit, a bias followed by batch norm): there the centered difference only
    measures rounding, about eps * |loss| / h = 2e-16 / 1e-6 for a loss of order 1."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) <= rtol * max(np.linalg.norm(a), np.linalg.norm(b)) + floor


def _batch(model, rng, n, *, weights=None):
    x = rng.normal(size=(n, *model.input_shape))
    if model.task == "classification":
        y = rng.integers(0, model.output_shape[0], n)
    else:
        y = rng.normal(size=(n, *model.output_shape))
    return Batch(x, y, np.ones(n) if weights is None else weights)


def _check_model_gradients(model, params, state, batch, *, train, coords=4, seed=0):
    """Centered differences (float64) on random coordinates of every leaf and along random directions."""
    def f(p):
        return model.loss(p, state, batch, np.random.default_rng(seed), train=train)[0]

    loss, grads, _, aux = model.loss_and_grads(params, state, batch, np.random.default_rng(seed), train=train)
    assert loss == f(params)
    assert list(grads) == list(params)
    r = np.random.default_rng(1)
    h = 1e-6
    for k, v in params.items():
        assert grads[k].shape == v.shape and grads[k].dtype == v.dtype
        picks = r.choice(v.size, min(coords, v.size), replace=False)
        fd = []
        for flat in picks:
            i = np.unravel_index(flat, v.shape)
            plus, minus = v.copy(), v.copy()
            plus[i] += h
            minus[i] -= h
            fd.append((f({**params, k: plus}) - f({**params, k: minus})) / (2 * h))
        assert _rel_ok(grads[k].ravel()[picks], fd), k
    for _ in range(2):
        d = {k: r.normal(size=v.shape) for k, v in params.items()}
        scale = np.sqrt(sum(np.sum(u * u) for u in d.values()))
        d = {k: u / scale for k, u in d.items()}
        hd = 1e-5
        fd = (f({k: v + hd * d[k] for k, v in params.items()})
              - f({k: v - hd * d[k] for k, v in params.items()})) / (2 * hd)
        analytic = sum(np.sum(grads[k] * d[k]) for k in params)
        assert _rel_ok(analytic, fd), (analytic, fd)
    return loss, grads, aux


def _randomize(params, rng, keys_like=("alpha", "b", "scale", "bias")):
    """Random values for parameters that start at a constant. A ReZero scale at 0 hides every
    branch gradient, and zero biases put ReLU inputs exactly on the kink wherever a receptive
    field is all zeros (the output of a previous ReLU), where finite differences are meaningless."""
    return {k: (rng.normal(size=v.shape) if k.rsplit("/", 1)[-1] in keys_like else v)
            for k, v in params.items()}


MODEL_CASES = {
    "mlp_relu_dropout": lambda: models.mlp(5, (7, 6), 3, dropout=0.3, label_smoothing=0.1),
    "mlp_batchnorm_gelu": lambda: models.mlp(4, (6,), 3, norm="batch", activation="gelu"),
    "mlp_layernorm_tanh_he": lambda: models.mlp(6, (5, 5), 4, norm="layer", activation="tanh",
                                                init="he_normal"),
    "mlp_regression": lambda: models.mlp(3, (8,), 2, task="regression", activation="tanh"),
    "logreg": lambda: models.logreg(7, 4),
    "mnist1d_mlp": lambda: models.mnist1d_mlp(9, 8, 5),
    "mnist1d_mlp_dropout": lambda: models.mnist1d_mlp(9, 8, 5, dropout=0.25),
    "mnist1d_cnn": lambda: models.mnist1d_cnn(),
    "cnn1d_bn_avgpool_global": lambda: models.cnn1d(12, 3, channels=(4, 5), norm="batch", pool="avg",
                                                    global_pool=True, virtual_batch_size=4),
    "cnn1d_strided_multichannel": lambda: models.cnn1d(11, 3, in_channels=2, channels=(3, 4),
                                                       kernel_size=(3, 2), stride=(2, 1), padding=(1, "valid"),
                                                       pool=None, dropout=0.2, activation="tanh"),
    "cnn2d_layernorm": lambda: models.cnn2d((2, 8, 7), 3, channels=(3, 4), norm="layer"),
    "cnn2d_default_pool": lambda: models.cnn2d((1, 8, 8), 4, channels=(2, 3)),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_model_gradients_match_finite_differences(case):
    model = MODEL_CASES[case]()
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    params, state = model.init_params(rng, dtype=np.float64)
    batch = _batch(model, rng, 8)
    _, _, aux = _check_model_gradients(model, params, state, batch, train=True)
    assert aux["outputs"].shape == (8, *model.output_shape)
    if state:                                   # batch norm in evaluation mode, too
        _check_model_gradients(model, params, state, batch, train=False)


RESNET_CASES = [
    dict(norm="batch", norm_placement="branch"),
    dict(norm="batch", norm_placement="pre", rezero=True),
    dict(norm="batch", norm_placement="post", rezero=True, virtual_batch_size=4),
    dict(norm="layer", norm_placement="branch", rezero=True),
    dict(norm="layer", norm_placement="post"),
    dict(norm=None, norm_placement="none", rezero=True),
    dict(norm="batch", norm_placement="branch", num_devices=2, sync_stats=False, blocks_per_stage=2),
]


@pytest.mark.parametrize("config", RESNET_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_resnet1d_gradients_for_every_placement(config):
    model = models.resnet1d(12, 3, channels=(3, 4), strides=(1, 2), **config)
    rng = np.random.default_rng(3)
    params, state = model.init_params(rng, dtype=np.float64)
    params = _randomize(params, rng)
    batch = _batch(model, rng, 8)
    _check_model_gradients(model, params, state, batch, train=True, coords=3)
    if state:
        _check_model_gradients(model, params, state, batch, train=False, coords=3)


def test_padding_with_zero_weight_changes_neither_loss_nor_gradients_nor_bn_state():
    rng = np.random.default_rng(4)
    for model in (models.mlp(5, (6,), 3, norm="batch", label_smoothing=0.2),
                  models.resnet1d(10, 3, channels=(3, 4), strides=(1, 2), virtual_batch_size=4),
                  models.mnist1d_cnn(),
                  models.mlp(3, (4,), 2, task="regression")):
        params, state = model.init_params(rng, dtype=np.float64)
        batch = _batch(model, rng, 8)
        pad = _batch(model, rng, 4)
        padded = Batch(np.concatenate([batch.x, 50 * pad.x]), np.concatenate([batch.y, pad.y]),
                       np.r_[np.ones(8), np.zeros(4)])
        for train in (True, False):
            loss, grads, new_state, aux = model.loss_and_grads(params, state, batch, None, train=train)
            loss_p, grads_p, new_state_p, aux_p = model.loss_and_grads(params, state, padded, None, train=train)
            assert loss_p == pytest.approx(loss, rel=1e-12), model.name
            for k in grads:
                np.testing.assert_allclose(grads_p[k], grads[k], rtol=1e-9, atol=1e-13, err_msg=k)
            for k in new_state:
                np.testing.assert_allclose(new_state_p[k], new_state[k], rtol=1e-12, err_msg=k)
            np.testing.assert_allclose(aux_p["outputs"][:8], aux["outputs"], rtol=1e-10, atol=1e-12)


def test_same_seed_same_bits_and_dropout_depends_only_on_the_generator():
    model = models.mlp(6, (16, 16), 3, dropout=0.5, norm="batch")
    p1, s1 = model.init_params(np.random.default_rng(7))
    p2, s2 = model.init_params(np.random.default_rng(7))
    p3, _ = model.init_params(np.random.default_rng(8))
    assert all(np.array_equal(p1[k], p2[k]) for k in p1)
    assert not np.array_equal(p1["dense_1/w"], p3["dense_1/w"])
    batch = _batch(model, np.random.default_rng(0), 16)
    a = model.loss_and_grads(p1, s1, batch, np.random.default_rng(3))
    b = model.loss_and_grads(p2, s2, batch, np.random.default_rng(3))
    c = model.loss_and_grads(p1, s1, batch, np.random.default_rng(4))
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert a[0] != c[0]                                  # another dropout mask
    with pytest.raises(ValueError, match="rng"):
        model.loss_and_grads(p1, s1, batch, None, train=True)
    # evaluation needs no generator and is deterministic
    assert model.loss_and_grads(p1, s1, batch, None, train=False)[0] == \
        model.loss_and_grads(p1, s1, batch, None, train=False)[0]


def test_float32_params_decide_the_dtype_and_agree_with_float64():
    rng = np.random.default_rng(5)
    for model in (models.mnist1d_cnn(), models.resnet1d(16, 3, channels=(4, 4), strides=(1, 2)),
                  models.mlp(5, (8,), 3, norm="layer")):
        p64, s64 = model.init_params(np.random.default_rng(1), dtype=np.float64)
        p32, s32 = model.init_params(np.random.default_rng(1), dtype=np.float32)
        for k in p64:                                     # same draws, rounded
            np.testing.assert_allclose(p32[k], p64[k], rtol=1e-6, atol=1e-7)
        batch = _batch(model, rng, 8)
        l64, g64, n64, _ = model.loss_and_grads(p64, s64, batch, None)
        l32, g32, n32, aux = model.loss_and_grads(p32, s32, batch, None)
        assert aux["outputs"].dtype == np.float32
        assert all(g.dtype == np.float32 for g in g32.values())
        assert all(v.dtype == np.float32 for v in n32.values())
        assert l32 == pytest.approx(l64, rel=1e-5)
        for k in g64:
            assert _rel_ok(g32[k], g64[k], rtol=1e-3, floor=1e-5), k


def test_predict_is_evaluation_mode_and_per_example():
    rng = np.random.default_rng(6)
    model = models.resnet1d(12, 3, channels=(4,), strides=(1,), rezero=True)
    params, state = model.init_params(rng, dtype=np.float64)
    batch = _batch(model, rng, 8)
    for _ in range(3):                                    # move the EMAs away from (0, 1)
        _, _, state, _ = model.loss_and_grads(params, state, batch, None, train=True)
    out = model.predict(params, state, batch.x)
    _, _, same_state, aux = model.loss_and_grads(params, state, batch, None, train=False)
    assert same_state is state
    np.testing.assert_array_equal(out, aux["outputs"])
    np.testing.assert_allclose(model.predict(params, state, batch.x[:3]), out[:3], rtol=1e-12)
    _, _, _, aux_train = model.loss_and_grads(params, state, batch, None, train=True)
    assert not np.allclose(aux_train["outputs"], out)     # training mode uses batch statistics


# ----------------------------------------------------------------------------
# Residual blocks
# ----------------------------------------------------------------------------

def _block(placement, rezero=False, shortcut=None):
    branch = Sequential([L.Dense(4, 4, name="f1", activation="tanh"), L.Dense(4, 4, name="f2")], name="f")
    norm = None if placement == "none" else LayerNorm(4, name="n")
    return Residual(branch, name="blk", norm=norm, placement=placement, rezero=rezero, shortcut=shortcut)


@pytest.mark.parametrize("placement", ["branch", "pre", "post", "none"])
def test_residual_placements_compute_their_equations(placement):
    rng = np.random.default_rng(9)
    blk = _block(placement)
    params = blk.init(rng, np.float64)
    params["n/scale"] = rng.normal(size=4) if placement != "none" else None
    params = {k: v for k, v in params.items() if v is not None}
    x = rng.normal(size=(5, 4))
    f = lambda v: blk.branch.forward(params, v)[0]                               # noqa: E731
    norm = (lambda v: LayerNorm(4, name="n").forward(params, v)[0]) if placement != "none" else None  # noqa: E731
    expected = {"branch": lambda: x + norm(f(x)), "pre": lambda: x + f(norm(x)),
                "post": lambda: norm(x + f(x)), "none": lambda: x + f(x)}[placement]()
    y, _, _ = blk.apply(params, {}, x, train=True)
    np.testing.assert_allclose(y, expected, rtol=1e-14)


def test_rezero_block_starts_as_identity_and_only_alpha_learns_first():
    rng = np.random.default_rng(10)
    for placement in ("branch", "pre", "none"):
        blk = _block(placement, rezero=True)
        params = blk.init(rng, np.float64)
        assert params["blk/alpha"].shape == (1,) and params["blk/alpha"][0] == 0
        x = rng.normal(size=(5, 4))
        y, cache, _ = blk.apply(params, {}, x, train=True)
        np.testing.assert_array_equal(y, x)
        dy = rng.normal(size=y.shape)
        dx, grads = blk.backward(params, dy, cache)
        np.testing.assert_array_equal(dx, dy)
        assert grads["blk/alpha"][0] != 0
        assert all(not grads[k].any() for k in grads if k != "blk/alpha")


def test_residual_with_projection_shortcut_and_batchnorm_state():
    rng = np.random.default_rng(11)
    branch = Sequential([L.Dense(3, 5, name="f1", activation="relu")], name="f")
    blk = Residual(branch, name="blk", norm=BatchNorm(5, name="bn"), placement="post",
                   shortcut=L.Dense(3, 5, name="proj", use_bias=False, w_init=init_lib.glorot_uniform))
    model = models.Model(Sequential([blk, L.Dense(5, 2, name="out")]), input_shape=(3,))
    params, state = model.init_params(rng, np.float64)
    assert list(state) == ["bn/mean", "bn/var"]
    _check_model_gradients(model, params, state, _batch(model, rng, 6), train=True)
    with pytest.raises(ValueError, match="projection shortcut"):
        bad = Residual(branch, name="b2", placement="none")
        bad.apply(bad.init(rng, np.float64), {}, np.zeros((2, 3)), train=False)


# ----------------------------------------------------------------------------
# The MNIST-1D reference architectures, against torch versions of the reference code
# ----------------------------------------------------------------------------

def _torch_reference(torch, kind):
    """The reference networks of github.com/greydanus/mnist1d (notebooks/models.py), in float64."""
    nn = torch.nn

    class MLPBase(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear1, self.linear2, self.linear3 = nn.Linear(40, 100), nn.Linear(100, 100), nn.Linear(100, 10)

        def forward(self, x):
            h = self.linear1(x).relu()
            h = h + self.linear2(h).relu()
            return self.linear3(h)

    class ConvBase(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(1, 25, 5, stride=2, padding=1)
            self.conv2 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
            self.conv3 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
            self.linear = nn.Linear(125, 10)

        def forward(self, x):
            x = x.view(-1, 1, x.shape[-1])
            h = self.conv3(self.conv2(self.conv1(x).relu()).relu()).relu()
            return self.linear(h.view(h.shape[0], -1))

    return (MLPBase() if kind == "mlp" else ConvBase()).double()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_mnist1d_reference_models_match_torch(kind):
    torch = optional_import("torch")
    model = models.mnist1d_mlp() if kind == "mlp" else models.mnist1d_cnn()
    ref = _torch_reference(torch, kind)
    assert sum(p.numel() for p in ref.parameters()) == sum(v.size for v in
                                                          model.init_params(np.random.default_rng(0))[0].values())
    rng = np.random.default_rng(12)
    params, state = model.init_params(rng, dtype=np.float64)
    names = {"mlp": {"linear1": "dense_1", "linear2": "dense_2", "linear3": "dense_3"},
             "cnn": {"conv1": "conv_1", "conv2": "conv_2", "conv3": "conv_3", "linear": "dense_1"}}[kind]
    with torch.no_grad():
        for tname, ours in names.items():
            mod = getattr(ref, tname)
            w = params[f"{ours}/w"]
            mod.weight.copy_(torch.from_numpy(w.T.copy() if w.ndim == 2 else w))   # Dense w is (in, out)
            mod.bias.copy_(torch.from_numpy(params[f"{ours}/b"]))
    batch = _batch(model, rng, 16)
    loss, grads, _, aux = model.loss_and_grads(params, state, batch, None)
    xt = torch.from_numpy(batch.x)
    logits = ref(xt)
    tloss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(batch.y))
    tloss.backward()
    np.testing.assert_allclose(aux["outputs"], logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    for tname, ours in names.items():
        mod = getattr(ref, tname)
        gw = mod.weight.grad.numpy()
        np.testing.assert_allclose(grads[f"{ours}/w"], gw.T if gw.ndim == 2 else gw, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads[f"{ours}/b"], mod.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_a_few_sgd_steps_reduce_the_loss():
    rng = np.random.default_rng(13)
    centers = rng.normal(size=(3, 40)) * 2
    y = rng.integers(0, 3, 96)
    batch = Batch(centers[y] + rng.normal(size=(96, 40)), y, np.ones(96))
    for model in (models.mnist1d_mlp(num_classes=3), models.resnet1d(40, 3, channels=(8, 8), strides=(1, 2))):
        params, state = model.init_params(np.random.default_rng(0))
        first = None
        for _ in range(30):
            loss, grads, state, _ = model.loss_and_grads(params, state, batch, None)
            first = loss if first is None else first
            params = {k: v - np.float32(0.05) * grads[k] for k, v in params.items()}
        assert loss < 0.5 * first, model.name


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------

def test_bad_input_raises_value_error_naming_the_argument():
    rng = np.random.default_rng(14)
    model = models.mnist1d_cnn()
    params, state = model.init_params(rng)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 40\)"):
        model.loss_and_grads(params, state, Batch(np.zeros((4, 1, 40)), np.zeros(4, int), np.ones(4)), None)
    with pytest.raises(ValueError, match="batch.y"):
        model.loss_and_grads(params, state, Batch(np.zeros((4, 40)), np.zeros(3, int), np.ones(4)), None)
    with pytest.raises(ValueError, match="labels"):
        model.loss_and_grads(params, state, Batch(np.zeros((4, 40)), np.full(4, 10), np.ones(4)), None)
    with pytest.raises(ValueError, match="dtype"):
        model.init_params(rng, dtype=np.int32)
    with pytest.raises(TypeError, match="rng"):
        model.init_params(0)
    with pytest.raises(ValueError, match="norm"):
        models.mlp(4, (3,), 2, norm="group")
    with pytest.raises(ValueError, match="norm_placement"):
        models.resnet1d(norm_placement="middle")
    with pytest.raises(ValueError, match="norm_placement"):
        models.resnet1d(norm=None)
    with pytest.raises(ValueError, match="kernel_size"):
        models.resnet1d(kernel_size=4)
    with pytest.raises(ValueError, match="strides"):
        models.resnet1d(channels=(4, 8, 8), strides=(1, 2))
    with pytest.raises(ValueError, match="virtual_batch_size"):
        models.resnet1d(virtual_batch_size=0)
    with pytest.raises(ValueError, match="init"):
        models.mlp(4, (3,), 2, init="orthogonal")
    with pytest.raises(ValueError, match="model"):
        models.get("vgg")
    with pytest.raises(ValueError, match="label_smoothing"):
        models.mlp(4, (3,), 2, task="regression", label_smoothing=0.1)
    with pytest.raises(ValueError, match="task"):
        models.mlp(4, (3,), 2, task="ranking")
    bn_model = models.resnet1d(12, 3, channels=(4,), strides=(1,), virtual_batch_size=4)
    p, s = bn_model.init_params(rng)
    with pytest.raises(ValueError, match="virtual_batch_size=4 does not divide the batch size 6"):
        bn_model.loss_and_grads(p, s, _batch(bn_model, rng, 6), None)
    assert models.get("logreg", in_dim=3, num_classes=2).output_shape == (2,)


def test_initializers_have_the_documented_variance():
    rng = np.random.default_rng(15)
    fan_in, fan_out = 200, 50
    expected = {"he_normal": 2 / fan_in, "he_uniform": 2 / fan_in, "lecun_normal": 1 / fan_in,
                "lecun_uniform": 1 / fan_in, "glorot_normal": 2 / (fan_in + fan_out),
                "glorot_uniform": 2 / (fan_in + fan_out), "torch_default": 1 / (3 * fan_in)}
    for name, var in expected.items():
        w = init_lib.get(name)(rng, (fan_in, fan_out), fan_in, fan_out, np.float64)
        assert w.var() == pytest.approx(var, rel=0.05), name
        assert abs(w.mean()) < 4 * np.sqrt(var / w.size)
        if "uniform" in name or name == "torch_default":
            assert np.abs(w).max() <= np.sqrt(3 * var) * (1 + 1e-12)
    assert not init_lib.zeros(rng, (3, 2)).any()
    assert init_lib.fans((8, 3, 5)) == (15, 40) and init_lib.fans((7, 2)) == (7, 2)
    a = init_lib.he_normal(np.random.default_rng(1), (4, 3), 4, 3, np.float32)
    b = init_lib.he_normal(np.random.default_rng(1), (4, 3), 4, 3, np.float64)
    assert a.dtype == np.float32 and np.array_equal(a, b.astype(np.float32))
    with pytest.raises(ValueError, match="fan_in"):
        init_lib.he_normal(rng, (3,), 0, 3)
    with pytest.raises(ValueError, match="mode"):
        init_lib.variance_scaling(rng, (3,), 3, 3, mode="fan_sum")


def test_mnist1d_mlp_dropout_is_opt_in_and_changes_only_training():
    plain, dropped = models.mnist1d_mlp(), models.mnist1d_mlp(dropout=0.5)
    params, state = plain.init_params(np.random.default_rng(0), dtype=np.float64)
    p2, _ = dropped.init_params(np.random.default_rng(0), dtype=np.float64)
    assert list(params) == list(p2)                     # dropout adds no parameters
    batch = _batch(plain, np.random.default_rng(1), 16)
    eval_plain = plain.loss_and_grads(params, state, batch, None, train=False)[0]
    eval_dropped = dropped.loss_and_grads(params, state, batch, None, train=False)[0]
    assert eval_plain == eval_dropped                   # eval mode: dropout is the identity
    train_plain = plain.loss_and_grads(params, state, batch, np.random.default_rng(2))[0]
    train_dropped = dropped.loss_and_grads(params, state, batch, np.random.default_rng(2))[0]
    assert train_plain == eval_plain and train_dropped != eval_dropped
