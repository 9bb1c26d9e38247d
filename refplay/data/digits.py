"""scikit-learn's bundled 8x8 digits, for a small 2-D CNN workload (optional).

scikit-learn ships the data inside its package (no download), but it is not
a refplay dependency: it is imported only when :func:`sklearn_digits` is
called, and a missing install is reported with the command that fixes it.
"""

from __future__ import annotations

import importlib

import numpy as np

from refplay import _validate
from refplay.data.dataset import Dataset
from refplay.data.splits import Splits, stratified_split

__all__ = ["sklearn_digits"]


def sklearn_digits(n_validation: int = 300, n_test: int = 400, seed: int = 0,
                   dtype=np.float32) -> Splits:
    """The 1,797 8x8 digit images of ``sklearn.datasets.load_digits`` as ``Splits``.

    ``x`` has shape ``(N, 1, 8, 8)`` (NCHW) scaled from ``[0, 16]`` to ``[0, 1]``;
    labels are int64 in ``[0, 10)``. The test and then the validation examples
    are drawn stratified by class from ``seed``; the rest are training examples
    (1,097 with the defaults). Requires scikit-learn.
    """
    try:
        datasets = importlib.import_module("sklearn.datasets")
    except ImportError as exc:
        raise ImportError("sklearn_digits needs scikit-learn: pip install scikit-learn") from exc
    seed = _validate.integer("seed", seed, low=0)
    dtype = _validate.float_dtype("dtype", dtype)
    digits = datasets.load_digits()
    images = np.asarray(digits.images, dtype=np.float64)
    labels = np.asarray(digits.target).astype(np.int64)
    n = len(labels)
    n_test = _validate.integer("n_test", n_test, low=1, high=n - 2)
    n_validation = _validate.integer("n_validation", n_validation, low=1, high=n - n_test - 1)
    seq_test, seq_val = np.random.SeedSequence(seed).generate_state(2)
    rest, test = stratified_split(labels, n_test, seed=int(seq_test))
    train_in_rest, val_in_rest = stratified_split(labels[rest], n_validation, seed=int(seq_val))
    train, val = rest[train_in_rest], rest[val_in_rest]
    x = (images[:, None, :, :] / 16.0).astype(dtype)

    def make(index: np.ndarray, name: str) -> Dataset:
        return Dataset(x[index], labels[index], num_classes=10, name=f"digits/{name}")

    return Splits(make(train, "train"), make(val, "validation"), make(test, "test"))
