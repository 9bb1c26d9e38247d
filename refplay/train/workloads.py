"""Workloads: a model family, its datasets, its loss and metrics — what a study tunes.

The same idea as AlgoPerf's workloads. A :class:`Workload` holds the three
splits (train / validation / test), a function that builds the model from
its hyperparameters, and those hyperparameters' defaults. The trial config
may set any of them (``{"dropout": 0.1, "width": 256, ...}``); data settings
(which dataset, ``shuffle_seq``, the validation size, the dtype) are fixed
when the workload is built, because every trial of a study shares the data::

    wl = train.get_workload("mnist1d_mlp", shuffle_seq=True)
    wl.hparams            # {'width': 100, 'activation': 'relu', 'dropout': 0.0, 'label_smoothing': 0.0}
    model = wl.model(width=256)

Built in (``WORKLOADS``):

* ``mnist1d_logreg`` — linear softmax, the floor (paper: 32 % test accuracy);
* ``mnist1d_mlp`` — the MNIST-1D paper's MLP, 40→100→100→10 with ReLU and
  the reference's skip connection around the middle layer (68 %);
* ``mnist1d_cnn`` — the paper's CNN, three 1-D convolutions of 25 channels
  (kernels 5, 3, 3; stride 2; padding 1) and a linear layer (94 %);
* ``mnist1d_resnet`` — a small residual 1-D CNN with BatchNorm whose stride,
  norm placement and residual initialization are hyperparameters;
* ``mnist1d_resmlp`` — a deep residual MLP (8 blocks of width 64, LayerNorm)
  whose norm placement ("pre"/"post"/"branch"/"none") and initial weight
  scale (``init_gain``) are hyperparameters: the laptop workload of the
  instability figures (calibration in ``docs/instability.md``);
* ``mnist1d_transformer`` — a small Transformer on MNIST-1D (a ViT: the
  40-sample signal cut into patches as tokens) whose norm placement
  ("post"/"pre"), depth, width and heads are hyperparameters: the
  Transformer workload of the instability figures (calibration in
  ``docs/instability.md``);
* ``spirals_mlp`` — two-class spirals in 2-D, a small MLP (fast tests);
* ``teacher_student`` — regression onto a random tanh MLP (fast tests).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.data.dataset import Batch, Dataset

TASKS = ("classification", "regression")
DTYPES = ("float32", "float64")


class Model(Protocol):
    """What ``run_trial`` needs from a model (see :mod:`refplay.nn.models`)."""

    task: str

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> tuple[Tree, Tree]: ...

    def loss_and_grads(self, params: Tree, state: Tree, batch: Batch,
                       rng: np.random.Generator | None, train: bool = True
                       ) -> tuple[float, Tree, Tree, dict]: ...

    def predict(self, params: Tree, state: Tree, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Workload:
    """A model family on fixed data: the unit a study tunes.

    ``build_model(**hparams)`` returns a :class:`Model`; ``hparams`` holds
    every hyperparameter a trial config may set, with its default.
    ``batch_size`` is the default training batch size. ``settings`` records
    the arguments the workload was built from (JSON-ready), and goes into
    every result and checkpoint fingerprint.
    """

    name: str
    train: Dataset
    validation: Dataset
    test: Dataset | None
    build_model: Callable[..., Model]
    hparams: Mapping[str, object] = field(default_factory=dict)
    task: str = "classification"
    batch_size: int = 100
    dtype: str = "float32"
    settings: Mapping[str, object] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        _validate.one_of("task", self.task, TASKS)
        _validate.one_of("dtype", self.dtype, DTYPES)
        _validate.integer("batch_size", self.batch_size, low=1)
        for split in ("train", "validation"):
            if not isinstance(getattr(self, split), Dataset):
                raise TypeError(f"workload {self.name!r}: {split} must be a refplay.data.Dataset")
        if self.test is not None and not isinstance(self.test, Dataset):
            raise TypeError(f"workload {self.name!r}: test must be a refplay.data.Dataset or None")
        from refplay.train.config import reserved_keys
        clash = sorted(set(self.hparams) & set(reserved_keys()))
        if clash:
            raise ValueError(f"workload {self.name!r}: hyperparameter name(s) {clash} are trial "
                             f"config keys of the optimizer, schedule or training loop")

    @property
    def selection_metric(self) -> str:
        """The curve that ranks checkpoints by default (lower is better)."""
        return "validation/error_rate" if self.task == "classification" else "validation/loss"

    def model(self, **hparams) -> Model:
        """Build the model; ``hparams`` override the defaults in ``self.hparams``."""
        unknown = sorted(set(hparams) - set(self.hparams))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for workload {self.name!r}; "
                             f"allowed {sorted(self.hparams)}")
        model = self.build_model(**{**self.hparams, **hparams})
        if getattr(model, "task", None) != self.task:
            raise ValueError(f"workload {self.name!r} is a {self.task} workload but its model has "
                             f"task={getattr(model, 'task', None)!r}")
        return model


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class WorkloadSpec:
    """How ``get_workload`` builds a built-in workload.

    ``splits(**data_settings) -> Splits``; ``model(**hparams) -> Model``,
    which also receives the data settings named in ``model_data_settings``
    (e.g. the input dimension of a synthetic set).
    """

    splits: Callable
    data_settings: Mapping[str, object]
    model: Callable[..., Model]
    hparams: Mapping[str, object]
    task: str = "classification"
    batch_size: int = 100
    description: str = ""
    model_data_settings: tuple[str, ...] = ()


def _mnist1d_splits(*, shuffle_seq: bool, n_validation: int, dataset_seed: int, split_seed: int,
                    dtype: str):
    from refplay.data.mnist1d import mnist1d_splits
    return mnist1d_splits(seed=dataset_seed, shuffle_seq=shuffle_seq, n_validation=n_validation,
                          split_seed=split_seed, dtype=dtype)


def _spirals_splits(*, n: int, noise: float, turns: float, dataset_seed: int, dtype: str):
    from refplay.data.synthetic import spirals
    return spirals(n, noise=noise, turns=turns, seed=dataset_seed, dtype=dtype)


def _teacher_student_splits(*, n: int, in_dim: int, hidden: int, noise: float, dataset_seed: int,
                            dtype: str):
    from refplay.data.synthetic import teacher_student
    return teacher_student(n, in_dim=in_dim, hidden=hidden, noise=noise, seed=dataset_seed,
                           dtype=dtype)


_MNIST1D_DATA = {"shuffle_seq": False, "n_validation": 500, "dataset_seed": 42, "split_seed": 0,
                 "dtype": "float32"}


def _models():
    from refplay.nn import models
    return models


def _mnist1d_logreg_model(*, label_smoothing: float):
    return _models().logreg(40, 10, label_smoothing=label_smoothing)


def _mnist1d_mlp_model(*, width: int, activation: str, dropout: float, label_smoothing: float):
    return _models().mnist1d_mlp(40, width, 10, activation=activation, dropout=dropout,
                                 label_smoothing=label_smoothing)


def _mnist1d_cnn_model(*, channels: int, activation: str, dropout: float, label_smoothing: float):
    return _models().mnist1d_cnn(channels=channels, activation=activation, dropout=dropout,
                                 label_smoothing=label_smoothing)


def _mnist1d_resnet_model(*, bn_ema_decay: float, **hparams):
    # ``ema_decay`` of the trial config averages the parameters; BatchNorm's own
    # moving-average decay is called ``bn_ema_decay`` here to keep them apart.
    return _models().resnet1d(40, 10, ema_decay=bn_ema_decay, **hparams)


_RESNET_HPARAMS = {
    "channels": [16, 32, 64], "strides": [1, 2, 2], "blocks_per_stage": 1, "kernel_size": 3,
    "activation": "relu", "norm": "batch", "norm_placement": "branch", "rezero": False,
    "virtual_batch_size": None, "num_devices": 1, "sync_stats": False, "sync_ema": True,
    "bn_ema_decay": 0.9, "label_smoothing": 0.0, "init": "he_normal",
}


def _mnist1d_resmlp_model(**hparams):
    return _models().residual_mlp(40, 10, **hparams)


_RESMLP_HPARAMS = {
    "width": 64, "depth": 8, "activation": "relu", "norm": "layer", "norm_placement": "pre",
    "init_gain": 1.0, "init": "he_normal", "label_smoothing": 0.0,
}


def _mnist1d_transformer_model(**hparams):
    return _models().vit1d(40, 10, **hparams)


_TRANSFORMER_HPARAMS = {
    "patch_size": 4, "width": 32, "depth": 4, "num_heads": 4, "mlp_ratio": 2,
    "activation": "gelu", "norm_placement": "pre", "pool": "cls", "init": "glorot_uniform",
    "label_smoothing": 0.0,
}


def _spirals_model(*, width: int, depth: int, activation: str, dropout: float):
    return _models().mlp(2, [width] * depth, 2, activation=activation, dropout=dropout)


def _teacher_student_model(*, width: int, depth: int, activation: str, in_dim: int):
    return _models().mlp(in_dim, [width] * depth, 1, activation=activation, task="regression")


WORKLOADS: dict[str, WorkloadSpec] = {
    "mnist1d_logreg": WorkloadSpec(
        _mnist1d_splits, _MNIST1D_DATA, _mnist1d_logreg_model, {"label_smoothing": 0.0},
        description="MNIST-1D, linear softmax (logistic regression): the floor"),
    "mnist1d_mlp": WorkloadSpec(
        _mnist1d_splits, _MNIST1D_DATA, _mnist1d_mlp_model,
        {"width": 100, "activation": "relu", "dropout": 0.0, "label_smoothing": 0.0},
        description="MNIST-1D, the paper's MLP 40-100-100-10 with ReLU (and its skip connection)"),
    "mnist1d_cnn": WorkloadSpec(
        _mnist1d_splits, _MNIST1D_DATA, _mnist1d_cnn_model,
        {"channels": 25, "activation": "relu", "dropout": 0.0, "label_smoothing": 0.0},
        description="MNIST-1D, the paper's CNN: 3 conv layers (25 ch, k 5/3/3, stride 2) + linear"),
    "mnist1d_resnet": WorkloadSpec(
        _mnist1d_splits, _MNIST1D_DATA, _mnist1d_resnet_model, _RESNET_HPARAMS,
        description="MNIST-1D, a small residual 1-D CNN with BatchNorm (stride, norm placement, "
                    "ReZero init as hyperparameters)"),
    "mnist1d_resmlp": WorkloadSpec(
        _mnist1d_splits, _MNIST1D_DATA, _mnist1d_resmlp_model, _RESMLP_HPARAMS,
        description="MNIST-1D, a deep residual MLP (norm placement and initial weight scale as "
                    "hyperparameters: the instability workload)"),
    "mnist1d_transformer": WorkloadSpec(
        _mnist1d_splits, _MNIST1D_DATA, _mnist1d_transformer_model, _TRANSFORMER_HPARAMS,
        description="MNIST-1D, a small Transformer on patches of the signal (norm placement "
                    "post/pre, depth, width, heads as hyperparameters)"),
    "spirals_mlp": WorkloadSpec(
        _spirals_splits, {"n": 1000, "noise": 0.05, "turns": 1.5, "dataset_seed": 0,
                          "dtype": "float32"},
        _spirals_model, {"width": 32, "depth": 2, "activation": "tanh", "dropout": 0.0},
        batch_size=50, description="two-class spirals in 2-D, an MLP (fast tests)"),
    "teacher_student": WorkloadSpec(
        _teacher_student_splits, {"n": 1000, "in_dim": 10, "hidden": 32, "noise": 0.0,
                                  "dataset_seed": 0, "dtype": "float32"},
        _teacher_student_model, {"width": 32, "depth": 1, "activation": "tanh"},
        task="regression", batch_size=50, model_data_settings=("in_dim",),
        description="regression onto a random tanh MLP (fast tests)"),
}


@functools.lru_cache(maxsize=16)
def _cached_splits(name: str, settings: tuple):
    # Every trial of a study shares the data; build it once per process.
    return WORKLOADS[name].splits(**dict(settings))


def get_workload(name: str, **kwargs) -> Workload:
    """Build the built-in workload ``name``.

    ``kwargs`` are data settings (e.g. ``shuffle_seq=True``, ``n_validation``,
    ``dtype="float64"``) or new defaults for model hyperparameters (e.g.
    ``width=256``); anything else is a ``ValueError`` naming it.
    """
    _validate.one_of("workload", name, WORKLOADS)
    spec = WORKLOADS[name]
    unknown = sorted(set(kwargs) - set(spec.data_settings) - set(spec.hparams))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for workload {name!r}; data settings "
                         f"{sorted(spec.data_settings)}, hyperparameters {sorted(spec.hparams)}")
    settings = {k: kwargs.get(k, v) for k, v in spec.data_settings.items()}
    if "dtype" in settings:
        settings["dtype"] = np.dtype(settings["dtype"]).name
    hparams = {k: kwargs.get(k, v) for k, v in spec.hparams.items()}
    model_settings = {k: v for k, v in kwargs.items() if k in spec.hparams}
    splits = _cached_splits(name, tuple(sorted(settings.items())))
    build_model = spec.model
    if spec.model_data_settings:
        build_model = functools.partial(spec.model,
                                        **{k: settings[k] for k in spec.model_data_settings})
    return Workload(name=name, train=splits.train, validation=splits.validation, test=splits.test,
                    build_model=build_model, hparams=hparams, task=spec.task,
                    batch_size=spec.batch_size, dtype=settings.get("dtype", "float32"),
                    settings={**settings, **model_settings}, description=spec.description)

