"""MNIST-1D: equal to the reference package, and the properties of its recipe."""

from __future__ import annotations

import random

import numpy as np
import pytest

from refplay import data
from refplay.io import load_npz
from tests.helpers import optional_import

KEYS = ("x", "y", "x_test", "y_test", "t")


def _reference(**overrides) -> dict:
    """``mnist1d.data.make_dataset`` with the given args; global RNG state restored after."""
    reference = optional_import("mnist1d.data")
    args = reference.get_dataset_args()
    for key, value in overrides.items():
        setattr(args, key, value)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return reference.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@pytest.fixture(scope="module")
def ours() -> dict:
    return data.mnist1d()


def _assert_equal_to_reference(mine: dict, ref: dict) -> None:
    for key in KEYS:
        assert mine[key].shape == ref[key].shape, key
        assert mine[key].dtype == ref[key].dtype, key
        diff = np.max(np.abs(mine[key] - ref[key])) if mine[key].size else 0.0
        assert diff <= 1e-9, f"{key}: max abs difference {diff:.3e} > 1e-9"
    for key in ("x", "t", "y"):
        np.testing.assert_allclose(mine["templates"][key], ref["templates"][key],
                                   rtol=0, atol=1e-12)


def test_equals_reference_package_with_default_arguments(ours):
    ref = _reference()
    _assert_equal_to_reference(ours, ref)


def test_equals_reference_package_with_other_arguments():
    # max_translation = template_len + padding[1] = 52: the largest shift allowed
    overrides = dict(num_samples=1000, seed=7, shuffle_seq=True, train_split=0.75,
                     padding=[20, 40], max_translation=52, final_seq_length=50)
    ref = _reference(**overrides)
    mine = data.mnist1d(1000, 0.75, True, 7, padding=(20, 40), max_translation=52,
                        final_seq_length=50)
    _assert_equal_to_reference(mine, ref)


def test_shapes_and_dtypes(ours):
    assert ours["x"].shape == (4000, 40) and ours["x_test"].shape == (1000, 40)
    assert ours["y"].shape == (4000,) and ours["y_test"].shape == (1000,)
    assert ours["t"].shape == (40,)
    assert ours["x"].dtype == np.float64 and ours["y"].dtype == np.int64
    assert set(ours["templates"]) == {"x", "t", "y"}
    assert ours["templates"]["x"].shape == (10, 12)


def test_every_class_has_num_samples_over_ten_examples(ours):
    labels = np.concatenate([ours["y"], ours["y_test"]])
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 500))
    # and the shuffle mixes classes into both splits
    assert np.all(np.bincount(ours["y_test"], minlength=10) > 50)


def test_standardized_over_the_whole_set(ours):
    x = np.concatenate([ours["x"], ours["x_test"]])
    assert abs(x.mean()) < 1e-12
    assert abs(x.std() - 1.0) < 1e-12


def test_templates_start_and_end_at_zero():
    t = data.mnist1d_templates()
    np.testing.assert_allclose(t["x"][:, 0], 0.0, atol=1e-15)
    np.testing.assert_allclose(t["x"][:, -1], 0.0, atol=1e-15)   # every digit ends where it starts
    # standardized rows divided by 6: std of every row is 1/6
    np.testing.assert_allclose(t["x"].std(axis=1), 1 / 6, rtol=1e-12)


def test_deterministic_and_seed_dependent():
    a, b = data.mnist1d(num_samples=500, seed=3), data.mnist1d(num_samples=500, seed=3)
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    c = data.mnist1d(num_samples=500, seed=4)
    assert not np.array_equal(a["x"], c["x"])
    assert not np.array_equal(a["y"], c["y"])


def test_never_touches_global_random_state():
    np.random.seed(123)
    before = np.random.get_state()
    data.mnist1d(num_samples=100)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_shuffle_seq_permutes_positions_identically_for_every_example():
    plain = data.mnist1d(num_samples=1000, seed=5)
    shuffled = data.mnist1d(num_samples=1000, seed=5, shuffle_seq=True)
    np.testing.assert_array_equal(plain["y"], shuffled["y"])      # same examples, same order
    x_plain = np.concatenate([plain["x"], plain["x_test"]])
    x_shuf = np.concatenate([shuffled["x"], shuffled["x_test"]])
    # Find, for each shuffled position, the plain position holding the same column.
    # (Standardization sums in a different order, so allow rounding.)
    dist = np.abs(x_shuf[:, :, None] - x_plain[:, None, :]).max(axis=0)   # (40, 40)
    perm = dist.argmin(axis=1)
    assert sorted(perm) == list(range(40)), "not a permutation of the positions"
    assert not np.array_equal(perm, np.arange(40))
    np.testing.assert_allclose(x_shuf, x_plain[:, perm], rtol=0, atol=1e-12)
    # the plotting positions are not permuted, only rescaled by the same std
    np.testing.assert_allclose(shuffled["t"], plain["t"], rtol=1e-12)


