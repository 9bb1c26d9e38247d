"""Identifying unstable workloads: the learning-rate sweep above lr*, and early spikes.

The playbook ("How can optimization failures be debugged and mitigated?"):

* *"Any workload will become unstable if the learning rate is too large.
  Instability is only an issue when it forces us to use a learning rate
  that's too small."*
* *"Identifying unstable workloads": "Do a learning rate sweep and find the
  best learning rate lr*. Plot training loss curves for learning rates just
  above lr*. If the learning rates > lr* show loss instability (loss goes up
  not down during periods of training), then it is likely that fixing the
  instability will result in better training."* (Figures 7a and 7b.)
* *"Log the L2 norm of the full loss gradient during training"*, and
  (Figure 5) early instability is only seen with frequent evaluations:
  *"it's usually worth doing a run of ~500 steps at learning rate = 2x the
  best, evaluating every step"*.

:func:`stability_scan` runs the sweep (every trial shares one initialization
and data order), finds lr* (the lowest best-checkpoint validation error),
re-runs ``factors`` × lr* recording every step's loss (the larger factors
``long_factor`` × longer, to expose mid-training rises as in Figure 7b), and
reads both with :mod:`refplay.analysis`: the boundary check says whether the
best rate sits at the edge of the infeasible region (``instability_limited``)
and :func:`~refplay.analysis.detect_instability` finds loss spikes above lr*.

Both procedures are **measure → decide → draw**: ``measure_scan`` /
``measure_early`` train (or re-read) the trials and return a
:class:`ScanMeasured` / :class:`EarlyMeasured` of numbers; ``decide_scan`` /
``decide_early`` are pure functions of those numbers (tested without
training); the figures are drawn by :mod:`refplay.plots.instability`. The
workload is a parameter everywhere (``workload`` and ``setup``), so the
same procedures run on any calibrated :class:`~refplay.train.unstable.UnstableSetup`.

:func:`early_instability_check` trains factor × lr* once with only NaN/Inf
ending the run (``divergence_factor=None``, so a spike that recovers is seen
whole) and compares the *dense* view, the minibatch loss of every step,
with the *sparse* view the same trial records at its ``coarse_every``
evaluations (``train/loss``, the mean loss since the previous evaluation).
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from refplay import _validate, analysis, plots, search
from refplay.analysis.objective import trial_objective
from refplay.plots import instability as instability_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_configs
from refplay.train import unstable
from refplay.train.result import TrialStatus
from refplay.train.settings import TrialSettings

__all__ = ["lr_sweep", "sweep_frame", "best_lr", "spike_events", "stability_scan",
           "early_instability_check", "QUICK_LRS", "quick_lrs", "ScanMeasured", "AboveRun",
           "measure_scan",
           "decide_scan", "EarlyMeasured", "EarlyDecision", "measure_early", "decide_early",
           "SCAN_QUESTION", "EARLY_QUESTION"]

def quick_lrs(setup: unstable.UnstableSetup) -> tuple[float, ...]:
    """The ``--quick`` sweep: every other rate of ``setup.lrs`` (sqrt(2) apart becomes 2)."""
    return tuple(setup.lrs[::2])


#: The quick sweep of the calibrated post-norm setup: 0.02, 0.04, ..., 0.64.
QUICK_LRS = quick_lrs(unstable.WARMUP)
METRIC = "validation/error_rate"
SCAN_QUESTION = "Does training instability force a learning rate that is too small?"
EARLY_QUESTION = "Is there a loss spike that evaluating every few hundred steps would miss?"


def lr_sweep(workload: str, setup: unstable.UnstableSetup, variant: str, lrs,
             settings: TrialSettings, *, extra: dict | None = None, seed: int = 0,
             workers: int | None = 0, workspace=None, name: str = "lr_sweep") -> list:
    """The ``variant`` of ``setup`` at each learning rate, one shared init and data order.

    ``extra`` adds config keys to every trial (e.g. ``{"warmup_steps": 40}``).
    Called with the same arguments, procedures share (re-read) one study.
    """
    common = {"init_seed": setup.seed, "data_seed": setup.seed, **(extra or {})}
    configs = [setup.config(variant, lr, **common) for lr in lrs]
    return run_configs(name, workload, configs, settings, seed=seed, workers=workers,
                       workspace=workspace, workload_options=dict(setup.workload_options))



def sweep_frame(results, lrs, name: str = "lr_sweep"):
    """A :class:`~refplay.analysis.TrialsFrame` of a sweep, the learning rate on a log range."""
    fixed = {k: search.Fixed(v) for k, v in results[0].config.items() if k != "lr"}
    space = search.SearchSpace({**fixed, "lr": search.Float(min(lrs), max(lrs), scale="log")})
    return analysis.from_results(results, space=space, metric=METRIC, name=name)


def best_lr(results, lrs) -> tuple[float | None, float]:
    """``(lr*, its objective)``: the lowest best-checkpoint validation error (ties: smaller lr)."""
    objs = [trial_objective(r, METRIC) for r in results]
    finite = [(o, lr) for o, lr in zip(objs, lrs) if math.isfinite(o)]
    if not finite:
        return None, math.nan
    o, lr = min(finite)
    return float(lr), float(o)


def spike_events(train_losses, min_rise: float = 2.0) -> list[dict]:
    """:func:`analysis.detect_instability` events as JSON-ready dicts."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in e._asdict().items()}
            for e in analysis.detect_instability(train_losses, min_rise=min_rise)]


