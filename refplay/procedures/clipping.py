"""Gradient clipping: pick a threshold from a stable run's norms, and judge it (Figure 9).

The playbook ("Gradient clipping"):

* *"Gradient clipping is most useful for fixing early training instability
  (large gradient norm early)"* and mid-training spikes.
* *"If the norm of the gradient* :math:`|g|` *is greater than the gradient
  clipping threshold* :math:`\\lambda`, *then do* :math:`g' = \\lambda \\times
  g/|g|`."
* *"Choose a gradient clipping threshold based on the 90th percentile of
  gradient norms."*
* *"If gradient clipping is needed for more than 50 % of the updates, the
  gradient clipping threshold is too aggressive [...] in essence a strange
  way of reducing the learning rate."*

The study is **measure → decide → draw**: :func:`measure` trains (or
re-reads) the runs and returns a :class:`ClippingMeasured`; :func:`decide`
chooses the threshold (pure); :func:`refplay.plots.clipping.clipping_plot`
draws Figure 9.

:func:`clipping_study` runs a stable **reference** (the same model family,
the well-initialized variant) for its gradient norms, takes thresholds at
several percentiles of them, and trains the **unstable** config once without
clipping and once per threshold. It reports, per threshold, the status, the
fraction of updates clipped :math:`\\#\\{t: |g_t| > \\lambda\\}/n` and the best
validation error; the decision names the largest threshold (the least
clipping) that trains the unstable config to completion, and says "lower the
learning rate instead" when that threshold clips more than half of the updates.

:func:`clipping_identity` proves the playbook's remark. With plain SGD
(:math:`\\theta_{t+1} = \\theta_t - \\eta\\,g'_t`) and a threshold below every
norm, every step is clipped, so

.. math:: \\theta_{t+1} = \\theta_t - \\eta\\,\\frac{\\lambda}{|g_t|}\\,g_t,

which is an *unclipped* SGD step with the per-step learning rate
:math:`\\eta_t = \\eta\\lambda/|g_t|`. Both runs go through ``run_trial``; the
second feeds :math:`\\lambda/|g_t|` (logged by the first) as a ``piecewise``
schedule with one value per step. They agree to float64 rounding (``rtol
1e-12``: not bitwise, because :math:`\\eta(sg)` and :math:`(\\eta s)g` round
differently).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from refplay import _validate, analysis, clipping
from refplay.analysis.objective import trial_objective
from refplay.plots import clipping as clipping_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_configs
from refplay.train import get_workload, unstable
from refplay.train.loop import run_trial
from refplay.train.result import TrialStatus
from refplay.train.settings import TrialSettings

__all__ = ["ClippingIdentity", "ThresholdRun", "ClippingMeasured", "ClippingDecision",
           "clipping_identity", "clipping_study", "measure", "decide", "PERCENTILES", "QUESTION"]

PERCENTILES = (10, 50, 90, 99)


class ClippingIdentity(NamedTuple):
    """A clipped SGD run beside the unclipped run with :math:`\\eta_t = \\eta\\lambda/|g_t|`."""

    lr: float
    threshold: float
    steps: int
    min_norm: float                 # the smallest unclipped norm of the clipped run (> threshold)
    clipped_losses: np.ndarray      # per-step minibatch loss, clipped run
    cut_losses: np.ndarray          # per-step minibatch loss, per-step learning-rate run
    max_rel_loss_diff: float        # max_t |l_t - l'_t| / |l_t|
    max_rel_norm_diff: float        # the same for the gradient norms
    constant_lr: float              # eta * lambda / median |g|: the constant-rate proxy
    clipped_final_loss: float       # the final validation loss of the clipped run
    constant_final_loss: float      # ... and of the constant-rate proxy


def clipping_identity(workload=None, *, lr: float = 0.3, threshold: float = 0.03,
                      steps: int = 60, seed: int = 0) -> ClippingIdentity:
    """Clipping below every norm is SGD with :math:`\\eta_t = \\eta\\lambda/|g_t|` (see module).

    ``workload`` defaults to ``teacher_student`` in float64 (a smooth
    regression, so the two runs stay within rounding of each other); ``lr``
    is not a power of two, so :math:`\\eta(sg)` and :math:`(\\eta s)g` really
    round differently. Raises ``ValueError`` if some step's norm is not above ``threshold``
    (then that step was not clipped and the identity does not apply).
    """
    lr = _validate.real("lr", lr, low=0.0, low_open=True)
    threshold = _validate.real("threshold", threshold, low=0.0, low_open=True)
    steps = _validate.integer("steps", steps, low=2)
    if workload is None:
        workload = get_workload("teacher_student", dtype="float64")
    settings = TrialSettings(max_train_steps=steps, eval_every=steps, keep_best=0,
                             divergence_factor=None)
    clipped = run_trial(workload, {"optimizer": "sgd", "lr": lr, "grad_clip": threshold},
                        seed=seed, settings=settings)
    norms = clipped.grad_norms
    if not clipped.feasible or not np.all(norms > threshold):
        raise ValueError(f"threshold={threshold} is not below every gradient norm of the clipped "
                         f"run (min {float(np.min(norms)):.3g}, status {clipped.status}); "
                         f"choose a smaller threshold")
    per_step = {"optimizer": "sgd", "lr": lr, "schedule": "piecewise",
                "boundaries": list(range(1, steps)),
                "values": [float(threshold / g) for g in norms]}     # multiples of lr
    cut = run_trial(workload, per_step, seed=seed, settings=settings)
    constant_lr = lr * threshold / float(np.median(norms))
    proxy = run_trial(workload, {"optimizer": "sgd", "lr": constant_lr}, seed=seed,
                      settings=settings)

    def rel(a, b):
        return float(np.max(np.abs(a - b) / np.abs(a)))

    return ClippingIdentity(
        lr=lr, threshold=threshold, steps=steps, min_norm=float(np.min(norms)),
        clipped_losses=clipped.train_losses, cut_losses=cut.train_losses,
        max_rel_loss_diff=rel(clipped.train_losses, cut.train_losses),
        max_rel_norm_diff=rel(norms, cut.grad_norms), constant_lr=constant_lr,
        clipped_final_loss=float(clipped.curves["validation/loss"][-1]),
        constant_final_loss=float(proxy.curves["validation/loss"][-1]))


class ThresholdRun(NamedTuple):
    """The unstable config trained with one clipping threshold (``None``: unclipped)."""

    percentile: float | None        # of the reference run's norms
    threshold: float | None
    status: str
    steps_done: int
    clipped_fraction: float         # fraction of updates with |g_t| > threshold
    best_error: float               # best validation error over evaluations (NaN if infeasible)
    events: int                     # loss spikes found by analysis.detect_instability


class ClippingMeasured(NamedTuple):
    """What :func:`clipping_study` trained: the stable reference and each threshold's run."""

    workload: str
    lr: float
    max_train_steps: int
    reference_variant: dict
    unstable_variant: dict
    reference_error: float
    reference_norms: np.ndarray     # per-step gradient norms of the stable run
    unclipped: ThresholdRun
    runs: list                      # ThresholdRun per threshold, by percentile
    norms: list                     # per-step unclipped norms of the unclipped run, then each run
    losses: list                    # per-step training losses, in the same order


