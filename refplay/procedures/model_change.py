"""A model change that makes high learning rates unstable, and warmup fixing it (Figure 4).

The playbook ("How can optimization failures be debugged and mitigated?"),
Figure 4: *"Changing the strides in a single residual block (2x2 -> 1x1) in a
WideResnet results in training instability. This does not degrade
performance at low learning rates, but high learning rates no longer train
well due to the instability. Applying 1000 steps of learning rate warmup
resolves this particular instance of instability, allowing stable training
at max learning rate of .1."*

The experiment, on a calibrated :class:`~refplay.train.unstable.UnstableSetup`
(``stable`` = the standard model, ``unstable`` = the changed one):

1. both models at every learning rate of the sweep, without warmup, once per
   seed (the figure's top panel);
2. the changed model with a ``warmup_steps`` warmup at ``target_lr``, the
   high rate where it fails (the figure's rescue);
3. the per-step training loss of both models at ``low_lr`` and ``target_lr``
   (the bottom panels).

Every trial runs in one study (:func:`~refplay.procedures.studies.run_keyed`).
**measure → decide → draw**: :func:`measure` trains (or re-reads), :func:`decide`
is a pure function of the numbers, :func:`refplay.plots.instability.model_change_plot`
draws them.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.analysis.uncertainty import binomial_se
from refplay.plots import instability as instability_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_keyed
from refplay.procedures.sweeps import best_error_seen, index_of, per_seed_best, sweep_caveat
from refplay.train import unstable
from refplay.train.result import TrialStatus
from refplay.train.workloads import get_workload

__all__ = ["model_change_study", "measure", "decide", "draw", "numbers", "ModelChangeMeasured",
           "ModelChangeDecision", "QUESTION"]

QUESTION = ("Does the changed model train as well as the standard one at low learning rates, "
            "fail at high ones, and does warmup let it train there?")
VARIANTS = ("stable", "unstable")


class ModelChangeMeasured(NamedTuple):
    """What :func:`measure` trained, as numbers (errors are the lowest validation error each
    run reached, infeasible ones included -- ``statuses`` says which; lists are [seed][lr])."""

    workload: str
    variants: dict               # "stable" / "unstable" -> model hyperparameters
    lrs: list
    seeds: list
    max_train_steps: int
    n_validation: int
    errors: dict                 # variant -> [[error per lr] per seed]
    statuses: dict               # variant -> [[status per lr] per seed]
    low_lr: float
    target_lr: float
    warmup_steps: int
    rescued_errors: list         # the changed model + warmup at target_lr, per seed
    rescued_statuses: list
    losses: dict                 # "variant@lr" and "rescued" -> per-step loss of seeds[0]


class ModelChangeDecision(NamedTuple):
    """The comparison of the two models, seed by seed."""

    lr_star: dict                # variant -> lr* per seed (None: nothing trained)
    best_error: dict             # variant -> its error per seed
    margin: float                # 2 binomial standard errors of the standard model at target_lr
    gap_low: list                # per seed: changed - standard error at low_lr
    gap_high: list               # per seed: changed - standard at target_lr (inf: changed failed)
    unstable_at_high: bool       # changed failed or worse by > margin on every seed
    fine_at_low: bool            # changed within margin of (or better than) standard at low_lr
    rescued: bool                # with warmup: feasible and better than without, every seed
    text: str


def measure(workload: str | None = None, *, setup: unstable.UnstableSetup, lrs=None,
            seeds=None, low_lr: float | None = None, target_lr: float | None = None,
            warmup_steps: int | None = None, max_train_steps: int | None = None,
            eval_every: int = 50, workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[ModelChangeMeasured, list]:
    """Train (or re-read) the sweep of both models and the rescue: ``(measured, trials)``."""
    workload = workload or setup.workload
    lrs = sorted(lrs or setup.lrs)
    seeds = [int(s) for s in (seeds or setup.run_seeds())]
    low_lr = low_lr if low_lr is not None else setup.low_lr
    target_lr = target_lr if target_lr is not None else setup.target_lr
    index_of(lrs, low_lr, "low_lr"), index_of(lrs, target_lr, "target_lr")
    warmup = _validate.integer("warmup_steps", warmup_steps or setup.warmup_steps, low=1)
    settings = setup.settings(eval_every=eval_every, max_train_steps=max_train_steps)
    configs = {(v, s, lr): setup.seeded_config(v, lr, s) for v in VARIANTS for s in seeds
               for lr in lrs}
    configs.update({("rescued", s, target_lr): setup.seeded_config(
        "unstable", target_lr, s, warmup_steps=warmup) for s in seeds})
    runs = run_keyed("model_change", workload, configs, settings, workers=workers,
                     workspace=workspace, workload_options=dict(setup.workload_options))
    wl = get_workload(workload, **dict(setup.workload_options))
    s0 = seeds[0]
    measured = ModelChangeMeasured(
        workload=workload, variants={v: dict(getattr(setup, v)) for v in VARIANTS},
        lrs=list(lrs), seeds=seeds, max_train_steps=settings.max_train_steps,
        n_validation=len(wl.validation),
        errors={v: [[best_error_seen(runs[v, s, lr]) for lr in lrs] for s in seeds]
                for v in VARIANTS},
        statuses={v: [[str(runs[v, s, lr].status) for lr in lrs] for s in seeds]
                  for v in VARIANTS},
        low_lr=float(low_lr), target_lr=float(target_lr), warmup_steps=warmup,
        rescued_errors=[best_error_seen(runs["rescued", s, target_lr]) for s in seeds],
        rescued_statuses=[str(runs["rescued", s, target_lr].status) for s in seeds],
        losses={**{f"{v}@{lr:g}": runs[v, s0, lr].train_losses
                   for v in VARIANTS for lr in (low_lr, target_lr)},
                "rescued": runs["rescued", s0, target_lr].train_losses})
    return measured, list(runs.values())


def _gap(changed: float, changed_ok: bool, standard: float) -> float:
    """Changed minus standard error; ``inf`` when the changed model's run failed."""
    return changed - standard if changed_ok else math.inf


