"""The beneficial effect of warmup: learning-rate sweeps with and without it, per model (Fig 8).

The playbook ("How to apply learning rate warmup"), Figure 8: *"Beneficial
effect of learning rate warmup on addressing training instabilities"* -- a
6-layer Post-LN and Pre-LN Transformer, each swept over the base learning
rate with and without warmup; runs that fail are marked "poor optimization",
the best rate of each sweep starred. Warmup moves the best rate up (about
4.6x for Post-LN, 2.8x for Pre-LN there) because it lets the model train at
rates that fail without it.

The experiment: for each model of the setup (``unstable`` = Post-LN,
``stable`` = Pre-LN), each seed and each learning rate, one run without
warmup and one with a ``warmup_steps`` linear warmup (carved out of the
budget, then the setup's schedule). lr* of a sweep is the rate with the
lowest mean error over seeds among those every seed trained
(:mod:`refplay.procedures.sweeps`). Claim CL22: warmup raises the unstable
model's lr* at least 2x, and the stable model's by less.

**measure → decide → draw**, like every procedure.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from refplay import _validate
from refplay.plots import instability as instability_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_keyed
from refplay.procedures.sweeps import (best_error_seen, largest_training_lr, mean_best,
                                       per_seed_best, sweep_caveat)
from refplay.train import unstable

__all__ = ["warmup_effect", "measure", "decide", "draw", "numbers", "WarmupEffectMeasured",
           "SweepSummary", "WarmupEffectDecision", "QUESTION", "SERIES"]

QUESTION = ("Does warmup let the model train at larger learning rates, and move its best "
            "learning rate up -- the unstable (Post-LN) model more than the stable one?")
#: The four sweeps: (variant, with warmup).
SERIES = (("unstable", False), ("unstable", True), ("stable", False), ("stable", True))


class WarmupEffectMeasured(NamedTuple):
    """The four sweeps' numbers: ``errors``/``statuses`` map ``"variant"`` or
    ``"variant+warmup"`` to ``[[per lr] per seed]`` (errors: lowest validation error reached)."""

    workload: str
    variants: dict
    lrs: list
    seeds: list
    max_train_steps: int
    warmup_steps: int
    errors: dict
    statuses: dict


class SweepSummary(NamedTuple):
    """One sweep read the playbook's way."""

    lr_star: float | None        # lowest mean error over seeds among rates every seed trained
    error: float
    lr_star_per_seed: list
    largest_training_lr: float | None


class WarmupEffectDecision(NamedTuple):
    """How far warmup moves each model's best rate and its largest training rate."""

    sweeps: dict                 # series key -> SweepSummary
    ratio: dict                  # variant -> lr*(warmup) / lr*(none) (None: undefined)
    ratio_per_seed: dict         # variant -> per-seed ratios
    holds: bool                  # CL22: unstable ratio >= 2 and > the stable one's
    text: str


def key(variant: str, warmup: bool) -> str:
    """The series key: ``"unstable"``, ``"unstable+warmup"``, ..."""
    return variant + ("+warmup" if warmup else "")


