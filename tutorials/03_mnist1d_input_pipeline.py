# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 3 — MNIST-1D and an input pipeline that follows the playbook
#
# MNIST-1D (Greydanus & Kobak) is a procedurally generated 1-D cousin of
# MNIST: 5,000 signals of length 40 in ten classes, generated in about a
# second on a CPU, yet hard enough that model and optimizer choices matter.
# It is refplay's main workload. This tutorial generates it, splits it for
# tuning, and walks through the pieces of `refplay.data` that carry a rule
# from the playbook's "Additional guidance for the training pipeline":
#
# * training batches counted in **steps**, freshly shuffled every epoch, and
#   resumable from a checkpoint to the exact batch;
# * evaluation batches **padded with weight-0 examples**, so the metrics are
#   exact;
# * a **stratified sample** for periodic evaluation, and a check that it
#   agrees with the full split;
# * **per-class counts** of correct predictions.
#
# Run it as a script (`python tutorials/03_mnist1d_input_pipeline.py`) or
# open it as a notebook with jupytext. It writes `mnist1d_examples.png` and
# `pipeline_state.npz` under `runs/03_mnist1d_input_pipeline/` in the current directory (set
# `REFPLAY_OUT=DIR` to write under `DIR/03_mnist1d_input_pipeline/` instead).

# %%
import matplotlib.pyplot as plt
import numpy as np

from refplay import data, io
from refplay.data.splits import stratified_counts
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

OUT = io.output_dir("03_mnist1d_input_pipeline")   # runs/03_mnist1d_input_pipeline/ by default

# %% [markdown]
# ## Generate MNIST-1D
# `data.mnist1d()` replays the reference package's generator (its defaults
# give the published dataset) and returns the reference's dict: 4,000
# training and 1,000 test signals, labels, and the positions `t` for plotting.

# %%
raw = data.mnist1d()
for key in ("x", "y", "x_test", "y_test", "t"):
    print(f"{key:7s} shape {raw[key].shape}  dtype {raw[key].dtype}")
print("examples per class, train:", np.bincount(raw["y"]))
print("examples per class, test: ", np.bincount(raw["y_test"]))
assert raw["x"].shape == (4000, 40) and raw["x_test"].shape == (1000, 40)
assert set(np.unique(raw["y"])) == set(range(10)) and set(np.unique(raw["y_test"])) == set(range(10))
# Generation is a pure function of its seed.
assert np.array_equal(data.mnist1d()["x"], raw["x"])

# %% [markdown]
# Three examples of each class. Each signal is one of ten hand-drawn 12-point
# templates, padded, stretched, scaled, circularly shifted, sheared and made
# noisy, so the same digit turns up anywhere along the signal:

# %%
fig, axes = plt.subplots(2, 5, figsize=(11, 4), sharex=True, sharey=True)
for digit, ax in enumerate(axes.ravel()):
    for i in np.flatnonzero(raw["y"] == digit)[:3]:
        ax.plot(raw["t"], raw["x"][i], lw=1.2)
    ax.set_title(f"class {digit}")
fig.supxlabel("t (position along the signal, arbitrary units)")
fig.supylabel("signal x (arbitrary units)")
fig.suptitle("What does MNIST-1D look like? Three training signals of each class")
fig.tight_layout()
fig.savefig(OUT / "mnist1d_examples.png", dpi=100)
plt.close(fig)
print("wrote", OUT / "mnist1d_examples.png")

# %% [markdown]
# ## Splits for tuning: 3,500 / 500 / 1,000, and the test set left alone
# The playbook tunes hyperparameters on a **validation** set; the test set
# comes in at the very end ("At this point, we should also consider checking
# the performance on the test set"). Tuning against the test set would be
# exactly the "adaptively 'fitting' to the validation set over time, in a way
# that doesn't generalize to a held-out test set" the playbook warns about —
# with no held-out set left to notice.
#
# `data.mnist1d_splits()` carves 500 validation examples out of the 4,000
# published training examples, **stratified by class** (each class keeps its
# share, rounded by the largest-remainder method) and deterministic from
# `split_seed`; the 1,000 published test examples are kept as they are.

