"""The input pipeline: batches by step, padded eval batches, subsets, metrics, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from refplay import data
from refplay.data import Batch, Dataset
from refplay.io import load_npz, save_npz


def _indexed(n: int, num_classes: int = 4, weights=None) -> Dataset:
    """A dataset whose feature 0 is the example's index, so batches can be traced back."""
    x = np.stack([np.arange(n, dtype=np.float64), np.sin(np.arange(n))], axis=1)
    return Dataset(x, np.arange(n) % num_classes, weights=weights, num_classes=num_classes)


def _ids(batch: Batch) -> np.ndarray:
    return batch.x[:, 0].astype(np.int64)


# --------------------------------------------------------------------------- TrainBatches

def test_every_example_exactly_once_per_epoch():
    ds = _indexed(120)
    it = data.TrainBatches(ds, batch_size=30, seed=0)
    assert it.batches_per_epoch == 4
    for epoch in range(3):
        seen = np.concatenate([_ids(it.next()) for _ in range(4)])
        np.testing.assert_array_equal(np.sort(seen), np.arange(120))
        assert it.epoch == epoch + 1


def test_drop_remainder_full_batches_and_a_fresh_shuffle_each_epoch():
    ds = _indexed(103)
    it = data.TrainBatches(ds, batch_size=25, seed=1)
    epochs = []
    for _ in range(3):
        batches = [it.next() for _ in range(it.batches_per_epoch)]
        assert all(len(b.x) == 25 and len(b.y) == 25 and len(b.weights) == 25 for b in batches)
        ids = np.concatenate([_ids(b) for b in batches])
        assert len(np.unique(ids)) == 100            # no repeats within an epoch; 3 dropped
        epochs.append(ids)
    assert not np.array_equal(epochs[0], epochs[1])
    dropped = [set(np.setdiff1d(np.arange(103), e)) for e in epochs]
    assert dropped[0] != dropped[1]


def test_batches_carry_labels_and_weights_of_their_examples():
    w = np.linspace(0.5, 2.0, 40)
    ds = _indexed(40, weights=w)
    b = data.TrainBatches(ds, 8, seed=2).next()
    ids = _ids(b)
    np.testing.assert_array_equal(b.y, ids % 4)
    np.testing.assert_array_equal(b.weights, w[ids])


def test_batches_are_the_rows_of_the_epoch_order_bitwise():
    # The gather (ndarray.take) must give exactly x[order[...]]: images, float32 features in
    # Fortran order, 2-D regression targets.
    rng = np.random.default_rng(5)
    x = np.asfortranarray(rng.standard_normal((37, 3, 4)).astype(np.float32))
    y = rng.standard_normal((37, 2))
    ds = Dataset(x, y, weights=rng.random(37))
    it = data.TrainBatches(ds, batch_size=9, seed=4)
    for epoch in range(2):
        order = data.epoch_order(it.seed, epoch, 37)
        for i in range(4):
            b, index = it.next(), order[9 * i:9 * (i + 1)]
            for got, want in ((b.x, x[index]), (b.y, y[index]), (b.weights, ds.weights[index])):
                assert got.dtype == want.dtype and got.shape == want.shape
                assert got.tobytes() == want.tobytes()


def test_epoch_order_depends_only_on_seed_and_epoch():
    ds = _indexed(50)
    it = data.TrainBatches(ds, 10, seed=7)
    for _ in range(5 * 3):                               # run through epochs 0, 1, 2
        it.next()
    third = np.concatenate([_ids(it.next()) for _ in range(5)])
    np.testing.assert_array_equal(third, data.epoch_order(7, 3, 50))
    # the documented derivation: child `epoch` of SeedSequence(seed)
    child = np.random.SeedSequence(7).spawn(4)[3]
    np.testing.assert_array_equal(third, np.random.default_rng(child).permutation(50))


