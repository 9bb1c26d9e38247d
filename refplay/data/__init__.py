"""refplay.data: datasets, splits, and an input pipeline that follows the playbook.

* Datasets -- :func:`mnist1d` (the published MNIST-1D, generated here, offline),
  :func:`mnist1d_splits` (3,500 train / 500 validation / 1,000 test),
  synthetic :func:`spirals`, :func:`blobs`, :func:`teacher_student`, IDX files
  (:func:`load_idx`, :func:`load_mnist_idx`) and :func:`sklearn_digits`.
* Containers -- :class:`Dataset` (a split), :class:`Batch` (what a model sees),
  :class:`Splits` (train, validation, test).
* Pipeline -- :class:`TrainBatches` (a batch per step, resumable),
  :func:`eval_batches` (padded with weight-0 examples; batch size at least
  the training batch size, :func:`default_eval_batch_size`),
  :func:`stratified_subset` (a fixed sample for periodic evaluation).
* Metrics -- :mod:`refplay.data.metrics`; augmentation -- :mod:`refplay.data.augment`.
"""

from refplay.data.augment import Augmentation, add_gaussian_noise, random_circular_shift
from refplay.data.batching import (DEFAULT_EVAL_BATCH_SIZE, TrainBatches, default_eval_batch_size,
                                   epoch_order, eval_batches)
from refplay.data.dataset import Batch, Dataset
from refplay.data.digits import sklearn_digits
from refplay.data.idx import load_idx, load_mnist_idx
from refplay.data.metrics import (ClassCounts, MetricTotals, SubsetCheck, accuracy, correct_counts,
                                  error_rate, subset_agreement, weighted_mean)
from refplay.data.mnist1d import mnist1d, mnist1d_splits, mnist1d_templates
from refplay.data.splits import Splits, stratified_split, stratified_subset
from refplay.data.synthetic import blobs, spirals, teacher_student

__all__ = [
    "Dataset", "Batch", "Splits",
    "mnist1d", "mnist1d_splits", "mnist1d_templates",
    "spirals", "blobs", "teacher_student",
    "load_idx", "load_mnist_idx", "sklearn_digits",
    "TrainBatches", "eval_batches", "default_eval_batch_size", "DEFAULT_EVAL_BATCH_SIZE",
    "epoch_order", "stratified_split", "stratified_subset",
    "weighted_mean", "accuracy", "error_rate", "correct_counts", "ClassCounts", "MetricTotals",
    "SubsetCheck", "subset_agreement",
    "Augmentation", "random_circular_shift", "add_gaussian_noise",
]
