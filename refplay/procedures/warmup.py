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

:func:`warmup_study` trains ``target_lr`` (about 10 × lr*, infeasible
without warmup) with each candidate warmup (linear ramp 0 → ``target_lr``,
then constant) and calls a candidate **stable** when the trial completes
, every loss spike found by :func:`~refplay.analysis.detect_instability`
recovers, its best validation error is at most ``good_factor`` (3) × that
of lr* without warmup (refplay's reading of "trains": at this learning
rate the post-norm net's failure is poor optimization, error 0.46 against
0.05, more often than NaN), and it has *learned* (the mean loss of its last 10 % of steps is below half the
step-0 loss: Figure 6's short warmups "collapse back" to a high loss).
The shortest stable warmup ``W`` is checked against 10 % and 5 % of
``max_train_steps``, then **prepended** (``warmup_prepend``: ``max_train_steps
+ W`` updates) and compared, best checkpoint against best checkpoint, with
the baseline at lr* without warmup. For Figure 8 it sweeps the learning
rate with and without a ``warmup_fraction`` warmup for the unstable variant
(and the stable one unless ``quick``) and reports lr* of each.
"""

from __future__ import annotations

import os

import numpy as np

from refplay import _validate
from refplay.analysis.objective import objective_of
from refplay.plots import instability as instability_plots
from refplay.procedures.instability import QUICK_LRS, best_lr, lr_sweep, spike_events
from refplay.procedures.result import ProcedureResult
from refplay.train import unstable
from refplay.train.settings import TrialSettings

__all__ = ["warmup_study", "WARMUPS", "TARGET_LR"]

WARMUPS = (0, 10, 40, 100)      # the playbook's 10, 10^3, ... scaled to a 400-step budget
# 8 x lr* of the post-norm ResNet (lr* = 0.04): without warmup it completes but learns
# little (validation error 0.46); the calibration's 0.453 is chaotic under the trial
# loop's divergence rule (no warmup completes at error 0.65, warmups of 40 and 100 steps NaN).
TARGET_LR = 0.32



def _largest_feasible(results, lrs) -> float | None:
    ok = [lr for r, lr in zip(results, lrs) if r.feasible]
    return max(ok) if ok else None


def warmup_study(workload: str | None = None, *, setup: unstable.UnstableSetup = unstable.WARMUP,
                 target_lr: float | None = None, warmups=WARMUPS, lrs=None,
                 warmup_fraction: float = 0.1, max_train_steps: int | None = None,
                 variants=("unstable", "stable"), good_factor: float = 3.0, eval_every: int = 50, seed: int = 0,
                 quick: bool = False, workers: int | None = 0,
                 workspace: str | os.PathLike | None = None) -> ProcedureResult:
    """Warmup candidates at ``target_lr``, the prepended warmup, and the Figure 8 sweeps.

    Defaults come from ``setup`` (:data:`refplay.train.unstable.WARMUP`):
    ``target_lr`` = :data:`TARGET_LR` (8 × lr*, the last grid point below 10 ×).
    ``quick=True``: the factor-2 grid :data:`~refplay.procedures.instability.QUICK_LRS`
    and only the unstable variant in the Figure 8 sweep.
    """
    workload = workload or setup.workload
    steps = _validate.integer("max_train_steps", max_train_steps or setup.max_train_steps, low=2)
    target_lr = _validate.real("target_lr", TARGET_LR if target_lr is None
                               else target_lr, low=0.0, low_open=True)
    warmups = sorted({_validate.integer(f"warmups[{i}]", w, low=0, high=steps - 1)
                      for i, w in enumerate(warmups)})
    warmup_fraction = _validate.real("warmup_fraction", warmup_fraction, low=0.0, high=0.5,
                                     low_open=True)
    lrs = sorted(QUICK_LRS if (quick and lrs is None) else (lrs or setup.lrs))
    if quick:
        variants = ("unstable",)
    if "unstable" not in variants:
        raise ValueError(f"variants={variants} must include 'unstable' (its lr* is the baseline)")
    for v in variants:
        _validate.one_of("variants[i]", v, ("unstable", "stable"))
    settings = TrialSettings(max_train_steps=steps, eval_every=eval_every, keep_best=0)
    run = dict(seed=seed, workers=workers, workspace=workspace)
    w_sweep = max(1, round(warmup_fraction * steps))

    # 1. Figure 8: lr* with and without warmup (the no-warmup sweep is stability_scan's).
    sweeps = {}
    for v in variants:
        none = lr_sweep(workload, setup, v, lrs, settings, **run)
        warm = lr_sweep(workload, setup, v, lrs, settings, extra={"warmup_steps": w_sweep},
                        name="lr_sweep_warmup", **run)
        sweeps[v] = {"none": none, "warmup": warm}
    fig8 = {}
    for v, pair in sweeps.items():
        lr_none, err_none = best_lr(pair["none"], lrs)
        lr_warm, err_warm = best_lr(pair["warmup"], lrs)
        fig8[v] = {"lr_star": lr_none, "error": err_none, "lr_star_warmup": lr_warm,
                   "error_warmup": err_warm,
                   "ratio": (lr_warm / lr_none) if lr_none and lr_warm else None,
                   "largest_feasible": _largest_feasible(pair["none"], lrs),
                   "largest_feasible_warmup": _largest_feasible(pair["warmup"], lrs),
                   "statuses": [str(r.status) for r in pair["none"]],
                   "statuses_warmup": [str(r.status) for r in pair["warmup"]],
                   "errors": [objective_of(r) for r in pair["none"]],
                   "errors_warmup": [objective_of(r) for r in pair["warmup"]]}
    lr_star = fig8["unstable"]["lr_star"] if "unstable" in fig8 else None
    three_x = None
    if lr_star:
        # CL24: is 3 x lr* (no warmup) feasible with the warmup? (the next grid point >= 3 lr*)
        above = [lr for lr in lrs if lr >= 3 * lr_star - 1e-12]
        if above:
            i = lrs.index(above[0])
            three_x = {"lr": above[0], "feasible_warmup": sweeps["unstable"]["warmup"][i].feasible,
                       "feasible_none": sweeps["unstable"]["none"][i].feasible}

    # 2. Figure 6: the candidates at target_lr, shortest stable warmup.
    # A candidate the Figure 8 sweeps already trained (same config, init and data) is reused.
    done = {}
    if "unstable" in sweeps:
        for lr, r0, r1 in zip(lrs, sweeps["unstable"]["none"], sweeps["unstable"]["warmup"]):
            done[(lr, 0)], done[(lr, w_sweep)] = r0, r1
    candidates = [
        done.get((target_lr, w)) or
        lr_sweep(workload, setup, "unstable", [target_lr], settings,
                 extra={"warmup_steps": w} if w else None, name="warmup_candidate", **run)[0]
        for w in warmups]
    rows = []
    for w, r in zip(warmups, candidates):
        events = spike_events(r.train_losses) if r.feasible else []
        tail = r.train_losses[-max(1, len(r.train_losses) // 10):]
        learned = bool(r.feasible and r.train_losses.size
                       and float(np.mean(tail)) < 0.5 * float(r.train_losses[0]))
        rows.append({"warmup_steps": w, "status": str(r.status), "steps_done": r.steps_done,
                     "events": len(events), "learned": learned, "best_error": objective_of(r),
                     "stable": bool(r.feasible and learned
                                    and all(e["recovered"] for e in events)
                                    and lr_star is not None
                                    and objective_of(r) <= good_factor * fig8["unstable"]["error"])})
    stable_w = [row["warmup_steps"] for row in rows if row["stable"]]
    shortest = min(stable_w) if stable_w else None

    # 3. Prepend the shortest stable warmup and compare with the baseline (lr*, no warmup).
    prepended = baseline = None
    if shortest and lr_star:
        baseline = done[(lr_star, 0)]
        (prepended,) = lr_sweep(workload, setup, "unstable", [target_lr], settings,
                                extra={"warmup_steps": shortest, "warmup_prepend": True},
                                name="warmup_prepended", **run)
    numbers = {
        "workload": workload, "max_train_steps": steps, "target_lr": target_lr,
        "lr_star": lr_star, "target_over_lr_star": target_lr / lr_star if lr_star else None,
        "candidates": rows, "shortest_stable_warmup": shortest,
        "shortest_fraction": shortest / steps if shortest is not None else None,
        "within_10pct": shortest is not None and shortest <= 0.1 * steps,
        "above_5pct": shortest is not None and shortest > 0.05 * steps,
        "sweep_warmup_steps": w_sweep, "lrs": list(lrs), "fig8": fig8, "three_x": three_x,
        "baseline_error": None if baseline is None else objective_of(baseline),
        "prepended_error": None if prepended is None else objective_of(prepended),
        "prepended_steps": None if prepended is None else prepended.steps_done,
        "prepended_best_step": None if prepended is None else prepended.best_step,
    }
    if shortest is None:
        decision = (f"no warmup tried ({warmups}) trains lr = {target_lr:g} stably: try longer "
                    f"warmups, gradient clipping, or a lower learning rate")
    else:
        decision = (f"warmup of {shortest} steps ({shortest / steps:.0%} of max_train_steps) "
                    f"is the shortest that trains lr = {target_lr:g} ({numbers['target_over_lr_star']:.1f} × lr*) "
                    f"stably")
        decision += ("; it is above 10% of max_train_steps: too long" if not numbers["within_10pct"]
                     else "; above 5%: consider a larger max_train_steps" if numbers["above_5pct"]
                     else "")
        if prepended is not None:
            better = numbers["prepended_error"] < numbers["baseline_error"]
            decision += (f". Prepended ({steps} + {shortest} = {prepended.steps_done} steps) it "
                         f"reaches validation error {numbers['prepended_error']:.3f} vs the "
                         f"baseline's {numbers['baseline_error']:.3f} (best checkpoints): "
                         + ("adopt the warmup and the higher rate" if better
                            else "no gain over the baseline at lr*"))
    figures = {
        "fig6_warmup_candidates": instability_plots.warmup_plot(
            {w: r.train_losses for w, r in zip(warmups, candidates)}, rows,
            target_lr=target_lr, shortest=shortest),
        "fig8_lr_sweep_warmup": instability_plots.lr_sweep_plot(
            lrs, fig8, warmup_steps=w_sweep, variants_labels={
                v: ", ".join(f"{k}={val}" for k, val in getattr(setup, v).items())
                for v in fig8}),
    }
    caveats = list(setup.caveats) + [
        f"A candidate is 'stable' when it completes, every loss spike recovers, its best error is "
        f"<= {good_factor:g} x lr*'s, "
        "and its last 10% of losses average below half the step-0 loss."]
    return ProcedureResult("Which warmup lets the unstable model train at a ~10x higher learning "
                           "rate, and does the prepended warmup beat the baseline?", decision,
                           numbers, figures,
                           [*(r for p in sweeps.values() for k in p for r in p[k]), *candidates,
                            *([baseline, prepended] if prepended is not None else [])], caveats)