def measure(workload: str | None = None, *, setup: unstable.UnstableSetup, lrs=None,
            seeds=None, variants=("unstable", "stable"), warmup_steps: int | None = None,
            max_train_steps: int | None = None, eval_every: int = 50,
            workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[WarmupEffectMeasured, list]:
    """Train (or re-read) every sweep in one study: ``(measured, trials)``."""
    workload = workload or setup.workload
    lrs = sorted(lrs or setup.lrs)
    seeds = [int(s) for s in (seeds or setup.run_seeds())]
    warmup = _validate.integer("warmup_steps", warmup_steps or setup.warmup_steps, low=1)
    for i, v in enumerate(variants):
        _validate.one_of(f"variants[{i}]", v, ("unstable", "stable"))
    settings = setup.settings(eval_every=eval_every, max_train_steps=max_train_steps)
    series = [(v, w) for v, w in SERIES if v in variants]
    configs = {(key(v, w), s, lr): setup.seeded_config(v, lr, s,
                                                       **({"warmup_steps": warmup} if w else {}))
               for v, w in series for s in seeds for lr in lrs}
    runs = run_keyed("warmup_effect", workload, configs, settings, workers=workers,
                     workspace=workspace, workload_options=dict(setup.workload_options))
    keys = [key(v, w) for v, w in series]
    measured = WarmupEffectMeasured(
        workload=workload, variants={v: dict(getattr(setup, v)) for v in variants},
        lrs=list(lrs), seeds=seeds, max_train_steps=settings.max_train_steps,
        warmup_steps=warmup,
        errors={k: [[best_error_seen(runs[k, s, lr]) for lr in lrs] for s in seeds]
                for k in keys},
        statuses={k: [[str(runs[k, s, lr].status) for lr in lrs] for s in seeds] for k in keys})
    return measured, list(runs.values())


def _summary(m: WarmupEffectMeasured, k: str) -> SweepSummary:
    lr_star, err = mean_best(m.lrs, m.errors[k], m.statuses[k])
    return SweepSummary(lr_star=lr_star, error=err,
                        lr_star_per_seed=per_seed_best(m.lrs, m.errors[k], m.statuses[k]),
                        largest_training_lr=largest_training_lr(m.lrs, m.statuses[k]))


def _ratio(a, b):
    return b / a if a and b else None


def decide(m: WarmupEffectMeasured) -> WarmupEffectDecision:
    """lr* with and without warmup per model, over the mean of seeds and seed by seed."""
    sweeps = {k: _summary(m, k) for k in m.errors}
    ratio, per_seed = {}, {}
    for v in m.variants:
        none, warm = sweeps[key(v, False)], sweeps[key(v, True)]
        ratio[v] = _ratio(none.lr_star, warm.lr_star)
        per_seed[v] = [_ratio(a, b) for a, b in zip(none.lr_star_per_seed,
                                                     warm.lr_star_per_seed)]
    u, st = ratio.get("unstable"), ratio.get("stable")
    holds = bool(u and u >= 2.0 and ("stable" not in ratio or (st is not None and st < u)))
    parts = []
    for v in m.variants:
        none, warm = sweeps[key(v, False)], sweeps[key(v, True)]
        moved = f"{ratio[v]:.1f}x" if ratio[v] else "undefined"
        parts.append(f"{v}: lr* {none.lr_star} -> {warm.lr_star} with a {m.warmup_steps}-step "
                     f"warmup ({moved}; per seed "
                     + ", ".join("-" if r is None else f"{r:.1f}x" for r in per_seed[v])
                     + f"), largest training rate {none.largest_training_lr} -> "
                     f"{warm.largest_training_lr}")
    text = "; ".join(parts) + (". Warmup moves the unstable model's best rate at least 2x, "
                               "more than the stable one's: adopt it." if holds else ".")
    return WarmupEffectDecision(sweeps=sweeps, ratio=ratio, ratio_per_seed=per_seed,
                                holds=holds, text=text)


def numbers(m: WarmupEffectMeasured, d: WarmupEffectDecision) -> dict:
    """The JSON-ready numbers."""
    return {**m._asdict(), "sweeps": {k: s._asdict() for k, s in d.sweeps.items()},
            "ratio": d.ratio, "ratio_per_seed": d.ratio_per_seed, "holds": d.holds}


_STYLE = {"unstable": ("tab:red", "#f1948a"), "stable": ("tab:blue", "#85c1e9")}


def draw(m: WarmupEffectMeasured, d: WarmupEffectDecision, setup) -> dict:
    """Figure 8: the four sweeps on one axis, the playbook's colours (Post-LN red, Pre-LN blue)."""
    series = {}
    for k in m.errors:
        v, warm = k.split("+")[0], k.endswith("+warmup")
        label = (f"{setup.label(v)}" + (f" + {m.warmup_steps}-step warmup" if warm else "")
                 + f": best lr {d.sweeps[k].lr_star}")
        series[label] = (m.errors[k], m.statuses[k], _STYLE[v][int(warm)], "--" if warm else "-")
    return {"warmup_effect": instability_plots.warmup_effect_plot(
        m.lrs, series, title=setup.question)}


def warmup_effect(workload: str | None = None, *,
                  setup: unstable.UnstableSetup = unstable.TRANSFORMER_WARMUP,
                  quick: bool = False, **options) -> ProcedureResult:
    """The four sweeps, lr* of each, and CL22's verdict (see the module docstring).

    ``options`` are :func:`measure`'s (``lrs``, ``seeds``, ``variants``,
    ``warmup_steps``, ``max_train_steps``, ``eval_every``, ``workers``,
    ``workspace``). ``quick=True``: every other rate of the setup's grid, one seed.
    """
    if quick:
        options.setdefault("lrs", setup.lrs[1::2])
        options.setdefault("seeds", setup.run_seeds()[:1])
    m, trials = measure(workload, setup=setup, **options)
    d = decide(m)
    return ProcedureResult(question=QUESTION, decision=d.text, numbers=numbers(m, d),
                           figures=draw(m, d, setup), trials=trials,
                           caveats=[sweep_caveat(m.seeds, m.max_train_steps, m.lrs, setup),
                                    *setup.caveats])
