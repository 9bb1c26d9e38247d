"""How to apply learning-rate warmup: the shortest warmup that trains a too-high rate (Figs 6, 8).

The playbook ("How to apply learning rate warmup"):

* *"Warmup involves prepending a learning rate schedule that ramps up the
  learning rate from 0 to some stable base_learning_rate, that is at least
  one order of magnitude larger than unstable_base_learning_rate."*
* *"Identify the unstable_base_learning_rate [...] Find the optimal
  warmup_steps [...] The default is to try warmup_steps of 10, 10³, 10⁴ and
  10⁵. The largest feasible point shouldn't be more than 10% of
  max_train_steps."* and, if it is above ~5%, consider a larger
  ``max_train_steps``.
* *"Prepend this to the schedule [...] if we originally had 10,000
  max_train_steps and did warmup_steps for 1000 steps, the new training
  procedure should run for 11,000 steps total."* ... *"compare the result
  to the baseline using optimal checkpoint selection."*

The procedure is **measure → decide → draw**: :func:`measure` trains
(or re-reads) every trial and returns a :class:`WarmupMeasured`;
:func:`decide` turns it into the playbook's decision and its reasons
(pure, no training); :func:`refplay.plots.instability.warmup_plot` and
``lr_sweep_plot`` draw it; :func:`warmup_study` composes the three.

:func:`warmup_study` trains ``target_lr`` (about 10 × lr*, infeasible
without warmup) with each candidate warmup (linear ramp 0 → ``target_lr``,
then constant) and calls a candidate **stable** when the trial completes,
every loss spike found by :func:`~refplay.analysis.detect_instability`
recovers, its best validation error is at most ``good_factor`` (3) × that
of lr* without warmup (refplay's reading of "trains": at this learning
rate the post-norm net's failure is poor optimization, error 0.46 against
0.05, more often than NaN), and it has *learned* (the mean loss of its last
10 % of steps is below half the step-0 loss: Figure 6's short warmups
"collapse back" to a high loss).
The shortest stable warmup ``W`` is checked against 10 % and 5 % of
``max_train_steps``, then **prepended** (``warmup_prepend``: ``max_train_steps
+ W`` updates) and compared, best checkpoint against best checkpoint, with
the baseline at lr* without warmup. For Figure 8 it sweeps the learning
rate with and without a ``warmup_fraction`` warmup for the unstable variant
(and the stable one unless ``quick``) and reports lr* of each.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.analysis.objective import trial_objective
from refplay.plots import instability as instability_plots
from refplay.procedures.instability import best_lr, lr_sweep, quick_lrs, spike_events
from refplay.procedures.result import ProcedureResult
from refplay.train import unstable
from refplay.train.result import TrialStatus
from refplay.train.settings import TrialSettings

__all__ = ["warmup_study", "measure", "decide", "draw", "WarmupMeasured", "WarmupDecision",
           "Candidate", "LrSweeps", "is_stable", "why_not_stable", "grid_caveat", "numbers",
           "WARMUPS", "TARGET_LR", "QUESTION"]

WARMUPS = (0, 10, 40, 100)      # the playbook's 10, 10^3, ... scaled to a 400-step budget
# 8 x lr* of the post-norm ResNet (lr* = 0.04): without warmup it completes but learns
# little (validation error 0.46); the calibration's 0.453 is chaotic under the trial
# loop's divergence rule (no warmup completes at error 0.65, warmups of 40 and 100 steps NaN).
TARGET_LR = 0.32
QUESTION = ("Which warmup lets the unstable model train at a ~10x higher learning rate, and "
            "does the prepended warmup beat the baseline?")


class LrSweeps(NamedTuple):
    """One variant's learning-rate sweep without and with warmup (the playbook's Figure 8)."""

    lr_star: float | None            # lowest best-checkpoint validation error, no warmup
    error: float
    lr_star_warmup: float | None
    error_warmup: float
    ratio: float | None              # lr_star_warmup / lr_star
    largest_feasible: float | None
    largest_feasible_warmup: float | None
    statuses: list                   # per lr, no warmup
    statuses_warmup: list
    errors: list                     # best validation error per lr (NaN: infeasible)
    errors_warmup: list


class Candidate(NamedTuple):
    """One warmup length tried at ``target_lr``: what its trial did (not yet judged)."""

    warmup_steps: int
    status: str
    steps_done: int
    events: int                      # loss spikes found by analysis.detect_instability
    recovered: bool                  # every spike recovered
    learned: bool                    # last 10 % of losses average below half the step-0 loss
    best_error: float                # best-checkpoint validation error (NaN: infeasible)


class WarmupMeasured(NamedTuple):
    """Everything :func:`warmup_study` trained, as numbers (see :func:`measure`)."""

    workload: str
    max_train_steps: int
    target_lr: float
    lrs: list
    sweep_warmup_steps: int          # the warmup of the Figure 8 sweeps
    good_factor: float               # a stable candidate's error is <= good_factor x lr*'s
    sweeps: dict                     # variant -> LrSweeps
    candidates: list                 # Candidate per warmup length, shortest first
    losses: dict                     # warmup_steps -> the candidate's per-step training loss
    baseline_error: float | None     # lr* without warmup (best checkpoint)
    prepended_error: float | None    # the shortest stable warmup prepended at target_lr
    prepended_steps: int | None
    prepended_best_step: int | None


class WarmupDecision(NamedTuple):
    """The playbook's decision on a :class:`WarmupMeasured` and what it rests on."""

    stable: list                     # per candidate: trains target_lr stably
    why: list                        # per candidate: "stable", or the first reason it is not
    shortest: int | None             # the shortest stable warmup (steps)
    within_10pct: bool               # "shouldn't be more than 10% of max_train_steps"
    above_5pct: bool                 # "consider a larger max_train_steps"
    prepended_better: bool | None    # the prepended warmup beats the baseline (best checkpoints)
    text: str


