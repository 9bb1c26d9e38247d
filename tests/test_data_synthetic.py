"""Synthetic datasets (spirals, blobs, teacher-student) and the optional sklearn digits."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from refplay import data


def _nearest_neighbour_accuracy(train, test) -> float:
    d = ((test.x[:, None, :].astype(float) - train.x[None, :, :]) ** 2).sum(-1)
    return float(np.mean(train.y[d.argmin(1)] == test.y))


def _linear_least_squares_accuracy(train, test) -> float:
    """A linear classifier (least squares on one-hot targets, with bias)."""
    add_bias = lambda x: np.c_[x, np.ones(len(x))]   # noqa: E731
    k = train.num_classes
    w, *_ = np.linalg.lstsq(add_bias(train.x.astype(float)), np.eye(k)[train.y], rcond=None)
    return float(np.mean((add_bias(test.x.astype(float)) @ w).argmax(1) == test.y))


@pytest.mark.parametrize("make", [data.spirals, data.blobs, data.teacher_student])
def test_shapes_determinism_and_independent_splits(make):
    s = make(n=200, n_validation=50, n_test=70, seed=1)
    assert isinstance(s, data.Splits)
    assert (len(s.train), len(s.validation), len(s.test)) == (200, 50, 70)
    assert s.train.x.dtype == np.float32
    again = make(n=200, n_validation=50, n_test=70, seed=1)
    for a, b in zip(s, again):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    other = make(n=200, n_validation=50, n_test=70, seed=2)
    assert not np.array_equal(other.train.x, s.train.x)
    # changing the test size leaves training and validation data alone
    bigger_test = make(n=200, n_validation=50, n_test=300, seed=1)
    np.testing.assert_array_equal(bigger_test.train.x, s.train.x)
    np.testing.assert_array_equal(bigger_test.validation.x, s.validation.x)
    assert make(n=20, seed=1, dtype=np.float64).train.x.dtype == np.float64


def test_spirals_are_balanced_nonlinear_and_learnable():
    s = data.spirals(n=1000, noise=0.02, seed=0)
    assert s.train.x.shape == (1000, 2) and s.train.num_classes == 2
    np.testing.assert_array_equal(np.bincount(s.train.y), [500, 500])
    assert _nearest_neighbour_accuracy(s.train, s.test) > 0.95
    assert _linear_least_squares_accuracy(s.train, s.test) < 0.75
    # the radius grows from 0 to 1 along each spiral: all points within 1 + noise
    assert np.max(np.linalg.norm(s.train.x, axis=1)) < 1.15


def test_blobs_are_balanced_and_clustered():
    s = data.blobs(n=900, num_classes=3, dim=5, cluster_std=0.5, center_scale=5.0, seed=0)
    assert s.train.x.shape == (900, 5) and s.train.num_classes == 3
    np.testing.assert_array_equal(np.bincount(s.train.y), [300, 300, 300])
    # within-class spread is cluster_std; the splits share the same centres
    for c in range(3):
        xc = s.train.x[s.train.y == c]
        assert abs(xc.std(axis=0).mean() - 0.5) < 0.05
        np.testing.assert_allclose(s.test.x[s.test.y == c].mean(0), xc.mean(0), atol=0.15)
    assert _linear_least_squares_accuracy(s.train, s.test) > 0.95


def test_teacher_student_targets_are_a_shared_function_plus_noise():
    clean = data.teacher_student(n=300, in_dim=4, hidden=8, out_dim=2, seed=3, dtype=np.float64)
    noisy = data.teacher_student(n=300, in_dim=4, hidden=8, out_dim=2, noise=0.3, seed=3,
                                 dtype=np.float64)
    assert clean.train.y.shape == (300, 2) and clean.train.num_classes is None
    np.testing.assert_array_equal(noisy.train.x, clean.train.x)
    residual = noisy.train.y - clean.train.y
    assert abs(residual.std() - 0.3) < 0.03 and abs(residual.mean()) < 0.04
    assert 0.1 < clean.train.y.std() < 3.0           # targets of order one
    # the same teacher labels every split: a 1-NN regressor fitted on train predicts test well
    d = ((clean.test.x[:, None] - clean.train.x[None]) ** 2).sum(-1)
    nn_error = np.mean((clean.train.y[d.argmin(1)] - clean.test.y) ** 2)
    assert nn_error < 0.5 * clean.test.y.var()


@pytest.mark.parametrize("make, kwargs, error", [
    (data.spirals, dict(n=0), ValueError),
    (data.spirals, dict(noise=-1.0), ValueError),
    (data.spirals, dict(dtype=np.int64), ValueError),
    (data.blobs, dict(num_classes=1), ValueError),
    (data.blobs, dict(dim=2.5), TypeError),
    (data.teacher_student, dict(hidden=0), ValueError),
    (data.teacher_student, dict(n_test=0), ValueError),
    (data.teacher_student, dict(depth=3), TypeError),
])
def test_bad_arguments(make, kwargs, error):
    with pytest.raises(error):
        make(**kwargs)


# --------------------------------------------------------------------------- sklearn digits

def _fake_sklearn(monkeypatch, n=500):
    """Install a stand-in ``sklearn.datasets`` with ``load_digits`` (tests the wrapper only)."""
    rng = np.random.default_rng(0)
    target = np.arange(n) % 10
    images = rng.integers(0, 17, (n, 8, 8)).astype(np.float64)
    datasets = types.ModuleType("sklearn.datasets")
    datasets.load_digits = lambda: types.SimpleNamespace(images=images, target=target)
    sklearn = types.ModuleType("sklearn")
    sklearn.datasets = datasets
    monkeypatch.setitem(sys.modules, "sklearn", sklearn)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", datasets)
    return images, target


def test_sklearn_digits_wrapper(monkeypatch):
    images, target = _fake_sklearn(monkeypatch)
    s = data.sklearn_digits(n_validation=100, n_test=100, seed=0)
    assert (len(s.train), len(s.validation), len(s.test)) == (300, 100, 100)
    assert s.train.x.shape == (300, 1, 8, 8) and s.train.x.dtype == np.float32
    assert s.train.x.min() >= 0 and s.train.x.max() <= 1
    for split in s:
        np.testing.assert_array_equal(np.bincount(split.y, minlength=10),
                                      np.full(10, len(split) // 10))
    # every image appears in exactly one split, with its own label and scaled by 1/16
    rows = {(im / 16.0).astype(np.float32).tobytes(): y for im, y in zip(images, target)}
    seen = [x.tobytes() for split in s for x in split.x]
    assert len(seen) == len(set(seen)) == len(rows)
    assert all(rows[x.tobytes()] == y for split in s for x, y in zip(split.x, split.y))
    again = data.sklearn_digits(n_validation=100, n_test=100, seed=0)
    np.testing.assert_array_equal(again.test.x, s.test.x)


def test_sklearn_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        data.sklearn_digits()