def decide(m: ModelChangeMeasured) -> ModelChangeDecision:
    """Seed by seed: the gap at ``low_lr`` and ``target_lr``, and the warmup rescue."""
    lo, hi = index_of(m.lrs, m.low_lr, "low_lr"), index_of(m.lrs, m.target_lr, "target_lr")
    done = {v: [[st == TrialStatus.COMPLETE for st in row] for row in m.statuses[v]]
            for v in VARIANTS}
    std_high = [e[hi] for e in m.errors["stable"]]
    margin = 2.0 * binomial_se(float(np.clip(np.nanmean(std_high), 0, 1)), m.n_validation)
    pairs = list(zip(m.errors["unstable"], done["unstable"], m.errors["stable"]))
    gap_low = [_gap(c[lo], ok[lo], s[lo]) for c, ok, s in pairs]
    gap_high = [_gap(c[hi], ok[hi], s[hi]) for c, ok, s in pairs]
    unstable_high = all(g > margin for g in gap_high)
    fine_low = all(g <= margin for g in gap_low)
    rescued = all(st == TrialStatus.COMPLETE and (not ok[hi] or e < c[hi])
                  for st, e, (c, ok, _) in zip(m.rescued_statuses, m.rescued_errors, pairs))
    lr_star = {v: per_seed_best(m.lrs, m.errors[v], m.statuses[v]) for v in VARIANTS}
    best_error = {v: [m.errors[v][k][m.lrs.index(lr)] if lr is not None else math.nan
                      for k, lr in enumerate(lr_star[v])] for v in VARIANTS}
    return ModelChangeDecision(
        lr_star=lr_star, best_error=best_error, margin=margin, gap_low=gap_low,
        gap_high=gap_high, unstable_at_high=unstable_high, fine_at_low=fine_low,
        rescued=rescued,
        text=_text(m, unstable_high, fine_low, rescued, gap_low, gap_high, margin))