def test_same_seed_same_batches_other_seed_other_batches():
    ds = _indexed(60)
    a, b, c = (data.TrainBatches(ds, 12, seed=s) for s in (3, 3, 4))
    for _ in range(7):
        ba, bb, bc = a.next(), b.next(), c.next()
        np.testing.assert_array_equal(ba.x, bb.x)
    assert not np.array_equal(ba.x, bc.x)


def test_seed_sequence_seed_is_accepted():
    ds = _indexed(60)
    seq = np.random.SeedSequence(11).spawn(3)[1]
    a = data.TrainBatches(ds, 12, seed=seq)
    np.testing.assert_array_equal(_ids(a.next()), data.epoch_order(seq, 0, 60)[:12])


@pytest.mark.parametrize("stop_after", [0, 3, 5, 11])
def test_resume_from_saved_position_sees_the_same_batches(tmp_path, stop_after):
    ds = _indexed(53)
    uninterrupted = data.TrainBatches(ds, 10, seed=5)
    expected = [_ids(uninterrupted.next()) for _ in range(stop_after + 8)][stop_after:]

    first = data.TrainBatches(ds, 10, seed=5)
    for _ in range(stop_after):
        first.next()
    save_npz(tmp_path / "pipeline.npz", first.get_state())
    resumed = data.TrainBatches(ds, 10, seed=5)
    resumed.set_state(load_npz(tmp_path / "pipeline.npz"))
    assert resumed.step == stop_after
    got = [_ids(resumed.next()) for _ in range(8)]
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


def test_state_is_npz_ready_and_set_state_validates():
    ds = _indexed(40)
    it = data.TrainBatches(ds, 10, seed=0)
    state = it.get_state()
    assert {"epoch", "position"} <= set(state)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.int64 for v in state.values())
    with pytest.raises(ValueError, match="batch_size"):
        data.TrainBatches(ds, 8, seed=0).set_state(state)
    with pytest.raises(ValueError, match="position"):
        it.set_state({"epoch": np.array(0), "position": np.array(4)})
    with pytest.raises(ValueError, match="missing"):
        it.set_state({"epoch": np.array(0)})
    with pytest.raises(ValueError, match="epoch"):
        it.set_state({"epoch": np.array(1.5), "position": np.array(0)})


