"""Training batches by step, and padded evaluation batches.

Two rules from the playbook's "Additional guidance for the training
pipeline" shape this module:

* Training counts **steps**, not epochs: :class:`TrainBatches` yields the
  batch for step 0, 1, 2, ... Each epoch is a fresh shuffle drawn from
  ``(seed, epoch)`` alone, and the last incomplete batch of an epoch is
  dropped, so every step sees a full batch. The position (epoch, batch within
  the epoch) is two integers, saved with a checkpoint and restored so that a
  resumed run sees exactly the batches an uninterrupted run would have seen.
* Evaluation covers the whole set once. "Partial batches can occur when the
  evaluation sets are not divisible by the batch size. Ensure that the padded
  examples are correctly weighted to prevent the loss function from being
  biased by them. Often, these padded examples can be given a weight of zero."
  :func:`eval_batches` does exactly that. Its batch size defaults to
  :func:`default_eval_batch_size`, following the playbook's "the batch size
  used to perform evaluations should be *at least* as large as the batch size
  used for training" ("Setting up periodic evaluations").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from refplay import _validate, rng
from refplay.data.dataset import Batch, Dataset

__all__ = ["TrainBatches", "eval_batches", "epoch_order", "default_eval_batch_size",
           "DEFAULT_EVAL_BATCH_SIZE"]

# Evaluation needs no gradients, so its batches can be much larger than training
# batches; 1024 rows keep the per-batch overhead small for the small models here.
DEFAULT_EVAL_BATCH_SIZE = 1024


def _seed_sequence(seed) -> np.random.SeedSequence:
    return rng.sequence(seed)


def epoch_order(seed: int | np.random.SeedSequence, epoch: int, num_examples: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the examples: a permutation of ``num_examples``.

    Drawn by a Generator seeded with ``SeedSequence(seed)``'s child number
    ``epoch`` -- the same SeedSequence that ``SeedSequence(seed).spawn(epoch + 1)[-1]``
    returns -- so it depends on ``(seed, epoch)`` only, never on what ran before.
    """
    epoch = _validate.integer("epoch", epoch, low=0)
    return np.random.default_rng(rng.child(seed, epoch)).permutation(num_examples)


class TrainBatches:
    """The training batch for each step: ``it.next()`` returns step 0, 1, 2, ...

    ``seed`` is an int or a ``numpy.random.SeedSequence`` (pass a spawned child
    of the trial's seed so the data order is independent of initialization
    and dropout). Batches have exactly ``batch_size`` examples; the
    ``len(dataset) % batch_size`` examples left at the end of each epoch's
    shuffle are dropped (a different few each epoch).

    ``get_state()`` returns ``{"epoch", "position"}`` as int64 arrays, plus
    ``num_examples``, ``batch_size`` and ``seed_check`` (the first words the
    seed's SeedSequence generates) to catch restoring into a different
    pipeline; ``set_state(d)`` restores the position after checking whichever
    of those it finds. Also an infinite iterator.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int | np.random.SeedSequence):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a refplay.data.Dataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = _validate.integer("batch_size", batch_size, low=1, high=len(dataset))
        self.seed = _seed_sequence(seed)
        self.batches_per_epoch = len(dataset) // self.batch_size
        self._weights = dataset.example_weights()
        self._epoch = 0
        self._position = 0                 # index of the next batch within the epoch
        self._order_epoch = -1             # the epoch whose order is in self._order
        self._order = np.empty(0, dtype=np.int64)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def step(self) -> int:
        """The step whose batch ``next()`` returns."""
        return self._epoch * self.batches_per_epoch + self._position

    def next(self) -> Batch:
        """The batch for the current step; then advance one step."""
        if self._order_epoch != self._epoch:
            self._order = epoch_order(self.seed, self._epoch, len(self.dataset))
            self._order_epoch = self._epoch
        start = self._position * self.batch_size
        index = self._order[start:start + self.batch_size]
        self._position += 1
        if self._position == self.batches_per_epoch:
            self._epoch, self._position = self._epoch + 1, 0
        # ndarray.take gathers the same rows as x[index], in about half the time.
        data = self.dataset
        return Batch(data.x.take(index, axis=0), data.y.take(index, axis=0),
                     self._weights.take(index))

    def __iter__(self) -> "TrainBatches":
        return self

    def __next__(self) -> Batch:
        return self.next()

    def get_state(self) -> dict[str, np.ndarray]:
        """The position as ``.npz``-ready int64 arrays."""
        return {"epoch": np.array(self._epoch, dtype=np.int64),
                "position": np.array(self._position, dtype=np.int64),
                "num_examples": np.array(len(self.dataset), dtype=np.int64),
                "batch_size": np.array(self.batch_size, dtype=np.int64),
                "seed_check": self._seed_check()}

    def _seed_check(self) -> np.ndarray:
        # SeedSequence.generate_state is a pure function of (entropy, spawn_key,
        # pool_size): equal words <=> (almost surely) the same data-order seed.
        return self.seed.generate_state(2, dtype=np.uint32).astype(np.int64)

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Continue from a position saved by :meth:`get_state`."""
        missing = {"epoch", "position"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}; got keys {sorted(state)}")
        for key, mine in (("num_examples", len(self.dataset)), ("batch_size", self.batch_size)):
            if key in state and int(np.asarray(state[key])) != mine:
                raise ValueError(f"state[{key!r}]={int(np.asarray(state[key]))} does not match "
                                 f"this pipeline's {key}={mine}")
        if "seed_check" in state and not np.array_equal(np.asarray(state["seed_check"]),
                                                        self._seed_check()):
            raise ValueError("state['seed_check'] does not match this pipeline's seed: the state "
                             "was saved by a pipeline with another data-order seed, whose "
                             "batches would differ")
        epoch = _validate.integer("state['epoch']", _as_int(state["epoch"], "epoch"), low=0)
        position = _validate.integer("state['position']", _as_int(state["position"], "position"),
                                     low=0, high=self.batches_per_epoch - 1)
        self._epoch, self._position = epoch, position