# %%
train, validation, test = data.mnist1d_splits()
for split in (train, validation, test):
    print(f"{split.name:20s} {len(split):5d} examples, x {split.x.dtype}, "
          f"per class {np.bincount(split.y, minlength=10)}")
assert (len(train), len(validation), len(test)) == (3500, 500, 1000)
assert np.array_equal(np.bincount(validation.y, minlength=10),
                      stratified_counts(np.bincount(raw["y"]), 500))
# train and validation partition the published training set ...
def rows(x: np.ndarray) -> set[bytes]:
    """The rows of x as a set, to compare splits example by example."""
    return {r.tobytes() for r in x}


assert not rows(train.x) & rows(validation.x)
assert rows(train.x) | rows(validation.x) == rows(raw["x"].astype(np.float32))
# ... and the test set is the published one, untouched and in order.
assert np.array_equal(test.x, raw["x_test"].astype(np.float32))
assert np.array_equal(test.y, raw["y_test"])
# The split is a pure function of split_seed; another seed is another split.
assert np.array_equal(data.mnist1d_splits().validation.x, validation.x)
assert not np.array_equal(data.mnist1d_splits(split_seed=1).validation.x, validation.x)

# %% [markdown]
# ## Training batches by step
# The playbook counts training in steps (`max_train_steps`, `warmup_steps`)
# and asks for evaluations "at regular step intervals". `TrainBatches` hands
# out the batch for step 0, 1, 2, ...: 3,500 examples in batches of 128 make
# 27 full batches per epoch; the 44 left over after each epoch's shuffle are
# dropped (a different 44 each epoch), so every step sees a full batch.
#
# Each epoch's order is a fresh permutation drawn from `(seed, epoch)` alone
# (`data.epoch_order`). Reusing one order every epoch is a bug the playbook
# says shows up in the curves: "Periodicity in valid/test metrics ... can
# indicate implementation bugs such as ... training data not being properly
# shuffled." In a study, pass a spawned child of the trial's
# `numpy.random.SeedSequence` as `seed`, so the data order is independent of
# initialization and dropout.

# %%
BATCH_SIZE, DATA_SEED = 128, 7
batches = data.TrainBatches(train, BATCH_SIZE, seed=DATA_SEED)
print("batches per epoch:", batches.batches_per_epoch)
assert batches.batches_per_epoch == 3500 // 128 == 27

steps = [batches.next() for _ in range(60)]          # 2 epochs and 6 steps
print("after 60 steps: epoch", batches.epoch, "step", batches.step)
assert batches.epoch == 2 and batches.step == 60
assert all(b.x.shape == (BATCH_SIZE, 40) and np.all(b.weights == 1.0) for b in steps)

orders = [data.epoch_order(DATA_SEED, e, len(train)) for e in range(3)]
for step, batch in enumerate(steps):
    epoch, k = divmod(step, 27)
    index = orders[epoch][k * BATCH_SIZE:(k + 1) * BATCH_SIZE]
    assert np.array_equal(batch.x, train.x[index]) and np.array_equal(batch.y, train.y[index])
assert not np.array_equal(orders[0], orders[1])                  # a fresh shuffle per epoch
assert np.array_equal(np.sort(orders[0]), np.arange(len(train)))  # each example at most once

# %% [markdown]
# ## Resuming to the exact batch
# A preempted trial restarts from its last checkpoint. The pipeline's
# position is two integers (epoch, batch within the epoch) saved alongside
# the parameters; restoring them makes the resumed run see exactly the
# batches an uninterrupted run sees. Here the "checkpoint" is written with
# `refplay.io.save_npz` (atomic) and read back without pickle.

# %%
interrupted = data.TrainBatches(train, BATCH_SIZE, seed=DATA_SEED)
for _ in range(40):
    interrupted.next()
io.save_npz(OUT / "pipeline_state.npz", interrupted.get_state())
del interrupted                                       # the job is preempted