def test_train_batches_bad_arguments():
    ds = _indexed(10)
    with pytest.raises(ValueError, match="batch_size"):
        data.TrainBatches(ds, 11, seed=0)
    with pytest.raises(TypeError, match="batch_size"):
        data.TrainBatches(ds, 2.0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        data.TrainBatches(ds, 2, seed=-1)
    with pytest.raises(TypeError, match="Dataset"):
        data.TrainBatches((ds.x, ds.y), 2, seed=0)


# --------------------------------------------------------------------------- eval batches

def test_eval_batches_cover_the_set_once_in_order_with_zero_weight_padding():
    ds = _indexed(23)
    batches = list(data.eval_batches(ds, 10))
    assert len(batches) == 3 and all(len(b.x) == 10 for b in batches)
    w = np.concatenate([b.weights for b in batches])
    np.testing.assert_array_equal(w, np.r_[np.ones(23), np.zeros(7)])
    ids = np.concatenate([_ids(b) for b in batches])[:23]
    np.testing.assert_array_equal(ids, np.arange(23))
    assert batches[-1].x.dtype == ds.x.dtype and batches[-1].y.dtype == ds.y.dtype


def _softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


@pytest.mark.parametrize("batch_size", [7, 50, 64, 200])
@pytest.mark.parametrize("weighted", [False, True])
def test_padded_eval_batches_give_the_metrics_of_the_exact_set(rng, batch_size, weighted):
    n, k = 150, 5
    x = rng.standard_normal((n, 6))
    y = rng.integers(0, k, n)
    weights = rng.uniform(0.2, 3.0, n) if weighted else None
    ds = Dataset(x, y, weights=weights, num_classes=k)
    w_model = rng.standard_normal((6, k))
    predict = lambda xb: xb @ w_model      # noqa: E731  (a fixed linear model)

    totals = data.MetricTotals(num_classes=k)
    for batch in data.eval_batches(ds, batch_size):
        logits = predict(batch.x)
        totals.add(batch.weights, _softmax_cross_entropy(logits, batch.y), logits, batch.y)
    got = totals.result()

    logits = predict(x)
    w = np.ones(n) if weights is None else weights
    loss = _softmax_cross_entropy(logits, y)
    correct = logits.argmax(1) == y
    assert got["num_examples"] == n
    np.testing.assert_allclose(got["loss"], np.sum(w * loss) / np.sum(w), rtol=1e-12)
    np.testing.assert_allclose(got["accuracy"], np.sum(w * correct) / np.sum(w), rtol=1e-12)
    np.testing.assert_allclose(got["error_rate"], 1 - np.sum(w * correct) / np.sum(w), rtol=1e-12)
    np.testing.assert_array_equal(got["count_per_class"], np.bincount(y, minlength=k))
    np.testing.assert_array_equal(got["correct_per_class"], np.bincount(y[correct], minlength=k))
    # the functional forms agree with the accumulator
    assert data.accuracy(logits, y, weights) == pytest.approx(got["accuracy"], rel=1e-12)
    assert data.weighted_mean(loss, weights) == pytest.approx(got["loss"], rel=1e-12)


def test_eval_batches_validate_eagerly():
    with pytest.raises(ValueError, match="batch_size"):
        data.eval_batches(_indexed(5), 0)
    with pytest.raises(TypeError, match="Dataset"):
        data.eval_batches([1, 2, 3], 2)


# --------------------------------------------------------------------------- subsets

def test_stratified_counts_sum_and_proportions():
    counts = np.array([500, 300, 150, 50])
    take = data.splits.stratified_counts(counts, 101)
    assert take.sum() == 101 and np.all(take <= counts)
    assert np.all(np.abs(take - 101 * counts / counts.sum()) < 1)
    np.testing.assert_array_equal(data.splits.stratified_counts(counts, 1000), counts)


def test_stratified_subset_keeps_class_shares_is_seeded_and_a_subset():
    y = np.repeat(np.arange(4), [400, 300, 200, 100])
    ds = Dataset(np.arange(1000, dtype=float)[:, None], y, num_classes=4, name="val")
    sub = data.stratified_subset(ds, 100, seed=0)
    np.testing.assert_array_equal(np.bincount(sub.y), [40, 30, 20, 10])
    ids = sub.x[:, 0].astype(int)
    assert np.all(np.diff(ids) > 0)                  # original order, no repeats
    np.testing.assert_array_equal(y[ids], sub.y)
    np.testing.assert_array_equal(data.stratified_subset(ds, 100, seed=0).x, sub.x)
    assert not np.array_equal(data.stratified_subset(ds, 100, seed=1).x, sub.x)
    assert "subset" in sub.name


def test_stratified_subset_for_regression_is_a_uniform_sample():
    ds = Dataset(np.arange(50, dtype=float)[:, None], np.zeros((50, 2)))
    sub = data.stratified_subset(ds, 20, seed=3)
    ids = sub.x[:, 0].astype(int)
    assert len(np.unique(ids)) == 20 and np.all(np.diff(ids) > 0)
    with pytest.raises(ValueError, match="n="):
        data.stratified_subset(ds, 51, seed=0)


def test_periodic_eval_subset_metric_agrees_with_the_full_split(rng):
    # a fixed "model" that is right 80% of the time on every class
    n, k = 2000, 10
    y = rng.integers(0, k, n)
    right = rng.uniform(size=n) < 0.8
    pred = np.where(right, y, (y + 1) % k)
    ds = Dataset(np.stack([np.arange(n), pred], axis=1).astype(float), y, num_classes=k)
    logits_of = lambda d: np.eye(k)[d.x[:, 1].astype(int)]   # noqa: E731
    sub = data.stratified_subset(ds, 400, seed=0)
    check = data.subset_agreement(data.accuracy(logits_of(ds), ds.y),
                                  data.accuracy(logits_of(sub), sub.y), len(ds), len(sub))
    assert check.agrees and abs(check.difference) <= 3 * check.standard_error
    # a skewed "subset" (only examples the model gets right) is flagged
    skewed = ds.subset(np.flatnonzero(right)[:400])
    bad = data.subset_agreement(data.accuracy(logits_of(ds), ds.y),
                                data.accuracy(logits_of(skewed), skewed.y), len(ds), len(skewed))
    assert not bad.agrees and bad.subset == 1.0


# --------------------------------------------------------------------------- metrics

def test_metrics_with_weights_and_padding():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [1.0, 0.0]])
    labels = np.array([0, 1, 1, 1])
    assert data.accuracy(logits, labels) == 0.5
    assert data.error_rate(logits, labels) == 0.5
    w = np.array([1.0, 1.0, 0.0, 0.0])                  # last two are padding
    assert data.accuracy(logits, labels, w) == 1.0
    counts = data.correct_counts(logits, labels, 2, w)
    np.testing.assert_array_equal(counts.correct, [1, 1])
    np.testing.assert_array_equal(counts.total, [1, 1])
    counts = data.correct_counts(logits, labels, 3)
    np.testing.assert_array_equal(counts.correct, [1, 1, 0])
    np.testing.assert_array_equal(counts.total, [1, 3, 0])
    assert data.weighted_mean([1.0, 3.0], [3.0, 1.0]) == 1.5