class ClippingDecision(NamedTuple):
    """The threshold the playbook would choose, and whether it is too aggressive."""

    chosen: ThresholdRun | None     # the largest threshold that trains the unstable config
    aggressive: list                # thresholds that clip more than half of the updates
    text: str


QUESTION = ("Which gradient-clipping threshold stabilizes the unstable run, and is it so "
            "aggressive that we should lower the learning rate instead?")


def measure(workload: str | None = None, *, setup: unstable.UnstableSetup = unstable.CLIPPING,
            lr: float | None = None, percentiles=PERCENTILES,
            max_train_steps: int | None = None, eval_every: int = 50, seed: int = 0,
            quick: bool = False, workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[ClippingMeasured, list]:
    """Train (or re-read) the stable reference and the unstable runs: ``(measured, trials)``.

    Every trial shares the initialization draw and the data order: only the
    variant and the threshold differ. Thresholds are ``percentiles`` of the
    reference run's norms (:func:`refplay.clipping.threshold_from_norms`).
    """
    workload = workload or setup.workload
    lr = _validate.real("lr", setup.measured["lr"] if lr is None else lr, low=0.0, low_open=True)
    if quick:
        percentiles = (10, 90, 99)
    percentiles = sorted(_validate.real(f"percentiles[{i}]", p, low=0.0, high=100.0,
                                        low_open=True) for i, p in enumerate(percentiles))
    if not percentiles:
        raise ValueError("percentiles must name at least one percentile, e.g. (10, 50, 90, 99)")
    steps = _validate.integer("max_train_steps", max_train_steps or setup.max_train_steps, low=2)
    settings = TrialSettings(max_train_steps=steps, eval_every=eval_every, keep_best=0)
    common = {"init_seed": setup.seed, "data_seed": setup.seed}
    run = dict(seed=seed, workers=workers, workspace=workspace,
               workload_options=dict(setup.workload_options))
    (reference,) = run_configs("clipping_reference", workload,
                               [setup.config("stable", lr, **common)], settings, **run)
    if not reference.feasible:
        raise ValueError(f"the reference (stable) run is {reference.status} at lr={lr}: "
                         f"{reference.reason}; choose a smaller lr")
    thresholds = [clipping.threshold_from_norms(reference.grad_norms, p) for p in percentiles]
    configs = [setup.config("unstable", lr, **common)]
    configs += [setup.config("unstable", lr, grad_clip=t, **common) for t in thresholds]
    results = run_configs("clipping_unstable", workload, configs, settings, **run)
    rows = [_threshold_run(p, t, r)
            for p, t, r in zip([None, *percentiles], [None, *thresholds], results)]
    measured = ClippingMeasured(
        workload=workload, lr=lr, max_train_steps=steps,
        reference_variant=dict(setup.stable), unstable_variant=dict(setup.unstable),
        reference_error=trial_objective(reference), reference_norms=reference.grad_norms,
        unclipped=rows[0], runs=rows[1:], norms=[r.grad_norms for r in results],
        losses=[r.train_losses for r in results])
    return measured, [reference, *results]


def _threshold_run(percentile, threshold, result) -> ThresholdRun:
    fraction = (clipping.clip_fraction(result.grad_norms, threshold)
                if threshold is not None and result.grad_norms.size else 0.0)
    events = analysis.detect_instability(result.train_losses) if result.feasible else ()
    return ThresholdRun(percentile=percentile, threshold=threshold, status=str(result.status),
                        steps_done=result.steps_done, clipped_fraction=fraction,
                        best_error=trial_objective(result), events=len(events))


def decide(m: ClippingMeasured) -> ClippingDecision:
    """The largest threshold that trains the unstable config; too aggressive past 50 % clipped."""
    stabilizing = [row for row in m.runs if row.status == TrialStatus.COMPLETE]
    chosen = max(stabilizing, key=lambda row: row.threshold) if stabilizing else None
    aggressive = [row for row in m.runs if row.clipped_fraction > clipping.AGGRESSIVE_FRACTION]
    unclipped = m.unclipped
    if unclipped.status == TrialStatus.COMPLETE:
        text = (f"no clipping needed: the unstable config trains without it at lr={m.lr:g} "
                f"(validation error {unclipped.best_error:.3f})")
    elif chosen is None:
        text = (f"no threshold tried stabilizes training at lr={m.lr:g}: lower the learning "
                f"rate (or try a warmup)")
    elif chosen.clipped_fraction > clipping.AGGRESSIVE_FRACTION:
        text = (f"clip at λ = {chosen.threshold:.3g} ({chosen.percentile:g}th percentile) "
                f"stabilizes training but clips {chosen.clipped_fraction:.0%} > 50% of the "
                f"updates: extremely aggressive, lower the learning rate instead")
    else:
        text = (f"clip at λ = {chosen.threshold:.3g} (the {chosen.percentile:g}th percentile "
                f"of the stable run's norms): the unstable config now trains "
                f"(validation error {chosen.best_error:.3f}, {chosen.clipped_fraction:.0%} "
                f"of updates clipped; unclipped it is {unclipped.status} at step "
                f"{unclipped.steps_done})")
    return ClippingDecision(chosen=chosen, aggressive=aggressive, text=text)


def _numbers(m: ClippingMeasured, d: ClippingDecision) -> dict:
    summary = analysis.grad_norm_summary(m.reference_norms)
    chosen = d.chosen
    return {
        "workload": m.workload, "lr": m.lr, "max_train_steps": m.max_train_steps,
        "reference_variant": m.reference_variant, "unstable_variant": m.unstable_variant,
        "reference_error": m.reference_error, "reference_p50_norm": summary.p50,
        "reference_p90_norm": summary.p90,
        "unclipped_status": m.unclipped.status, "unclipped_steps_done": m.unclipped.steps_done,
        "runs": [row._asdict() for row in m.runs],
        "chosen_threshold": None if chosen is None else chosen.threshold,
        "chosen_percentile": None if chosen is None else chosen.percentile,
        "chosen_clipped_fraction": None if chosen is None else chosen.clipped_fraction,
        "chosen_error": None if chosen is None else chosen.best_error,
        "aggressive_thresholds": [row.threshold for row in d.aggressive],
    }


def clipping_study(workload: str | None = None, *,
                   setup: unstable.UnstableSetup = unstable.CLIPPING, quick: bool = False,
                   **options) -> ProcedureResult:
    """Thresholds from a stable run's norms, tried on the unstable run (see the module docstring).

    ``options`` are :func:`measure`'s (``lr``, ``percentiles``,
    ``max_train_steps``, ``eval_every``, ``seed``, ``workers``, ``workspace``).
    Defaults come from ``setup`` (:data:`refplay.train.unstable.CLIPPING`: a
    residual MLP without normalization, ``init_gain`` 0.5 stable vs 0.7
    unstable, Nesterov at lr 0.04, 400 steps). ``quick=True`` keeps the
    calibrated setting (it already takes seconds) and tries 3 percentiles.
    """
    m, trials = measure(workload, setup=setup, quick=quick, **options)
    d = decide(m)
    shown = 1 + m.runs.index(d.chosen) if d.chosen is not None else 0
    figures = {"clipping": clipping_plots.clipping_plot(
        m.norms[shown], m.runs, d.chosen, m.losses, reference_norms=m.reference_norms)}
    caveats = list(setup.caveats) + [
        f"One seed; thresholds from a {m.max_train_steps}-step reference run of the stable "
        f"variant.",
        "A threshold that clips most updates is in essence a lower learning rate: its training "
        "loss can end lowest while its best validation error is worse (the figure's lower "
        "panel); the playbook's advice is to lower the learning rate itself instead."]
    return ProcedureResult(
        question=QUESTION, decision=d.text, numbers=_numbers(m, d), figures=figures, trials=trials,
        caveats=caveats)