def _gaps(gaps) -> str:
    return " / ".join("failed" if math.isinf(g) else f"{g:+.3f}" for g in gaps)


def _text(m, unstable_high, fine_low, rescued, gap_low, gap_high, margin) -> str:
    n = len(m.seeds)
    head = (f"At lr = {m.target_lr:g} the changed model "
            + ("fails or trains worse than the standard one" if unstable_high
               else "is not clearly worse than the standard one")
            + f" on {'every' if unstable_high else 'some'} seed of {n} "
            f"(error gap {_gaps(gap_high)}; margin {margin:.3f}).")
    low = (f" At lr = {m.low_lr:g} it is "
           + ("as good or better" if fine_low else "already worse")
           + f" (gap {_gaps(gap_low)}).")
    fix = (f" A {m.warmup_steps}-step warmup "
           + ("lets it train at " if rescued else "does not rescue it at ")
           + f"{m.target_lr:g} (error "
           + " / ".join(f"{e:.3f}" + ("" if st == TrialStatus.COMPLETE else " infeasible")
                        for e, st in zip(m.rescued_errors, m.rescued_statuses)) + ").")
    verdict = (" The change makes high learning rates unstable, and warmup fixes that "
               "instability." if unstable_high and rescued else "")
    return head + low + fix + verdict


def numbers(m: ModelChangeMeasured, d: ModelChangeDecision) -> dict:
    """The JSON-ready numbers (no per-step losses)."""
    out = m._asdict()
    del out["losses"]
    return {**out, **{k: v for k, v in d._asdict().items() if k != "text"}}


def draw(m: ModelChangeMeasured, d: ModelChangeDecision, setup) -> dict:
    """Figure 4: the sweep of both models (top), their losses at a low and a high rate."""
    names = {"stable": f"standard ({setup.label('stable')})",
             "unstable": f"changed ({setup.label('unstable')})"}
    traces = {lr: {names[v]: m.losses[f"{v}@{lr:g}"] for v in VARIANTS}
              for lr in (m.low_lr, m.target_lr)}
    traces[m.target_lr][f"changed + {m.warmup_steps}-step warmup"] = m.losses["rescued"]
    return {"model_change": instability_plots.model_change_plot(
        m.lrs, {names[v]: m.errors[v] for v in VARIANTS},
        {names[v]: m.statuses[v] for v in VARIANTS},
        rescue=(m.target_lr, m.rescued_errors, m.rescued_statuses, m.warmup_steps),
        traces=traces, title=setup.question)}


def model_change_study(workload: str | None = None, *,
                       setup: unstable.UnstableSetup = unstable.TRANSFORMER_CHANGE,
                       quick: bool = False, **options) -> ProcedureResult:
    """Both models swept, the changed one rescued by warmup (see the module docstring).

    ``options`` are :func:`measure`'s (``lrs``, ``seeds``, ``low_lr``, ``target_lr``,
    ``warmup_steps``, ``max_train_steps``, ``eval_every``, ``workers``,
    ``workspace``). ``quick=True``: only ``low_lr``, ``target_lr`` and the top
    rate of the sweep, one seed.
    """
    if quick:
        options.setdefault("lrs", sorted({setup.low_lr, setup.target_lr, max(setup.lrs)}))
        options.setdefault("seeds", setup.run_seeds()[:1])
    m, trials = measure(workload, setup=setup, **options)
    d = decide(m)
    caveats = [sweep_caveat(m.seeds, m.max_train_steps, m.lrs, setup), *setup.caveats]
    return ProcedureResult(question=QUESTION, decision=d.text, numbers=numbers(m, d),
                           figures=draw(m, d, setup), trials=trials, caveats=caveats)