def test_metrics_errors():
    with pytest.raises(ValueError, match="sum to zero"):
        data.weighted_mean([1.0, 2.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="weights"):
        data.weighted_mean([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="logits"):
        data.accuracy(np.zeros(3), np.zeros(3, int))
    with pytest.raises(ValueError, match="labels"):
        data.correct_counts(np.zeros((2, 3)), np.array([0, 5]), 3)
    with pytest.raises(ValueError, match="no examples"):
        data.MetricTotals().result()
    with pytest.raises(ValueError, match="both"):
        data.MetricTotals().add(np.ones(2), outputs=np.zeros((2, 2)))


# --------------------------------------------------------------------------- augmentation

def test_augmentation_is_off_by_default():
    batch = Batch(np.arange(12.0).reshape(3, 4), np.zeros(3, int), np.ones(3))
    aug = data.Augmentation()
    assert not aug.enabled
    out = aug(batch, np.random.default_rng(0))
    np.testing.assert_array_equal(out.x, batch.x)


def test_circular_shift_rolls_each_example_within_bounds(rng):
    x = rng.standard_normal((200, 3, 16)).astype(np.float32)
    out = data.random_circular_shift(x, np.random.default_rng(1), max_shift=3)
    assert out.dtype == np.float32 and out.shape == x.shape
    shifts = set()
    for xi, oi in zip(x, out):
        matches = [k for k in range(-3, 4) if np.array_equal(np.roll(xi, k, axis=-1), oi)]
        assert len(matches) == 1                       # a roll by one k, same for every channel
        shifts.add(matches[0])
    assert shifts == set(range(-3, 4))                 # every allowed shift occurs
    again = data.random_circular_shift(x, np.random.default_rng(1), max_shift=3)
    np.testing.assert_array_equal(again, out)


def test_gaussian_noise_statistics_and_dtype():
    x = np.zeros((400, 50), dtype=np.float32)
    out = data.add_gaussian_noise(x, np.random.default_rng(2), scale=0.1)
    assert out.dtype == np.float32
    assert abs(out.mean()) < 0.002 and abs(out.std() - 0.1) < 0.002
    aug = data.Augmentation(max_shift=2, noise_scale=0.5)
    batch = Batch(x, np.arange(400), np.ones(400))
    out = aug(batch, np.random.default_rng(3))
    assert aug.enabled and out.y is batch.y and out.weights is batch.weights
    assert abs(out.x.std() - 0.5) < 0.01


def test_augmentation_errors():
    with pytest.raises(TypeError, match="Generator"):
        data.add_gaussian_noise(np.zeros((2, 3)), np.random.RandomState(0), 0.1)
    with pytest.raises(ValueError, match="max_shift"):
        data.Augmentation(max_shift=-1)
    with pytest.raises(ValueError, match="shape"):
        data.random_circular_shift(np.zeros(5), np.random.default_rng(0), 1)


# --------------------------------------------------------------------------- Dataset validation

def test_dataset_keeps_arrays_and_reports_length():
    x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 2, 1])
    ds = Dataset(x, y, num_classes=3, name="ok")
    assert len(ds) == 4 and ds.x is x and ds.y is y
    np.testing.assert_array_equal(ds.example_weights(), np.ones(4))
    reg = Dataset(x, np.ones((4, 2)))                    # regression: 2-D float targets
    assert reg.num_classes is None


