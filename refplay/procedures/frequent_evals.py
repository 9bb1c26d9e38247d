"""Frequent early evaluations reveal an instability that a common schedule misses (Figure 5).

The playbook ("Identifying unstable workloads"): *"Some models show very
early instability followed by a recovery that results in slow but stable
training. Common evaluation schedules can miss these issues by not
evaluating frequently enough!"* Its Figure 5 evaluates two models (Figure
4's standard and changed ones) every 1,000 steps, where both curves look
like normal training, and every step for the first 100 steps, where the
changed model's loss jumps ~20x within 10 steps and recovers.

The experiment: both models of the setup at one high learning rate without
warmup, once per seed, each evaluated on the validation set every
``coarse_every`` steps *and* at every step up to ``dense_steps``
(``TrialSettings.dense_eval_steps``). Evaluating changes nothing in
training, so the two views are of the same run. Only NaN/Inf stop a run
(``divergence_factor=None``) so a jump is seen whole.

Per run it measures, in the dense view, the largest rise of the validation
loss above its value at step 0 (the *jump*) and its step; whether the run
recovered (it completed: it neither diverged nor ended collapsed); and
whether the coarse view ever shows a value above its first one (if not, it
looks like normal training and hides the jump). Claim CL23: some run jumps
at least 2x in the first 10 % of the steps while its coarse view never
rises above its start.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.plots import instability as instability_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_keyed
from refplay.train import unstable
from refplay.train.result import TrialStatus

__all__ = ["frequent_evals", "measure", "decide", "draw", "numbers", "FrequentMeasured",
           "RunViews", "FrequentDecision", "QUESTION"]

QUESTION = ("Does evaluating every step early in training show an instability that "
            "evaluating every few dozen steps hides?")
METRIC = "validation/loss"
VARIANTS = ("stable", "unstable")


class RunViews(NamedTuple):
    """One run seen two ways: every step up to ``dense_steps``, and every ``coarse_every``."""

    variant: str
    seed: int
    status: str
    dense_steps: list
    dense: list                  # validation loss at every step 0 ... dense_steps
    coarse_steps: list
    coarse: list                 # validation loss every coarse_every steps, to the end


class FrequentMeasured(NamedTuple):
    """Every run's two views (:class:`RunViews`) and the protocol."""

    workload: str
    variants: dict
    lr: float
    max_train_steps: int
    coarse_every: int
    dense_steps: int
    runs: list


class FrequentDecision(NamedTuple):
    """Per run: the jump the dense view shows, and whether the coarse view shows it."""

    jump: list                   # max dense loss / loss at step 0, per run
    jump_step: list
    recovered: list              # the run completed (neither diverged nor ended collapsed)
    coarse_below_start: list     # no coarse evaluation after step 0 is above the step-0 value
    hidden: list                 # jump >= min_jump in the first 10 %, coarse below its start
    holds: bool                  # CL23: some run's jump is hidden
    text: str