state = io.load_npz(OUT / "pipeline_state.npz")
print("saved state:", {k: v.tolist() for k, v in state.items()})
resumed = data.TrainBatches(train, BATCH_SIZE, seed=DATA_SEED)
resumed.set_state(state)
for step in range(40, 60):
    batch = resumed.next()
    assert np.array_equal(batch.x, steps[step].x) and np.array_equal(batch.y, steps[step].y)
print("steps 40..59 after resuming equal those of the uninterrupted run")

# Restoring into a pipeline with another batch size is an error, not a silent mismatch.
try:
    data.TrainBatches(train, 100, seed=DATA_SEED).set_state(state)
except ValueError as err:
    print("ValueError:", err)
else:
    raise AssertionError("a state saved with batch_size=128 must not load into batch_size=100")

# %% [markdown]
# ## A model to evaluate
# The rest of the tutorial needs predictions. To keep the focus on the
# pipeline, the model is fitted in closed form: 512 random ReLU features of
# the signal and a ridge regression onto one-hot labels (its output rows play
# the role of logits). It overfits visibly — fine for our purpose.

# %%
feature_rng = np.random.default_rng(np.random.SeedSequence(0))
A = feature_rng.standard_normal((40, 512)) / np.sqrt(40)
b = 0.5 * feature_rng.standard_normal(512)


def features(x: np.ndarray) -> np.ndarray:
    h = np.maximum(x.astype(np.float64) @ A + b, 0.0)
    return np.concatenate([h, np.ones((len(x), 1))], axis=1)


F = features(train.x)
W = np.linalg.solve(F.T @ F + 10.0 * np.eye(F.shape[1]), F.T @ np.eye(10)[train.y])


def predict(x: np.ndarray) -> np.ndarray:
    return features(x) @ W