def why_not_stable(candidate: Candidate, lr_star_error: float | None, good_factor: float) -> str:
    """``"stable"``, or the first condition of :func:`is_stable` that ``candidate`` fails."""
    if candidate.status != TrialStatus.COMPLETE:
        return candidate.status
    if not candidate.learned:
        return "collapsed back (did not learn)"
    if not candidate.recovered:
        return "a loss spike did not recover"
    if lr_star_error is None:
        return "no lr* to compare with"
    if not candidate.best_error <= good_factor * lr_star_error:
        return (f"error {candidate.best_error:.3f} > {good_factor:g} × lr*'s "
                f"{lr_star_error:.3f}")
    return "stable"


def is_stable(candidate: Candidate, lr_star_error: float | None, good_factor: float) -> bool:
    """Does ``candidate`` train its rate stably? Completes, learns, recovers, error in reach.

    Its best error must be at most ``good_factor`` x that of lr* without warmup
    (``lr_star_error``; ``None`` when no learning rate trained, then nothing is stable).
    """
    return why_not_stable(candidate, lr_star_error, good_factor) == "stable"


def _largest_feasible(results, lrs) -> float | None:
    ok = [lr for r, lr in zip(results, lrs) if r.feasible]
    return max(ok) if ok else None


def _sweeps(none, warm, lrs) -> LrSweeps:
    lr_none, err_none = best_lr(none, lrs)
    lr_warm, err_warm = best_lr(warm, lrs)
    return LrSweeps(
        lr_star=lr_none, error=err_none, lr_star_warmup=lr_warm, error_warmup=err_warm,
        ratio=(lr_warm / lr_none) if lr_none and lr_warm else None,
        largest_feasible=_largest_feasible(none, lrs),
        largest_feasible_warmup=_largest_feasible(warm, lrs),
        statuses=[str(r.status) for r in none], statuses_warmup=[str(r.status) for r in warm],
        errors=[trial_objective(r) for r in none], errors_warmup=[trial_objective(r) for r in warm])


