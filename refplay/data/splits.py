"""Train / validation / test splits and class-stratified subsets.

The playbook tunes hyperparameters on a validation set and touches the test
set only at the end; periodic evaluations may use a sample of a split, as
long as "the performance computed on the sampled dataset used by the periodic
job matches the performance on the whole offline evaluation set"
("Choosing a sample for periodic evaluation"). Stratifying by class keeps the
class proportions of the sample equal to those of the split (up to rounding),
which removes one source of such skew.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.data.dataset import Dataset

__all__ = ["Splits", "stratified_counts", "stratified_split", "stratified_subset"]


class Splits(NamedTuple):
    """The three datasets of a workload."""

    train: Dataset
    validation: Dataset
    test: Dataset


def stratified_counts(class_counts: np.ndarray, n: int) -> np.ndarray:
    r"""How many of ``n`` draws each class gets, proportional to ``class_counts``.

    Class :math:`c` with :math:`N_c` of :math:`N` examples gets
    :math:`\lfloor n N_c / N \rfloor`, and the ``n`` minus the sum of those
    leftover draws go to the classes with the largest remainders
    (:math:`n N_c \bmod N`), ties to the lower class index (the
    largest-remainder method). Exact integer arithmetic; the result sums to
    ``n`` and never exceeds ``class_counts``.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    total = int(counts.sum())
    n = _validate.integer("n", n, low=0, high=total)
    if total == 0:
        return np.zeros_like(counts)
    base, remainder = np.divmod(n * counts, total)
    order = np.argsort(-remainder, kind="stable")
    base[order[: n - int(base.sum())]] += 1
    return base


def stratified_split(labels: np.ndarray, n_second: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..len(labels)-1`` into two sorted parts, stratified by label.

    The second part has ``n_second`` indices, spread over the classes by
    :func:`stratified_counts`; within each class the members are chosen
    uniformly at random by a Generator from ``SeedSequence(seed)``. Both parts
    keep the original order. Same ``(labels, n_second, seed)`` -> same split.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape}, "
                         f"dtype {labels.dtype}")
    n_second = _validate.integer("n_second", n_second, low=0, high=len(labels))
    seed = _validate.integer("seed", seed, low=0)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    classes, counts = np.unique(labels, return_counts=True)
    take = stratified_counts(counts, n_second)
    chosen = np.zeros(len(labels), dtype=bool)
    for c, k in zip(classes, take):
        members = np.flatnonzero(labels == c)
        chosen[rng.permutation(members)[:k]] = True
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


def stratified_subset(dataset: Dataset, n: int, seed: int) -> Dataset:
    """A fixed, seeded subset of ``n`` examples for cheap periodic evaluation.

    Stratified by class when ``dataset.num_classes`` is set (each class keeps
    its share of the examples), a uniform sample otherwise (regression).
    Examples keep their original order. Check that a metric on the subset
    agrees with the full set before trusting it (the playbook's "no skew
    between the sampled set and the full dataset").
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a refplay.data.Dataset, got {type(dataset).__name__}")
    n = _validate.integer("n", n, low=1, high=len(dataset))
    seed = _validate.integer("seed", seed, low=0)
    if dataset.num_classes is not None:
        _, index = stratified_split(dataset.y, n, seed)
    else:
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        index = np.sort(rng.choice(len(dataset), size=n, replace=False))
    name = f"{dataset.name}[subset {n}]" if dataset.name else f"subset {n}"
    return dataset.subset(index, name=name)
