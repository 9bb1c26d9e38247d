r"""Models: a network of layers plus its loss, as pure functions of ``(params, state)``.

A :class:`Model` is what a trial trains (``refplay.train``)::

    model = models.mlp(40, hidden=(100, 100), num_classes=10)
    params, state = model.init_params(rng, dtype=np.float32)
    loss, grads, state, aux = model.loss_and_grads(params, state, batch, rng, train=True)
    logits = model.predict(params, state, x)

* ``params`` is a flat ordered tree (:mod:`refplay.tree`), keys such as
  ``"dense_1/w"``; ``grads`` has the same keys in the same order.
* ``state`` holds non-trainable arrays (BatchNorm moving averages), ``{}``
  when there are none. Training returns a new state; nothing is modified in place.
* ``loss`` is the weighted mean :math:`\sum_i w_i \ell_i / \sum_i w_i` with the
  batch's per-example weights, so weight-0 padding changes nothing
  (:mod:`refplay.nn.losses`; batch norm leaves padding out of its statistics).
* **The dtype of the parameters decides** the compute dtype: initialise in
  float32 to train, in float64 to check gradients.
* ``rng`` feeds dropout; it is needed only when ``train=True`` and the model
  has dropout. Same parameters, batch and Generator state -> bitwise the same
  loss and gradients.

Constructors: :func:`mlp`, :func:`logreg`, :func:`cnn1d`, :func:`cnn2d`,
:func:`resnet1d`, :func:`residual_mlp` (a deep residual MLP whose norm
placement and initial scale are hyperparameters, for the instability
figures), :func:`vit1d` (a Transformer on patches of a 1-D signal, Post-LN or
Pre-LN), and the two reference networks of the MNIST-1D paper
(Greydanus & Kobak 2024; ``notebooks/models.py`` of github.com/greydanus/mnist1d)
:func:`mnist1d_mlp` and :func:`mnist1d_cnn`. :func:`get` builds one by name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.nn import init as init_lib
from refplay.nn import layers as L
from refplay.nn import losses
from refplay.nn.norms import BatchNorm, LayerNorm
from refplay.nn.residual import PLACEMENTS, Residual, Sequential, apply_layer
from refplay.nn import transformer as T

if TYPE_CHECKING:                     # a Batch is any object with x, y, weights
    from refplay.data.dataset import Batch


__all__ = [
    "Model", "Reshape", "mlp", "logreg", "cnn1d", "cnn2d", "resnet1d", "residual_mlp",
    "mnist1d_mlp",
    "mnist1d_cnn", "vit1d", "MODELS", "get", "TASKS", "NORMS",
]

TASKS = ("classification", "regression")
NORMS = (None, "batch", "layer")


# ----------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------

class Model:
    """A network (a :class:`~refplay.nn.residual.Sequential` of layers) and its loss.

    ``input_shape`` is the shape of one example (no batch axis) that
    ``batch.x`` must have; ``task`` is "classification" (softmax
    cross-entropy on integer labels, with ``label_smoothing``) or
    "regression" (mean squared error on float targets).
    """

    def __init__(self, net: Sequential, *, input_shape: Sequence[int], task: str = "classification",
                 label_smoothing: float = 0.0, name: str = "model",
                 predict_rows: int | None = None):
        self.net = net
        # Examples per forward pass in predict (None: all at once); see vit1d.
        self.predict_rows = (None if predict_rows is None
                             else _validate.integer("predict_rows", predict_rows, low=1))
        self.input_shape = tuple(int(d) for d in input_shape)
        self.task = _validate.one_of("task", task, TASKS)
        self.label_smoothing = _validate.real("label_smoothing", label_smoothing, low=0.0, high=1.0)
        if task == "regression" and self.label_smoothing:
            raise ValueError("label_smoothing applies to classification only; got "
                             f"label_smoothing={label_smoothing} with task='regression'")
        self.name = name
        self.output_shape = tuple(net.output_shape(self.input_shape))

    # -- parameters -----------------------------------------------------------

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> tuple[Tree, Tree]:
        """Fresh ``(params, state)`` in ``dtype`` (float32 or float64), drawn from ``rng``."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dt}")
        return self.net.init(rng, dt), self.net.init_state(dt)

    @staticmethod
    def dtype_of(params: Tree) -> np.dtype:
        """The compute dtype: the dtype of the parameters."""
        if not params:
            raise ValueError("params is empty; build it with model.init_params(rng)")
        return next(iter(params.values())).dtype

    # -- forward and backward -------------------------------------------------

    def apply(self, params: Tree, state: Tree, x: np.ndarray, *, train: bool = False,
              rng: np.random.Generator | None = None, mask: np.ndarray | None = None,
              ) -> tuple[np.ndarray, object, Tree]:
        """Forward pass: ``(outputs, cache, new_state)``. ``mask`` (N,) marks real examples."""
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            want = ", ".join(map(str, self.input_shape))
            raise ValueError(f"{self.name}: x must have shape (batch, {want}), got {x.shape}")
        x = x.astype(self.dtype_of(params), copy=False)
        return apply_layer(self.net, params, state, x, train=train, rng=rng, mask=mask)

    def backward(self, params: Tree, doutputs: np.ndarray, cache) -> Tree:
        """Parameter gradients from ``doutputs`` = dL/d(outputs), in the order of ``params``."""
        _, grads = self.net.backward(params, doutputs, cache, need_dx=False)
        missing = [k for k in params if k not in grads]
        if missing or len(grads) != len(params):
            extra = [k for k in grads if k not in params]
            raise ValueError(f"{self.name}: params do not match this model (no gradient for "
                             f"{missing}, unexpected {extra})")
        return {k: grads[k] for k in params}

    def predict(self, params: Tree, state: Tree, x: np.ndarray) -> np.ndarray:
        """Outputs (logits) in evaluation mode: no dropout, batch norm uses its EMAs.

        With ``predict_rows``, ``x`` goes through the network that many examples at a time.
        """
        rows = self.predict_rows
        if rows is None or len(x) <= rows:
            return self.apply(params, state, x, train=False)[0]
        return np.concatenate([self.apply(params, state, x[i:i + rows], train=False)[0]
                               for i in range(0, len(x), rows)])

    # -- losses ----------------------------------------------------------------

    def _check_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        x, y = np.asarray(batch.x), np.asarray(batch.y)
        n = x.shape[0] if x.ndim else -1
        if len(y) != n:
            raise ValueError(f"{self.name}: batch.x has {n} examples but batch.y has {len(y)}")
        w = None if batch.weights is None else np.asarray(batch.weights, dtype=np.float64)
        if w is not None and w.shape != (n,):
            raise ValueError(f"{self.name}: batch.weights must have shape ({n},), got {w.shape}")
        return x, y, w

    def _loss(self, outputs, y, w) -> tuple[float, np.ndarray, np.ndarray]:
        if self.task == "classification":
            return losses.softmax_cross_entropy_parts(outputs, y, w, self.label_smoothing)
        return losses.mean_squared_error_parts(outputs, y, w)

    def loss(self, params: Tree, state: Tree, batch: Batch, rng: np.random.Generator | None = None,
             train: bool = False) -> tuple[float, Tree, dict]:
        """Forward only: ``(loss, new_state, aux)``; :meth:`loss_and_grads` differentiates it."""
        x, y, w = self._check_batch(batch)
        outputs, _, new_state = self.apply(params, state, x, train=train, rng=rng, mask=_mask(w))
        loss, _, per_example = self._loss(outputs, y, w)
        aux = {"outputs": outputs, "per_example_loss": per_example}
        return loss, (new_state if train else state), aux

    def loss_and_grads(self, params: Tree, state: Tree, batch: Batch,
                       rng: np.random.Generator | None = None, train: bool = True,
                       ) -> tuple[float, Tree, Tree, dict]:
        """``(loss, grads, new_state, aux)`` for one batch.

        ``aux["outputs"]`` holds the outputs (logits), ``aux["per_example_loss"]``
        the unweighted per-example losses (float64). With ``train=False``
        dropout is off, batch norm uses its EMAs and ``new_state is state``.
        """
        x, y, w = self._check_batch(batch)
        outputs, cache, new_state = self.apply(params, state, x, train=train, rng=rng,
                                               mask=_mask(w))
        loss, doutputs, per_example = self._loss(outputs, y, w)
        grads = self.backward(params, doutputs, cache)
        return loss, grads, (new_state if train else state), {"outputs": outputs,
                                                              "per_example_loss": per_example}

    # -- description -----------------------------------------------------------

    def summary(self) -> str:
        """One line per top-level layer with its output shape, for reading a model."""
        lines = [f"{self.name}: input {self.input_shape}, task {self.task}"]
        shape = self.input_shape
        for layer in self.net.layers:
            shape = tuple(layer.output_shape(shape))
            lines.append(f"  {type(layer).__name__:<14} {layer.name:<14} -> {shape}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, input_shape={self.input_shape}, task={self.task!r})"


def _mask(weights: np.ndarray | None) -> np.ndarray | None:
    """The batch-norm mask: None when every example is real (the common, fast case)."""
    if weights is None or (weights.size and weights.min() > 0):
        return None
    return weights > 0


class Reshape(L.Layer):
    """``(N, *in_shape)`` -> ``(N, *shape)`` in C order; e.g. (N, 40) -> (N, 1, 40)."""

    def __init__(self, shape: Sequence[int], *, name: str = "reshape"):
        self.shape = tuple(int(d) for d in shape)
        self.name = name

    def forward(self, params, x, train=False, rng=None):
        x = np.asarray(x)
        return x.reshape((x.shape[0],) + self.shape), x.shape

    def backward(self, params, dout, cache, need_dx=True):
        return (dout.reshape(cache) if need_dx else None), {}

    def output_shape(self, in_shape):
        if int(np.prod(in_shape)) != int(np.prod(self.shape)):
            raise ValueError(f"Reshape {self.name!r}: cannot reshape {tuple(in_shape)} "
                             f"to {self.shape}")
        return self.shape


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------

def _inits(init: str):
    """``(w_init, b_init)`` for an initializer name; biases start at 0 except under torch's rule."""
    w_init = init_lib.get(init)
    if init == "torch_default":
        return L.torch_default_init, L.torch_default_init
    return w_init, None


def _norm_layer(norm: str | None, channels: int, name: str, bn_kwargs: dict):
    if norm == "batch":
        return BatchNorm(channels, name=name, **bn_kwargs)
    if norm == "layer":
        return LayerNorm(channels, name=name)
    raise ValueError(f"norm={norm!r} is not allowed; choose one of {list(NORMS)}")


def _check_norm(norm) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not allowed; choose one of {list(NORMS)}")


def _check_residual_norm(norm, norm_placement) -> None:
    """Check a residual network's ``norm`` and ``norm_placement``: None goes with "none" only."""
    _check_norm(norm)
    _validate.one_of("norm_placement", norm_placement, PLACEMENTS)
    if (norm is None) != (norm_placement == "none"):
        raise ValueError(f"norm={norm!r} and norm_placement={norm_placement!r} do not fit: use "
                         "norm=None with norm_placement='none', a norm with any other placement")


def _dropout(rate) -> float:
    return _validate.real("dropout", rate, low=0.0, high=1.0, high_open=True)


def _head(in_dim: int, num_classes: int, name: str, init: str) -> L.Dense:
    w_init, b_init = _inits(init)
    return L.Dense(in_dim, num_classes, name=name, w_init=w_init, b_init=b_init)


# ----------------------------------------------------------------------------
# Constructors
# ----------------------------------------------------------------------------

def mlp(in_dim: int, hidden: Sequence[int] = (100, 100), num_classes: int = 10, *,
        activation: str = "relu", dropout: float = 0.0, norm: str | None = None,
        label_smoothing: float = 0.0, task: str = "classification", init: str = "torch_default",
        virtual_batch_size: int | None = None, name: str = "mlp") -> Model:
    """A multilayer perceptron ``in_dim -> hidden[0] -> ... -> num_classes``.

    Each hidden layer is ``dense_i`` [-> ``{norm}_i``] -> activation [-> ``dropout_i``];
    the output layer ``dense_{k+1}`` is linear. ``norm`` is None, "batch" or
    "layer" (before the activation). For ``task="regression"``,
    ``num_classes`` is the number of outputs. ``init`` names an initializer of
    :mod:`refplay.nn.init` (default: torch's, as the MNIST-1D paper used).
    """
    hidden = [int(h) for h in hidden]
    _check_norm(norm)
    rate = _dropout(dropout)
    w_init, b_init = _inits(init)
    layers, width = [], int(in_dim)
    for i, h in enumerate(hidden, start=1):
        fused = activation if norm is None else "identity"
        layers.append(L.Dense(width, h, name=f"dense_{i}", activation=fused, w_init=w_init,
                              b_init=b_init))
        if norm is not None:
            layers.append(_norm_layer(norm, h, f"{norm}norm_{i}",
                                      {"virtual_batch_size": virtual_batch_size}))
            layers.append(L.Activation(activation, name=f"act_{i}"))
        if rate > 0:
            layers.append(L.Dropout(rate, name=f"dropout_{i}"))
        width = h
    layers.append(_head(width, num_classes, f"dense_{len(hidden) + 1}", init))
    return Model(Sequential(layers, name=name), input_shape=(in_dim,), task=task,
                 label_smoothing=label_smoothing, name=name)


def logreg(in_dim: int, num_classes: int, *, label_smoothing: float = 0.0,
           init: str = "torch_default", name: str = "logreg") -> Model:
    """Multinomial logistic regression: one linear layer ``dense_1`` and softmax cross-entropy."""
    return Model(Sequential([_head(in_dim, num_classes, "dense_1", init)], name=name),
                 input_shape=(in_dim,), label_smoothing=label_smoothing, name=name)


def mnist1d_mlp(in_dim: int = 40, hidden: int = 100, num_classes: int = 10, *,
                activation: str = "relu", dropout: float = 0.0, label_smoothing: float = 0.0,
                name: str = "mnist1d_mlp") -> Model:
    r"""The MNIST-1D paper's MLP (``MLPBase``): 40 -> 100 -> 100 -> 10 with ReLU.

    Exactly the reference's structure, **including its skip connection** around
    the second layer::

        h = relu(dense_1(x));  h = h + relu(dense_2(h));  logits = dense_3(h)

    torch's default initialization, as in the reference. ``dropout`` (not in
    the reference; 0 by default) goes before the output layer, as in
    :func:`mnist1d_cnn`.
    """
    w_init, b_init = _inits("torch_default")
    hidden = int(hidden)
    layers = [
        L.Dense(in_dim, hidden, name="dense_1", activation=activation, w_init=w_init,
                b_init=b_init),
        Residual(L.Dense(hidden, hidden, name="dense_2", activation=activation, w_init=w_init,
                         b_init=b_init), name="skip_2", placement="none"),
    ]
    if _dropout(dropout) > 0:
        layers.append(L.Dropout(dropout, name="dropout"))
    layers.append(L.Dense(hidden, num_classes, name="dense_3", w_init=w_init, b_init=b_init))
    return Model(Sequential(layers, name=name), input_shape=(in_dim,),
                 label_smoothing=label_smoothing, name=name)


def _per_layer(name: str, value, n: int) -> list:
    """An int (the same for every layer) or a sequence of ``n`` values."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} must be one value or {n} values (one per layer), "
                             f"got {value!r}")
        return list(value)
    return [value] * n


def _conv_stack(conv_cls, pool_cls, in_channels: int, channels: Sequence[int], *, kernel_size,
                stride, padding, pool, pool_size, activation, dropout, norm, init,
                virtual_batch_size) -> list:
    """``conv_i`` [-> ``{norm}norm_i`` -> ``act_i``] [-> ``pool_i``] [-> ``dropout_i``]."""
    _check_norm(norm)
    _validate.one_of("pool", pool, (None, "max", "avg"))
    rate = _dropout(dropout)
    w_init, b_init = _inits(init)
    n = len(channels)
    kernels_ = _per_layer("kernel_size", kernel_size, n)
    strides = _per_layer("stride", stride, n)
    paddings = _per_layer("padding", padding, n)
    layers, c_in = [], int(in_channels)
    for i, (c, k, s, p) in enumerate(zip(channels, kernels_, strides, paddings), start=1):
        fused = activation if norm is None else "identity"
        layers.append(conv_cls(c_in, int(c), k, stride=s, padding=p, activation=fused,
                               name=f"conv_{i}", w_init=w_init, b_init=b_init))
        if norm is not None:
            layers.append(_norm_layer(norm, int(c), f"{norm}norm_{i}",
                                      {"virtual_batch_size": virtual_batch_size}))
            layers.append(L.Activation(activation, name=f"act_{i}"))
        if pool is not None:
            layers.append(pool_cls[pool](pool_size, name=f"pool_{i}"))
        if rate > 0:
            layers.append(L.Dropout(rate, name=f"dropout_{i}"))
        c_in = int(c)
    return layers


def _conv_model(layers: list, in_shape: tuple, input_shape: tuple, num_classes: int, *,
                global_pool: bool, init: str, task: str, label_smoothing: float,
                name: str) -> Model:
    """Close a conv stack with (global avg pool | flatten) -> ``dense_1``; wrap it in a Model."""
    feature_shape = Sequential(layers, name=name).output_shape(in_shape)
    if global_pool:
        layers.append(L.GlobalAvgPool(name="global_pool"))
        width = feature_shape[0]
    else:
        layers.append(L.Flatten(name="flatten"))
        width = int(np.prod(feature_shape))
    layers.append(_head(width, num_classes, "dense_1", init))
    return Model(Sequential(layers, name=name), input_shape=input_shape, task=task,
                 label_smoothing=label_smoothing, name=name)


def cnn1d(in_length: int, num_classes: int = 10, *, in_channels: int = 1,
          channels: Sequence[int] = (32, 32), kernel_size=3, stride=1, padding="same",
          pool: str | None = "max", pool_size: int = 2, activation: str = "relu",
          dropout: float = 0.0, norm: str | None = None, global_pool: bool = False,
          label_smoothing: float = 0.0, task: str = "classification", init: str = "torch_default",
          virtual_batch_size: int | None = None, name: str = "cnn1d") -> Model:
    """A 1-D CNN on signals: conv blocks (see :func:`_conv_stack`) then a linear classifier.

    Input: ``(N, in_length)`` when ``in_channels == 1`` (a channel axis is
    added, as the MNIST-1D reference does), else ``(N, in_channels, in_length)``.
    ``kernel_size``, ``stride`` and ``padding`` are one value or one per layer;
    ``pool`` is "max", "avg" or None; ``global_pool`` averages over positions
    instead of flattening before ``dense_1``.
    """
    layers = [Reshape((1, in_length), name="add_channel")] if in_channels == 1 else []
    layers += _conv_stack(L.Conv1D, {"max": L.MaxPool1D, "avg": L.AvgPool1D}, in_channels, channels,
                          kernel_size=kernel_size, stride=stride, padding=padding, pool=pool,
                          pool_size=pool_size, activation=activation, dropout=dropout, norm=norm,
                          init=init, virtual_batch_size=virtual_batch_size)
    input_shape = (in_length,) if in_channels == 1 else (in_channels, in_length)
    return _conv_model(layers, input_shape, input_shape, num_classes, global_pool=global_pool,
                       init=init, task=task, label_smoothing=label_smoothing, name=name)


def cnn2d(in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, *,
          channels: Sequence[int] = (16, 32), kernel_size=3, stride=1, padding=1,
          pool: str | None = "max", pool_size: int = 2, activation: str = "relu",
          dropout: float = 0.0, norm: str | None = None, global_pool: bool = False,
          label_smoothing: float = 0.0, task: str = "classification", init: str = "torch_default",
          virtual_batch_size: int | None = None, name: str = "cnn2d") -> Model:
    """A 2-D CNN on NCHW images; arguments as :func:`cnn1d`, input ``(N, *in_shape)``.

    The defaults are the benchmark network of ``benchmarks/compare_torch.py``:
    conv3x3 1->16 pad 1, ReLU, maxpool 2; conv3x3 16->32 pad 1, ReLU, maxpool 2;
    dense 1568->10. A max-pool of size 2 right after a ReLU (or linear) conv
    is fused into that ``Conv2D`` (``max_pool=True``; no ``pool_i`` layer).
    """
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), got {in_shape}")
    # A ReLU conv then a 2x2 max-pool is one layer (Conv2D's max_pool): the same values,
    # without writing and re-reading the full-size activation.
    fuse = (pool == "max" and pool_size == 2 and norm is None
            and activation in ("relu", "identity"))
    layers = _conv_stack(L.Conv2D, {"max": L.MaxPool2D, "avg": L.AvgPool2D}, in_shape[0], channels,
                         kernel_size=kernel_size, stride=stride, padding=padding,
                         pool=None if fuse else pool, pool_size=pool_size, activation=activation,
                         dropout=dropout, norm=norm, init=init,
                         virtual_batch_size=virtual_batch_size)
    if fuse:
        layers = [_with_max_pool(layer) if isinstance(layer, L.Conv2D) else layer
                  for layer in layers]
    return _conv_model(layers, in_shape, in_shape, num_classes, global_pool=global_pool,
                       init=init, task=task, label_smoothing=label_smoothing, name=name)


def _with_max_pool(conv: L.Conv2D) -> L.Conv2D:
    """``conv`` with a fused 2x2 max-pool (the same parameters, names and initializers)."""
    return L.Conv2D(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, activation=conv.activation, use_bias=conv.use_bias,
                    name=conv.name, w_init=conv.w_init, b_init=conv.b_init, impl=conv.impl,
                    max_pool=True)


def mnist1d_cnn(in_length: int = 40, num_classes: int = 10, *, channels: int = 25,
                activation: str = "relu", dropout: float = 0.0, label_smoothing: float = 0.0,
                name: str = "mnist1d_cnn") -> Model:
    """The MNIST-1D paper's CNN (``ConvBase``), layer for layer.

    ``x.view(-1, 1, 40)``; conv 1->25 (kernel 5, stride 2, padding 1), ReLU;
    conv 25->25 (3, 2, 1), ReLU; conv 25->25 (3, 2, 1), ReLU; flatten (25 x 5 =
    125); linear 125->10. Lengths 40 -> 19 -> 10 -> 5. torch's default
    initialization, as in the reference. ``dropout`` (not in the reference;
    0 by default) goes before the linear layer.
    """
    w_init, b_init = _inits("torch_default")
    c = int(channels)
    layers = [Reshape((1, in_length), name="add_channel")]
    for i, (c_in, k) in enumerate([(1, 5), (c, 3), (c, 3)], start=1):
        layers.append(L.Conv1D(c_in, c, k, stride=2, padding=1, activation=activation,
                               name=f"conv_{i}", w_init=w_init, b_init=b_init))
    layers.append(L.Flatten(name="flatten"))
    if _dropout(dropout) > 0:
        layers.append(L.Dropout(dropout, name="dropout"))
    width = int(np.prod(Sequential(layers).output_shape((in_length,))))
    layers.append(L.Dense(width, num_classes, name="dense_1", w_init=w_init, b_init=b_init))
    return Model(Sequential(layers, name=name), input_shape=(in_length,),
                 label_smoothing=label_smoothing, name=name)


def resnet1d(in_length: int = 40, num_classes: int = 10, *, in_channels: int = 1,
             channels: Sequence[int] = (16, 32, 64), strides: Sequence[int] = (1, 2, 2),
             blocks_per_stage: int = 1, kernel_size: int = 3, activation: str = "relu",
             norm: str | None = "batch", norm_placement: str = "branch", rezero: bool = False,
             virtual_batch_size: int | None = None, remainder: str = "error", num_devices: int = 1,
             sync_stats: bool = False, sync_ema: bool = True, ema_decay: float = 0.9,
             label_smoothing: float = 0.0, init: str = "he_normal",
             name: str = "resnet1d") -> Model:
    r"""A small residual 1-D CNN whose stability knobs are hyperparameters.

    ``stem_conv`` [-> ``stem_norm``] -> act, then for each stage ``s`` with
    width ``channels[s]`` and ``blocks_per_stage`` blocks ``block_{s}_{b}``
    (the first one with stride ``strides[s]``), then a global average pool and
    the linear ``head``. Each block is a :class:`~refplay.nn.residual.Residual`
    with branch :math:`f = \text{conv}_b \circ \phi \circ \text{conv}_a`
    (kernel ``kernel_size``, ``conv_a`` carries the stride), the norm
    ``norm`` ("batch", "layer" or None) placed by ``norm_placement``
    ("branch": :math:`x + N(f(x))`, "pre": :math:`x + f(N(x))`, "post":
    :math:`N(x + f(x))`, "none"), a strided 1x1 ``shortcut`` convolution
    when the shape changes, and a ReZero scale when ``rezero``.

    Playbook, Figure 4: "Changing the strides in a single residual block (2x2
    -> 1x1) in a WideResnet results in training instability" -- ``strides``
    is a hyperparameter so that the experiment can be repeated here. The batch
    norm arguments (``virtual_batch_size``, ``remainder``, ``num_devices``,
    ``sync_stats``, ``sync_ema``, ``ema_decay``) are those of
    :class:`~refplay.nn.norms.BatchNorm`.
    """
    _check_residual_norm(norm, norm_placement)
    k = _validate.integer("kernel_size", kernel_size, low=1)
    if k % 2 == 0:
        raise ValueError(f"kernel_size={k} must be odd (padding k // 2 keeps the length "
                         "at stride 1)")
    channels = [int(c) for c in channels]
    strides = _per_layer("strides", list(strides), len(channels))
    blocks = _validate.integer("blocks_per_stage", blocks_per_stage, low=1)
    bn_kwargs = {"virtual_batch_size": virtual_batch_size, "remainder": remainder,
                 "num_devices": num_devices, "sync_stats": sync_stats, "sync_ema": sync_ema,
                 "ema_decay": ema_decay}
    w_init, b_init = _inits(init)
    spec = _ResNet1DSpec(kernel_size=k, activation=activation, norm=norm,
                         norm_placement=norm_placement, rezero=rezero, bn_kwargs=bn_kwargs,
                         w_init=w_init, b_init=b_init)

    layers = [Reshape((1, in_length), name="add_channel")] if in_channels == 1 else []
    layers += _resnet1d_stem(spec, in_channels, channels[0])
    stage_inputs = channels[:1] + channels[:-1]       # each stage starts at its predecessor's width
    for s, (c_in, c, stride) in enumerate(zip(stage_inputs, channels, strides), start=1):
        layers += _resnet1d_stage(spec, s, c_in, c, stride, blocks)
    layers += [L.GlobalAvgPool(name="global_pool"), _head(channels[-1], num_classes, "head", init)]
    input_shape = (in_length,) if in_channels == 1 else (in_channels, in_length)
    return Model(Sequential(layers, name=name), input_shape=input_shape,
                 label_smoothing=label_smoothing, name=name)


class _ResNet1DSpec(NamedTuple):
    """What every layer of a :func:`resnet1d` shares: its hyperparameters and initializers."""

    kernel_size: int
    activation: str
    norm: str | None
    norm_placement: str
    rezero: bool
    bn_kwargs: dict
    w_init: L.WeightInit
    b_init: L.WeightInit | None

    def conv(self, c_in: int, c_out: int, size: int, stride: int, name: str,
             activation: str = "identity") -> L.Conv1D:
        """A convolution padded by ``size // 2``, so that stride 1 keeps the length."""
        return L.Conv1D(c_in, c_out, size, stride=stride, padding=size // 2,
                        activation=activation, name=name, w_init=self.w_init, b_init=self.b_init)

    def norm_layer(self, channels: int, name: str):
        """The norm ``name`` over ``channels`` channels, or None when ``norm`` is None."""
        return None if self.norm is None else _norm_layer(self.norm, channels, name,
                                                          self.bn_kwargs)