def _candidate(warmup_steps: int, result) -> Candidate:
    events = spike_events(result.train_losses) if result.feasible else []
    losses = result.train_losses
    tail = losses[-max(1, len(losses) // 10):]
    learned = bool(result.feasible and losses.size
                   and float(np.mean(tail)) < 0.5 * float(losses[0]))
    return Candidate(warmup_steps=warmup_steps, status=str(result.status),
                     steps_done=result.steps_done, events=len(events),
                     recovered=all(e["recovered"] for e in events), learned=learned,
                     best_error=trial_objective(result))


def _checked(setup, target_lr, warmups, warmup_fraction, max_train_steps, lrs, variants, quick):
    steps = _validate.integer("max_train_steps", max_train_steps or setup.max_train_steps, low=2)
    target_lr = _validate.real("target_lr", TARGET_LR if target_lr is None else target_lr,
                               low=0.0, low_open=True)
    warmups = sorted({_validate.integer(f"warmups[{i}]", w, low=0, high=steps - 1)
                      for i, w in enumerate(warmups)})
    warmup_fraction = _validate.real("warmup_fraction", warmup_fraction, low=0.0, high=0.5,
                                     low_open=True)
    lrs = sorted(quick_lrs(setup) if (quick and lrs is None) else (lrs or setup.lrs))
    variants = ("unstable",) if quick else tuple(variants)
    if "unstable" not in variants:
        raise ValueError(f"variants={variants} must include 'unstable' (its lr* is the baseline)")
    for v in variants:
        _validate.one_of("variants[i]", v, ("unstable", "stable"))
    return steps, target_lr, warmups, warmup_fraction, lrs, variants


def measure(workload: str | None = None, *, setup: unstable.UnstableSetup = unstable.WARMUP,
            target_lr: float | None = None, warmups=WARMUPS, lrs=None,
            warmup_fraction: float = 0.1, max_train_steps: int | None = None,
            variants=("unstable", "stable"), good_factor: float = 3.0, eval_every: int = 50,
            seed: int = 0, quick: bool = False, workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[WarmupMeasured, list]:
    """Train (or re-read) the sweeps, the candidates and the prepended run: ``(measured, trials)``.

    1. lr* with and without a ``warmup_fraction`` warmup, per variant (Figure 8);
    2. each warmup of ``warmups`` at ``target_lr`` (Figure 6), reusing a sweep's trial
       where it is the same config;
    3. the shortest stable warmup (:func:`is_stable`) prepended: ``max_train_steps + W``.
    """
    workload = workload or setup.workload
    steps, target_lr, warmups, warmup_fraction, lrs, variants = _checked(
        setup, target_lr, warmups, warmup_fraction, max_train_steps, lrs, variants, quick)
    settings = TrialSettings(max_train_steps=steps, eval_every=eval_every, keep_best=0)
    run = dict(seed=seed, workers=workers, workspace=workspace)
    w_sweep = max(1, round(warmup_fraction * steps))

    def sweep(variant, lrs, extra=None, name="lr_sweep"):
        return lr_sweep(workload, setup, variant, lrs, settings, extra=extra, name=name, **run)

    pairs = {v: (sweep(v, lrs), sweep(v, lrs, {"warmup_steps": w_sweep}, "lr_sweep_warmup"))
             for v in variants}
    sweeps = {v: _sweeps(none, warm, lrs) for v, (none, warm) in pairs.items()}
    lr_star, lr_star_error = sweeps["unstable"].lr_star, sweeps["unstable"].error
    # A candidate the sweeps already trained (same config, init and data) is reused.
    done = {}
    for lr, r0, r1 in zip(lrs, *pairs["unstable"]):
        done[(lr, 0)], done[(lr, w_sweep)] = r0, r1
    results = [done.get((target_lr, w)) or
               sweep("unstable", [target_lr], {"warmup_steps": w} if w else None,
                     "warmup_candidate")[0] for w in warmups]
    candidates = [_candidate(w, r) for w, r in zip(warmups, results)]
    stable = [c.warmup_steps for c in candidates if is_stable(c, lr_star_error, good_factor)]
    prepended = baseline = None
    if stable and min(stable) and lr_star:
        baseline = done[(lr_star, 0)]
        (prepended,) = sweep("unstable", [target_lr],
                             {"warmup_steps": min(stable), "warmup_prepend": True},
                             "warmup_prepended")
    measured = WarmupMeasured(
        workload=workload, max_train_steps=steps, target_lr=target_lr, lrs=list(lrs),
        sweep_warmup_steps=w_sweep, good_factor=good_factor, sweeps=sweeps,
        candidates=candidates, losses={w: r.train_losses for w, r in zip(warmups, results)},
        baseline_error=None if baseline is None else trial_objective(baseline),
        prepended_error=None if prepended is None else trial_objective(prepended),
        prepended_steps=None if prepended is None else prepended.steps_done,
        prepended_best_step=None if prepended is None else prepended.best_step)
    trials = [*(r for pair in pairs.values() for rs in pair for r in rs), *results,
              *([baseline, prepended] if prepended is not None else [])]
    return measured, trials


def decide(m: WarmupMeasured) -> WarmupDecision:
    """The shortest stable warmup, its share of ``max_train_steps``, and the prepended verdict."""
    u = m.sweeps["unstable"]
    lr_star_error = u.error if u.lr_star is not None else None
    stable = [is_stable(c, lr_star_error, m.good_factor) for c in m.candidates]
    why = [why_not_stable(c, lr_star_error, m.good_factor) for c in m.candidates]
    ws = [c.warmup_steps for c, ok in zip(m.candidates, stable) if ok]
    shortest = min(ws) if ws else None
    within = shortest is not None and shortest <= 0.1 * m.max_train_steps
    above = shortest is not None and shortest > 0.05 * m.max_train_steps
    better = (None if m.prepended_error is None
              else bool(m.prepended_error < m.baseline_error))
    if shortest is None:
        text = (f"No warmup tried ({[c.warmup_steps for c in m.candidates]}) trains "
                f"lr = {m.target_lr:g} stably. Try longer warmups, gradient clipping, or a "
                f"lower learning rate.")
        return WarmupDecision(
            stable=stable, why=why, shortest=None, within_10pct=False, above_5pct=False,
            prepended_better=None, text=text)
    text = (f"A warmup of {shortest} steps ({shortest / m.max_train_steps:.0%} of "
            f"max_train_steps) is the shortest that trains lr = {m.target_lr:g} "
            f"({m.target_lr / u.lr_star:.1f} × lr*) stably.")
    if not within:
        text += " It is above 10% of max_train_steps: too long."
    elif above:
        text += " It is above 5% of max_train_steps: consider a larger max_train_steps."
    if better is not None:
        text += (f" Prepended ({m.max_train_steps} + {shortest} = {m.prepended_steps} steps), "
                 f"it reaches validation error {m.prepended_error:.3f} against the baseline's "
                 f"{m.baseline_error:.3f} at lr* without warmup (best checkpoints): "
                 + ("adopt the warmup and the higher rate." if better
                    else "no gain over the baseline."))
    return WarmupDecision(
        stable=stable, why=why, shortest=shortest, within_10pct=within, above_5pct=above,
        prepended_better=better, text=text)


def draw(m: WarmupMeasured, d: WarmupDecision, setup) -> dict:
    """The candidates' losses (Figure 6) and the sweeps with and without warmup (Figure 8)."""
    rows = [{**_row(c, ok), "why": why} for c, ok, why in zip(m.candidates, d.stable, d.why)]
    labels = {v: ", ".join(f"{k}={val}" for k, val in getattr(setup, v).items())
              for v in m.sweeps}
    return {"warmup_candidates": instability_plots.warmup_plot(
                m.losses, rows, target_lr=m.target_lr, shortest=d.shortest),
            "lr_sweep_warmup": instability_plots.lr_sweep_plot(
                m.lrs, {v: s._asdict() for v, s in m.sweeps.items()},
                warmup_steps=m.sweep_warmup_steps, variants_labels=labels)}


def grid_caveat(lrs, max_train_steps: int) -> str:
    """What grid this run swept, in words (the calibration's notes may speak of another)."""
    ratio = lrs[1] / lrs[0] if len(lrs) > 1 else 1.0
    grid = ("a factor-2 grid" if abs(ratio - 2) < 1e-6 else "a sqrt(2) grid"
            if abs(ratio - 2 ** 0.5) < 1e-3 else f"a factor-{ratio:.3g} grid")
    return (f"This run: one seed, {max_train_steps} steps, learning rates "
            f"{lrs[0]:g} ... {lrs[-1]:g} on {grid}; the notes below are the calibration's, "
            f"on the full sqrt(2) grid.")


def _row(c: Candidate, stable: bool) -> dict:
    """A candidate as the numbers show it (its spikes' recovery folds into ``stable``)."""
    row = c._asdict()
    del row["recovered"]
    return {**row, "stable": stable}


def numbers(m: WarmupMeasured, d: WarmupDecision) -> dict:
    """The JSON-ready numbers of a warmup study."""
    u = m.sweeps["unstable"]
    return {
        "workload": m.workload, "max_train_steps": m.max_train_steps, "target_lr": m.target_lr,
        "lr_star": u.lr_star,
        "target_over_lr_star": m.target_lr / u.lr_star if u.lr_star else None,
        "candidates": [_row(c, ok) for c, ok in zip(m.candidates, d.stable)],
        "shortest_stable_warmup": d.shortest,
        "shortest_fraction": d.shortest / m.max_train_steps if d.shortest is not None else None,
        "within_10pct": d.within_10pct, "above_5pct": d.above_5pct,
        "sweep_warmup_steps": m.sweep_warmup_steps, "lrs": list(m.lrs),
        "lr_sweeps": {v: s._asdict() for v, s in m.sweeps.items()},
        "baseline_error": m.baseline_error, "prepended_error": m.prepended_error,
        "prepended_steps": m.prepended_steps, "prepended_best_step": m.prepended_best_step}


def warmup_study(workload: str | None = None, *, setup: unstable.UnstableSetup = unstable.WARMUP,
                 quick: bool = False, **options) -> ProcedureResult:
    """Warmup candidates at ``target_lr``, the prepended warmup, and the Figure 8 sweeps.

    ``options`` are :func:`measure`'s (``target_lr``, ``warmups``, ``lrs``,
    ``warmup_fraction``, ``max_train_steps``, ``variants``, ``good_factor``,
    ``eval_every``, ``seed``, ``workers``, ``workspace``). Defaults come from
    ``setup`` (:data:`refplay.train.unstable.WARMUP`); ``target_lr`` =
    :data:`TARGET_LR` (8 × lr*, the last grid point below 10 ×). ``quick=True``:
    every other rate of the setup's grid
    (:func:`~refplay.procedures.instability.quick_lrs`) and only
    the unstable variant in the Figure 8 sweep.
    """
    measured, trials = measure(workload, setup=setup, quick=quick, **options)
    decision = decide(measured)
    caveats = [grid_caveat(measured.lrs, measured.max_train_steps), *setup.caveats,
               f"A candidate is 'stable' when it completes, every loss spike recovers, its best "
               f"error is <= {measured.good_factor:g} x lr*'s, and its last 10% of losses "
               f"average below half the step-0 loss."]
    return ProcedureResult(
        question=QUESTION, decision=decision.text, numbers=numbers(measured, decision),
        figures=draw(measured, decision, setup), trials=trials, caveats=caveats)