_x4 = np.zeros((4, 3))
_nan_x = _x4.copy()
_nan_x[2, 1] = np.nan


@pytest.mark.parametrize("kwargs, message", [
    (dict(x=np.zeros((4, 3)), y=np.zeros(3, int)), "x has 4 examples but y has 3"),
    (dict(x=np.float64(1.0), y=np.zeros(1, int)), "leading example axis"),
    (dict(x=_nan_x, y=np.zeros(4, int)), r"x must be finite; 1 entries .* x\[2, 1\]=nan"),
    (dict(x=np.array([["a"]] * 4), y=np.zeros(4, int)), "x must hold real numbers"),
    (dict(x=np.zeros((4, 3), bool), y=np.zeros(4, int)), "dtype bool"),
    (dict(x=_x4, y=np.zeros(4, int), weights=np.ones(3)), r"weights must have shape \(4,\)"),
    (dict(x=_x4, y=np.zeros(4, int), weights=np.array([1.0, -2.0, 1.0, 1.0])),
     r"weights\[1\]=-2.0"),
    (dict(x=_x4, y=np.zeros(4, int), weights=np.array([1.0, np.inf, 1.0, 1.0])),
     "weights must be finite"),
    (dict(x=_x4, y=np.array([0.0, 1.0, 0.0, 1.0]), num_classes=2), "labels must be integers"),
    (dict(x=_x4, y=np.array([0, 1, 2, 1]), num_classes=2), r"\[0, 2\), got range \[0, 2\]"),
    (dict(x=_x4, y=np.array([0, -1, 1, 1]), num_classes=2), r"got range \[-1, 1\]"),
    (dict(x=_x4, y=np.zeros((4, 2), int), num_classes=2), "labels y must be 1-D"),
    (dict(x=_x4, y=np.array([0.0, np.nan, 1.0, 2.0])), "y must be finite"),
])
def test_dataset_validation_names_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        Dataset(**kwargs, name="mine")
    assert "dataset 'mine'" in str(info.value)


def test_dataset_num_classes_must_be_a_positive_integer():
    with pytest.raises(TypeError, match="num_classes"):
        Dataset(_x4, np.zeros(4, int), num_classes=2.5)
    with pytest.raises(ValueError, match="num_classes"):
        Dataset(_x4, np.zeros(4, int), num_classes=0)


# --------------------------------------------------------------------------- eval batch size

def test_eval_batch_size_defaults_to_at_least_the_training_batch_size():
    assert data.default_eval_batch_size() == data.DEFAULT_EVAL_BATCH_SIZE == 1024
    for train_bs in (1, 100, 1024, 3000):
        assert data.default_eval_batch_size(train_bs) == max(train_bs, 1024) >= train_bs
    big = _indexed(5000)
    sizes = {len(b.y) for b in data.eval_batches(big, train_batch_size=2000)}
    assert sizes == {2000}                              # 3 batches of 2000, the last padded
    assert {len(b.y) for b in data.eval_batches(big)} == {1024}
    # never larger than the set: a bigger batch would only add padding rows
    small = list(data.eval_batches(_indexed(300), train_batch_size=128))
    assert len(small) == 1 and len(small[0].y) == 300 and small[0].weights.sum() == 300
    with pytest.raises(ValueError, match="at least as large as the training batch size"):
        data.eval_batches(big, 64, train_batch_size=128)
    with pytest.raises(ValueError, match="train_batch_size"):
        data.default_eval_batch_size(0)