def _as_int(value, name: str) -> int:
    a = np.asarray(value)
    if a.shape != () or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"state[{name!r}] must be a scalar integer, got {value!r}")
    return int(a)


def default_eval_batch_size(train_batch_size: int | None = None) -> int:
    """``max(train_batch_size, DEFAULT_EVAL_BATCH_SIZE)``: never smaller than a training batch.

    The playbook: "the batch size used to perform evaluations should be *at
    least* as large as the batch size used for training because model
    activations don't need to be maintained during evaluation". Without a
    training batch size, :data:`DEFAULT_EVAL_BATCH_SIZE` (1024).
    """
    if train_batch_size is None:
        return DEFAULT_EVAL_BATCH_SIZE
    return max(_validate.integer("train_batch_size", train_batch_size, low=1),
               DEFAULT_EVAL_BATCH_SIZE)


def eval_batches(dataset: Dataset, batch_size: int | None = None, *,
                 train_batch_size: int | None = None) -> Iterator[Batch]:
    """Batches that cover ``dataset`` once, in order; the last one padded with weight-0 examples.

    Every batch has exactly ``batch_size`` rows (so a compiled or
    shape-specialized model sees one shape). Real examples carry the
    dataset's weights (1 when it has none); padding rows are zeros with
    label 0 and weight 0, so a weighted metric ``sum(w_i m_i) / sum(w_i)``
    over all batches equals the metric over the exact set.

    ``batch_size`` defaults to ``default_eval_batch_size(train_batch_size)``
    -- at least the training batch size -- but no more than ``len(dataset)``
    (a larger batch would only add padding). An explicit ``batch_size``
    smaller than a given ``train_batch_size`` is a ValueError.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a refplay.data.Dataset, got {type(dataset).__name__}")
    if batch_size is None:
        batch_size = max(1, min(default_eval_batch_size(train_batch_size), len(dataset)))
    else:
        batch_size = _validate.integer("batch_size", batch_size, low=1)
        if train_batch_size is not None:
            train_batch_size = _validate.integer("train_batch_size", train_batch_size, low=1)
            if batch_size < train_batch_size:
                raise ValueError(f"batch_size={batch_size} is smaller than the training batch "
                                 f"size {train_batch_size}; the playbook: the evaluation batch "
                                 f"size should be at least as large as the training batch size")
    return _padded_batches(dataset, batch_size)   # validated now, not at the first next()


def _padded_batches(dataset: Dataset, batch_size: int) -> Iterator[Batch]:
    weights = dataset.example_weights()
    n = len(dataset)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x, y, w = dataset.x[start:stop], dataset.y[start:stop], weights[start:stop]
        pad = batch_size - (stop - start)
        if pad:
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], dtype=x.dtype)])
            y = np.concatenate([y, np.zeros((pad,) + y.shape[1:], dtype=y.dtype)])
            w = np.concatenate([w, np.zeros(pad, dtype=w.dtype)])
        yield Batch(x, y, w)
