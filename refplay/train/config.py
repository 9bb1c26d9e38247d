"""Trial configs: plain dicts of hyperparameters, validated at the boundary.

A trial config names everything a study may vary, with the playbook's plain
names::

    {"optimizer": "nadam", "lr": 3e-3, "beta1": 0.95,
     "schedule": "cosine", "warmup_steps": 100,
     "batch_size": 100, "grad_clip": 1.0, "weight_decay": 1e-4,
     "dropout": 0.1}

Its keys fall into five groups; a key in none of them is an error naming the
key (a typo must never silently fall back to a default):

* **optimizer** — ``optimizer`` (required: sgd, momentum, nesterov, rmsprop,
  adam, nadam), ``lr`` (required; the base learning rate η), and the rule's
  hyperparameters ``gamma``, ``rho``, ``beta1``, ``beta2``, ``eps``,
  ``weight_decay``, ``weight_decay_mode`` (see :mod:`refplay.optim`; a
  hyperparameter of another rule, e.g. ``beta1`` with ``sgd``, is an error);
* **schedule** — ``schedule`` (default ``"constant"``), ``warmup_steps``
  (default 0), ``warmup_prepend`` (default ``False``) and the schedule's own
  hyperparameters (``decay_steps``, ``final_lr``, ...; see
  :mod:`refplay.schedules`). The ``piecewise`` schedule's ``values`` are
  multiples of ``lr``.

  **Where the warmup goes.** By default (``warmup_prepend=False``) the warmup
  is carved *out of* the budget: the trial runs ``max_train_steps`` updates
  and the decay spans the ``max_train_steps - warmup_steps`` steps after the
  ramp. With ``warmup_prepend=True`` the warmup is *prepended*, as the
  playbook prescribes ("How to apply learning rate warmup": "if we originally
  had 10,000 `max_train_steps` and did `warmup_steps` for 1000 steps, the new
  training procedure should run for 11,000 steps total"): the trial runs
  ``max_train_steps + warmup_steps`` updates and the decay spans
  ``max_train_steps``. Either way ``decay_steps`` may be set explicitly;
* **training** — ``batch_size`` (default: the workload's),
  ``eval_batch_size`` (default ``max(batch_size, 1024)``; the playbook: the
  evaluation batch size "should be *at least* as large as the batch size used
  for training"), ``grad_clip`` (``None`` or the max global norm),
  ``ema_decay`` (``None`` or the decay ``d`` of an exponential moving average
  of the parameters — Polyak averaging in its exponential form,
  ``ema_{t+1} = d·ema_t + (1 - d)·θ_{t+1}`` — evaluated alongside them);
* **seeds** — ``init_seed``, ``data_seed`` and ``dropout_seed`` (default
  ``None``: derived from the trial seed; see :mod:`refplay.train.seeds`);
* **model** — the workload's hyperparameters (width, depth, dropout, label
  smoothing, ...), listed in ``Workload.hparams`` with their defaults.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from refplay import _validate, optim, schedules

OPTIMIZER_KEYS = ("optimizer", "lr")
SCHEDULE_KEYS = ("schedule", "warmup_steps", "warmup_prepend")
TRAINING_KEYS = ("batch_size", "eval_batch_size", "grad_clip", "ema_decay")
SEED_KEYS = ("init_seed", "data_seed", "dropout_seed")
DEFAULT_SCHEDULE = "constant"
MIN_EVAL_BATCH_SIZE = 1024


def optimizer_hparam_names() -> list[str]:
    """Every hyperparameter name accepted by some update rule of :mod:`refplay.optim`."""
    names: list[str] = []
    for factory in optim.RULES.values():
        for p in inspect.signature(factory).parameters:
            if p not in names:
                names.append(p)
    return names


def _schedule_factories() -> Mapping[str, Callable[..., Callable]]:
    """The schedules by name (:data:`refplay.schedules.SCHEDULES`)."""
    return schedules.SCHEDULES


def schedule_hparam_names() -> list[str]:
    """Every hyperparameter name accepted by some schedule (``base_lr`` is ``lr``)."""
    names: list[str] = []
    for factory in _schedule_factories().values():
        for p in inspect.signature(factory).parameters:
            if p != "base_lr" and p not in names:
                names.append(p)
    return names


def reserved_keys() -> list[str]:
    """Every config key that is not a model hyperparameter."""
    return [*OPTIMIZER_KEYS, *optimizer_hparam_names(), *SCHEDULE_KEYS, *schedule_hparam_names(),
            *TRAINING_KEYS, *SEED_KEYS]


@dataclass(frozen=True)
class TrialConfig:
    """A validated trial config: built objects plus the resolved plain values.

    ``resolved`` is the config with every default filled in (JSON-ready); it
    goes into ``TrialResult.extras["resolved_config"]``.
    """

    optimizer: optim.Optimizer
    schedule: Callable[[int], float]
    batch_size: int
    eval_batch_size: int
    grad_clip: float | None
    ema_decay: float | None
    init_seed: int | None
    data_seed: int | None
    dropout_seed: int | None = None
    warmup_steps: int = 0
    warmup_prepend: bool = False
    model_hparams: dict = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)

    def total_steps(self, max_train_steps: int) -> int:
        """Updates the trial runs: ``max_train_steps`` (+ ``warmup_steps`` when prepended)."""
        return max_train_steps + (self.warmup_steps if self.warmup_prepend else 0)


def parse_config(config: Mapping[str, object], *, model_hparams: Mapping[str, object],
                 max_train_steps: int, default_batch_size: int) -> TrialConfig:
    """Validate ``config`` and build its optimizer and schedule.

    ``model_hparams`` are the workload's hyperparameter names with their
    defaults. Raises ``ValueError``/``TypeError`` naming the offending key.
    The key groups are read in the module doc's order: optimizer, schedule,
    training and seeds, model.
    """
    _check_keys(config, model_hparams)
    name, lr, optimizer = _parse_optimizer(config)
    sched = _parse_schedule(config, lr, max_train_steps)
    training = _parse_training(config, default_batch_size)
    hparams = {k: config.get(k, default) for k, default in model_hparams.items()}
    dropout_seed = training.pop("dropout_seed")
    resolved = plain({"optimizer": name, "lr": lr, **optimizer.hparams, **sched.resolved,
                      **training, **hparams})
    if dropout_seed is not None:
        # Only present when set, so configs without it resolve exactly as before.
        resolved["dropout_seed"] = dropout_seed
    return TrialConfig(optimizer=optimizer, schedule=sched.schedule, **training,
                       dropout_seed=dropout_seed, warmup_steps=sched.warmup_steps,
                       warmup_prepend=sched.warmup_prepend, model_hparams=hparams,
                       resolved=resolved)


def _check_keys(config, model_hparams: Mapping[str, object]) -> None:
    """A dict with string keys, each of one of the five groups (a typo is an error)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict of hyperparameters, got {type(config).__name__}")
    for key in config:
        if not isinstance(key, str):
            raise TypeError(f"config keys must be strings, got {key!r}")
    allowed = [*OPTIMIZER_KEYS, *optimizer_hparam_names(), *SCHEDULE_KEYS,
               *schedule_hparam_names(), *TRAINING_KEYS, *SEED_KEYS, *model_hparams]
    unknown = [k for k in config if k not in allowed]
    if unknown:
        raise ValueError(f"unknown trial config key {unknown[0]!r}"
                         f"{f' (and {unknown[1:]})' if len(unknown) > 1 else ''}; "
                         f"allowed keys: {allowed}")


