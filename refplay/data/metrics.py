"""Evaluation metrics with per-example weights.

Every metric is a weighted mean :math:`\\sum_i w_i m_i / \\sum_i w_i`, so the
weight-0 padding rows of :func:`refplay.data.eval_batches` drop out
(playbook: "Ensure that the padded examples are correctly weighted to
prevent the loss function from being biased by them").

The per-class counts follow the playbook's advice for rare classes: "For
datasets with a small number of examples in a class label, log the number of
examples predicted correctly to get more insight into accuracy improvements
(.05 sensitivity improvement sounds exciting, but was it just one more
example correct?)" ("Choosing a sample for periodic evaluation").

:class:`MetricTotals` adds the sums up batch by batch, so a whole split is
evaluated in padded batches and reported as one number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import math

import numpy as np

from refplay import _validate

__all__ = ["weighted_mean", "predictions", "accuracy", "error_rate", "correct_counts",
           "ClassCounts", "MetricTotals", "SubsetCheck", "subset_agreement"]


def _weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite, non-negative, of shape ({n},); "
                         f"got shape {w.shape}")
    return w


def weighted_mean(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    r"""``sum(w_i v_i) / sum(w_i)`` over examples ``i`` (float64).

    With ``values`` the per-example losses this is the loss of a batch or a
    split. Raises ValueError when the weights sum to zero (an all-padding batch
    has no metric).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D (one per example), got shape {v.shape}")
    w = _weights(weights, len(v))
    total = w.sum()
    if total <= 0:
        raise ValueError("weights sum to zero; there are no real examples to average over")
    return float(np.dot(w, v) / total)


def predictions(outputs: np.ndarray) -> np.ndarray:
    """The predicted class of each example: ``argmax`` of the logits ``(N, K)``."""
    outputs = np.asarray(outputs)
    if outputs.ndim != 2:
        raise ValueError(f"outputs must be logits of shape (N, num_classes), "
                         f"got shape {outputs.shape}")
    return np.argmax(outputs, axis=1)