def test_training_loop_default_eval_batch_size_is_the_data_default():
    from refplay.train.config import parse_config
    for batch_size in (1, 100, 1024, 3000):
        tc = parse_config({"optimizer": "sgd", "lr": 0.1, "batch_size": batch_size},
                          model_hparams={}, max_train_steps=10, default_batch_size=100)
        assert tc.eval_batch_size == data.default_eval_batch_size(batch_size) >= batch_size


def test_eval_batches_pad_regression_targets_with_their_shape():
    x = np.arange(10, dtype=np.float32)[:, None]
    ds = Dataset(x, np.ones((10, 3), np.float32))
    *_, last = data.eval_batches(ds, 4)
    assert last.y.shape == (4, 3) and last.y.dtype == np.float32
    np.testing.assert_array_equal(last.y[2:], 0.0)
    np.testing.assert_array_equal(last.weights, [1, 1, 0, 0])


# --------------------------------------------------------------------------- resume guard

def test_set_state_refuses_a_state_saved_with_another_seed():
    ds = _indexed(40)
    first = data.TrainBatches(ds, 10, seed=1)
    first.next()
    state = first.get_state()
    with pytest.raises(ValueError, match="seed"):
        data.TrainBatches(ds, 10, seed=2).set_state(state)
    child_a, child_b = np.random.SeedSequence(1).spawn(2)
    with pytest.raises(ValueError, match="seed"):
        data.TrainBatches(ds, 10, seed=child_b).set_state(
            data.TrainBatches(ds, 10, seed=child_a).get_state())
    same = data.TrainBatches(ds, 10, seed=1)
    same.set_state(state)                                # same seed: accepted
    np.testing.assert_array_equal(_ids(same.next()), _ids(first.next()))


# --------------------------------------------------------------------------- periodic eval in a trial

def _blobs_workload():
    from refplay.nn import models
    from refplay.train.workloads import Workload
    s = data.blobs(400, num_classes=4, dim=3, cluster_std=1.5, seed=0, n_validation=400,
                   n_test=50)
    return Workload(name="blobs_logreg", train=s.train, validation=s.validation, test=s.test,
                    build_model=lambda: models.logreg(3, 4), batch_size=40)


def test_run_trial_reports_periodic_sample_next_to_the_full_split():
    from refplay.train import run_trial
    wl = _blobs_workload()
    config = {"optimizer": "sgd", "lr": 0.1}
    run = dict(seed=0, max_train_steps=20, eval_every=10)
    sampled = run_trial(wl, config, **run, periodic_eval_size=100)
    full = run_trial(wl, config, **run)
    assert sampled.status == full.status == "complete"
    assert full.extras["periodic_eval_check"] is None          # no sample, nothing to check
    check = sampled.extras["periodic_eval_check"]
    assert check["metric"] == "error_rate" and (check["n_full"], check["n_subset"]) == (400, 100)
    # the sample's number is the last periodic evaluation; the full number is what a run
    # evaluating the whole split reports (sampling does not change training)
    assert check["subset"] == sampled.curves["validation/error_rate"][-1]
    assert check["full"] == full.curves["validation/error_rate"][-1]
    expected = data.subset_agreement(check["full"], check["subset"], 400, 100)
    assert check["agrees"] == expected.agrees
    assert check["standard_error"] == pytest.approx(expected.standard_error, rel=1e-12)
    assert check["agrees"]                          # a stratified sample of a fixed model
