r"""Losses with their gradients, weighted per example.

Every loss here is the **weighted mean** of per-example losses

.. math::  L = \frac{\sum_i w_i\, \ell_i}{\sum_i w_i},

so an example with weight :math:`w_i = 0` (the padding of a final partial
evaluation batch, see :class:`refplay.data.Batch`) changes neither :math:`L`
nor any gradient (playbook, "Additional guidance for the training pipeline":
partial batches must not bias the metrics). Each function returns
``(loss, d_outputs)`` with ``loss`` a Python float and ``d_outputs`` the
gradient :math:`\partial L / \partial \text{outputs}` in the outputs' dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from refplay import _validate
from refplay.nn import kernels

__all__ = [
    "softmax_cross_entropy", "per_example_softmax_cross_entropy",
    "mean_squared_error", "per_example_mean_squared_error", "l2_penalty",
    "normalized_weights", "softmax_cross_entropy_parts", "mean_squared_error_parts",
]


def normalized_weights(weights, batch_size: int) -> np.ndarray:
    r""":math:`w_i / \sum_j w_j` as float64 (B,); ones when ``weights`` is None.

    Raises ``ValueError`` for a wrong shape, negative or non-finite weights, or
    weights that sum to 0 (a batch made only of padding has no loss).
    """
    if weights is None:
        return np.full(batch_size, 1.0 / batch_size) if batch_size else np.zeros(0)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (batch_size,):
        raise ValueError(f"weights must have shape ({batch_size},) (one per example), "
                         f"got {w.shape}")
    total = w.sum()
    smallest = w.min() if w.size else 0.0
    if not (np.isfinite(total) and smallest >= 0):      # a NaN or an inf makes the sum non-finite
        raise ValueError(f"weights must be finite and >= 0, got min {smallest}, sum {total}")
    if total <= 0:
        raise ValueError("weights sum to 0: a batch made only of padding has no loss")
    return w / total


def _check_logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits must have shape (batch, num_classes), got {logits.shape}")
    if logits.dtype not in (np.float32, np.float64):
        logits = logits.astype(np.float64)
    labels = np.asarray(labels)
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},) (one class index per "
                         f"example), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), "
                         f"got range [{labels.min()}, {labels.max()}]")
    return np.ascontiguousarray(logits), np.ascontiguousarray(labels, dtype=np.int64)


def _smoothing(label_smoothing) -> float:
    return _validate.real("label_smoothing", label_smoothing, low=0.0, high=1.0)


def per_example_softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray,
                                      label_smoothing: float = 0.0) -> np.ndarray:
    r"""Cross-entropy of each example, float64 (B,).

    With :math:`K` classes, smoothing :math:`\varepsilon` and targets
    :math:`t_{ik} = (1-\varepsilon)[k = y_i] + \varepsilon/K` (Szegedy et al.
    2016; ``torch.nn.functional.cross_entropy(label_smoothing=...)``):

    .. math::  \ell_i = -\sum_k t_{ik} \log \operatorname{softmax}(z_i)_k
                      = \operatorname{lse}(z_i) - \sum_k t_{ik} z_{ik},
               \quad \operatorname{lse}(z) = m + \log \sum_k e^{z_k - m},\; m = \max_k z_k.

    Subtracting the row maximum :math:`m` keeps every exponent :math:`\le 0`,
    so large logits cannot overflow.
    """
    logits, labels = _check_logits_labels(logits, labels)
    eps = _smoothing(label_smoothing)
    loss, _ = kernels.softmax_xent(logits, labels, eps, np.zeros(len(labels)))
    return loss


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
                          label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    r"""Weighted mean cross-entropy and its gradient with respect to the logits.

    .. math::  L = \frac{\sum_i w_i \ell_i}{\sum_i w_i}, \qquad
               \frac{\partial L}{\partial z_{ik}} = \frac{w_i}{\sum_j w_j}
               \big(\operatorname{softmax}(z_i)_k - t_{ik}\big),

    with :math:`\ell_i` and :math:`t_{ik}` as in
    :func:`per_example_softmax_cross_entropy`. One fused pass
    (:func:`refplay.nn.kernels.softmax_xent`) computes both.

    Shapes: ``logits`` (B, K), integer ``labels`` (B,), ``weights`` (B,) or
    None (all ones). Returns ``(loss, dlogits)``, ``dlogits`` (B, K) in the
    logits' dtype.
    """
    loss, dlogits, _ = softmax_cross_entropy_parts(logits, labels, weights, label_smoothing)
    return loss, dlogits


def softmax_cross_entropy_parts(logits, labels, weights=None, label_smoothing: float = 0.0,
                                ) -> tuple[float, np.ndarray, np.ndarray]:
    """``(loss, dlogits, per_example_loss)`` from one fused pass (what a model needs)."""
    logits, labels = _check_logits_labels(logits, labels)
    eps = _smoothing(label_smoothing)
    wn = normalized_weights(weights, len(labels))
    per_example, dlogits = kernels.softmax_xent(logits, labels, eps, wn)
    return float(wn @ per_example), dlogits, per_example


def _check_outputs_targets(outputs, targets) -> tuple[np.ndarray, np.ndarray]:
    outputs = np.asarray(outputs)
    if outputs.dtype not in (np.float32, np.float64):
        outputs = outputs.astype(np.float64)
    targets = np.asarray(targets)
    if outputs.ndim < 1:
        raise ValueError(f"outputs must have a batch axis, got shape {outputs.shape}")
    if outputs.ndim == 2 and outputs.shape[1] == 1 and targets.shape == (outputs.shape[0],):
        targets = targets[:, None]          # (B,) targets for a single-output model
    if targets.shape != outputs.shape:
        raise ValueError(f"targets must have the shape of outputs {outputs.shape}, "
                         f"got {targets.shape}")
    return outputs, targets


def per_example_mean_squared_error(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    r""":math:`\ell_i = \frac1D \sum_j (o_{ij} - y_{ij})^2` over the D outputs of example i.

    Returns float64 (B,).
    """
    outputs, targets = _check_outputs_targets(outputs, targets)
    diff = outputs.astype(np.float64) - targets
    return (diff * diff).reshape(len(diff), -1).mean(axis=1)


def mean_squared_error(outputs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None,
                       ) -> tuple[float, np.ndarray]:
    r"""Weighted mean squared error and its gradient.

    .. math::  L = \frac{\sum_i w_i \ell_i}{\sum_i w_i}, \quad
               \ell_i = \frac1D \sum_j (o_{ij} - y_{ij})^2, \quad
               \frac{\partial L}{\partial o_{ij}}
                   = \frac{w_i}{\sum_k w_k}\,\frac{2}{D}(o_{ij} - y_{ij}).

    With unit weights this is ``torch.nn.functional.mse_loss`` (mean over all
    elements). ``targets`` may be (B,) for outputs of shape (B, 1).
    """
    loss, doutputs, _ = mean_squared_error_parts(outputs, targets, weights)
    return loss, doutputs


def mean_squared_error_parts(outputs, targets, weights=None,
                             ) -> tuple[float, np.ndarray, np.ndarray]:
    """``(loss, doutputs, per_example_loss)`` of :func:`mean_squared_error`."""
    outputs, targets = _check_outputs_targets(outputs, targets)
    wn = normalized_weights(weights, len(outputs))
    diff = outputs.astype(np.float64) - targets
    d = int(np.prod(outputs.shape[1:]))
    per_example = (diff * diff).reshape(len(diff), -1).mean(axis=1)
    scale = (wn * (2.0 / d)).reshape((-1,) + (1,) * (outputs.ndim - 1))
    return float(wn @ per_example), (scale * diff).astype(outputs.dtype), per_example


def _is_weight(key: str) -> bool:
    # Dense and convolution kernels are named ".../w"; biases, normalization
    # scales/offsets and residual scales are not decayed (the usual practice).
    return key.rsplit("/", 1)[-1] == "w"


def l2_penalty(params: Mapping[str, np.ndarray], coeff: float,
               include: Callable[[str], bool] = _is_weight) -> tuple[float, dict[str, np.ndarray]]:
    r"""L2 penalty and its gradient.

    .. math::  P = \frac{\lambda}{2}\sum_{k \in S} \|\theta_k\|^2, \qquad
               \frac{\partial P}{\partial \theta_k} = \lambda\theta_k \;(k \in S).


    ``S`` is the set of keys for which ``include(key)`` is true; by default the
    weights (keys ending in ``/w``), not biases or normalization parameters.
    The gradient tree has every key of ``params`` (zeros outside ``S``) so it
    can be added to the loss gradients directly. Adding :math:`\lambda\theta`
    to the gradient is what ``optim.get(..., weight_decay=λ,
    weight_decay_mode="l2")`` does inside the optimizer (for all parameters).
    """
    lam = _validate.real("coeff", coeff, low=0.0)
    total = 0.0
    grads: dict[str, np.ndarray] = {}
    for k, v in params.items():
        if include(k):
            total += float(np.sum(np.asarray(v, np.float64) ** 2))
            grads[k] = (lam * v).astype(v.dtype)
        else:
            grads[k] = np.zeros_like(v)
    return 0.5 * lam * total, grads
