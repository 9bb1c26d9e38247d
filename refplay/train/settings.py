"""``TrialSettings``: how a trial runs, written once and shared by ``train`` and ``study``.

A trial config (:mod:`refplay.train.config`) says *what* is trained — the
hyperparameters a study varies. ``TrialSettings`` says *how* every trial of a
study runs — the playbook's fixed budget and its measurement protocol::

    settings = TrialSettings(max_train_steps=2_000, eval_every=100, eval_train="all")
    run_trial("mnist1d_mlp", {"optimizer": "adam", "lr": 1e-3}, seed=0, settings=settings)

The playbook fixes ``max_train_steps`` for every trial of a study ("we
should never tune `max_train_steps` inside a study"), evaluates at regular
step intervals ("Setting up periodic evaluations") and selects the best
checkpoint retrospectively. Everything else here decides what the trial
records, and :func:`curve_names` is the one place that says which curves a
trial with these settings and this config reports; the study spec uses it to
refuse a selection metric no trial would report before the first trial runs.

**Divergence.** The playbook calls a trial infeasible when it "produces NaNs
or uncharacteristically high values of the loss" (Figure 7a), and it asks us
to *see* early spikes that recover (Figures 4 and 5: a loss that shoots up to
~70–100 within ten steps, then comes back). So refplay calls a step *blown
up* when its training loss exceeds ``divergence_factor`` × the step-0 loss,
and ends a trial as infeasible when

* the training loss or gradient norm is NaN/Inf (at once), or
* ``divergence_steps`` of the last ``divergence_window`` steps are blown up, or
* the run ends blown up (it never recovered).

Anything less is a *loss spike*: each run of consecutive blown-up steps is
recorded on the result (``extras["loss_spikes"]``) and training goes on. The
defaults, 10 of the last 50 steps, let through the playbook's spikes (fewer
than ten steps above, then recovery) and stop a run whose loss keeps
returning to huge values (an oscillating, too-high learning rate), at a cost
of a few dozen steps for a truly diverged trial, most of which reach NaN
sooner. ``divergence_steps=1`` is the strict "one bad batch" rule;
``divergence_factor=None`` leaves only NaN/Inf.

**Uncharacteristically high loss.** Some runs fail without blowing up: a
Post-LN Transformer at too high a learning rate *collapses* -- its loss falls
back to that of predicting chance (ln K for K classes), below the step-0
loss, and stays there. With ``max_final_loss`` set, a run whose mean training
loss over its last ``divergence_window`` steps is above it is infeasible too
(checked once, at the end of the run). ``0.9 * math.log(K)`` calls a
classifier that ends near chance infeasible; ``None`` (the default) never.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from refplay import _validate

__all__ = ["TrialSettings", "curve_names", "selectable_metrics", "DEFAULT_DIVERGENCE_FACTOR",
           "DEFAULT_DIVERGENCE_WINDOW", "DEFAULT_DIVERGENCE_STEPS", "EVAL_TRAIN_ALL"]

DEFAULT_DIVERGENCE_FACTOR = 10.0
DEFAULT_DIVERGENCE_WINDOW = 50
DEFAULT_DIVERGENCE_STEPS = 10
EVAL_TRAIN_ALL = "all"

# Curves that are not measurements of the model and can never rank checkpoints.
_NOT_SELECTABLE = ("lr", "train/clipped_fraction", "train/loss")


@dataclass(frozen=True, kw_only=True)
class TrialSettings:
    """How a trial runs: budget, evaluation protocol, checkpoints, divergence rule.

    Attributes:
        max_train_steps: number of optimizer updates (the playbook's fixed budget;
            with ``warmup_prepend`` in the config the trial runs
            ``max_train_steps + warmup_steps``).
        eval_every: evaluate every this many steps, plus step 0 and the last step.
        keep_best: N, the number of best checkpoints kept (plus the latest).
        dense_eval_steps: also evaluate every step for steps ``0 ... dense_eval_steps``
            (the playbook's check for early instability).
        eval_test: also evaluate the test split. Never a selection metric: the
            playbook touches the test set only "after exploration concludes".
        eval_train: ``None``; ``"all"`` to evaluate the whole training split at
            every evaluation; or ``k`` for a fixed class-stratified sample of
            ``k`` training examples. Gives ``train_eval/loss`` and
            ``train_eval/error_rate``: the playbook's *training error*, in eval
            mode (no dropout, plain cross-entropy).
        periodic_eval_size: evaluate on a fixed, class-stratified sample of this
            many validation examples instead of the whole validation split.
        selection_metric: the curve that ranks checkpoints (lower is better);
            ``None`` means the workload's default (``validation/error_rate`` for
            classification, ``validation/loss`` for regression).
        divergence_factor: a training loss above this multiple of the step-0
            loss counts as blown up (``None``: only NaN/Inf end a trial).
        divergence_window, divergence_steps: ``divergence_steps`` blown-up
            steps among the last ``divergence_window`` make a trial infeasible;
            fewer are recorded as loss spikes.
        max_final_loss: a run whose mean training loss over its last
            ``divergence_window`` steps ends above this is infeasible (the
            playbook's "uncharacteristically high values of the loss"; ``None``:
            never).
        keep_predictions: record the predicted class of every validation
            example at the best checkpoint (``TrialResult.predictions``), so two
            trials can be compared with a paired test (classification only).
    """

    max_train_steps: int
    eval_every: int
    keep_best: int = 1
    dense_eval_steps: int = 0
    eval_test: bool = False
    eval_train: str | int | None = None
    periodic_eval_size: int | None = None
    selection_metric: str | None = None
    divergence_factor: float | None = DEFAULT_DIVERGENCE_FACTOR
    divergence_window: int = DEFAULT_DIVERGENCE_WINDOW
    divergence_steps: int = DEFAULT_DIVERGENCE_STEPS
    max_final_loss: float | None = None
    keep_predictions: bool = False

    def __post_init__(self) -> None:
        _validate.integer("max_train_steps", self.max_train_steps, low=1)
        _validate.integer("eval_every", self.eval_every, low=1)
        _validate.integer("keep_best", self.keep_best, low=0)
        _validate.integer("dense_eval_steps", self.dense_eval_steps, low=0)
        if not isinstance(self.eval_test, bool):
            raise TypeError(f"eval_test must be True or False, got {self.eval_test!r}")
        if self.eval_train is not None and self.eval_train != EVAL_TRAIN_ALL:
            if isinstance(self.eval_train, str):
                raise ValueError(f"eval_train={self.eval_train!r} is not allowed; use None, "
                                 f"{EVAL_TRAIN_ALL!r} or a number of training examples")
            _validate.integer("eval_train", self.eval_train, low=1)
        if self.periodic_eval_size is not None:
            _validate.integer("periodic_eval_size", self.periodic_eval_size, low=1)
        if self.selection_metric is not None:
            if not isinstance(self.selection_metric, str):
                raise TypeError(f"selection_metric must be a string such as "
                                f"'validation/error_rate', got {self.selection_metric!r}")
            if _is_test_metric(self.selection_metric):
                raise ValueError(
                    f"selection_metric={self.selection_metric!r} selects on the test split; "
                    f"the playbook touches the test set only after exploration concludes. "
                    f"Select on 'validation/...' (or 'ema/validation/...') and set "
                    f"eval_test=True to report test metrics alongside")
        if self.divergence_factor is not None:
            object.__setattr__(self, "divergence_factor", _validate.real(
                "divergence_factor", self.divergence_factor, low=1.0, low_open=True))
        _validate.integer("divergence_window", self.divergence_window, low=1)
        _validate.integer("divergence_steps", self.divergence_steps, low=1,
                          high=self.divergence_window)
        if self.max_final_loss is not None:
            object.__setattr__(self, "max_final_loss", _validate.real(
                "max_final_loss", self.max_final_loss, low=0.0, low_open=True))
        if not isinstance(self.keep_predictions, bool):
            raise TypeError(f"keep_predictions must be True or False, "
                            f"got {self.keep_predictions!r}")

    def to_dict(self) -> dict:
        """The settings as a plain dict (a checkpoint's fingerprint, a result's extras)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrialSettings":
        """Build settings from a plain dict (a study spec's ``[trial]`` table); unknown keys
        are errors naming the key."""
        if not isinstance(d, dict):
            raise TypeError(f"trial settings must be a table/dict, got {type(d).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(f"unknown trial setting(s) {unknown}; allowed {allowed}")
        return cls(**d)

    def replace(self, **changes) -> "TrialSettings":
        """A copy with ``changes`` (validated like any new settings)."""
        return dataclasses.replace(self, **changes)


def _is_test_metric(name: str) -> bool:
    return name.startswith("test/") or name.startswith("ema/test/")


def curve_names(task: str, settings: TrialSettings, *, grad_clip: bool = False,
                ema: bool = False) -> list[str]:
    """The curves a trial reports, in order, given its task, settings and config.

    ``grad_clip`` and ``ema`` say whether the trial config sets ``grad_clip``
    and ``ema_decay``. Always: ``train/loss`` (the running mean of the
    training-mode minibatch losses since the previous evaluation, regularizers
    included) and ``lr``; then ``train/clipped_fraction`` with clipping;
    ``train_eval/...`` with ``eval_train``; ``validation/...``; ``test/...``
    with ``eval_test``; and ``ema/validation/...`` (``ema/test/...``) with
    ``ema_decay``.
    """
    _validate.one_of("task", task, ("classification", "regression"))
    metrics = ["loss", "error_rate"] if task == "classification" else ["loss"]
    names = ["train/loss", "lr"]
    if grad_clip:
        names.append("train/clipped_fraction")
    if settings.eval_train is not None:
        names += [f"train_eval/{m}" for m in metrics]
    splits = ["validation", "test"] if settings.eval_test else ["validation"]
    names += [f"{s}/{m}" for s in splits for m in metrics]
    if ema:
        names += [f"ema/{s}/{m}" for s in splits for m in metrics]
    return names


def selectable_metrics(names: list[str]) -> list[str]:
    """The curves among ``names`` that may rank checkpoints and trials.

    Not the learning rate or the clip fraction (they describe the run, not the
    model), not the training-mode running loss (an average over changing
    parameters, with regularizers; ``train_eval/loss`` measures a checkpoint),
    and never the test split.
    """
    return [n for n in names if n not in _NOT_SELECTABLE and not _is_test_metric(n)]