def _resnet1d_stem(spec: _ResNet1DSpec, in_channels: int, channels: int) -> list:
    """``stem_conv`` (stride 1) [-> ``stem_norm`` -> ``stem_act``]; without a norm the
    activation is fused into the convolution."""
    fused = spec.activation if spec.norm is None else "identity"
    layers = [spec.conv(in_channels, channels, spec.kernel_size, 1, "stem_conv", fused)]
    if spec.norm is not None:
        layers += [spec.norm_layer(channels, "stem_norm"),
                   L.Activation(spec.activation, name="stem_act")]
    return layers


def _resnet1d_stage(spec: _ResNet1DSpec, s: int, c_in: int, c_out: int, stride: int,
                    blocks: int) -> list:
    """Stage ``s``: blocks ``block_{s}_1`` ... ``block_{s}_{blocks}`` of width ``c_out``;
    the first one takes the stage's input width and stride, the others stride 1."""
    return [_resnet1d_block(spec, f"block_{s}_{b}", c_in if b == 1 else c_out, c_out,
                            stride if b == 1 else 1) for b in range(1, blocks + 1)]


def _resnet1d_block(spec: _ResNet1DSpec, name: str, c_in: int, c_out: int,
                    stride: int) -> Residual:
    """One residual block: branch ``conv_a`` (carries the stride) -> activation -> ``conv_b``,
    its ``norm`` where ``norm_placement`` puts it, and a 1x1 ``shortcut`` convolution
    when the shape changes."""
    k = spec.kernel_size
    branch = Sequential([spec.conv(c_in, c_out, k, stride, f"{name}/conv_a", spec.activation),
                         spec.conv(c_out, c_out, k, 1, f"{name}/conv_b")], name=f"{name}/branch")
    norm = spec.norm_layer(c_in if spec.norm_placement == "pre" else c_out, f"{name}/norm")
    shortcut = (spec.conv(c_in, c_out, 1, stride, f"{name}/shortcut")
                if (stride != 1 or c_in != c_out) else None)
    return Residual(branch, name=name, norm=norm, placement=spec.norm_placement,
                    shortcut=shortcut, rezero=spec.rezero)


