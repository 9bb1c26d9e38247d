"""refplay.nn.layers against torch.nn.functional in float64, with the same weights.

Forward outputs and the gradients of input, weights and bias must agree to
<= 1e-10, relative to the largest magnitude of torch's value
(max|refplay - torch| / max|torch|).
"""

from __future__ import annotations

import numpy as np
import pytest

from refplay.nn import layers as L
from tests.helpers import optional_import

TOL = 1e-10


@pytest.fixture(scope="module")
def torch():
    return optional_import("torch")


def _rel(a, b) -> float:
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert np.shape(a) == b.shape, (np.shape(a), b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _compare(torch, layer, x: np.ndarray, torch_fn, params: dict | None = None) -> None:
    """Run ``layer`` and ``torch_fn(x_t, **params_t)`` forward and backward; compare everything."""
    params = layer.init(np.random.default_rng(0), np.float64) if params is None else params
    out, cache = layer.forward(params, x)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx, grads = layer.backward(params, dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    pt = {k.split("/")[-1]: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ot = torch_fn(xt, **pt)
    ot.backward(torch.tensor(dout))
    assert _rel(out, ot) <= TOL
    assert _rel(dx, xt.grad) <= TOL
    for k, g in grads.items():
        assert _rel(g, pt[k.split("/")[-1]].grad) <= TOL, k


def _act(torch, name):
    F = torch.nn.functional
    return {"identity": lambda z: z, "relu": F.relu, "tanh": torch.tanh,
            "gelu": lambda z: F.gelu(z, approximate="tanh")}[name]


def _x(shape, seed=2):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("activation", L.ACTIVATIONS)
def test_dense_matches_torch_linear(torch, activation):
    act = _act(torch, activation)
    # refplay stores w as (in_dim, out_dim); torch.nn.functional.linear takes (out_dim, in_dim).
    _compare(torch, L.Dense(7, 5, name="d", activation=activation), _x((6, 7)),
             lambda x, w, b: act(torch.nn.functional.linear(x, w.T, b)))


# Batch 2 is narrower than every output row here (im2col copies rows); batch 9 is wider
# (im2col copies along the batch): both loop orders of the kernels meet torch.
@pytest.mark.parametrize("batch", [2, 9])
@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 0), (2, 1), ((2, 1), (1, 2)), (1, "same")])
@pytest.mark.parametrize("activation", ["identity", "relu"])
def test_conv2d_matches_torch(torch, stride, padding, activation, batch):
    act = _act(torch, activation)
    layer = L.Conv2D(3, 4, 3, stride=stride, padding=padding, activation=activation, name="c")
    _compare(torch, layer, _x((batch, 3, 9, 8)),
             lambda x, w, b: act(torch.nn.functional.conv2d(x, w, b, stride=stride, padding=padding)))


def test_conv2d_gelu_rectangular_kernel_matches_torch(torch):
    layer = L.Conv2D(2, 3, (2, 3), stride=(1, 2), padding=(1, 0), activation="gelu", name="c")
    _compare(torch, layer, _x((3, 2, 7, 9)),
             lambda x, w, b: _act(torch, "gelu")(torch.nn.functional.conv2d(x, w, b, stride=(1, 2),
                                                                            padding=(1, 0))))


def test_conv2d_same_with_stride_matches_torch_with_explicit_asymmetric_padding(torch):
    # torch refuses padding="same" with stride > 1; ours pads (total//2, total - total//2) as TF.
    layer = L.Conv2D(2, 3, 4, stride=2, padding="same", name="c")
    (pt, pb), (pl, pr) = layer._pads((9, 8))
    F = torch.nn.functional
    _compare(torch, layer, _x((2, 2, 9, 8)),
             lambda x, w, b: F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, stride=2))


@pytest.mark.parametrize("batch", [3, 21])
@pytest.mark.parametrize("k,stride,padding", [(5, 2, 1), (3, 2, 1), (3, 1, "same"), (4, 3, 0)])
def test_conv1d_matches_torch(torch, k, stride, padding, batch):
    layer = L.Conv1D(2, 5, k, stride=stride, padding=padding, activation="relu", name="c")
    _compare(torch, layer, _x((batch, 2, 19)),
             lambda x, w, b: torch.relu(torch.nn.functional.conv1d(x, w, b, stride=stride, padding=padding)))


def test_conv_without_bias_matches_torch(torch):
    layer = L.Conv2D(2, 3, 3, padding=1, use_bias=False, name="c")
    _compare(torch, layer, _x((2, 2, 5, 6)), lambda x, w: torch.nn.functional.conv2d(x, w, padding=1))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,stride,padding", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_pool2d_matches_torch(torch, kind, pool, stride, padding):
    cls = L.MaxPool2D if kind == "max" else L.AvgPool2D
    F = torch.nn.functional
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    layer = cls(pool, stride=stride, padding=padding)
    _compare(torch, layer, _x((2, 3, 9, 8)),
             lambda x: fn(x, layer.pool_size, layer.stride, layer.padding))


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool1d_matches_torch(torch, kind):
    cls = L.MaxPool1D if kind == "max" else L.AvgPool1D
    F = torch.nn.functional
    fn = F.max_pool1d if kind == "max" else F.avg_pool1d
    _compare(torch, cls(3, stride=2, padding=1), _x((2, 3, 11)), lambda x: fn(x, 3, 2, 1))


def test_global_avg_pool_and_flatten_match_torch(torch):
    _compare(torch, L.GlobalAvgPool(), _x((2, 3, 4, 5)), lambda x: x.mean(dim=(2, 3)))
    _compare(torch, L.Flatten(), _x((2, 3, 4, 5)), lambda x: torch.flatten(x, 1))


@pytest.mark.parametrize("activation", L.ACTIVATIONS)
def test_activations_match_torch(torch, activation):
    _compare(torch, L.Activation(activation), _x((4, 6)) * 3, _act(torch, activation))


def test_mnist1d_cnn_stack_matches_torch(torch):
    """The MNIST-1D paper's CNN (three Conv1d(k=5,3,3, stride 2, padding 1), ReLU, Linear)."""
    F = torch.nn.functional
    stack = [L.Conv1D(1, 25, 5, stride=2, padding=1, activation="relu", name="conv_1"),
             L.Conv1D(25, 25, 3, stride=2, padding=1, activation="relu", name="conv_2"),
             L.Conv1D(25, 25, 3, stride=2, padding=1, activation="relu", name="conv_3"),
             L.Flatten(), L.Dense(125, 10, name="dense")]
    rng = np.random.default_rng(0)
    params = {}
    for layer in stack:
        params.update(layer.init(rng, np.float64))
    x = _x((4, 1, 40))
    h, caches = x, []
    for layer in stack:
        h, c = layer.forward(params, h)
        caches.append(c)
    dout = _x(h.shape, seed=5)
    d, grads = dout, {}
    for layer, c in zip(reversed(stack), reversed(caches)):
        d, g = layer.backward(params, d, c)
        grads.update(g)

    pt = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ht = torch.tensor(x)
    for i in (1, 2, 3):
        ht = F.relu(F.conv1d(ht, pt[f"conv_{i}/w"], pt[f"conv_{i}/b"], stride=2, padding=1))
    ot = F.linear(ht.flatten(1), pt["dense/w"].T, pt["dense/b"])
    ot.backward(torch.tensor(dout))
    assert _rel(h, ot) <= TOL
    for k in params:
        assert _rel(grads[k], pt[k].grad) <= TOL, k
