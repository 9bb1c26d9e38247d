"""How to apply learning-rate warmup: the shortest warmup that trains a too-high rate (Fig 6).

The playbook ("How to apply learning rate warmup"):

* *"Warmup involves prepending a learning rate schedule that ramps up the
  learning rate from 0 to some stable base_learning_rate, that is at least
  one order of magnitude larger than unstable_base_learning_rate."*
* *"Our goal is to find the shortest number of warmup_steps that allows us
  to access peak learning rates that are much higher than
  unstable_base_learning_rate."* -- ``warmup_steps`` *"should be swept at a
  few different orders of magnitude [...] The largest feasible point
  shouldn't be more than 10% of max_train_steps."*
* *"if we originally had 10,000 max_train_steps and did warmup_steps for
  1000 steps, the new training procedure should run for 11,000 steps
  total"*, compared with the baseline by optimal checkpoint selection.

Its Figure 6 (a Post-LN Transformer, warmups of 1 to 40,000 steps) shows
why: each short warmup trains until its ramp reaches a rate the model
cannot take, then the loss goes back up; the longer the warmup, the later
that happens.

The procedure is **measure → decide → draw**: :func:`measure` trains (or
re-reads) every trial and returns a :class:`WarmupMeasured`; :func:`decide`
turns it into the playbook's decision (pure, no training);
:func:`refplay.plots.instability.warmup_plot` draws it; :func:`warmup_study`
composes the three.

:func:`warmup_study` trains ``target_lr`` (``setup.target_lr``, about 10 x
the rate that trains without warmup) after each candidate warmup (a linear
ramp 0 → ``target_lr``, then the setup's schedule), on every seed, and the
baseline at ``baseline_lr`` (lr* without warmup, ``setup.low_lr``) without
warmup. For each candidate it finds where the run *failed*: the step where
its smoothed loss turned back up before collapsing for good
(:func:`~refplay.analysis.collapse_step`), and the learning rate the ramp
had reached there. A candidate is **stable** when the trial completes, it
has learned (the mean loss of its last 10 % of steps is below half the
step-0 loss), every loss spike recovers, and its best validation error is at
most ``good_factor`` (3) x the baseline's. The shortest warmup stable on
every seed is checked against 10 % and 5 % of ``max_train_steps``, then
**prepended** (``warmup_prepend``) and compared with the baseline, best
checkpoint against best checkpoint.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.analysis import collapse_step
from refplay.analysis.objective import trial_objective
from refplay.plots import instability as instability_plots
from refplay.procedures.instability import spike_events
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_keyed
from refplay.train import unstable
from refplay.train.result import TrialStatus

__all__ = ["warmup_study", "measure", "decide", "draw", "WarmupMeasured", "WarmupDecision",
           "Candidate", "is_stable", "why_not_stable", "numbers", "failure_point",
           "QUESTION", "COLLAPSE_WINDOW"]

QUESTION = ("Which warmup lets the unstable model train at a ~10x higher learning rate, and "
            "does the prepended warmup beat the baseline?")
COLLAPSE_WINDOW = 10    # steps averaged when deciding where a run collapsed


class Candidate(NamedTuple):
    """One warmup length tried at ``target_lr`` on one seed: what its trial did (not judged)."""

    warmup_steps: int
    seed: int
    status: str
    steps_done: int
    events: int                      # loss spikes found by analysis.detect_instability
    recovered: bool                  # every spike recovered
    learned: bool                    # last 10 % of losses average below half the step-0 loss
    best_error: float                # best-checkpoint validation error (NaN: infeasible)
    failing_step: int | None         # where the loss turned back up for good (None: it did not)
    lr_at_failure: float | None      # the ramp's learning rate at that step


class WarmupMeasured(NamedTuple):
    """Everything :func:`warmup_study` trained, as numbers (see :func:`measure`)."""

    workload: str
    max_train_steps: int
    target_lr: float
    baseline_lr: float
    seeds: list
    good_factor: float               # a stable candidate's error is <= good_factor x baseline's
    candidates: list                 # Candidate per (seed, warmup length), shortest first
    losses: dict                     # warmup_steps -> per-step training loss of seeds[0]
    baseline_errors: list            # the baseline (baseline_lr, no warmup) per seed
    prepended_error: float | None    # the shortest stable warmup prepended, seeds[0]
    prepended_steps: int | None
    prepended_best_step: int | None


class WarmupDecision(NamedTuple):
    """The playbook's decision on a :class:`WarmupMeasured` and what it rests on."""

    stable: list                     # per candidate: trains target_lr stably
    why: list                        # per candidate: "stable", or the first reason it is not
    shortest: int | None             # the shortest warmup stable on every seed (steps)
    within_10pct: bool               # "shouldn't be more than 10% of max_train_steps"
    above_5pct: bool                 # "consider a larger max_train_steps"
    prepended_better: bool | None    # the prepended warmup beats the baseline (best checkpoints)
    failure_grows: bool | None       # among failing warmups, a longer one fails later (every seed)
    threshold_lr: tuple | None       # (min, max) ramp rate at failure over failing warmups > 0
    text: str