def _parse_optimizer(config: Mapping[str, object]) -> tuple[str, float, optim.Optimizer]:
    """``(name, lr, optimizer)``: the required update rule and base learning rate."""
    required = {"optimizer": f"the update rule, one of {sorted(optim.RULES)}",
                "lr": "the base learning rate, a real number >= 0"}
    for key in OPTIMIZER_KEYS:
        if key not in config:
            raise ValueError(f"trial config is missing the required key {key!r} "
                             f"({required[key]})")
    name = config["optimizer"]
    if not isinstance(name, str):
        raise TypeError(f"optimizer must be a string, got {name!r}")
    _validate.one_of("optimizer", name, optim.RULES)
    lr = _validate.real("lr", config["lr"], low=0.0)
    opt_hparams = {k: config[k] for k in optimizer_hparam_names() if k in config}
    return name, lr, optim.get(name, **opt_hparams)


class _Schedule(NamedTuple):
    """The learning-rate schedule of a config, its resolved keys and its warmup."""

    schedule: Callable[[int], float]
    resolved: dict
    warmup_steps: int
    warmup_prepend: bool


def _parse_schedule(config: Mapping[str, object], lr: float, max_train_steps: int) -> _Schedule:
    """The schedule with its warmup carved out of the budget, or prepended to it."""
    warmup_steps = _validate.integer("warmup_steps", config.get("warmup_steps", 0), low=0)
    warmup_prepend = config.get("warmup_prepend", False)
    if not isinstance(warmup_prepend, bool):
        raise TypeError(f"warmup_prepend must be true or false, got {warmup_prepend!r}")
    schedule_name = config.get("schedule", DEFAULT_SCHEDULE)
    sched_hparams = {k: config[k] for k in schedule_hparam_names() if k in config}
    # The steps the decay spans by default: the whole run after the warmup.
    decay_span = max_train_steps if warmup_prepend else max_train_steps - warmup_steps
    schedule, resolved = _build_schedule(schedule_name, lr, warmup_steps, sched_hparams,
                                         decay_span)
    if warmup_prepend:
        # Only present when set, so configs without it resolve exactly as before.
        resolved["warmup_prepend"] = True
    return _Schedule(schedule=schedule, resolved=resolved, warmup_steps=warmup_steps,
                     warmup_prepend=warmup_prepend)


