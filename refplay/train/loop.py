"""``run_trial``: one configuration trained for ``max_train_steps``, the playbook's trial.

Each step ``t = 0, 1, ..., max_train_steps - 1``::

    batch_t                  = next training batch                    (data order stream)
    loss_t, g_t              = model.loss_and_grads(θ_t, batch_t)      (dropout stream, child t)
    grad_norms[t]            = ||g_t||  (unclipped global norm, logged every step)
    g_t                      = clip_by_global_norm(g_t, grad_clip)     (when grad_clip is set)
    θ_{t+1}, opt_state       = optimizer.update(θ_t, g_t, opt_state, lr=schedule(t))
    ema_{t+1}                = d · ema_t + (1 - d) · θ_{t+1}           (when ema_decay is set)

and at every evaluation step ``s`` (see :func:`~refplay.train.evaluation.eval_steps`;
step ``s`` means "after ``s`` updates", so step 0 evaluates the
initialization and the last step is always evaluated) the trial records

* ``train/loss`` — the mean training-batch loss over the steps since the
  previous evaluation (NaN at step 0, before any training step),
* ``lr`` — ``schedule(s)``, the learning rate of the next update,
* ``train_eval/loss`` and ``train_eval/error_rate`` with ``eval_train``: the
  training split (or a fixed stratified sample of it) in eval mode — the
  playbook's *training error*, free of dropout and label smoothing,
* ``validation/loss`` and ``validation/error_rate`` (classification) on the
  validation split or its fixed periodic-evaluation sample,
* ``test/...`` when ``eval_test=True``, ``ema/validation/...`` (and
  ``ema/test/...``) for the averaged parameters when ``ema_decay`` is set,
* ``train/clipped_fraction`` when ``grad_clip`` is set,

then writes a checkpoint (when ``checkpoint_dir`` is given; see
:mod:`refplay.train.checkpoints`).

Every step also records the minibatch loss (``TrialResult.train_losses``)
and the unclipped gradient norm (``TrialResult.grad_norms``), so an
instability between two evaluations is never lost.

**Packed parameters.** From the second step of a session on, the parameters,
the optimizer's slots and the gradient live in one buffer per dtype, and the
optimizer's rule runs once per step instead of once per parameter array: the
same numbers, bitwise, because every rule is elementwise (see ``_Packed``).
The parameter tree a model receives is then a set of views that the next
update overwrites: a model that keeps it must copy it.

**Divergence.** A NaN or Inf training loss or gradient norm, a training loss
above ``divergence_factor`` × the loss of step 0 on ``divergence_steps`` of
the last ``divergence_window`` steps (or at the end of the run), or a
non-finite validation loss ends the trial as ``infeasible`` with the reason
and step (the playbook, Figure 7a: "An 'infeasible' trial is defined as one
that either produces NaNs or uncharacteristically high values of the loss").
Fewer blown-up steps are *loss spikes*: recorded in ``extras["loss_spikes"]``
while training goes on, so the spike-and-recover runs of the playbook's
Figures 4 and 5 can be seen (see :mod:`refplay.train.settings`). Any other
exception ends the trial as ``failed`` with the traceback text.
``run_trial`` raises only for invalid arguments, before training starts.

**Resume.** Re-running ``run_trial`` with the same arguments and the same
``checkpoint_dir`` continues from ``latest.npz``; the result is bitwise
identical (``TrialResult.same_computation``) to that of an uninterrupted
run, because every piece of state is in the checkpoint and every random
draw is a pure function of (seed, step).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refplay import _validate, clipping, optim, schedules, threads
from refplay.tree import Tree
from refplay import tree as tree_lib
from refplay.data.batching import TrainBatches
from refplay.data.metrics import subset_agreement
from refplay.data.splits import stratified_subset
from refplay.train import checkpoints as ckpt
from refplay.train import seeds
from refplay.train.config import TrialConfig, parse_config, plain
from refplay.train.evaluation import eval_steps, evaluate
from refplay.train.result import TrialResult, TrialStatus
from refplay.train.settings import EVAL_TRAIN_ALL, TrialSettings, curve_names, selectable_metrics
from refplay.train.workloads import Workload, get_workload


# The keyword form of run_trial: every TrialSettings field may be passed directly.
_SETTINGS_KEYWORDS = tuple(TrialSettings.__dataclass_fields__)


def divergence_reason(step: int, loss: float, grad_norm: float, initial_loss: float,
                      divergence_factor: float | None) -> str | None:
    """Why training step ``step`` counts as blown up, or ``None`` when it does not.

    Blown up: a non-finite loss or gradient norm, or (when
    ``divergence_factor`` is set and the initial loss is positive)
    ``loss > divergence_factor * initial_loss``. A non-finite value ends the
    trial at once; finite blow-ups end it when ``divergence_steps`` of the last
    ``divergence_window`` steps are blown up (see :mod:`refplay.train.settings`).
    """
    if not math.isfinite(loss):
        return f"training loss is {loss} at step {step}"
    if not math.isfinite(grad_norm):
        return f"gradient norm is {grad_norm} at step {step}"
    if _above_factor(loss, initial_loss, divergence_factor):
        return (f"training loss {loss:.6g} exceeds {divergence_factor:g} x the initial loss "
                f"{initial_loss:.6g} at step {step}")
    return None


def _above_factor(loss: float, initial_loss: float, factor: float | None) -> bool:
    return factor is not None and initial_loss > 0 and loss > factor * initial_loss


def run_trial(workload: Workload | str, config: Mapping[str, object], *, seed: int,
              settings: TrialSettings | None = None,
              checkpoint_dir: str | os.PathLike | None = None, **settings_keywords) -> TrialResult:
    """Train ``config`` on ``workload`` as ``settings`` say; never raises once started.

    Args:
        workload: a :class:`Workload` or the name of a built-in one.
        config: the trial config (see :mod:`refplay.train.config`).
        seed: the trial seed; derives the init, data-order and dropout streams.
        settings: how the trial runs (:class:`~refplay.train.settings.TrialSettings`:
            ``max_train_steps``, ``eval_every``, ``keep_best``, evaluation and
            divergence options).
        checkpoint_dir: where to keep ``latest.npz`` and the ``keep_best`` best
            checkpoints; an existing ``latest.npz`` there is resumed from.
        **settings_keywords: instead of ``settings``, its fields as keywords:
            ``run_trial(wl, config, seed=0, max_train_steps=1000, eval_every=100)``.

    While the trial runs, BLAS and Numba are pinned to one thread (the
    caller's thread counts are restored when it returns).

    Raises:
        ValueError, TypeError: for an invalid argument or config key (named).
    """
    settings = _settings_from(settings, settings_keywords)
    if isinstance(workload, str):
        workload = get_workload(workload)
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload or a workload name, "
                        f"got {type(workload).__name__}")
    seed = _validate.integer("seed", seed, low=0)
    trial_config = check_trial(workload, config, settings)
    model = workload.model(**trial_config.model_hparams)   # bad model hyperparameters raise here
    metric_names = curve_names(workload.task, settings, grad_clip=trial_config.grad_clip is not None,
                               ema=trial_config.ema_decay is not None)
    if settings.selection_metric is None:
        settings = settings.replace(selection_metric=workload.selection_metric)
    trial = _Trial(workload=workload, model=model, config=plain(config), trial_config=trial_config,
                   seed=seed, settings=settings,
                   checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
                   metric_names=metric_names)
    trial.check_checkpoint_matches()
    return trial.run()


def _settings_from(settings: TrialSettings | None, keywords: dict) -> TrialSettings:
    unknown = sorted(set(keywords) - set(_SETTINGS_KEYWORDS))
    if unknown:
        raise TypeError(f"run_trial() got unexpected keyword argument(s) {unknown}; "
                        f"trial settings are {list(_SETTINGS_KEYWORDS)}")
    if settings is None:
        return TrialSettings(**keywords)
    if keywords:
        raise TypeError(f"pass either settings=TrialSettings(...) or its fields as keywords, "
                        f"not both (got settings and {sorted(keywords)})")
    if not isinstance(settings, TrialSettings):
        raise TypeError(f"settings must be a TrialSettings, got {type(settings).__name__}")
    return settings


def check_trial(workload: Workload, config: Mapping[str, object],
                settings: TrialSettings) -> TrialConfig:
    """Validate ``config`` against ``workload`` and ``settings`` without training.

    Refuses what no trial could run: invalid config keys, a batch larger than
    the training set, an ``eval_train`` sample larger than it, a selection
    metric this trial would not report. Returns the parsed config. Studies call
    it for every configuration before the first trial runs.
    """
    trial_config = parse_config(config, model_hparams=workload.hparams,
                                max_train_steps=settings.max_train_steps,
                                default_batch_size=workload.batch_size)
    n_train = len(workload.train)
    if trial_config.batch_size > n_train:
        raise ValueError(f"batch_size={trial_config.batch_size} is larger than the "
                         f"{n_train} training examples of workload {workload.name!r}")
    if settings.keep_predictions and workload.task != "classification":
        raise ValueError(f"keep_predictions=True needs a classification workload; "
                         f"{workload.name!r} is {workload.task}")
    if isinstance(settings.eval_train, int) and settings.eval_train > n_train:
        raise ValueError(f"eval_train={settings.eval_train} is larger than the {n_train} "
                         f"training examples of workload {workload.name!r}; use 'all'")
    names = curve_names(workload.task, settings, grad_clip=trial_config.grad_clip is not None,
                        ema=trial_config.ema_decay is not None)
    selection = settings.selection_metric or workload.selection_metric
    allowed = selectable_metrics(names)
    if selection not in allowed:
        hint = ""
        if selection.startswith("ema/"):
            hint = " (ema/... curves need ema_decay in the trial config)"
        elif selection.startswith("train_eval/"):
            hint = " (train_eval/... curves need the eval_train setting)"
        raise ValueError(f"selection_metric={selection!r} is not reported by this trial{hint}; "
                         f"choose one of {allowed}")
    return trial_config


@dataclass
class _Progress:
    """Everything that changes while training; exactly what a checkpoint holds."""

    step: int
    params: Tree
    model_state: Tree
    opt_state: optim.OptState
    ema_params: Tree | None
    data_state: dict[str, np.ndarray]
    eval_steps: list[int] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)
    grad_norms: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    interval_losses: list[float] = field(default_factory=list)
    interval_clipped: list[bool] = field(default_factory=list)
    initial_loss: float = float("nan")
    # The loss excursion above divergence_factor x initial_loss in progress
    # (first step, or -1 when the loss is below), and the finished ones.
    spike_start: int = -1
    loss_spikes: list[dict] = field(default_factory=list)
    # Predicted validation classes at the best evaluation so far (keep_predictions).
    best_predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    train_seconds: float = 0.0
    wall_seconds: float = 0.0

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"step": np.asarray(self.step, dtype=np.int64)}
        arrays.update(ckpt.pack("params", self.params))
        arrays.update(ckpt.pack("model_state", self.model_state))
        arrays.update(ckpt.pack("opt", self.opt_state.to_arrays()))
        if self.ema_params is not None:
            arrays.update(ckpt.pack("ema", self.ema_params))
        arrays.update(ckpt.pack("data", self.data_state))
        arrays["eval_steps"] = np.asarray(self.eval_steps, dtype=np.int64)
        arrays.update(ckpt.pack("curve", {k: np.asarray(v, dtype=np.float64)
                                          for k, v in self.curves.items()}))
        arrays["grad_norms"] = np.asarray(self.grad_norms, dtype=np.float64)
        arrays["train_losses"] = np.asarray(self.train_losses, dtype=np.float64)
        arrays["spike_start"] = np.asarray(self.spike_start, dtype=np.int64)
        arrays["loss_spikes"] = np.asarray(json.dumps(self.loss_spikes))
        arrays["best_predictions"] = np.asarray(self.best_predictions, dtype=np.int64)
        arrays["interval_losses"] = np.asarray(self.interval_losses, dtype=np.float64)
        arrays["interval_clipped"] = np.asarray(self.interval_clipped, dtype=bool)
        arrays["initial_loss"] = np.asarray(self.initial_loss, dtype=np.float64)
        arrays["train_seconds"] = np.asarray(self.train_seconds, dtype=np.float64)
        arrays["wall_seconds"] = np.asarray(self.wall_seconds, dtype=np.float64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], has_ema: bool) -> "_Progress":
        return cls(
            step=int(arrays["step"]),
            params=ckpt.unpack("params", arrays),
            model_state=ckpt.unpack("model_state", arrays),
            opt_state=optim.OptState.from_arrays(ckpt.unpack("opt", arrays)),
            ema_params=ckpt.unpack("ema", arrays) if has_ema else None,
            data_state=ckpt.unpack("data", arrays),
            eval_steps=[int(s) for s in arrays["eval_steps"]],
            curves={k: [float(x) for x in v] for k, v in ckpt.unpack("curve", arrays).items()},
            grad_norms=[float(x) for x in arrays["grad_norms"]],
            train_losses=[float(x) for x in arrays["train_losses"]],
            spike_start=int(arrays["spike_start"]),
            loss_spikes=json.loads(str(arrays["loss_spikes"])),
            best_predictions=np.array(arrays["best_predictions"], dtype=np.int64),
            interval_losses=[float(x) for x in arrays["interval_losses"]],
            interval_clipped=[bool(x) for x in arrays["interval_clipped"]],
            initial_loss=float(arrays["initial_loss"]),
            train_seconds=float(arrays["train_seconds"]),
            wall_seconds=float(arrays["wall_seconds"]),
        )


class _Diverged(Exception):
    """Raised inside the loop to end a trial as infeasible (never escapes run_trial)."""

    def __init__(self, reason: str, step: int) -> None:
        super().__init__(reason)
        self.reason, self.step = reason, step


class _Packed:
    """A session's parameters and optimizer slots, each kept in one buffer per dtype.

    The playbook's rules are elementwise and + − × ÷ √ are correctly rounded,
    so :meth:`Optimizer.update <refplay.optim.Optimizer.update>` called once on
    the buffers computes, bitwise, what it computes leaf by leaf, with one
    Python call of the rule per dtype instead of one per leaf (78 leaves of a
    Transformer: about 1 ms less per step). ``params`` and ``slots`` are the
    per-leaf trees the model, the EMA and the checkpoints see: views of the
    buffers (:class:`~refplay.tree.FlatLayout`), made once per session; each
    update copies its new buffers into them, so a model that keeps the
    ``params`` it is given must copy them.
    """

    def __init__(self, params: Tree, opt_state: optim.OptState) -> None:
        self.layout = tree_lib.FlatLayout(params)
        self.flat_params = self.layout.pack(params)
        self.flat_slots = {s: self.layout.pack(t) for s, t in opt_state.slots.items()}
        self.flat_grads = self.layout.zeros()          # refilled every step
        self.grad_views = self.layout.views(self.flat_grads)
        self.params = self.layout.views(self.flat_params)
        self.slots = {s: self.layout.views(b) for s, b in self.flat_slots.items()}

    @classmethod
    def fits(cls, params: Tree, grads: Mapping[str, np.ndarray]) -> bool:
        """Whether every gradient has its parameter's dtype, as packing needs (a gradient
        of another dtype is cast leaf by leaf, by the per-leaf update)."""
        return all(np.asarray(grads[k]).dtype == v.dtype for k, v in params.items())

    def pack_grads(self, grads: Mapping[str, np.ndarray]) -> Tree:
        """The gradient in the layout's buffers (overwritten at the next call)."""
        tree_lib.copy_leaves(self.grad_views, grads)
        return self.flat_grads

    def update(self, optimizer: optim.Optimizer, flat_grads: Tree, state: optim.OptState,
               lr: float) -> optim.OptState:
        """One update of the buffers in place; the new state (its slots: ``self.slots``)."""
        params, new = optimizer.update(self.flat_params, flat_grads,
                                       optim.OptState(state.step, self.flat_slots), lr, check=False)
        for name, buffer in params.items():
            self.flat_params[name][...] = buffer
        for s, flat in new.slots.items():
            for name, buffer in flat.items():
                self.flat_slots[s][name][...] = buffer
        return optim.OptState(new.step, self.slots)