def test_cache_dir_writes_once_and_reuses(tmp_path):
    first = data.mnist1d(num_samples=200, seed=1, cache_dir=tmp_path)
    files = list(tmp_path.glob("mnist1d_*.npz"))
    assert len(files) == 1
    stored = load_npz(files[0])                     # allow_pickle=False inside
    np.testing.assert_array_equal(stored["x"], first["x"])
    mtime = files[0].stat().st_mtime_ns
    second = data.mnist1d(num_samples=200, seed=1, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime     # read, not rewritten
    for key in KEYS:
        np.testing.assert_array_equal(second[key], first[key])
    np.testing.assert_array_equal(second["templates"]["x"], first["templates"]["x"])
    data.mnist1d(num_samples=200, seed=2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("mnist1d_*.npz"))) == 2   # other arguments, other file
    assert not list(tmp_path.glob(".*.tmp"))                 # no temporary files left


def test_stale_cache_file_is_regenerated(tmp_path):
    data.mnist1d(num_samples=100, seed=1, cache_dir=tmp_path)
    (path,) = tmp_path.glob("mnist1d_*.npz")
    stored = load_npz(path)
    stored["args_json"] = np.array('{"something": "else"}')
    np.savez(path, **stored)
    again = data.mnist1d(num_samples=100, seed=1, cache_dir=tmp_path)
    fresh = data.mnist1d(num_samples=100, seed=1)
    np.testing.assert_array_equal(again["x"], fresh["x"])
    assert "something" not in str(load_npz(path)["args_json"])


@pytest.mark.parametrize("garbage", [b"", b"not a zip file", b"PK\x03\x04truncated"])
def test_unreadable_cache_file_is_regenerated(tmp_path, garbage):
    fresh = data.mnist1d(num_samples=100, seed=1, cache_dir=tmp_path)
    (path,) = tmp_path.glob("mnist1d_*.npz")
    path.write_bytes(garbage)
    again = data.mnist1d(num_samples=100, seed=1, cache_dir=tmp_path)
    for key in KEYS:
        np.testing.assert_array_equal(again[key], fresh[key])
    np.testing.assert_array_equal(load_npz(path)["x"], fresh["x"])    # and rewritten


@pytest.mark.parametrize("kwargs, error", [
    (dict(num_samples=5), ValueError),
    (dict(num_samples=100.0), TypeError),
    (dict(train_split=0.0), ValueError),
    (dict(train_split=1.5), ValueError),
    (dict(shuffle_seq="yes"), TypeError),
    (dict(seed=-1), ValueError),
    (dict(padding=(60, 36)), ValueError),
    (dict(padding=36), TypeError),
    (dict(final_seq_length=1), ValueError),
    (dict(corr_noise_scale=-0.1), ValueError),
    (dict(max_translation=73), ValueError),           # beyond the dilated length 12 + 60
    (dict(max_translation=0), ValueError),
    (dict(nonsense=1), TypeError),
])
def test_bad_arguments_raise_clear_errors(kwargs, error):
    with pytest.raises(error) as info:
        data.mnist1d(**kwargs)
    name = next(iter(kwargs))
    assert name.split("[")[0] in str(info.value)


# --------------------------------------------------------------------------- splits for tuning

@pytest.fixture(scope="module")
def splits64():
    return data.mnist1d_splits(dtype=np.float64)


def test_mnist1d_splits_sizes_and_test_set_untouched(ours, splits64):
    train, val, test = splits64
    assert (len(train), len(val), len(test)) == (3500, 500, 1000)
    assert all(d.num_classes == 10 for d in splits64)
    np.testing.assert_array_equal(test.x, ours["x_test"])
    np.testing.assert_array_equal(test.y, ours["y_test"])


def test_mnist1d_splits_partition_the_published_training_set(ours, splits64):
    train, val, _ = splits64
    rows = lambda x: {r.tobytes() for r in x}   # noqa: E731
    assert rows(train.x).isdisjoint(rows(val.x))
    assert rows(train.x) | rows(val.x) == rows(ours["x"])
    # and each row keeps its label
    label_of = {r.tobytes(): y for r, y in zip(ours["x"], ours["y"])}
    assert all(label_of[r.tobytes()] == y for r, y in zip(val.x, val.y))


def test_mnist1d_splits_are_stratified_and_deterministic(ours, splits64):
    _, val, _ = splits64
    expected = np.bincount(ours["y"], minlength=10) * 500 / 4000
    assert np.all(np.abs(np.bincount(val.y, minlength=10) - expected) < 1)
    again = data.mnist1d_splits(dtype=np.float64)
    np.testing.assert_array_equal(again.validation.x, val.x)
    other = data.mnist1d_splits(dtype=np.float64, split_seed=1)
    assert not np.array_equal(other.validation.x, val.x)


def test_mnist1d_splits_dtype():
    s = data.mnist1d_splits(n_validation=100)
    assert s.train.x.dtype == np.float32 and s.train.y.dtype == np.int64
    assert (len(s.train), len(s.validation)) == (3900, 100)
    with pytest.raises(ValueError, match="dtype"):
        data.mnist1d_splits(dtype=np.int32)
    with pytest.raises(ValueError, match="n_validation"):
        data.mnist1d_splits(n_validation=4000)