def why_not_stable(candidate: Candidate, baseline_error: float | None, good_factor: float) -> str:
    """``"stable"``, or the first condition of :func:`is_stable` that ``candidate`` fails."""
    if candidate.status != TrialStatus.COMPLETE:
        return candidate.status
    if not candidate.learned:
        return "collapsed back (did not learn)"
    if not candidate.recovered:
        return "a loss spike did not recover"
    if baseline_error is None or not math.isfinite(baseline_error):
        return "no baseline to compare with"
    if not candidate.best_error <= good_factor * baseline_error:
        return (f"error {candidate.best_error:.3f} > {good_factor:g} × the baseline's "
                f"{baseline_error:.3f}")
    return "stable"


def is_stable(candidate: Candidate, baseline_error: float | None, good_factor: float) -> bool:
    """Does ``candidate`` train its rate stably? Completes, learns, recovers, error in reach.

    Its best error must be at most ``good_factor`` x the baseline's (lr* without
    warmup; ``None`` when the baseline did not train, then nothing is stable).
    """
    return why_not_stable(candidate, baseline_error, good_factor) == "stable"


def failure_point(losses, threshold: float | None, window: int = COLLAPSE_WINDOW) -> int | None:
    """Where a run that ends collapsed turned back up: the lowest point of its ``window``-step
    mean loss before it stayed above ``threshold`` (:func:`~refplay.analysis.collapse_step`);
    0 when it was never below (it failed from the start); ``None`` when it did not collapse
    (or no ``threshold``)."""
    if threshold is None:
        return None
    x = np.asarray(losses, dtype=np.float64)
    start = collapse_step(x, threshold, window=window)
    if not start:
        return start
    c = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(x), x, 1e300))])
    means = (c[window:start + window] - c[:start]) / window      # windows starting before it
    return int(np.argmin(means)) + window - 1                   # the window's last step