def _scaled_init(base, gain: float, rng, shape, fan_in, fan_out, dtype=np.float32):
    """``gain`` x the weights ``base`` draws (a module-level function, so models pickle)."""
    w = base(rng, shape, fan_in, fan_out, dtype)
    return (w * np.asarray(gain, dtype=w.dtype)).astype(w.dtype, copy=False)


def _scaled_inits(init: str, gain: float) -> tuple[L.WeightInit, L.WeightInit | None]:
    """``(w_init, b_init)`` of :func:`_inits` with every weight ``init`` draws times ``gain``."""
    base_init, b_init = _inits(init)
    w_init = base_init if gain == 1.0 else functools.partial(_scaled_init, base_init, gain)
    return w_init, b_init


def residual_mlp(in_dim: int = 40, num_classes: int = 10, *, width: int = 64, depth: int = 8,
                 activation: str = "relu", norm: str | None = "layer",
                 norm_placement: str = "pre", init_gain: float = 1.0, init: str = "he_normal",
                 label_smoothing: float = 0.0, name: str = "residual_mlp") -> Model:
    r"""A deep residual MLP whose instability knobs are hyperparameters.

    ``stem`` (dense ``in_dim -> width``), then ``depth`` residual blocks
    ``block_i`` with branch :math:`f(h) = W_{b}\,\phi(W_{a} h + b_a) + b_b`
    (``block_i/dense_a``, ``block_i/dense_b``, both ``width -> width``), the
    norm ``norm`` ("layer", "batch" or None) placed by ``norm_placement``
    (see :class:`~refplay.nn.residual.Residual`):

    =========  ===================================  ===========================
    placement  block                                after the last block
    =========  ===================================  ===========================
    "pre"      :math:`h + f(N(h))`                  ``final_norm``, then ``head``
    "post"     :math:`N(h + f(h))`                  ``head``
    "branch"   :math:`h + N(f(h))`                  ``head``
    "none"     :math:`h + f(h)`                     ``head``
    =========  ===================================  ===========================

    The pre-norm network ends with a ``final_norm`` (as pre-LN Transformers
    do), so that with every placement the head sees a normalized input.

    ``init_gain`` multiplies every initial weight of the stem and the blocks
    (``init`` draws them; the head is not scaled): a gain :math:`g` makes
    each branch's output about :math:`g^2` times larger at initialization, so
    the residual stream and the gradients grow with depth. Playbook, "How can
    optimization failures be debugged and mitigated?":

        *Normalization should be inside the residual. E.g. x + f(Norm(x)).
        Norm(x + f(x)) known to cause issues.*

    ``"post"`` is the arrangement "known to cause issues"; ``"pre"`` is the
    playbook's example. refplay has no Transformer: this model reproduces the
    mechanism (where the norm sits, how large the initial weights are), not
    the sizes of the playbook's figures.
    """
    _check_residual_norm(norm, norm_placement)
    width = _validate.integer("width", width, low=1)
    depth = _validate.integer("depth", depth, low=0)
    gain = _validate.real("init_gain", init_gain, low=0.0, low_open=True)
    w_init, b_init = _scaled_inits(init, gain)

    layers = [L.Dense(in_dim, width, name="stem", activation="identity", w_init=w_init,
                      b_init=b_init)]
    layers += [_residual_mlp_block(f"block_{i}", width, activation=activation, norm=norm,
                                   norm_placement=norm_placement, w_init=w_init, b_init=b_init)
               for i in range(1, depth + 1)]
    if norm_placement == "pre":
        layers.append(_norm_layer(norm, width, "final_norm", {}))
    layers.append(_head(width, num_classes, "head", init))
    return Model(Sequential(layers, name=name), input_shape=(in_dim,),
                 label_smoothing=label_smoothing, name=name)


