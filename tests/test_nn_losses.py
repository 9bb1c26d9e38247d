"""Losses: gradients vs centered finite differences, kernel vs twin, weights, bad input."""

import numpy as np
import pytest

from tests.helpers import numeric_grad, rel_error
from refplay.nn import kernels, losses, reference


@pytest.mark.parametrize("seed", range(4))
def test_softmax_cross_entropy_gradient_matches_finite_differences(seed):
    rng = np.random.default_rng(seed)
    B, K = rng.integers(1, 9), rng.integers(2, 7)
    z = rng.normal(size=(B, K)) * 3
    y = rng.integers(0, K, B)
    w = rng.random(B) + 0.1
    eps = [0.0, 0.1, 0.3, 1.0][seed]
    loss, dz = losses.softmax_cross_entropy(z, y, w, label_smoothing=eps)
    fd = numeric_grad(lambda v: losses.softmax_cross_entropy(v, y, w, label_smoothing=eps)[0], z.copy())
    assert rel_error(dz, fd) <= 1e-6
    assert loss == pytest.approx(np.sum(w * losses.per_example_softmax_cross_entropy(z, y, eps)) / w.sum(),
                                 rel=1e-13)


def test_cross_entropy_equals_negative_log_softmax_written_out():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, 6)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = -np.log(p[np.arange(6), y])
    np.testing.assert_allclose(losses.per_example_softmax_cross_entropy(z, y), expected, rtol=1e-13)
    # label smoothing: (1 - eps) * nll + eps * mean_k(-log p_k)
    eps = 0.2
    smooth = (1 - eps) * expected + eps * (-np.log(p)).mean(axis=1)
    np.testing.assert_allclose(losses.per_example_softmax_cross_entropy(z, y, eps), smooth, rtol=1e-13)


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0], [1000.0, 0.0], [-1e4, 1e4]])
    y = np.array([0, 1, 1])
    per = losses.per_example_softmax_cross_entropy(z, y)
    assert np.all(np.isfinite(per))
    np.testing.assert_allclose(per, [0.0, 1000.0, 0.0], atol=1e-12)
    _, dz = losses.softmax_cross_entropy(z, y)
    np.testing.assert_allclose(dz, np.array([[0, 0], [1, -1], [0, 0]]) / 3, atol=1e-12)
    z32 = z.astype(np.float32)
    assert np.all(np.isfinite(losses.softmax_cross_entropy(z32, y)[1]))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_softmax_xent_kernel_equals_twin(dtype, tol):
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(33, 10)) * 5).astype(dtype)
    y = rng.integers(0, 10, 33)
    d = rng.random(33)
    for eps in (0.0, 0.15):
        lk, gk = kernels.softmax_xent(z, y, eps, d)
        lr, gr = reference.softmax_xent(z, y, eps, d)
        assert gk.dtype == dtype and gr.dtype == dtype
        assert rel_error(lk, lr) <= tol
        assert rel_error(gk.astype(np.float64), gr.astype(np.float64)) <= tol


def test_zero_weight_padding_changes_neither_loss_nor_gradients():
    rng = np.random.default_rng(3)
    z, y = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    pad_z = np.vstack([z, rng.normal(size=(3, 3)) * 50])
    pad_y = np.concatenate([y, rng.integers(0, 3, 3)])
    w = np.r_[np.ones(5), np.zeros(3)]
    for eps in (0.0, 0.1):
        loss, dz = losses.softmax_cross_entropy(z, y, label_smoothing=eps)
        loss_p, dz_p = losses.softmax_cross_entropy(pad_z, pad_y, w, label_smoothing=eps)
        assert loss_p == pytest.approx(loss, rel=1e-14)
        np.testing.assert_allclose(dz_p[:5], dz, rtol=1e-13)
        assert not dz_p[5:].any()
    t = rng.normal(size=(5, 2))
    mse, d = losses.mean_squared_error(z[:, :2], t)
    mse_p, d_p = losses.mean_squared_error(pad_z[:, :2], np.vstack([t, np.ones((3, 2))]), w)
    assert mse_p == pytest.approx(mse, rel=1e-14)
    np.testing.assert_allclose(d_p[:5], d, rtol=1e-13)
    assert not d_p[5:].any()


@pytest.mark.parametrize("shape", [(7, 1), (4, 3), (3, 2, 5)])
def test_mean_squared_error_gradient_and_definition(shape):
    rng = np.random.default_rng(4)
    o, t, w = rng.normal(size=shape), rng.normal(size=shape), rng.random(shape[0]) + 0.2
    loss, do = losses.mean_squared_error(o, t, w)
    assert rel_error(do, numeric_grad(lambda v: losses.mean_squared_error(v, t, w)[0], o.copy())) <= 1e-6
    per = ((o - t) ** 2).reshape(shape[0], -1).mean(axis=1)
    assert loss == pytest.approx(np.sum(w * per) / np.sum(w), rel=1e-13)
    if shape[1:] == (1,):     # (B,) targets for one output
        assert losses.mean_squared_error(o, t[:, 0], w)[0] == pytest.approx(loss, rel=1e-15)


def test_l2_penalty_value_gradient_and_default_selection():
    rng = np.random.default_rng(5)
    params = {"dense_1/w": rng.normal(size=(3, 2)), "dense_1/b": rng.normal(size=2),
              "bn_1/scale": rng.normal(size=2), "conv_1/w": rng.normal(size=(2, 2, 3))}
    pen, grads = losses.l2_penalty(params, 0.3)
    assert list(grads) == list(params)
    assert pen == pytest.approx(0.15 * (np.sum(params["dense_1/w"] ** 2) + np.sum(params["conv_1/w"] ** 2)))
    for k in params:
        f = lambda v, k=k: losses.l2_penalty({**params, k: v}, 0.3)[0]   # noqa: E731
        assert np.allclose(grads[k], numeric_grad(f, params[k].copy()), rtol=1e-6, atol=1e-9)
    assert not grads["dense_1/b"].any() and not grads["bn_1/scale"].any()
    pen_all, _ = losses.l2_penalty(params, 0.3, include=lambda k: True)
    assert pen_all > pen


def test_bad_input_names_the_argument():
    z, y = np.zeros((3, 4)), np.array([0, 1, 2])
    with pytest.raises(ValueError, match="labels"):
        losses.softmax_cross_entropy(z, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="labels"):
        losses.softmax_cross_entropy(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="labels"):
        losses.softmax_cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="logits"):
        losses.softmax_cross_entropy(np.zeros(3), y)
    with pytest.raises(ValueError, match="weights"):
        losses.softmax_cross_entropy(z, y, np.ones(2))
    with pytest.raises(ValueError, match="weights"):
        losses.softmax_cross_entropy(z, y, np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="sum to 0"):
        losses.softmax_cross_entropy(z, y, np.zeros(3))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.softmax_cross_entropy(z, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match="targets"):
        losses.mean_squared_error(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="coeff"):
        losses.l2_penalty({"a/w": np.ones(2)}, -1.0)