def _candidate(warmup_steps: int, seed: int, result, target_lr: float,
               threshold: float | None) -> Candidate:
    losses = result.train_losses
    events = spike_events(losses) if result.feasible else []
    tail = losses[-max(1, len(losses) // 10):]
    learned = bool(result.feasible and losses.size
                   and float(np.mean(tail)) < 0.5 * float(losses[0]))
    fail = failure_point(losses, threshold)
    if fail is None and result.status == TrialStatus.INFEASIBLE:
        fail = int(result.steps_done)          # diverged: the step it stopped at
    ramp = None
    if fail is not None and (fail > 0 or not warmup_steps):    # 0 with a ramp: never learned
        ramp = target_lr * (min(1.0, fail / warmup_steps) if warmup_steps else 1.0)
    return Candidate(warmup_steps=warmup_steps, seed=seed, status=str(result.status),
                     steps_done=result.steps_done, events=len(events),
                     recovered=all(e["recovered"] for e in events), learned=learned,
                     best_error=trial_objective(result), failing_step=fail, lr_at_failure=ramp)


def _checked(setup, target_lr, baseline_lr, warmups, max_train_steps):
    steps = _validate.integer("max_train_steps", max_train_steps or setup.max_train_steps, low=2)
    target_lr = _validate.real("target_lr", target_lr if target_lr is not None
                               else setup.target_lr, low=0.0, low_open=True)
    baseline_lr = _validate.real("baseline_lr", baseline_lr if baseline_lr is not None
                                 else setup.low_lr, low=0.0, low_open=True)
    warmups = sorted({_validate.integer(f"warmups[{i}]", w, low=0, high=steps - 1)
                      for i, w in enumerate(warmups or setup.warmup_lengths)})
    return steps, target_lr, baseline_lr, warmups


def measure(workload: str | None = None, *,
            setup: unstable.UnstableSetup = unstable.TRANSFORMER_WARMUP_LENGTHS,
            target_lr: float | None = None, baseline_lr: float | None = None, warmups=None,
            seeds=None, max_train_steps: int | None = None, good_factor: float = 3.0,
            eval_every: int = 50, workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[WarmupMeasured, list]:
    """Train (or re-read) the candidates and the baseline in one study, then the prepended
    run of the shortest stable warmup: ``(measured, trials)``."""
    workload = workload or setup.workload
    steps, target_lr, baseline_lr, warmups = _checked(setup, target_lr, baseline_lr, warmups,
                                                      max_train_steps)
    seeds = [int(s) for s in (seeds or setup.run_seeds())]
    settings = setup.settings(eval_every=eval_every, max_train_steps=steps)
    configs = {(w, s): setup.seeded_config("unstable", target_lr, s,
                                           **({"warmup_steps": w} if w else {}))
               for s in seeds for w in warmups}
    configs.update({("baseline", s): setup.seeded_config("unstable", baseline_lr, s)
                    for s in seeds})
    run = dict(workers=workers, workspace=workspace,
               workload_options=dict(setup.workload_options))
    runs = run_keyed("warmup_candidates", workload, configs, settings, **run)
    candidates = [_candidate(w, s, runs[w, s], target_lr, setup.max_final_loss)
                  for s in seeds for w in warmups]
    baseline_errors = [trial_objective(runs["baseline", s]) for s in seeds]
    shortest = _shortest(candidates, baseline_errors, good_factor, seeds)
    prepended = None
    if shortest:
        prepended = run_keyed("warmup_prepended", workload, {"p": setup.seeded_config(
            "unstable", target_lr, seeds[0], warmup_steps=shortest, warmup_prepend=True)},
            settings, **run)["p"]
    measured = WarmupMeasured(
        workload=workload, max_train_steps=steps, target_lr=target_lr, baseline_lr=baseline_lr,
        seeds=seeds, good_factor=good_factor, candidates=candidates,
        losses={w: runs[w, seeds[0]].train_losses for w in warmups},
        baseline_errors=baseline_errors,
        prepended_error=None if prepended is None else trial_objective(prepended),
        prepended_steps=None if prepended is None else prepended.steps_done,
        prepended_best_step=None if prepended is None else prepended.best_step)
    return measured, [*runs.values(), *([prepended] if prepended is not None else [])]


def _baseline_of(candidate: Candidate, seeds, baseline_errors) -> float | None:
    e = baseline_errors[seeds.index(candidate.seed)]
    return e if math.isfinite(e) else None


def _shortest(candidates, baseline_errors, good_factor, seeds) -> int | None:
    """The shortest warmup length stable on every seed."""
    ok = {}
    for c in candidates:
        stable = is_stable(c, _baseline_of(c, seeds, baseline_errors), good_factor)
        ok[c.warmup_steps] = ok.get(c.warmup_steps, True) and stable
    lengths = [w for w, good in ok.items() if good]
    return min(lengths) if lengths else None


def _failure_pattern(candidates, seed) -> tuple[bool | None, tuple | None]:
    """Among ``seed``'s warmups > 0 that failed: does a longer one fail later, and the range of
    ramp rates at failure (the playbook's threshold)."""
    failed = sorted((c.warmup_steps, c.failing_step, c.lr_at_failure) for c in candidates
                    if c.seed == seed and c.warmup_steps > 0 and c.failing_step is not None)
    if len(failed) < 2:
        return None, None
    steps = [f for _, f, _ in failed]
    rates = [r for _, _, r in failed]
    return all(b > a for a, b in zip(steps, steps[1:])), (min(rates), max(rates))


def decide(m: WarmupMeasured) -> WarmupDecision:
    """The shortest stable warmup, its share of ``max_train_steps``, the prepended verdict, and
    whether the failures follow the ramp (Figure 6)."""
    why = [why_not_stable(c, _baseline_of(c, m.seeds, m.baseline_errors), m.good_factor)
           for c in m.candidates]
    stable = [w == "stable" for w in why]
    shortest = _shortest(m.candidates, m.baseline_errors, m.good_factor, m.seeds)
    patterns = [_failure_pattern(m.candidates, seed) for seed in m.seeds]
    known = [p for p in patterns if p[0] is not None]
    grows = all(g for g, _ in known) if known else None
    threshold = ((min(t[0] for _, t in known), max(t[1] for _, t in known)) if known
                 else None)
    within = shortest is not None and shortest <= 0.1 * m.max_train_steps
    above = shortest is not None and shortest > 0.05 * m.max_train_steps
    better = (None if m.prepended_error is None or not math.isfinite(m.baseline_errors[0])
              else bool(m.prepended_error < m.baseline_errors[0]))
    text = _decision_text(m, shortest, within, above, better, grows, threshold)
    return WarmupDecision(
        stable=stable, why=why, shortest=shortest, within_10pct=within, above_5pct=above,
        prepended_better=better, failure_grows=grows, threshold_lr=threshold, text=text)


def _decision_text(m, shortest, within, above, better, grows, threshold) -> str:
    ratio = m.target_lr / m.baseline_lr
    pattern = ""
    if grows is not None:
        order = ("each fail later than the shorter ones" if grows
                 else "do not fail in order of their length")
        pattern = (f" The warmups that fail {order} (on every seed), when the ramp reaches "
                   f"{threshold[0]:.3g} ... {threshold[1]:.3g}.")
    if shortest is None:
        return (f"No warmup tried ({sorted({c.warmup_steps for c in m.candidates})}) trains "
                f"lr = {m.target_lr:g} ({ratio:.0f} × the baseline's {m.baseline_lr:g}) stably "
                f"on every seed.{pattern} Try longer warmups, gradient clipping, or a lower "
                f"learning rate.")
    text = (f"A warmup of {shortest} steps ({shortest / m.max_train_steps:.0%} of "
            f"max_train_steps) is the shortest that trains lr = {m.target_lr:g} "
            f"({ratio:.1f} × the baseline's {m.baseline_lr:g}) stably on every seed.{pattern}")
    if not within:
        text += " It is above 10% of max_train_steps: too long."
    elif above:
        text += " It is above 5% of max_train_steps: consider a larger max_train_steps."
    if better is not None:
        text += (f" Prepended ({m.max_train_steps} + {shortest} = {m.prepended_steps} steps), "
                 f"it reaches validation error {m.prepended_error:.3f} against the baseline's "
                 f"{m.baseline_errors[0]:.3f} (best checkpoints): "
                 + ("adopt the warmup and the higher rate." if better
                    else "no gain over the baseline."))
    return text


def draw(m: WarmupMeasured, d: WarmupDecision, setup) -> dict:
    """Figure 6: the candidates' losses (log x) and their ramps, failures marked (seed 0)."""
    first = [(c, ok, why) for c, ok, why in zip(m.candidates, d.stable, d.why)
             if c.seed == m.seeds[0]]
    rows = [{**_row(c, ok), "why": why} for c, ok, why in first]
    return {"warmup_candidates": instability_plots.warmup_plot(
        m.losses, rows, target_lr=m.target_lr, shortest=d.shortest,
        title=setup.question if setup.target_lr else "")}


def _row(c: Candidate, stable: bool) -> dict:
    """A candidate as the numbers show it (its spikes' recovery folds into ``stable``)."""
    row = c._asdict()
    del row["recovered"]
    return {**row, "stable": stable}


def numbers(m: WarmupMeasured, d: WarmupDecision) -> dict:
    """The JSON-ready numbers of a warmup study."""
    return {
        "workload": m.workload, "max_train_steps": m.max_train_steps, "target_lr": m.target_lr,
        "baseline_lr": m.baseline_lr, "target_over_baseline": m.target_lr / m.baseline_lr,
        "seeds": m.seeds, "candidates": [_row(c, ok) for c, ok in zip(m.candidates, d.stable)],
        "shortest_stable_warmup": d.shortest,
        "shortest_fraction": d.shortest / m.max_train_steps if d.shortest is not None else None,
        "within_10pct": d.within_10pct, "above_5pct": d.above_5pct,
        "failure_grows_with_warmup": d.failure_grows, "threshold_lr": d.threshold_lr,
        "baseline_errors": m.baseline_errors, "prepended_error": m.prepended_error,
        "prepended_steps": m.prepended_steps, "prepended_best_step": m.prepended_best_step}


def warmup_study(workload: str | None = None, *,
                 setup: unstable.UnstableSetup = unstable.TRANSFORMER_WARMUP_LENGTHS,
                 quick: bool = False, **options) -> ProcedureResult:
    """Warmup candidates at ``target_lr``, the baseline, and the prepended warmup.

    ``options`` are :func:`measure`'s (``target_lr``, ``baseline_lr``, ``warmups``,
    ``seeds``, ``max_train_steps``, ``good_factor``, ``eval_every``, ``workers``,
    ``workspace``). Defaults come from ``setup``
    (:data:`refplay.train.unstable.TRANSFORMER_WARMUP_LENGTHS`: the Post-LN
    Transformer at 0.032 after warmups of 0 ... 400 steps). ``quick=True``:
    one seed and every other warmup length.
    """
    if quick:
        options.setdefault("seeds", setup.run_seeds()[:1])
        options.setdefault("warmups", tuple(setup.warmup_lengths[::2]))
    measured, trials = measure(workload, setup=setup, **options)
    decision = decide(measured)
    caveats = [f"{len(measured.seeds)} seed(s), {measured.max_train_steps} steps; the figure "
               f"shows the first seed.", *setup.caveats,
               f"A candidate is 'stable' when it completes, every loss spike recovers, its best "
               f"error is <= {measured.good_factor:g} x the baseline's, and its last 10% of "
               f"losses average below half the step-0 loss."]
    return ProcedureResult(
        question=QUESTION, decision=decision.text, numbers=numbers(measured, decision),
        figures=draw(measured, decision, setup), trials=trials, caveats=caveats)