@dataclass
class _Trial:
    """One call of ``run_trial``: validated arguments plus the running state."""

    workload: Workload
    model: object
    config: dict
    trial_config: TrialConfig
    seed: int
    settings: TrialSettings           # selection_metric resolved
    checkpoint_dir: Path | None
    metric_names: list[str]
    # Set up by ``_setup`` (inside the try: any failure there is a failed trial).
    streams: seeds.TrialStreams | None = None
    batches: TrainBatches | None = None
    validation: object = None
    train_eval: object = None
    eval_at: list[int] = field(default_factory=list)
    progress: _Progress | None = None
    learning_rates: np.ndarray | None = None     # schedule(s) for s = 0 ... total_steps
    ema_factors: list = field(default_factory=list)   # per EMA leaf: (d, 1 - d) in its dtype
    packed: _Packed | None = None     # from the session's second step on (see _train_step)
    periodic_eval_check: dict | None = None
    checkpoint_skipped: list = field(default_factory=list)   # damaged files set aside

    # ------------------------------------------------------------ identity
    @property
    def total_steps(self) -> int:
        """Updates this trial runs (``max_train_steps``, plus a prepended warmup)."""
        return self.trial_config.total_steps(self.settings.max_train_steps)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Everything that determines the computation, as canonical JSON.

        ``keep_best`` is left out: it decides which checkpoint files are kept,
        not what the trial computes.
        """
        settings = self.settings.to_dict()
        settings.pop("keep_best")
        if settings["max_final_loss"] is None:
            del settings["max_final_loss"]      # checkpoints written before it existed resume
        return json.dumps(plain({
            "workload": self.workload.name, "workload_settings": self.workload.settings,
            "config": self.trial_config.resolved, "seed": self.seed, "settings": settings,
        }), sort_keys=True, allow_nan=True)

    @functools.cached_property
    def store(self) -> ckpt.CheckpointStore | None:
        """The trial's checkpoint files (one store per trial: it knows what it wrote last)."""
        if self.checkpoint_dir is None:
            return None
        return ckpt.CheckpointStore(self.checkpoint_dir, self.settings.keep_best)

    def check_checkpoint_matches(self) -> None:
        """Refuse (ValueError) to resume a checkpoint written by a different trial."""
        path, arrays, _ = (None, None, None) if self.store is None else self.store.newest_readable()
        if arrays is None:
            return
        stored = str(arrays["meta/fingerprint"]) if "meta/fingerprint" in arrays else ""
        if stored != self.fingerprint:
            raise ValueError(f"checkpoint_dir={str(self.checkpoint_dir)!r} holds a checkpoint of a "
                             f"different trial ({path.name}); use a new directory per trial.\n"
                             f"stored:    {stored}\nrequested: {self.fingerprint}")

    # ----------------------------------------------------------------- run
    def run(self) -> TrialResult:
        with threads.single_threaded():
            return self._run()

    def _run(self) -> TrialResult:
        wall_start = time.perf_counter()
        try:
            self._setup()
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._train(wall_start)
                self.periodic_eval_check = self._check_periodic_sample()
            self._finish_checkpoints()
        except _Diverged as d:
            return self._ended(TrialStatus.INFEASIBLE, d.reason, wall_start,
                               divergence_step=d.step)
        except Exception:  # noqa: BLE001 - a trial records its failure, it never raises
            return self._ended(TrialStatus.FAILED, traceback.format_exc(), wall_start)
        return self._result(TrialStatus.COMPLETE, "", wall_start)

    def _ended(self, status: TrialStatus, reason: str, wall_start: float, *,
               divergence_step: int | None = None) -> TrialResult:
        """An infeasible or failed trial: its checkpoint folder completed, then its result."""
        try:
            self._finish_checkpoints()
        except Exception:  # noqa: BLE001 - the trial has ended; say so, never raise
            reason += "\n(its best checkpoint could not be copied: " + \
                traceback.format_exc().strip().splitlines()[-1] + ")"
        return self._result(status, reason, wall_start, divergence_step=divergence_step)

    def _finish_checkpoints(self) -> None:
        if self.store is not None and self.progress is not None:
            self.store.finish()

    def _setup(self) -> None:
        tc, wl = self.trial_config, self.workload
        self.streams = seeds.trial_streams(self.seed, init_seed=tc.init_seed,
                                           data_seed=tc.data_seed, dropout_seed=tc.dropout_seed)
        self.batches = TrainBatches(wl.train, tc.batch_size, seed=self.streams.data)
        st = self.settings
        self.validation = wl.validation
        if st.periodic_eval_size is not None and st.periodic_eval_size < len(wl.validation):
            # A fixed sample shared by every trial of the workload (seed 0), so
            # periodic metrics of different trials are comparable.
            self.validation = stratified_subset(wl.validation, st.periodic_eval_size, seed=0)
        if st.eval_train == EVAL_TRAIN_ALL or st.eval_train == len(wl.train):
            self.train_eval = wl.train
        elif st.eval_train is not None:
            self.train_eval = stratified_subset(wl.train, st.eval_train, seed=0)
        self.eval_at = eval_steps(self.total_steps, st.eval_every, st.dense_eval_steps)
        self.learning_rates = _learning_rates(tc.schedule, self.total_steps)
        store = self.store
        arrays = None if store is None else store.load_latest()
        if store is not None:
            self.checkpoint_skipped = [{"file": str(path), "reason": reason}
                                       for path, reason in store.skipped]
        if arrays is not None:
            self.progress = _Progress.from_arrays(arrays, has_ema=tc.ema_decay is not None)
            self.batches.set_state(self.progress.data_state)
        else:
            params, model_state = self.model.init_params(seeds.generator(self.streams.init),
                                                         dtype=wl.dtype)
            self.progress = _Progress(
                step=0, params=params, model_state=model_state,
                opt_state=tc.optimizer.init(params),
                ema_params=tree_lib.copy(params) if tc.ema_decay is not None else None,
                data_state=self.batches.get_state())
        if self.progress.ema_params is not None:
            # d and 1 - d rounded once to each leaf's dtype: ema = d·ema + (1 - d)·θ.
            d = tc.ema_decay
            self.ema_factors = [(_cast(d, e), _cast(1.0 - d, e))
                                for e in self.progress.ema_params.values()]

    def _check_periodic_sample(self) -> dict | None:
        """The final parameters on the periodic-evaluation sample vs the whole validation split.

        The playbook ("Choosing a sample for periodic evaluation"): "Check that the
        performance computed on the sampled dataset used by the periodic job matches
        the performance on the whole offline evaluation set". Both numbers are
        reported; for classification :func:`refplay.data.subset_agreement` also
        says whether the error rates agree within 3 standard errors. None when
        no sample was used.
        """
        wl, p, tc = self.workload, self.progress, self.trial_config
        if self.validation is wl.validation:
            return None
        full = evaluate(self.model, p.params, p.model_state, wl.validation, tc.eval_batch_size)
        sample = evaluate(self.model, p.params, p.model_state, self.validation,
                          tc.eval_batch_size)
        sizes = {"n_full": len(wl.validation), "n_subset": len(self.validation)}
        if "error_rate" not in full:
            return {"metric": "loss", "full": full["loss"], "subset": sample["loss"], **sizes}
        check = subset_agreement(full["error_rate"], sample["error_rate"], **sizes)
        return {"metric": "error_rate", **check._asdict(), **sizes}

    def _train(self, wall_start: float) -> None:
        p = self.progress
        eval_set = set(self.eval_at)
        total_steps = self.total_steps
        # The dropout stream's step generators, only for a model that draws (~30 µs each).
        dropout = self.streams.dropout if seeds.draws_in_training(self.model) else None
        check = True        # the optimizer checks its inputs at the first update of a session
        while True:
            if p.step in eval_set and (not p.eval_steps or p.eval_steps[-1] < p.step):
                self._evaluate_and_checkpoint(wall_start)
            if p.step >= total_steps:
                self._end_of_training(total_steps)
                return
            t0 = time.perf_counter()
            self._train_step(p.step, dropout, check)
            check = False
            p.train_seconds += time.perf_counter() - t0

    def _train_step(self, step: int, dropout: np.random.SeedSequence | None,
                    check: bool) -> None:
        """One update (the module docstring's equations), with its per-step records.

        The first step of a session updates leaf by leaf, with every input
        checked; the later ones update packed buffers (:class:`_Packed`):
        the same numbers, bitwise, in fewer Python calls.
        """
        p, tc, packed = self.progress, self.trial_config, self.packed
        batch = self.batches.next()
        rng = None if dropout is None else seeds.step_generator(dropout, step)
        loss, grads, new_model_state, _ = self.model.loss_and_grads(
            p.params, p.model_state, batch, rng, train=True)
        loss = float(loss)
        if packed is not None:
            grads = packed.pack_grads(grads)
            grad_norm = packed.layout.global_norm(grads)    # bitwise tree_lib.global_norm
        else:
            grad_norm = tree_lib.global_norm(grads)         # unclipped, logged every step
        if tc.grad_clip is not None:
            # Clipping is pure: it rescales with the unclipped norm logged here.
            clipped, info = clipping.clip_by_global_norm(grads, tc.grad_clip, norm=grad_norm)
        p.grad_norms.append(grad_norm)
        p.train_losses.append(loss)
        p.interval_losses.append(loss)
        if step == 0:
            p.initial_loss = loss
        self._check_divergence(step, loss, grad_norm)
        if tc.grad_clip is not None:
            grads = clipped
            p.interval_clipped.append(bool(info.clipped))
        lr = float(self.learning_rates[step])
        if packed is not None:
            p.opt_state = packed.update(tc.optimizer, grads, p.opt_state, lr)
        else:
            p.params, p.opt_state = tc.optimizer.update(p.params, grads, p.opt_state, lr,
                                                        check=check)
        if check and _Packed.fits(p.params, grads):      # checked by this first update
            self.packed = packed = _Packed(p.params, p.opt_state)
            p.params, p.opt_state = packed.params, optim.OptState(p.opt_state.step, packed.slots)
        p.model_state = new_model_state
        if p.ema_params is not None:
            p.ema_params = {k: a * e + b * p.params[k]
                            for (k, e), (a, b) in zip(p.ema_params.items(), self.ema_factors)}
        p.step = step + 1

    def _check_divergence(self, step: int, loss: float, grad_norm: float) -> None:
        """End the trial (``_Diverged``) on NaN/Inf or on too many blown-up steps in the
        window; record each run of blown-up steps as a loss spike."""
        p, st = self.progress, self.settings
        reason = divergence_reason(step, loss, grad_norm, p.initial_loss, st.divergence_factor)
        if reason is None:
            self._close_spike(step)
            return
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise _Diverged(reason, step)
        if p.spike_start < 0:
            p.spike_start = step
        recent = p.train_losses[-st.divergence_window:]
        blown_up = sum(_above_factor(x, p.initial_loss, st.divergence_factor) for x in recent)
        if blown_up >= st.divergence_steps:
            if st.divergence_steps > 1:
                reason = (f"training loss exceeded {st.divergence_factor:g} x the initial loss "
                          f"{p.initial_loss:.6g} on {blown_up} of the last {len(recent)} steps; "
                          f"at step {step} it is {loss:.6g}")
            raise _Diverged(reason, step)

    def _end_of_training(self, total_steps: int) -> None:
        """A run that ends still blown up never recovered, and one that ends with its mean
        loss above ``max_final_loss`` collapsed: either is infeasible."""
        p, st = self.progress, self.settings
        last = total_steps - 1
        if p.spike_start >= 0:
            raise _Diverged(f"training loss stayed above {st.divergence_factor:g} x the initial "
                            f"loss {p.initial_loss:.6g} from step {p.spike_start} to the last "
                            f"step {last} ({p.train_losses[last]:.6g}); it never recovered", last)
        if st.max_final_loss is None:
            return
        tail = p.train_losses[-st.divergence_window:]
        final = float(np.mean(tail))
        if not final <= st.max_final_loss:
            raise _Diverged(f"mean training loss of the last {len(tail)} steps is {final:.4g}, "
                            f"above max_final_loss={st.max_final_loss:.4g}: the run ended at an "
                            f"uncharacteristically high loss (collapsed)", last)

    def _close_spike(self, step: int) -> None:
        """Record the excursion above the divergence factor that ended before ``step``."""
        p = self.progress
        if p.spike_start < 0:
            return
        losses = p.train_losses[p.spike_start:step]
        peak = max(losses)
        p.loss_spikes.append({"start": p.spike_start, "end": step - 1, "peak": peak,
                              "peak_ratio": peak / p.initial_loss})
        p.spike_start = -1

    def _evaluate_and_checkpoint(self, wall_start: float) -> None:
        p, tc, wl = self.progress, self.trial_config, self.workload
        step = p.step
        metrics = {"train/loss": float(np.mean(p.interval_losses)) if p.interval_losses
                   else float("nan"),
                   "lr": float(self.learning_rates[step])}
        if tc.grad_clip is not None:
            metrics["train/clipped_fraction"] = (float(np.mean(p.interval_clipped))
                                                 if p.interval_clipped else float("nan"))
        if self.train_eval is not None:
            for name, value in evaluate(self.model, p.params, p.model_state, self.train_eval,
                                        tc.eval_batch_size).items():
                metrics[f"train_eval/{name}"] = value
        splits = [("validation", self.validation)] + ([("test", wl.test)]
                                                      if self.settings.eval_test else [])
        predictions = [] if self.settings.keep_predictions else None
        for prefix, params in [("", p.params)] + ([("ema/", p.ema_params)]
                                                  if p.ema_params is not None else []):
            for split, dataset in splits:
                keep = predictions if (prefix, split) == ("", "validation") else None
                for name, value in evaluate(self.model, params, p.model_state, dataset,
                                            tc.eval_batch_size, predictions=keep).items():
                    metrics[f"{prefix}{split}/{name}"] = value
        if not math.isfinite(metrics["validation/loss"]):
            # Not checkpointed: a re-run recomputes this evaluation and ends the same way.
            self._record(step, metrics)
            raise _Diverged(f"validation loss is {metrics['validation/loss']} at step {step}", step)
        self._record(step, metrics)
        if predictions is not None and ckpt.rank_steps(self.history())[0] == step:
            p.best_predictions = np.asarray(predictions, dtype=np.int64)
        p.interval_losses, p.interval_clipped = [], []
        store = self.store
        if store is not None:
            p.data_state = self.batches.get_state()
            arrays = p.to_arrays()
            # p.wall_seconds counts earlier sessions only; the file counts this one too.
            arrays["wall_seconds"] = np.asarray(p.wall_seconds + time.perf_counter() - wall_start)
            arrays["meta/fingerprint"] = np.asarray(self.fingerprint)
            arrays.update(ckpt.history_to_arrays(self.history()))
            store.save(step, arrays, self.history())

    def _record(self, step: int, metrics: dict[str, float]) -> None:
        p = self.progress
        p.eval_steps.append(step)
        for name in self.metric_names:
            p.curves.setdefault(name, []).append(float(metrics[name]))

    def history(self) -> list[tuple[int, float]]:
        p = self.progress
        return list(zip(p.eval_steps, p.curves.get(self.settings.selection_metric, [])))

    # -------------------------------------------------------------- result
    def _result(self, status: str, reason: str, wall_start: float, *,
                divergence_step: int | None = None) -> TrialResult:
        p = self.progress
        st = self.settings
        extras = {
            "workload": self.workload.name,
            "workload_settings": plain(self.workload.settings),
            "resolved_config": self.trial_config.resolved,
            "settings": st.to_dict(),
            "max_train_steps": st.max_train_steps,
            "total_steps": self.total_steps,
            "selection_metric": st.selection_metric,
            "divergence_step": divergence_step,
            "loss_spikes": [] if p is None else list(p.loss_spikes),
            "periodic_eval_check": self.periodic_eval_check,
        }
        if self.checkpoint_skipped:
            # Only when it happened: a clean resume stays bitwise equal to a fresh run.
            extras["checkpoint_skipped"] = list(self.checkpoint_skipped)
        if p is None:   # failed before the first step (e.g. the model could not be built)
            return TrialResult(config=self.config, seed=self.seed, status=status, reason=reason,
                               wall_seconds=time.perf_counter() - wall_start, extras=extras)
        history = self.history()
        best_step, best_metrics = None, {}
        if history:
            best_step = ckpt.rank_steps(history)[0]
            i = p.eval_steps.index(best_step)
            best_metrics = {name: values[i] for name, values in p.curves.items()}
        store = self.store
        paths = [] if store is None else [str(x) for x in store.paths(history)]
        trained = len(p.grad_norms)
        steps_done = divergence_step if divergence_step is not None else p.step
        return TrialResult(
            config=self.config, seed=self.seed, status=status, reason=reason,
            steps_done=steps_done, eval_steps=list(p.eval_steps),
            curves={k: list(v) for k, v in p.curves.items()},
            grad_norms=np.asarray(p.grad_norms, dtype=np.float64),
            train_losses=np.asarray(p.train_losses, dtype=np.float64),
            predictions=p.best_predictions,
            best_step=best_step, best_metrics=best_metrics, checkpoint_paths=paths,
            examples_per_second=(self.trial_config.batch_size * trained / p.train_seconds
                                 if p.train_seconds > 0 else float("nan")),
            seconds_per_step=p.train_seconds / trained if trained else float("nan"),
            wall_seconds=p.wall_seconds + time.perf_counter() - wall_start,
            extras=extras)


def _learning_rates(schedule, total_steps: int) -> np.ndarray:
    """``schedule(s)`` for ``s = 0 ... total_steps``, as float64.

    A :class:`~refplay.schedules.Schedule` evaluates the whole table in one
    vectorized call (the same values as one call per step, bitwise: the
    schedules are elementwise NumPy formulas); calling it at every step cost
    5-30 µs of Python, a few per cent of a small model's step.
    """
    if isinstance(schedule, schedules.Schedule):
        return np.asarray(schedule(np.arange(total_steps + 1)), dtype=np.float64)
    return np.array([float(schedule(s)) for s in range(total_steps + 1)], dtype=np.float64)


def _cast(x: float, like: np.ndarray):
    return np.dtype(np.asarray(like).dtype).type(x)