# ---------------------------------------------------------------- stability scan
class AboveRun(NamedTuple):
    """One run at ``factor`` x lr*, recording every step's loss (Figure 7b)."""

    factor: float
    lr: float
    steps: int                   # steps done
    status: str
    best_error: float            # NaN: infeasible
    events: list                 # spike_events of its per-step loss
    reason: str


class ScanMeasured(NamedTuple):
    """What :func:`stability_scan` trained: the sweep, its boundary check, the runs above lr*."""

    workload: str
    variant: dict                # the variant's model hyperparameters
    max_train_steps: int
    lrs: list
    statuses: list               # per lr of the sweep
    objectives: list             # best validation error per lr (NaN: infeasible)
    lr_star: float
    best_error: float
    divergence_threshold: float | None   # the boundary check's first failing lr
    boundary_decision: str               # "instability_limited", "ok", "expand_high", ...
    best_at_infeasible_edge: bool
    above_lr_star: list                  # AboveRun per factor
    above_losses: list                   # per-step training loss of each run above lr*
    lr_star_losses: object               # per-step training loss at lr* (the reference)
    frame: object                        # the sweep's analysis.TrialsFrame (for the axis plot)


def measure_scan(workload: str | None = None, *,
                 setup: unstable.UnstableSetup = unstable.TRANSFORMER_SCAN,
                 variant: str = "unstable", lrs=None, max_train_steps: int | None = None,
                 factors=(2, 5, 10), long_factor: int = 1, eval_every: int = 50,
                 seed: int = 0, quick: bool = False, workers: int | None = 0,
                 workspace: str | os.PathLike | None = None) -> tuple[ScanMeasured, list]:
    """Train (or re-read) the sweep and the runs above lr*: ``(measured, trials)``."""
    workload = workload or setup.workload
    lrs = sorted(quick_lrs(setup) if (quick and lrs is None) else (lrs or setup.lrs))
    if len(lrs) < 3:
        raise ValueError(f"lrs={lrs} must hold at least 3 learning rates for a sweep")
    long_factor = 1 if quick else _validate.integer("long_factor", long_factor, low=1)
    steps = _validate.integer("max_train_steps", max_train_steps or setup.max_train_steps, low=2)
    factors = [_validate.real(f"factors[{i}]", f, low=1.0, low_open=True)
               for i, f in enumerate(factors)]
    settings = setup.settings(eval_every=eval_every, max_train_steps=steps)
    run = dict(seed=seed, workers=workers, workspace=workspace)
    sweep = lr_sweep(workload, setup, variant, lrs, settings, **run)
    lr_star, best_error = best_lr(sweep, lrs)
    frame = sweep_frame(sweep, lrs, name=f"{setup.name}/{variant}")
    check = analysis.boundary_check(frame, "lr").checks[()]
    if lr_star is None:
        raise ValueError(f"every trial of the sweep over lrs={lrs} is infeasible; start lower")
    above = _runs_above(workload, setup, variant, sweep, lrs, lr_star, factors,
                        {f: steps * (long_factor if f > 2 else 1) for f in factors}, settings, run)
    runs = [AboveRun(factor=f, lr=f * lr_star, steps=r.steps_done, status=str(r.status),
                     best_error=trial_objective(r, METRIC),
                     events=spike_events(r.train_losses) if r.train_losses.size else [],
                     reason=r.reason) for f, r in zip(factors, above)]
    measured = ScanMeasured(
        workload=workload, variant=dict(getattr(setup, variant)), max_train_steps=steps,
        lrs=list(lrs), statuses=[str(r.status) for r in sweep],
        objectives=[trial_objective(r, METRIC) for r in sweep], lr_star=lr_star,
        best_error=best_error, divergence_threshold=check.divergence_threshold,
        boundary_decision=check.decision, best_at_infeasible_edge=check.best_at_infeasible_edge,
        above_lr_star=runs, above_losses=[r.train_losses for r in above],
        lr_star_losses=sweep[list(lrs).index(lr_star)].train_losses, frame=frame)
    return measured, [*sweep, *above]


