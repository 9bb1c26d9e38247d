"""``TrialResult``: everything a trial reports, serializable to JSON + ``.npz``.

Statuses follow the playbook and Optuna: ``complete``; ``infeasible`` (the
trial diverged: NaN/Inf loss or gradient norm, or a loss blow-up — kept in the
study as a data point, never a crash); ``failed`` (it crashed: any other
exception, with its traceback text); ``pruned`` (stopped early on purpose, by
a pruner such as Optuna's or by the user: neither a result nor a divergence).
"""

from __future__ import annotations

import enum
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refplay import io



class TrialStatus(enum.StrEnum):
    """How a trial ended; stored as its string (``"complete"``, ...) everywhere."""

    COMPLETE = "complete"      # trained for its whole budget
    INFEASIBLE = "infeasible"  # diverged: a data point of the study, drawn as a red x
    FAILED = "failed"          # it crashed (a bug, a time limit); the reason holds the traceback
    PRUNED = "pruned"          # stopped early on purpose (a pruner, the user): never infeasible


STATUSES = tuple(s.value for s in TrialStatus)

# Fields that measure the machine rather than the computation; excluded when
# two results are compared for bitwise equality.
TIMING_FIELDS = ("examples_per_second", "seconds_per_step", "wall_seconds")


@dataclass
class TrialResult:
    """The outcome of ``train.run_trial`` (or any ``(config, seed) -> TrialResult``).

    ``curves`` maps a metric name such as ``"validation/error_rate"`` or
    ``"train/loss"`` to its values at ``eval_steps``. ``grad_norms[i]`` is the
    unclipped global gradient norm at step ``i`` and ``train_losses[i]`` the
    training-mode loss of step ``i``'s minibatch (both float64, one per
    update). ``predictions`` holds the predicted class of each validation
    example at the best checkpoint when the trial was run with
    ``keep_predictions`` (empty otherwise). ``best_step`` and
    ``best_metrics`` come from retrospective selection over the whole
    evaluation history.
    """

    config: dict
    seed: int
    status: str = TrialStatus.COMPLETE
    reason: str = ""
    steps_done: int = 0
    eval_steps: list[int] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)
    grad_norms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_paths: list[str] = field(default_factory=list)
    examples_per_second: float = float("nan")
    seconds_per_step: float = float("nan")
    wall_seconds: float = float("nan")
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not allowed; choose one of {list(STATUSES)}")
        self.status = TrialStatus(self.status)
        self.grad_norms = np.asarray(self.grad_norms, dtype=np.float64)
        self.train_losses = np.asarray(self.train_losses, dtype=np.float64)
        self.predictions = np.asarray(self.predictions, dtype=np.int64)

    @property
    def feasible(self) -> bool:
        """True for a complete trial: the only kind with an objective."""
        return self.status == TrialStatus.COMPLETE

    @classmethod
    def from_value(cls, config: dict, seed: int, value: float, metric: str,
                   step: int = 1) -> "TrialResult":
        """The result of a trial that reports one number: ``metric`` = ``value`` at ``step``.

        What a plain objective function returns (``refplay.tuning.optimize``); a NaN or
        infinite value is a divergence, so the trial is infeasible.
        """
        value = float(value)
        curves = {metric: [value]}
        if not math.isfinite(value):
            return cls(config=dict(config), seed=seed, status=TrialStatus.INFEASIBLE,
                       reason=f"the objective returned {value}", steps_done=step,
                       eval_steps=[step], curves=curves)
        return cls(config=dict(config), seed=seed, steps_done=step, eval_steps=[step],
                   curves=curves, best_step=step, best_metrics={metric: value})

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """A JSON-ready dict (arrays as lists; NaN kept as JSON ``NaN``)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["status"] = str(self.status)
        d["grad_norms"] = [float(x) for x in self.grad_norms]
        d["train_losses"] = [float(x) for x in self.train_losses]
        d["predictions"] = [int(x) for x in self.predictions]
        d["curves"] = {k: [float(x) for x in v] for k, v in self.curves.items()}
        d["eval_steps"] = [int(s) for s in self.eval_steps]
        d["best_metrics"] = {k: float(v) for k, v in self.best_metrics.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrialResult":
        """The inverse of :meth:`to_dict`; unknown fields are an error naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrialResult field(s) {unknown}")
        return cls(**d)

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> "TrialResult":
        """The inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def deterministic_dict(self) -> dict:
        """``to_dict`` without timings and file paths: equal for equal computations."""
        d = self.to_dict()
        for k in (*TIMING_FIELDS, "checkpoint_paths"):
            d.pop(k, None)
        return d

    def same_computation(self, other: "TrialResult") -> bool:
        """Bitwise equality of everything computed (NaN equals NaN)."""
        return _nan_equal(self.deterministic_dict(), other.deterministic_dict())

    # ------------------------------------------------------------------ files
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``result.json`` and ``arrays.npz`` (per-step arrays, curves) atomically."""
        directory = Path(directory)
        d = self.to_dict()
        arrays = {"grad_norms": self.grad_norms, "train_losses": self.train_losses,
                  "predictions": self.predictions,
                  "eval_steps": np.asarray(self.eval_steps, dtype=np.int64)}
        arrays.update({f"curve:{k}": np.asarray(v, dtype=np.float64) for k, v in self.curves.items()})
        io.save_npz(directory / "arrays.npz", arrays)
        d["grad_norms"] = "arrays.npz:grad_norms"
        d["train_losses"] = "arrays.npz:train_losses"
        d["predictions"] = "arrays.npz:predictions"
        io.save_json(directory / "result.json", d)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TrialResult":
        """Read a result written by :meth:`save`."""
        directory = Path(directory)
        d = json.loads((directory / "result.json").read_text())
        arrays = io.load_npz(directory / "arrays.npz")
        d["grad_norms"] = arrays["grad_norms"]
        # Results saved before per-step losses were recorded have none.
        d["train_losses"] = arrays.get("train_losses", np.zeros(0))
        d["predictions"] = arrays.get("predictions", np.zeros(0, np.int64))
        return cls.from_dict(d)


def _nan_equal(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_nan_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