def _parse_training(config: Mapping[str, object], default_batch_size: int) -> dict:
    """The training and seed keys with their defaults, in the resolved config's order."""
    batch_size = _validate.integer("batch_size", config.get("batch_size", default_batch_size),
                                   low=1)
    eval_batch_size = _validate.integer(
        "eval_batch_size", config.get("eval_batch_size", max(batch_size, MIN_EVAL_BATCH_SIZE)),
        low=1)
    return {
        "batch_size": batch_size, "eval_batch_size": eval_batch_size,
        "grad_clip": _optional_real("grad_clip", config.get("grad_clip"), low=0.0,
                                    low_open=True),
        "ema_decay": _optional_real("ema_decay", config.get("ema_decay"), low=0.0, high=1.0,
                                    high_open=True),
        "init_seed": _optional_int("init_seed", config.get("init_seed")),
        "data_seed": _optional_int("data_seed", config.get("data_seed")),
        "dropout_seed": _optional_int("dropout_seed", config.get("dropout_seed")),
    }


def _build_schedule(name, lr: float, warmup_steps: int, hparams: dict,
                    decay_span: int) -> tuple[Callable[[int], float], dict]:
    """``schedules.get(name, base_lr=lr, warmup_steps=warmup_steps, **hparams)``.

    ``piecewise`` has no base rate: its ``values`` are multiples of ``lr``
    (``values=[1, 0.1, 0.01]`` is step decay from ``lr``), so ``lr`` stays the
    one base learning rate a study tunes, whatever the schedule.
    """
    factories = _schedule_factories()
    if not isinstance(name, str):
        raise TypeError(f"schedule must be a string, got {name!r}")
    _validate.one_of("schedule", name, factories)
    params = inspect.signature(factories[name]).parameters
    wrong = [k for k in hparams if k not in params]
    if wrong:
        allowed = [p for p in params if p != "base_lr"]
        raise ValueError(f"trial config key {wrong[0]!r} is not a hyperparameter of schedule "
                         f"{name!r}; its hyperparameters are {allowed} (and 'warmup_steps')")
    hparams = dict(hparams)
    if "decay_steps" in params and "decay_steps" not in hparams:
        # The playbook decays over the whole run: the steps after the warmup.
        hparams["decay_steps"] = max(decay_span, 1)
    missing = [p for p, spec in params.items()
               if p != "base_lr" and spec.default is inspect.Parameter.empty and p not in hparams]
    if missing:
        raise ValueError(f"trial config is missing the required key {missing[0]!r} "
                         f"of schedule {name!r}")
    resolved = {"schedule": name, "warmup_steps": warmup_steps,
                **hparams}
    if "base_lr" in params:
        hparams["base_lr"] = lr
    if name == "piecewise":
        factors = hparams["values"]
        if isinstance(factors, (str, bytes)) or not hasattr(factors, "__iter__"):
            raise TypeError(f"values must be a list of learning-rate multipliers, got {factors!r}")
        hparams["values"] = [lr * _validate.real("values[i]", v, low=0.0) for v in factors]
    return schedules.get(name, warmup_steps=warmup_steps, **hparams), resolved


def plain(value):
    """A JSON-ready copy of a config value: NumPy scalars become Python numbers,
    tuples and arrays become lists, dicts are copied key by key."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _optional_real(name: str, value, **bounds) -> float | None:
    return None if value is None else _validate.real(name, value, **bounds)


def _optional_int(name: str, value) -> int | None:
    if value is None:
        return None
    if not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer or None, got {value!r}")
    return _validate.integer(name, value, low=0)
