"""Periodic evaluation: when to evaluate, and the metrics of one evaluation.

The playbook ("Setting up periodic evaluations"): "Periodic evaluations should
be done at regular step intervals, not time intervals", with an evaluation
batch size "*at least* as large as the batch size used for training", and
padded partial batches whose padded examples get "a weight of zero".

Step ``s`` means "after ``s`` optimizer updates": step 0 evaluates the
initial parameters, and the final step ``max_train_steps`` is always
evaluated, even when it is not a multiple of ``eval_every``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from refplay import _validate
from refplay.data.batching import eval_batches
from refplay.data.dataset import Dataset
from refplay.data.metrics import MetricTotals
from refplay.nn import losses


def eval_steps(max_train_steps: int, eval_every: int, dense_eval_steps: int = 0) -> list[int]:
    """The steps at which a trial evaluates, in increasing order.

    ``{0, eval_every, 2·eval_every, ...} ∪ {max_train_steps}``, plus every step
    ``0 ... dense_eval_steps`` — the playbook's check for early instability:
    "train for an abbreviated run ... but evaluate every step" (FAQ, "How can
    optimization failures be debugged and mitigated?").
    """
    max_train_steps = _validate.integer("max_train_steps", max_train_steps, low=1)
    eval_every = _validate.integer("eval_every", eval_every, low=1)
    dense_eval_steps = _validate.integer("dense_eval_steps", dense_eval_steps, low=0)
    steps = set(range(0, max_train_steps + 1, eval_every))
    steps.update(range(0, min(dense_eval_steps, max_train_steps) + 1))
    steps.add(max_train_steps)
    return sorted(steps)


def evaluate(model, params: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray],
             dataset: Dataset, batch_size: int, *,
             predictions: list | None = None) -> dict[str, float]:
    """Loss (and error rate, for classification) of ``params`` on ``dataset``.

    Metrics are example-weighted means, ``sum_i w_i m_i / sum_i w_i``,
    accumulated in float64 over padded evaluation batches
    (:func:`refplay.data.eval_batches`, :class:`refplay.data.metrics.MetricTotals`);
    padded examples have weight 0 and count for nothing. The classification
    loss is plain softmax cross-entropy (no label smoothing), so trials that
    train with different label smoothing are compared on the same validation
    loss. Regression uses the mean squared error of :mod:`refplay.nn.losses`.

    With a list as ``predictions`` (classification only), the predicted class
    of every real example is appended to it, in dataset order: what a paired
    test (McNemar's) compares between two models on the same examples.
    """
    classification = model.task == "classification"
    if not classification and model.task != "regression":
        raise ValueError(f"model.task={model.task!r} is not allowed; choose 'classification' or "
                         f"'regression'")
    totals = MetricTotals()
    # A batch larger than the split would only add weight-0 padding rows.
    for batch in eval_batches(dataset, max(1, min(batch_size, len(dataset)))):
        outputs = model.predict(params, state, batch.x)
        if classification:
            totals.add(batch.weights, losses.per_example_softmax_cross_entropy(outputs, batch.y),
                       outputs, batch.y)
            if predictions is not None:
                predictions.extend(np.argmax(outputs[batch.weights > 0], axis=1).tolist())
        else:
            totals.add(batch.weights, losses.per_example_mean_squared_error(outputs, batch.y))
    result = totals.result()
    metrics = {"loss": float(result["loss"])}
    if classification:
        metrics["error_rate"] = float(result["error_rate"])
    return metrics