def measure(workload: str | None = None, *, setup: unstable.UnstableSetup, lr: float | None = None,
            seeds=None, max_train_steps: int | None = None, coarse_every: int = 50,
            dense_steps: int = 100, workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[FrequentMeasured, list]:
    """Train (or re-read) both models per seed with dense early evaluation."""
    workload = workload or setup.workload
    lr = _validate.real("lr", setup.target_lr if lr is None else lr, low=0.0, low_open=True)
    seeds = [int(s) for s in (seeds or setup.run_seeds())]
    steps = max_train_steps or setup.max_train_steps
    coarse_every = _validate.integer("coarse_every", coarse_every, low=2, high=steps)
    dense_steps = _validate.integer("dense_steps", dense_steps, low=1, high=steps)
    settings = setup.settings(eval_every=coarse_every, max_train_steps=steps,
                              dense_eval_steps=dense_steps, divergence_factor=None)
    configs = {(v, s): setup.seeded_config(v, lr, s) for v in VARIANTS for s in seeds}
    results = run_keyed("frequent_evals", workload, configs, settings, workers=workers,
                        workspace=workspace, workload_options=dict(setup.workload_options))
    runs = []
    for (v, s), r in results.items():
        curve = dict(zip(r.eval_steps, r.curves[METRIC]))
        dense = [t for t in sorted(curve) if t <= dense_steps]
        coarse = [t for t in sorted(curve) if t % coarse_every == 0]
        runs.append(RunViews(variant=v, seed=s, status=str(r.status), dense_steps=dense,
                             dense=[float(curve[t]) for t in dense], coarse_steps=coarse,
                             coarse=[float(curve[t]) for t in coarse]))
    return FrequentMeasured(workload=workload, variants={v: dict(getattr(setup, v))
                                                         for v in VARIANTS},
                            lr=lr, max_train_steps=steps, coarse_every=coarse_every,
                            dense_steps=dense_steps, runs=runs), list(results.values())


def _below_start(values) -> bool:
    v = np.asarray(values, dtype=np.float64)
    return bool(v.size and np.all(v[1:][np.isfinite(v[1:])] <= v[0]))


def decide(m: FrequentMeasured, min_jump: float = 2.0) -> FrequentDecision:
    """The dense view's jump per run, and whether the coarse view hides it."""
    jump, step, recovered, below, hidden = [], [], [], [], []
    early = 0.1 * m.max_train_steps
    for run in m.runs:
        d = np.asarray(run.dense, dtype=np.float64)
        i = int(np.nanargmax(d)) if np.isfinite(d).any() else 0
        jump.append(float(d[i] / d[0]) if d.size and d[0] > 0 else math.nan)
        step.append(int(run.dense_steps[i]) if run.dense_steps else 0)
        recovered.append(run.status == TrialStatus.COMPLETE)
        below.append(_below_start(run.coarse))
        hidden.append(jump[-1] >= min_jump and step[-1] <= early and below[-1])
    holds = any(hidden)
    parts = [f"{r.variant} seed {r.seed}: {j:.2f}x at step {t}"
             + ("" if ok else ", then collapsed") + (" (hidden every " f"{m.coarse_every} steps)"
                                                     if low and j > 1 else "")
             for r, j, t, ok, low in zip(m.runs, jump, step, recovered, below)]
    text = ("Evaluated every step, the validation loss jumps: " + "; ".join(parts) + ". "
            + (f"A jump of at least {min_jump:g}x in the first 10 % of the steps is hidden by "
               f"evaluations every {m.coarse_every} steps: evaluate every step early on."
               if holds else
               f"No run jumps {min_jump:g}x early while its coarse view stays below its start."))
    return FrequentDecision(jump=jump, jump_step=step, recovered=recovered,
                            coarse_below_start=below, hidden=hidden, holds=holds, text=text)


def numbers(m: FrequentMeasured, d: FrequentDecision) -> dict:
    """The JSON-ready numbers (both views of every run)."""
    return {**{k: v for k, v in m._asdict().items() if k != "runs"},
            "runs": [r._asdict() for r in m.runs],
            **{k: v for k, v in d._asdict().items() if k != "text"}}


def draw(m: FrequentMeasured, d: FrequentDecision, setup) -> dict:
    """Figure 5: the coarse view (left) and the first ``dense_steps`` steps (right), seed 0."""
    first = min(r.seed for r in m.runs)
    shown = [r for r in m.runs if r.seed == first]
    labels = {r.variant: ("standard" if r.variant == "stable" else "changed")
              + f" ({setup.label(r.variant)})" for r in shown}
    return {"frequent_evals": instability_plots.frequent_evals_plot(
        {labels[r.variant]: (r.coarse_steps, r.coarse) for r in shown},
        {labels[r.variant]: (r.dense_steps, r.dense) for r in shown},
        coarse_every=m.coarse_every, lr=m.lr, title=setup.question)}


def frequent_evals(workload: str | None = None, *,
                   setup: unstable.UnstableSetup = unstable.TRANSFORMER_EARLY_SPIKE,
                   quick: bool = False, **options) -> ProcedureResult:
    """Both models, evaluated every step early and every ``coarse_every`` steps after.

    ``options`` are :func:`measure`'s (``lr``, ``seeds``, ``max_train_steps``,
    ``coarse_every``, ``dense_steps``, ``workers``, ``workspace``).
    ``quick=True``: one seed.
    """
    if quick:
        options.setdefault("seeds", setup.run_seeds()[:1])
    m, trials = measure(workload, setup=setup, **options)
    d = decide(m)
    caveats = [f"{len(set(r.seed for r in m.runs))} seed(s), {m.max_train_steps} steps at "
               f"lr {m.lr:g} without warmup; the figure shows the first seed.", *setup.caveats]
    return ProcedureResult(question=QUESTION, decision=d.text, numbers=numbers(m, d),
                           figures=draw(m, d, setup), trials=trials, caveats=caveats)