def _runs_above(workload, setup, variant, sweep, lrs, lr_star, factors, steps, settings, run):
    """The run at ``f * lr_star`` for each factor, ``steps[f]`` steps long: the sweep's own
    trial where it ran that rate as long, else a new one. The new runs of one length train
    as one study, side by side on the workers."""
    found = {}
    for f in factors:
        same = [r for lr, r in zip(lrs, sweep) if math.isclose(lr, f * lr_star, rel_tol=1e-3)]
        if same and steps[f] == settings.max_train_steps:
            found[f] = same[0]
    for length in sorted({steps[f] for f in factors if f not in found}):
        todo = [f for f in factors if f not in found and steps[f] == length]
        results = lr_sweep(workload, setup, variant, [f * lr_star for f in todo],
                           settings.replace(max_train_steps=length), name="above_lr_star", **run)
        found.update(zip(todo, results))
    return [found[f] for f in factors]


def decide_scan(m: ScanMeasured) -> str:
    """Is the learning rate limited by instability? The boundary check, then the runs above lr*."""
    if m.boundary_decision == "instability_limited":
        text = (f"instability limits the learning rate: lr* = {m.lr_star:g} sits at the edge "
                f"of the infeasible region (every lr ≥ {m.divergence_threshold:g} fails); try "
                f"warmup or gradient clipping before expanding the range")
    else:
        text = (f"instability does not limit the learning rate here: lr* = {m.lr_star:g} is "
                f"not at the infeasible edge (boundary check: {m.boundary_decision}")
        text += (f", first failing lr {m.divergence_threshold:g})"
                 if m.divergence_threshold else ")")
    rising = [x for x in m.above_lr_star if x.status != TrialStatus.COMPLETE or x.events]
    if rising:
        text += ("; above lr* the loss goes up during training at "
                 + ", ".join(f"{x.factor:g}×" for x in rising))
    return text