def _residual_mlp_block(name: str, width: int, *, activation: str, norm: str | None,
                        norm_placement: str, w_init: L.WeightInit,
                        b_init: L.WeightInit | None) -> Residual:
    r"""One residual block: branch :math:`W_{b}\,\phi(W_{a} h + b_a) + b_b` (``dense_a``,
    ``dense_b``, both ``width -> width``) and its ``norm`` where ``norm_placement`` puts it."""
    def dense(layer_name, act="identity"):
        return L.Dense(width, width, name=f"{name}/{layer_name}", activation=act, w_init=w_init,
                       b_init=b_init)

    branch = Sequential([dense("dense_a", activation), dense("dense_b")], name=f"{name}/branch")
    norm_layer = None if norm is None else _norm_layer(norm, width, f"{name}/norm", {})
    return Residual(branch, name=name, norm=norm_layer, placement=norm_placement)


def vit1d(in_length: int = 40, num_classes: int = 10, *, patch_size: int = 4, width: int = 32,
          depth: int = 4, num_heads: int = 4, mlp_ratio: int = 2, activation: str = "gelu",
          norm_placement: str = "pre", pool: str = "cls", causal: bool = False,
          init: str = "glorot_uniform", label_smoothing: float = 0.0, name: str = "vit1d") -> Model:
    r"""A Transformer encoder on patches of a 1-D signal (a ViT on MNIST-1D).

    ``embed`` (:class:`~refplay.nn.transformer.PatchEmbedding`: ``in_length /
    patch_size`` tokens of ``width`` features, a CLS token when ``pool="cls"``,
    learned positions), then ``depth`` blocks ``block_i``
    (:func:`~refplay.nn.transformer.transformer_block`: ``num_heads``-head
    self-attention, a ``width -> mlp_ratio * width -> width`` MLP with
    ``activation``; ``norm_placement`` "post" :math:`N(x + f(x))` or "pre"
    :math:`x + f(N(x))`), for "pre" a ``final_norm``, then ``pool`` ("cls":
    the CLS token, "mean": the mean over tokens) and the linear ``head``.
    ``causal`` masks attention to earlier tokens (it needs ``pool="mean"``:
    a leading CLS token would see only itself). ``init`` draws every weight
    matrix; biases start at 0.
    """
    _validate.one_of("norm_placement", norm_placement, T.PLACEMENTS)
    _validate.one_of("pool", pool, T.POOLS)
    if causal and pool == "cls":
        raise ValueError("causal=True needs pool='mean': with a causal mask the leading CLS "
                         "token attends only to itself")
    width = _validate.integer("width", width, low=1)
    depth = _validate.integer("depth", depth, low=1)
    mlp_dim = width * _validate.integer("mlp_ratio", mlp_ratio, low=1)
    w_init = init_lib.get(init)
    layers = [T.PatchEmbedding(in_length, patch_size, width, cls_token=pool == "cls",
                               name="embed", w_init=w_init)]
    layers += [T.transformer_block(width, num_heads, mlp_dim, name=f"block_{i}",
                                   placement=norm_placement, activation=activation,
                                   causal=causal, w_init=w_init) for i in range(1, depth + 1)]
    if norm_placement == "pre":
        layers.append(T.TokenLayerNorm(width, name="final_norm"))
    layers += [T.TokenPool(pool, name="pool"),
               L.Dense(width, num_classes, name="head", w_init=w_init, b_init=None)]
    # predict_rows: the attention probabilities (heads, T, T, rows) of 128 examples stay in
    # the L2 cache: 500 validation examples evaluate 1.5x faster. Every layer works per
    # example, so only BLAS's blocking could round differently (float32 outputs were bitwise
    # those of one pass on the machine that measured it).
    return Model(Sequential(layers, name=name), input_shape=(in_length,),
                 label_smoothing=label_smoothing, name=name, predict_rows=128)


#: Model constructors by name (``models.get("mlp", in_dim=40, ...)``).
MODELS = {"mlp": mlp, "logreg": logreg, "cnn1d": cnn1d, "cnn2d": cnn2d, "resnet1d": resnet1d,
          "residual_mlp": residual_mlp, "mnist1d_mlp": mnist1d_mlp, "mnist1d_cnn": mnist1d_cnn,
          "vit1d": vit1d}


def get(name: str, **hparams) -> Model:
    """Build the model called ``name`` (one of :data:`MODELS`) with ``hparams``."""
    _validate.one_of("model", name, tuple(MODELS))
    return MODELS[name](**hparams)
