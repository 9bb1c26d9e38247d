"""BatchNorm (train, eval, ghost batches), LayerNorm and the losses against ``torch.nn.functional``
in float64, with the same weights: outputs, gradients and running statistics to <= 1e-10."""

import numpy as np
import pytest

from refplay.nn import losses
from refplay.nn.norms import BatchNorm, LayerNorm
from tests.helpers import optional_import

TOL = dict(rtol=1e-10, atol=1e-12)
SHAPES = [(9, 4), (6, 3, 7), (5, 2, 4, 3)]


def _torch():
    return optional_import("torch")


def _setup(shape, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.normal(size=shape) * 1.5 + 0.7
    params = {"bn/scale": rng.normal(size=c), "bn/bias": rng.normal(size=c)}
    state = {"bn/mean": rng.normal(size=c), "bn/var": rng.random(c) + 0.5}
    dy = rng.normal(size=shape)
    return x, params, state, dy


def _torch_bn(torch, x, params, state, dy, *, training, momentum, eps):
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    w = torch.tensor(params["bn/scale"], requires_grad=True)
    b = torch.tensor(params["bn/bias"], requires_grad=True)
    rm, rv = torch.tensor(state["bn/mean"]), torch.tensor(state["bn/var"])
    y = F.batch_norm(xt, rm, rv, w, b, training=training, momentum=momentum, eps=eps)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy(), w.grad.numpy(), b.grad.numpy(), rm.numpy(), rv.numpy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_matches_torch(shape, train):
    torch = _torch()
    x, params, state, dy = _setup(shape, 0)
    bn = BatchNorm(shape[1], ema_decay=0.85, eps=1e-3)
    y, cache, new_state = bn.apply(params, state, x, train=train)
    dx, grads = bn.backward(params, dy, cache)
    ty, tdx, tdw, tdb, trm, trv = _torch_bn(torch, x, params, state, dy, training=train,
                                            momentum=1 - 0.85, eps=1e-3)
    np.testing.assert_allclose(y, ty, **TOL)
    np.testing.assert_allclose(dx, tdx, **TOL)
    np.testing.assert_allclose(grads["bn/scale"], tdw, **TOL)
    np.testing.assert_allclose(grads["bn/bias"], tdb, **TOL)
    np.testing.assert_allclose(new_state["bn/mean"], trm, **TOL)      # torch updates in place
    np.testing.assert_allclose(new_state["bn/var"], trv, **TOL)


@pytest.mark.parametrize("shape", [(12, 3), (8, 2, 5)])
def test_ghost_batchnorm_matches_torch_on_each_virtual_batch(shape):
    torch = _torch()
    x, params, state, dy = _setup(shape, 1)
    v = 4
    bn = BatchNorm(shape[1], virtual_batch_size=v)
    y, cache, _ = bn.apply(params, state, x, train=True)
    dx, grads = bn.backward(params, dy, cache)
    dw, db = np.zeros(shape[1]), np.zeros(shape[1])
    for g in range(shape[0] // v):
        sl = slice(g * v, (g + 1) * v)
        ty, tdx, tdw, tdb, _, _ = _torch_bn(torch, x[sl], params, state, dy[sl], training=True,
                                            momentum=0.1, eps=bn.eps)
        np.testing.assert_allclose(y[sl], ty, **TOL)
        np.testing.assert_allclose(dx[sl], tdx, **TOL)
        dw, db = dw + tdw, db + tdb
    np.testing.assert_allclose(grads["bn/scale"], dw, **TOL)
    np.testing.assert_allclose(grads["bn/bias"], db, **TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_matches_torch(shape):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    c = shape[1]
    x, dy = rng.normal(size=shape) * 2 - 1, rng.normal(size=shape)
    params = {"ln/scale": rng.normal(size=c), "ln/bias": rng.normal(size=c)}
    ln = LayerNorm(c, eps=1e-4)
    y, cache = ln.forward(params, x)
    dx, grads = ln.backward(params, dy, cache)
    xt = torch.tensor(x, requires_grad=True)
    w = torch.tensor(params["ln/scale"], requires_grad=True)
    b = torch.tensor(params["ln/bias"], requires_grad=True)
    # (N, C): layer_norm over C. (N, C, ...): one group over C and positions, per-channel affine.
    ty = F.layer_norm(xt, (c,), w, b, eps=1e-4) if len(shape) == 2 else F.group_norm(xt, 1, w, b, eps=1e-4)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(grads["ln/scale"], w.grad.numpy(), **TOL)
    np.testing.assert_allclose(grads["ln/bias"], b.grad.numpy(), **TOL)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.35])
def test_weighted_cross_entropy_with_label_smoothing_matches_torch(label_smoothing):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    z, y, w = rng.normal(size=(11, 7)) * 4, rng.integers(0, 7, 11), rng.random(11)
    w[[2, 5]] = 0.0                                   # padding
    loss, dz = losses.softmax_cross_entropy(z, y, w, label_smoothing=label_smoothing)
    zt = torch.tensor(z, requires_grad=True)
    wt = torch.tensor(w)
    per = F.cross_entropy(zt, torch.tensor(y), reduction="none", label_smoothing=label_smoothing)
    tloss = (wt * per).sum() / wt.sum()
    tloss.backward()
    np.testing.assert_allclose(losses.per_example_softmax_cross_entropy(z, y, label_smoothing),
                               per.detach().numpy(), **TOL)
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(dz, zt.grad.numpy(), **TOL)
    # unit weights: torch's own mean reduction
    loss1, dz1 = losses.softmax_cross_entropy(z, y, label_smoothing=label_smoothing)
    zt1 = torch.tensor(z, requires_grad=True)
    t1 = F.cross_entropy(zt1, torch.tensor(y), label_smoothing=label_smoothing)
    t1.backward()
    assert loss1 == pytest.approx(t1.item(), rel=1e-12)
    np.testing.assert_allclose(dz1, zt1.grad.numpy(), **TOL)


def test_mean_squared_error_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(4)
    o, t = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    loss, do = losses.mean_squared_error(o, t)
    ot = torch.tensor(o, requires_grad=True)
    tl = torch.nn.functional.mse_loss(ot, torch.tensor(t))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(do, ot.grad.numpy(), **TOL)