def stability_scan(workload: str | None = None, *,
                   setup: unstable.UnstableSetup = unstable.TRANSFORMER_SCAN,
                   variant: str = "unstable", quick: bool = False, **options) -> ProcedureResult:
    """Sweep, lr*, runs at ``factors`` × lr*, and the decision (see the module docstring).

    ``options`` are :func:`measure_scan`'s (``lrs``, ``max_train_steps``,
    ``factors``, ``long_factor``, ``eval_every``, ``seed``, ``workers``,
    ``workspace``). Defaults come from ``setup``
    (:data:`refplay.train.unstable.TRANSFORMER_SCAN`: the 6-block Post-LN
    Transformer on MNIST-1D with a 50-step warmup, Adam, 500 steps; pass
    ``setup=unstable.WARMUP`` and ``long_factor=4`` for the post-LayerNorm
    ResNet of the first calibration). ``quick=True``: every other rate of the
    setup's grid (:func:`quick_lrs`) and every factor run at the sweep's length.
    """
    m, trials = measure_scan(workload, setup=setup, variant=variant, quick=quick, **options)
    fig_sweep = plots.axis_plot(m.frame, "lr", title=(
        f"Figure 7a: does instability cap the learning rate? ({setup.label(variant)})\n"
        f"best lr* = {m.lr_star:g}; boundary check: {m.boundary_decision}"))
    instability_plots.plain_log_x(fig_sweep)
    labels = [f"{x.factor:g}× lr* = {x.lr:.3g} ({x.status})" for x in m.above_lr_star]
    fig_above = instability_plots.loss_traces_plot(
        {f"lr* = {m.lr_star:.3g}": m.lr_star_losses, **dict(zip(labels, m.above_losses))},
        events={k: x.events for k, x in zip(labels, m.above_lr_star)},
        title="Figure 7b: above lr*, does the training loss go up during training?")
    numbers = {**m._asdict(), "above_lr_star": [x._asdict() for x in m.above_lr_star]}
    del numbers["above_losses"], numbers["frame"], numbers["lr_star_losses"]
    caveats = list(setup.caveats) + [
        "lr* is chosen by the lowest best-checkpoint validation error on one seed."]
    return ProcedureResult(
        question=SCAN_QUESTION, decision=decide_scan(m), numbers=numbers,
        figures={"lr_sweep": fig_sweep, "above_lr_star": fig_above}, trials=trials, caveats=caveats)


# ------------------------------------------------------------- early instability
def _monotone_nonincreasing(values) -> bool:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(np.all(np.diff(v) <= 0))


class EarlyMeasured(NamedTuple):
    """One run at ~2 x lr*, seen every step (dense) and every ``coarse_every`` steps (sparse)."""

    workload: str
    variant: dict
    lr: float
    max_train_steps: int
    status: str
    coarse_every: int
    min_rise: float              # the smallest spike height counted
    dense: np.ndarray            # per-step minibatch loss
    events: list                 # spike_events of the dense view
    sparse_steps: list           # evaluation steps (> 0)
    sparse_loss: list            # train/loss at them: the mean loss since the last evaluation


class EarlyDecision(NamedTuple):
    """What the dense view shows that the sparse one may hide."""

    sparse_monotone: bool        # the sparse view only goes down
    early: list                  # the events in the first 10 % of training
    biggest: dict | None         # the highest spike
    text: str


def measure_early(workload: str | None = None, *,
                  setup: unstable.UnstableSetup = unstable.EARLY_SPIKE, variant: str = "unstable",
                  lr: float | None = None, max_train_steps: int | None = None,
                  coarse_every: int = 100, min_rise: float = 2.0, seed: int = 0,
                  workers: int | None = 0,
                  workspace: str | os.PathLike | None = None) -> tuple[EarlyMeasured, list]:
    """Train (or re-read) one run with only NaN/Inf ending it: ``(measured, trials)``."""
    workload = workload or setup.workload
    lr = _validate.real("lr", setup.measured["spike_lr"] if lr is None else lr,
                        low=0.0, low_open=True)
    steps = _validate.integer("max_train_steps", max_train_steps or setup.max_train_steps, low=2)
    coarse_every = _validate.integer("coarse_every", coarse_every, low=1, high=steps)
    settings = TrialSettings(max_train_steps=steps, eval_every=coarse_every, keep_best=0,
                             divergence_factor=None)
    (r,) = lr_sweep(workload, setup, variant, [lr], settings, seed=seed, workers=workers,
                    workspace=workspace, name="early_instability")
    sparse = [(s, v) for s, v in zip(r.eval_steps, r.curves["train/loss"]) if s > 0]
    measured = EarlyMeasured(
        workload=workload, variant=dict(getattr(setup, variant)), lr=lr, max_train_steps=steps,
        status=str(r.status), coarse_every=coarse_every, min_rise=min_rise, dense=r.train_losses,
        events=spike_events(r.train_losses, min_rise=min_rise),
        sparse_steps=[s for s, _ in sparse], sparse_loss=[v for _, v in sparse])
    return measured, [r]