def per_example_loss(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The squared error the ridge regression minimizes, one value per example."""
    return np.sum((outputs - np.eye(10)[labels]) ** 2, axis=1)


print(f"train accuracy {data.accuracy(predict(train.x), train.y):.3f}, "
      f"validation accuracy {data.accuracy(predict(validation.x), validation.y):.3f}")

# %% [markdown]
# ## Padded evaluation batches
# "Partial batches can occur when the evaluation sets are not divisible by
# the batch size. Ensure that the padded examples are correctly weighted to
# prevent the loss function from being biased by them. Often, these padded
# examples can be given a weight of zero." And the evaluation batch size
# "should be *at least* as large as the batch size used for training".
#
# Left to its default, `eval_batches` uses `data.default_eval_batch_size(train_batch_size)`
# = max(training batch size, 1024) rows, capped at the size of the set — here
# one batch of all 500 examples and no padding. To see the padding at work we
# ask for batches of 256 (passing `train_batch_size` makes a batch smaller than
# the training batch an error): the 500 validation examples make two batches;
# the second holds 244 real examples and 12 rows of padding with weight 0.
# Every metric is a weighted mean $\sum_i w_i m_i / \sum_i w_i$, accumulated
# over the batches by `data.MetricTotals`.

# %%
assert [len(bt.y) for bt in data.eval_batches(validation, train_batch_size=BATCH_SIZE)] == [500]
EVAL_BATCH_SIZE = 256
eval_list = list(data.eval_batches(validation, EVAL_BATCH_SIZE, train_batch_size=BATCH_SIZE))
print("eval batches:", [(len(bt.y), int(bt.weights.sum())) for bt in eval_list],
      "(rows, real examples)")
assert [len(bt.y) for bt in eval_list] == [256, 256]
assert [int(bt.weights.sum()) for bt in eval_list] == [256, 244]

totals = data.MetricTotals(num_classes=10)
for bt in eval_list:
    out = predict(bt.x)
    totals.add(bt.weights, per_example_loss(out, bt.y), out, bt.y)
padded = totals.result()

full_out = predict(validation.x)
exact_accuracy = data.accuracy(full_out, validation.y)
exact_loss = data.weighted_mean(per_example_loss(full_out, validation.y))
print(f"padded batches: accuracy {padded['accuracy']:.4f}, loss {padded['loss']:.6f}, "
      f"{padded['num_examples']} examples")
print(f"whole set:      accuracy {exact_accuracy:.4f}, loss {exact_loss:.6f}")
assert padded["num_examples"] == 500
assert padded["accuracy"] == exact_accuracy            # integer counts / 500: exact
assert np.isclose(padded["loss"], exact_loss, rtol=1e-12, atol=0)

# What the weights prevent: averaging over every row counts 12 all-zero
# "examples" of class 0 in the metrics.
naive_accuracy = np.mean(np.concatenate(
    [np.argmax(predict(bt.x), axis=1) == bt.y for bt in eval_list]))
print(f"unweighted mean over padded rows: accuracy {naive_accuracy:.4f} (biased)")
assert naive_accuracy != exact_accuracy

# %% [markdown]
# ## A sample for periodic evaluation, and its agreement check
# When evaluating the whole split at every evaluation step is too slow, the
# playbook samples it — and asks us to "Check that the performance computed
# on the sampled dataset used by the periodic job matches the performance on
# the whole offline evaluation set, i.e. there is no skew between the sampled
# set and the full dataset." `data.stratified_subset` draws a fixed, seeded
# sample with the split's class proportions. `data.subset_agreement` compares
# the two accuracies in units of the sample's standard error,
# $\mathrm{SE} = \sqrt{p(1-p)/n \cdot (N-n)/(N-1)}$.
# `train.run_trial(..., periodic_eval_size=250)` uses the same sample (seed 0,
# shared by every trial) and, at the end of the trial, reports both error
# rates and this check in `result.extras["periodic_eval_check"]`.

# %%
subset = data.stratified_subset(validation, 250, seed=0)
print("subset per class:", np.bincount(subset.y, minlength=10))
assert np.array_equal(np.bincount(subset.y, minlength=10),
                      stratified_counts(np.bincount(validation.y, minlength=10), 250))
assert rows(subset.x) <= rows(validation.x)

check = data.subset_agreement(exact_accuracy, data.accuracy(predict(subset.x), subset.y),
                              n_full=len(validation), n_subset=len(subset))
print(f"full {check.full:.3f}, subset {check.subset:.3f}, difference {check.difference:+.3f}, "
      f"SE {check.standard_error:.3f}, agrees: {check.agrees}")
assert check.agrees

# %% [markdown]
# The check has teeth. A classic pipeline bug — the "validation sample" was
# drawn from the training split — shows up as a difference of many standard
# errors:

# %%
leaked = data.stratified_subset(train, 250, seed=0)
bad = data.subset_agreement(exact_accuracy, data.accuracy(predict(leaked.x), leaked.y),
                            n_full=len(validation), n_subset=len(leaked))
print(f"full {bad.full:.3f}, leaked 'subset' {bad.subset:.3f}, "
      f"{bad.difference / bad.standard_error:+.1f} SE, agrees: {bad.agrees}")
assert not bad.agrees

# %% [markdown]
# ## Per-class counts of correct predictions
# "For datasets with a small number of examples in a class label, log the
# number of examples predicted correctly to get more insight into accuracy
# improvements (.05 sensitivity improvement sounds exciting, but was it just
# one more example correct?)". With about 50 validation examples per class,
# one example moves a class's accuracy by 2 points; a "+0.05" is two or three
# examples. `MetricTotals(num_classes=10)` already counted them, batch by
# batch, leaving the padding out.

# %%
counts = data.correct_counts(full_out, validation.y, num_classes=10)
for c in range(10):
    print(f"class {c}: {counts.correct[c]:2d} / {counts.total[c]:2d} correct "
          f"(accuracy {counts.correct[c] / counts.total[c]:.2f})")
print(f"one example is worth {1 / counts.total.max():.3f}..{1 / counts.total.min():.3f} "
      f"of a class's accuracy")
assert np.array_equal(padded["correct_per_class"], counts.correct)
assert np.array_equal(padded["count_per_class"], counts.total)
assert np.array_equal(counts.total, np.bincount(validation.y, minlength=10))
assert counts.correct.sum() == round(exact_accuracy * len(validation))
for c in range(10):    # the count is the class's accuracy times its size
    members = validation.y == c
    assert counts.correct[c] == round(len(validation.y[members])
                                      * data.accuracy(full_out[members], validation.y[members]))