def _correct(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    pred = predictions(outputs)
    labels = np.asarray(labels)
    if labels.shape != pred.shape:
        raise ValueError(f"labels must have shape {pred.shape} to match outputs, "
                         f"got {labels.shape}")
    return pred == labels


def accuracy(outputs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted fraction of examples whose argmax prediction equals the label."""
    return weighted_mean(_correct(outputs, labels), weights)


def error_rate(outputs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted fraction of misclassified examples: ``1 - accuracy``."""
    return weighted_mean(~_correct(outputs, labels), weights)


class ClassCounts(NamedTuple):
    """Per class: how many examples were predicted correctly, and how many there are."""

    correct: np.ndarray   # (num_classes,) int64
    total: np.ndarray     # (num_classes,) int64


def correct_counts(outputs: np.ndarray, labels: np.ndarray, num_classes: int,
                   weights: np.ndarray | None = None) -> ClassCounts:
    """Counts of correct predictions and of examples, per true class.

    These are counts of examples, so weights act as a mask: examples with
    weight 0 (padding) are left out, every other example counts once.
    """
    num_classes = _validate.integer("num_classes", num_classes, low=1)
    hit = _correct(outputs, labels)
    labels = np.asarray(labels)
    real = _weights(weights, len(labels)) > 0
    if np.any(real) and (labels[real].min() < 0 or labels[real].max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                         f"[{labels[real].min()}, {labels[real].max()}]")
    total = np.bincount(labels[real], minlength=num_classes).astype(np.int64)
    correct = np.bincount(labels[real & hit], minlength=num_classes).astype(np.int64)
    return ClassCounts(correct, total)


@dataclass
class MetricTotals:
    """Running sums over evaluation batches; :meth:`result` turns them into metrics.

    ``add`` takes a batch's weights and, as available, its per-example losses
    and (for classification) logits and labels::

        totals = MetricTotals(num_classes=10)
        for batch in eval_batches(split, 500):
            logits = model.predict(params, state, batch.x)
            totals.add(batch.weights, per_example_softmax_cross_entropy(logits, batch.y),
                       logits, batch.y)
        totals.result()   # {"loss", "accuracy", "error_rate", "num_examples", ...}
    """

    num_classes: int | None = None
    weight_sum: float = 0.0
    loss_sum: float = 0.0
    correct_sum: float = 0.0
    num_examples: int = 0
    _has_loss: bool = field(default=False, repr=False)
    _has_outputs: bool = field(default=False, repr=False)
    correct_per_class: np.ndarray | None = None
    count_per_class: np.ndarray | None = None

    def add(self, weights: np.ndarray, per_example_loss: np.ndarray | None = None,
            outputs: np.ndarray | None = None, labels: np.ndarray | None = None) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"weights must be 1-D (one per example), got shape {w.shape}")
        w = _weights(w, len(w))
        if per_example_loss is not None:
            loss = np.asarray(per_example_loss, dtype=np.float64)
            if loss.shape != w.shape:
                raise ValueError(f"per_example_loss must have shape {w.shape}, got {loss.shape}")
            self.loss_sum += float(np.dot(w, loss))
            self._has_loss = True
        if (outputs is None) != (labels is None):
            raise ValueError("give both outputs and labels, or neither")
        if outputs is not None:
            hit = _correct(outputs, labels)
            if hit.shape != w.shape:
                raise ValueError(f"outputs must have {len(w)} rows to match weights, "
                                 f"got {len(hit)}")
            self.correct_sum += float(np.dot(w, hit))
            self._has_outputs = True
            if self.num_classes is not None:
                counts = correct_counts(outputs, labels, self.num_classes, w)
                if self.correct_per_class is None:
                    self.correct_per_class = np.zeros(self.num_classes, dtype=np.int64)
                    self.count_per_class = np.zeros(self.num_classes, dtype=np.int64)
                self.correct_per_class += counts.correct
                self.count_per_class += counts.total
        self.weight_sum += float(w.sum())
        self.num_examples += int(np.count_nonzero(w > 0))

    def result(self) -> dict:
        """``loss`` (when losses were added), ``accuracy`` and ``error_rate`` (when
        logits were added), ``num_examples`` (weight > 0) and, with ``num_classes``,
        ``correct_per_class`` / ``count_per_class``."""
        if self.weight_sum <= 0:
            raise ValueError("no examples with positive weight were added")
        out: dict = {"num_examples": self.num_examples}
        if self._has_loss:
            out["loss"] = self.loss_sum / self.weight_sum
        if self._has_outputs:
            out["accuracy"] = self.correct_sum / self.weight_sum
            out["error_rate"] = 1.0 - out["accuracy"]
            if self.correct_per_class is not None:
                out["correct_per_class"] = self.correct_per_class.copy()
                out["count_per_class"] = self.count_per_class.copy()
        return out


class SubsetCheck(NamedTuple):
    """A metric on the periodic-evaluation subset next to the same metric on the full split."""

    full: float
    subset: float
    difference: float       # subset - full
    standard_error: float   # of the subset value, as a random sample of the full split
    agrees: bool            # |difference| <= tolerance * standard_error


def subset_agreement(full: float, subset: float, n_full: int, n_subset: int,
                     tolerance: float = 3.0) -> SubsetCheck:
    r"""Does an accuracy (or error rate) on a sampled subset match the full split?

    The playbook: "Check that the performance computed on the sampled dataset
    used by the periodic job matches the performance on the whole offline
    evaluation set, i.e. there is no skew between the sampled set and the full
    dataset." A subset of :math:`n` of :math:`N` examples drawn without
    replacement estimates a rate :math:`p` with standard error

    .. math::  \mathrm{SE} = \sqrt{\frac{p(1-p)}{n} \cdot \frac{N-n}{N-1}}

    (a stratified sample does at least as well), so a difference beyond
    ``tolerance`` standard errors means skew. Report both numbers either way.
    """
    full = _validate.real("full", full, low=0, high=1)
    subset = _validate.real("subset", subset, low=0, high=1)
    n_full = _validate.integer("n_full", n_full, low=1)
    n_subset = _validate.integer("n_subset", n_subset, low=1, high=n_full)
    tolerance = _validate.real("tolerance", tolerance, low=0)
    finite_population = (n_full - n_subset) / (n_full - 1) if n_full > 1 else 0.0
    se = math.sqrt(full * (1 - full) / n_subset * finite_population)
    diff = subset - full
    return SubsetCheck(full, subset, diff, se, abs(diff) <= tolerance * se + 1e-12)