def decide_early(m: EarlyMeasured) -> EarlyDecision:
    """A spike the sparse view misses, one it shows too, or none at all."""
    monotone = _monotone_nonincreasing(m.sparse_loss)
    early = [e for e in m.events if e["kind"] == "early"]
    biggest = max(m.events, key=lambda e: e["height"] or math.inf) if m.events else None
    if biggest is None:
        text = (f"no loss spike ≥ {m.min_rise:g}× at lr = {m.lr:g}: no sign of instability "
                f"at this rate")
    elif monotone:
        kind = "early instability" if early else "a mid-training spike"
        text = (f"{kind} with {'recovery' if biggest['recovered'] else 'no full recovery'}: "
                f"the per-step loss jumps {biggest['height']:.1f}× at step "
                f"{biggest['peak_step']}, while the loss evaluated every {m.coarse_every} steps "
                f"only goes down — evaluate every step early on to see it")
    else:
        text = (f"the spike at step {biggest['peak_step']} ({biggest['height']:.1f}×) is "
                f"visible even every {m.coarse_every} steps")
    return EarlyDecision(sparse_monotone=monotone, early=early, biggest=biggest, text=text)


def early_instability_check(workload: str | None = None, *,
                            setup: unstable.UnstableSetup = unstable.EARLY_SPIKE,
                            quick: bool = False, **options) -> ProcedureResult:
    """Dense (every step) vs sparse (every ``coarse_every`` steps) view of one run at ~2 × lr*.

    ``options`` are :func:`measure_early`'s (``variant``, ``lr``,
    ``max_train_steps``, ``coarse_every``, ``min_rise``, ``seed``, ``workers``,
    ``workspace``). ``lr`` defaults to the calibrated
    ``setup.measured["spike_lr"]`` (2 × the post-norm ResNet's lr*). ``quick``
    changes nothing: the run already takes a few seconds.
    """
    m, trials = measure_early(workload, setup=setup, **options)
    d = decide_early(m)
    dense = m.dense
    numbers = {"workload": m.workload, "variant": m.variant, "lr": m.lr,
               "max_train_steps": m.max_train_steps, "status": m.status,
               "coarse_every": m.coarse_every,
               "initial_loss": float(dense[0]) if dense.size else math.nan,
               "final_loss": float(dense[-1]) if dense.size else math.nan,
               "events": m.events, "n_early_events": len(d.early),
               "max_spike_height": None if d.biggest is None else d.biggest["height"],
               "max_spike_step": None if d.biggest is None else d.biggest["peak_step"],
               "sparse_steps": m.sparse_steps, "sparse_loss": m.sparse_loss,
               "sparse_monotone": d.sparse_monotone}
    fig = instability_plots.dense_vs_sparse_plot(dense, m.sparse_steps, m.sparse_loss, m.events,
                                                 lr=m.lr, coarse_every=m.coarse_every)
    return ProcedureResult(
        question=EARLY_QUESTION, decision=d.text, numbers=numbers, figures={"dense_vs_sparse": fig},
        trials=trials, caveats=list(setup.caveats))
