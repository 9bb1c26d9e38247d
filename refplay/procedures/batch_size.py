r"""Choosing the batch size: throughput, steps to a result, and the fair comparison (D8).

The playbook ("Choosing the batch size"):

* "The batch size governs the training speed and shouldn't be used to
  directly tune the validation set performance. Often, the ideal batch size
  will be the largest batch size supported by the available hardware."
* "Until the accelerators are saturated, if the batch size doubles, the
  training throughput should also double (or at least nearly double)."
  (:func:`batch_throughput`, decided by :func:`throughput_decision`.)
* "When all hyperparameters are well-tuned [...] for a given batch size,
  there is usually a *maximum* batch size beyond which [...] the number of
  training steps [needed] doesn't decrease" — *perfect scaling* (2× the
  batch, ½ the steps) up to a critical batch size, then *diminishing
  returns* (Shallue et al. 2018). (:func:`steps_to_result`, decided by
  :func:`scaling_decision`.)
* "The batch size should *not be* treated as a tunable hyperparameter for
  validation set performance [...] as long as all hyperparameters are
  well-tuned (especially the learning rate and regularization
  hyperparameters) and the number of training steps is sufficient, the same
  final performance should be attainable using any batch size."
  (:func:`batch_size_fair_comparison`.)

The log₂ slope of steps-to-result between two batch sizes is

.. math:: \text{slope}(B_1, B_2) = \frac{\log_2 S(B_2) - \log_2 S(B_1)}{\log_2 B_2 - \log_2 B_1},

−1 under perfect scaling and 0 once more examples per step stop helping.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import tracemalloc
from typing import NamedTuple

import numpy as np

from refplay import _validate, search
from refplay.analysis.objective import trial_objective
from refplay.analysis.uncertainty import welch
from refplay.plots import batch_size as batch_size_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.step_budget import first_step_reaching
from refplay.procedures.studies import run_configs
from refplay.train.loop import run_trial
from refplay.train.settings import TrialSettings
from refplay.train.workloads import get_workload

__all__ = ["NEARLY_DOUBLES", "ThroughputRow", "ThroughputDecision", "throughput_decision",
           "batch_throughput", "ScalingDecision", "scaling_decision", "log2_slope",
           "steps_to_result", "batch_size_fair_comparison", "StepsMeasured", "StepsDecision",
           "measure_steps", "decide_steps", "epoch_budget", "FairMeasured", "FairDecision",
           "measure_fair", "decide_fair"]

NEARLY_DOUBLES = 1.5      # "double (or at least nearly double)": at least 1.5x per doubling
CRITICAL = 1.5            # critical batch: the largest B with S(B/2) / S(B) >= 1.5


# ------------------------------------------------------------------ throughput
class ThroughputRow(NamedTuple):
    """One batch size's measured step time, throughput and memory."""

    batch_size: int
    seconds_per_step: float
    examples_per_second: float
    peak_mib: float            # peak of numpy/Python allocations (tracemalloc) during a few steps
    peak_rss_mib: float        # the process's peak resident set so far (includes Numba buffers)
    feasible: bool             # peak_mib within memory_limit_mb (always True without a limit)


class ThroughputDecision(NamedTuple):
    """The playbook's throughput rule read on measured throughputs (:func:`throughput_decision`)."""

    max_useful_batch: int          # the largest B reached by doublings that each nearly doubled
    gains: tuple[float, ...]       # throughput(B_{i+1}) / throughput(B_i)
    required: tuple[float, ...]    # the gain each step needed: 1.5 ** log2(B_{i+1} / B_i)
    bottleneck_suspected: bool     # even the first doubling gained less than nearly 2x
    max_throughput_batch: int      # argmax of examples/s among feasible sizes


def throughput_decision(batch_sizes, examples_per_second, feasible=None,
                        factor: float = NEARLY_DOUBLES) -> ThroughputDecision:
    """The playbook's throughput rule on measured (or fabricated) throughputs.

    Walking up the (increasing) batch sizes, each step must raise the
    throughput by at least ``factor ** log2(B_next / B)`` (1.5× per
    doubling); the largest batch size reached before the first step that
    falls short is ``max_useful_batch``. Infeasible sizes (over the memory
    limit) end the walk.
    """
    bs = [int(b) for b in batch_sizes]
    eps = [float(x) for x in examples_per_second]
    feasible = [True] * len(bs) if feasible is None else [bool(f) for f in feasible]
    if not (len(bs) == len(eps) == len(feasible)) or not bs:
        raise ValueError("batch_sizes, examples_per_second (and feasible) must be non-empty "
                         "and of equal length")
    if any(b1 <= b0 for b0, b1 in zip(bs, bs[1:])):
        raise ValueError(f"batch_sizes must be strictly increasing, got {bs}")
    if not feasible[0]:
        raise ValueError(f"the smallest batch size {bs[0]} is already over the memory limit")
    gains = tuple(e1 / e0 for e0, e1 in zip(eps, eps[1:]))
    required = tuple(factor ** math.log2(b1 / b0) for b0, b1 in zip(bs, bs[1:]))
    useful = bs[0]
    for i, (g, r) in enumerate(zip(gains, required)):
        if not feasible[i + 1] or g < r:
            break
        useful = bs[i + 1]
    ok = [i for i in range(len(bs)) if feasible[i]]
    best = bs[max(ok, key=lambda i: eps[i])]
    return ThroughputDecision(
        max_useful_batch=useful, gains=gains, required=required,
        bottleneck_suspected=bool(gains) and gains[0] < required[0], max_throughput_batch=best)


def _measure(workload: str, batch_size: int, steps: int) -> tuple[float, float, float]:
    """(seconds per step, peak MiB by tracemalloc, peak RSS MiB) of SGD at ``batch_size``."""
    config = {"optimizer": "sgd", "lr": 1e-3, "batch_size": batch_size}
    # Untimed: the first call compiles Numba kernels and warms caches for this shape.
    run_trial(workload, config, seed=0, max_train_steps=2, eval_every=2, keep_best=0)
    timed = run_trial(workload, config, seed=0, max_train_steps=steps, eval_every=steps,
                      keep_best=0)
    # A separate short run under tracemalloc, which slows allocations and would bias the timing.
    tracemalloc.start()
    try:
        run_trial(workload, config, seed=0, max_train_steps=3, eval_every=3, keep_best=0)
        peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux
    return timed.seconds_per_step, peak, rss


BATCH_THROUGHPUT_QUESTION = ("How does training throughput (examples/s) grow with the batch size, "
                             "and what is the largest batch size worth using?")


def batch_throughput(workload: str = "mnist1d_mlp", *,
                     batch_sizes=(8, 16, 32, 64, 128, 256, 512, 1024, 2048), steps: int = 50,
                     memory_limit_mb: float | None = None, measure=None,
                     quick: bool = False) -> ProcedureResult:
    """Training throughput and peak memory against batch size; the largest useful batch (D8a).

    ``measure(workload, batch_size, steps) -> (seconds_per_step, peak_mib,
    peak_rss_mib)`` defaults to timing ``steps`` SGD steps in this process
    (so run it on an idle machine); tests inject a deterministic model.
    ``quick=True`` measures 8, 32, 128, 512 for 20 steps.
    """
    if quick:
        batch_sizes, steps = (8, 32, 128, 512), 20
    steps = _validate.integer("steps", steps, low=1)
    wl = get_workload(workload)
    bs = sorted(_validate.integer("batch_sizes[i]", b, low=1) for b in batch_sizes)
    too_big = [b for b in bs if b > len(wl.train)]
    if too_big:
        raise ValueError(f"batch_sizes {too_big} are larger than the {len(wl.train)} training "
                         f"examples of workload {workload!r}")
    measure = measure or _measure
    rows = []
    for b in bs:
        sps, peak, rss = measure(workload, b, steps)
        feasible = memory_limit_mb is None or peak <= memory_limit_mb
        rows.append(ThroughputRow(
            batch_size=b, seconds_per_step=float(sps), examples_per_second=b / float(sps),
            peak_mib=float(peak), peak_rss_mib=float(rss), feasible=feasible))
    d = throughput_decision(bs, [r.examples_per_second for r in rows], [r.feasible for r in rows])
    if d.bottleneck_suspected:
        decision = (f"throughput does not nearly double even from B={bs[0]} to B={bs[1]} "
                    f"(x{d.gains[0]:.2f}): suspect an input or compute bottleneck before "
                    f"choosing a batch size")
    else:
        decision = (f"use batch size {d.max_useful_batch}: every doubling up to it nearly "
                    f"doubled throughput; beyond it throughput no longer keeps up")
    numbers = {"workload": workload, "batch_sizes": bs,
               "seconds_per_step": [r.seconds_per_step for r in rows],
               "examples_per_second": [r.examples_per_second for r in rows],
               "peak_mib": [r.peak_mib for r in rows],
               "peak_rss_mib": [r.peak_rss_mib for r in rows],
               "feasible": [r.feasible for r in rows], "gains": list(d.gains),
               "max_useful_batch": d.max_useful_batch,
               "max_throughput_batch": d.max_throughput_batch,
               "bottleneck_suspected": d.bottleneck_suspected}
    caveats = ["Timings measure this machine now: one thread per trial, other processes "
               "included. Tests never assert them.",
               "tracemalloc sees numpy allocations but not Numba's internal buffers; the peak "
               "RSS column is the whole process's high-water mark."]
    return ProcedureResult(
        question=BATCH_THROUGHPUT_QUESTION,
        decision=decision, numbers=numbers,
        figures={"throughput": batch_size_plots.throughput_plot(rows, d)}, trials=[],
        caveats=caveats)


# ----------------------------------------------------------- steps to result
def log2_slope(b1: int, s1: float, b2: int, s2: float) -> float:
    """``(log2 s2 - log2 s1) / (log2 b2 - log2 b1)``: −1 is perfect scaling."""
    return (math.log2(s2) - math.log2(s1)) / (math.log2(b2) - math.log2(b1))


class ScalingDecision(NamedTuple):
    """Perfect scaling, then diminishing returns: slopes and the critical batch size."""

    batch_sizes: tuple[int, ...]     # sizes that reached the target, increasing
    steps: tuple[int, ...]
    small_slope: float               # log2 slope between the two smallest sizes
    large_slope: float               # ... between the two largest
    critical_batch: int | None       # the largest B with S(prev)/S(B) >= 1.5 per doubling
    examples: tuple[int, ...]        # B * steps: examples to result
    max_increase: int                # the largest increase of steps from one size to the next


def scaling_decision(batch_sizes, steps, factor: float = CRITICAL) -> ScalingDecision:
    """Slopes and the critical batch size from steps-to-result per batch size.

    Sizes whose target was never reached (``None``) are dropped. The
    critical batch size walks up from the smallest size while each step
    cuts the steps by at least ``factor ** log2(B_next / B)`` (1.5× per
    doubling: "perfect scaling" with some slack).
    """
    pairs = [(int(b), int(s)) for b, s in zip(batch_sizes, steps) if s is not None]
    pairs.sort()
    if len(pairs) < 2:
        raise ValueError(f"need at least two batch sizes that reached the target, got {pairs}")
    bs, ss = zip(*pairs)
    if min(ss) <= 0:
        raise ValueError(f"steps to result must be > 0, got {list(ss)}")
    critical = None
    for (b0, s0), (b1, s1) in zip(pairs, pairs[1:]):
        if s0 / s1 >= factor ** math.log2(b1 / b0):
            critical = b1
        else:
            break
    return ScalingDecision(
        batch_sizes=bs, steps=ss, small_slope=log2_slope(bs[0], ss[0], bs[1], ss[1]),
        large_slope=log2_slope(bs[-2], ss[-2], bs[-1], ss[-1]), critical_batch=critical,
        examples=tuple(b * s for b, s in pairs),
        max_increase=max(s1 - s0 for s0, s1 in zip(ss, ss[1:])))


def epoch_budget(batch_sizes, steps, critical_batch) -> dict:
    """The playbook's warning about epoch budgets, on measured steps-to-result (claim CL7).

    "when using an epoch budget ... one only explores the perfect scaling
    regime" (Choosing the batch size): fix the number of *examples* every
    batch size may see at what the smallest size needed, ``B_min · S(B_min)``,
    and a size reaches the target only if ``B · S(B)`` fits in it. Returns
    the budget, the sizes that miss it, and whether every size of at least 4×
    the critical batch size misses (``None`` when there is no such size).
    """
    pairs = [(int(b), s) for b, s in zip(batch_sizes, steps) if s is not None]
    if not pairs:
        return {}
    b0, s0 = min(pairs)
    budget = b0 * s0
    missed = [int(b) for b, s in zip(batch_sizes, steps) if s is None or b * s > budget]
    large = [int(b) for b in batch_sizes if critical_batch and b >= 4 * critical_batch]
    return {"epoch_budget_examples": budget, "epoch_budget_misses": missed,
            "large_batches_miss_epoch_budget": (all(b in missed for b in large)
                                                if large else None)}


def _nesterov_space(lr_range, gamma_range):
    return search.SearchSpace(lr=search.Float(*lr_range, scale="log"),
                              gamma=search.Float(*gamma_range))


class StepsMeasured(NamedTuple):
    """Steps to the target per batch size (the best config of each), as :func:`steps_to_result`
    measured them."""

    workload: str
    metric: str
    target: float
    max_steps: int
    eval_every: int
    n_configs: int
    seeds: int
    batch_sizes: list
    steps_to_result: list            # per size: steps of its best config; None: not reached
    best_lr: list
    best_gamma: list
    budget_steps: list               # the budget each size was given
    seconds_per_step: list           # median over the size's trials


class StepsDecision(NamedTuple):
    """The scaling regime read from :class:`StepsMeasured`."""

    scaling: ScalingDecision | None  # None: fewer than two sizes reached the target
    time_optimal_batch: int | None
    lr_ratio: float | None           # best lr of the largest size / of the smallest
    text: str


def _best_config(results, configs, n_configs, seeds, target, metric) -> tuple[float, int]:
    """``(steps, index)`` of the config with the fewest median steps over its seeds."""
    per_config = []
    for c in range(n_configs):
        reps = [first_step_reaching(r, target, metric)
                for r in results[c * seeds:(c + 1) * seeds]]
        per_config.append(statistics.median([math.inf if s is None else s for s in reps]))
    best = int(np.argmin(per_config))
    return per_config[best], best


def measure_steps(workload: str = "mnist1d_mlp", *,
                  batch_sizes=(16, 32, 64, 128, 256, 512, 1024), target: float = 0.45,
                  metric: str = "validation/error_rate", optimizer: str = "nesterov",
                  n_configs: int = 8, max_steps: int = 6_000, seeds: int = 2,
                  eval_every: int = 25, lr_range=(1e-2, 1.0), gamma_range=(0.8, 0.99),
                  budget_factor: float = 2.0, seed: int = 0, workers: int | None = 0,
                  workspace: str | os.PathLike | None = None) -> tuple[StepsMeasured, list]:
    """Run (or re-read) every size's search, smallest first: ``(measured, trials)``."""
    bs = sorted(_validate.integer("batch_sizes[i]", b, low=1) for b in batch_sizes)
    n_configs = _validate.integer("n_configs", n_configs, low=1)
    seeds = _validate.integer("seeds", seeds, low=1)
    max_steps = _validate.integer("max_steps", max_steps, low=1)
    points = search.halton(_nesterov_space(lr_range, gamma_range), n_configs, seed)
    rows, trials, budget = [], [], max_steps
    for b in bs:
        configs = [{"optimizer": optimizer, "lr": p["lr"], "batch_size": b,
                    **({"gamma": p["gamma"]} if optimizer in ("momentum", "nesterov") else {})}
                   for p in points]
        settings = TrialSettings(max_train_steps=budget, eval_every=eval_every, keep_best=0,
                                 selection_metric=metric)
        results = run_configs("steps_to_result", workload, configs, settings, repeats=seeds,
                              seed=seed, workers=workers, workspace=workspace)
        trials += results
        s_best, best = _best_config(results, configs, n_configs, seeds, target, metric)
        sps = statistics.median([r.seconds_per_step for r in results
                                 if math.isfinite(r.seconds_per_step)] or [math.nan])
        rows.append((None if math.isinf(s_best) else int(s_best), configs[best]["lr"],
                     configs[best].get("gamma"), budget, sps))
        if not math.isinf(s_best):
            budget = min(max_steps, max(eval_every, int(math.ceil(budget_factor * s_best))))
    steps, lrs, gammas, budgets, sps = (list(column) for column in zip(*rows))
    return StepsMeasured(workload=workload, metric=metric, target=target, max_steps=max_steps,
                         eval_every=eval_every, n_configs=n_configs, seeds=seeds,
                         batch_sizes=bs, steps_to_result=steps, best_lr=lrs, best_gamma=gammas,
                         budget_steps=budgets, seconds_per_step=sps), trials


def _time_to_result(m: StepsMeasured) -> list:
    return [None if s is None else s * t for s, t in zip(m.steps_to_result, m.seconds_per_step)]


def decide_steps(m: StepsMeasured) -> StepsDecision:
    """The critical batch size and the slopes; re-tune the learning rate for every size."""
    bs, steps = m.batch_sizes, m.steps_to_result
    if sum(s is not None for s in steps) < 2:
        return StepsDecision(
            scaling=None, time_optimal_batch=None, lr_ratio=None,
            text=(f"fewer than two batch sizes reached {m.metric} <= {m.target} within "
                  f"{m.max_steps} steps: lower the target or raise max_steps"))
    d = scaling_decision(bs, steps)
    times = {b: t for b, t in zip(bs, _time_to_result(m)) if t is not None}
    lr_ratio = m.best_lr[-1] / m.best_lr[0]
    if d.critical_batch is None:
        text = (f"no perfect-scaling regime: already from B={d.batch_sizes[0]} to "
                f"B={d.batch_sizes[1]} the steps fell by less than 1.5x (slope "
                f"{d.small_slope:.2f})")
    else:
        text = (f"critical batch size ~{d.critical_batch}: steps to {m.metric} <= {m.target} "
                f"halve with each doubling up to it (small-B slope {d.small_slope:.2f}), then "
                f"diminishing returns (large-B slope {d.large_slope:.2f}); re-tune the "
                f"learning rate for every batch size (best lr x{lr_ratio:.3g} from B={bs[0]} "
                f"to B={bs[-1]})")
    return StepsDecision(
        scaling=d, time_optimal_batch=min(times, key=times.get), lr_ratio=lr_ratio, text=text)


def _steps_numbers(m: StepsMeasured, d: StepsDecision) -> dict:
    bs, steps = m.batch_sizes, m.steps_to_result
    numbers = {"workload": m.workload, "metric": m.metric, "target": m.target,
               "batch_sizes": bs, "steps_to_result": steps, "best_lr": m.best_lr,
               "best_gamma": m.best_gamma, "budget_steps": m.budget_steps,
               "examples_to_result": [None if s is None else b * s for b, s in zip(bs, steps)],
               "seconds_per_step": m.seconds_per_step, "time_to_result_s": _time_to_result(m),
               "eval_every": m.eval_every, "n_configs": m.n_configs, "seeds": m.seeds}
    if d.scaling is not None:
        numbers.update(small_slope=d.scaling.small_slope, large_slope=d.scaling.large_slope,
                       critical_batch=d.scaling.critical_batch,
                       time_optimal_batch=d.time_optimal_batch,
                       max_steps_increase=d.scaling.max_increase)
        numbers.update(epoch_budget(bs, steps, d.scaling.critical_batch))
        numbers["best_lr_ratio_largest_to_smallest"] = d.lr_ratio
    return numbers


def steps_to_result(workload: str = "mnist1d_mlp", *, quick: bool = False,
                    **options) -> ProcedureResult:
    """Steps to reach ``target`` against batch size, best learning rate retuned per size (D8b).

    For each batch size, a Halton search over (lr, γ) of ``n_configs``
    configs (the same points for every size), each run with ``seeds`` seeds
    at a constant learning rate; a config's steps-to-result is the median
    over seeds of the first evaluation step reaching ``target`` (a seed that
    never reaches it counts as infinitely slow); the size's steps-to-result
    is the minimum over configs (Shallue et al.'s protocol: stopping at the
    target is part of *measuring* the steps, not a tuning rule).

    Budget: sizes run smallest first, and size B gets ``min(max_steps,
    budget_factor × S(previous size))`` steps, since steps should not grow
    with the batch size (a size that needs more shows up as not reaching
    the target).

    ``options`` are :func:`measure_steps`'s. Also derived: the best learning rate per size,
    examples-to-result ``B · S(B)``, time-to-result ``S(B) × seconds per step`` (this run's
    median training time per step), the critical and the time-optimal batch size.
    ``quick=True``: ``mnist1d_mlp``, target 0.45, B ∈ {16, 64, 256, 1024}, 6 configs with lr in
    [0.01, 1] and γ in [0.85, 0.95], 1 seed, 1,500 steps.
    """
    if quick:
        options.update(batch_sizes=(16, 64, 256, 1024), target=0.45, n_configs=6, seeds=1,
                       max_steps=1_500, eval_every=25, lr_range=(1e-2, 1.0),
                       gamma_range=(0.85, 0.95))
        workload = "mnist1d_mlp"
    m, trials = measure_steps(workload, **options)
    d = decide_steps(m)
    numbers = _steps_numbers(m, d)
    figures = ({} if d.scaling is None else
               {"steps_to_result": batch_size_plots.steps_to_result_plot(numbers, d.scaling)})
    caveats = [f"Steps are known to one evaluation interval ({m.eval_every} steps).",
               "Time-to-result uses this run's measured seconds per step on a shared laptop: "
               "read its shape, not its values.",
               "MNIST-1D and spirals are tiny: the critical batch size here says nothing about "
               "ImageNet's."]
    return ProcedureResult(
        question=_STEPS_QUESTION, decision=d.text, numbers=numbers, figures=figures, trials=trials,
        caveats=caveats)


_STEPS_QUESTION = ("How many training steps does each batch size need to reach the target, with "
                   "the learning rate re-tuned for every batch size?")


# ------------------------------------------------------------- fair comparison
class FairMeasured(NamedTuple):
    """Retrained objectives of the three arms of the fair comparison, and the tuned configs."""

    workload: str
    batch_sizes: list                # [small, large]
    steps_budget: int
    seeds: int
    best_config_small: dict
    best_config_large: dict
    base: np.ndarray                 # retrains of the small size's best config
    fixed: np.ndarray                # the small size's config at the large size
    retuned: np.ndarray              # the large size's own best config
    metric: str


class FairDecision(NamedTuple):
    """The two gaps to the small size, each with its Welch standard error, and the verdict."""

    gap_fixed: float
    se_fixed: float
    gap_retuned: float
    se_retuned: float
    text: str


def measure_fair(workload: str = "mnist1d_mlp", *, batch_sizes=(32, 512),
                 steps_budget: int = 4_000, n_configs: int = 8, seeds: int = 3,
                 optimizer: str = "adam", lr_range=(1e-4, 3e-2), dropout_range=(0.0, 0.5),
                 eval_every: int = 100, seed: int = 0, workers: int | None = 0,
                 workspace: str | os.PathLike | None = None) -> tuple[FairMeasured, list]:
    """Tune at both sizes, retrain the three arms: ``(measured, trials)``."""
    b_small, b_large = sorted(int(b) for b in batch_sizes)
    seeds = _validate.integer("seeds", seeds, low=2)
    wl = get_workload(workload)
    space = {"lr": search.Float(*lr_range, scale="log")}
    if "dropout" in wl.hparams:
        space["dropout"] = search.Float(*dropout_range)
    points = search.halton(search.SearchSpace(**space), n_configs, seed)
    settings = TrialSettings(max_train_steps=steps_budget, eval_every=eval_every, keep_best=0)
    run = dict(seed=seed, workers=workers, workspace=workspace)

    def tune(b):
        configs = [{"optimizer": optimizer, "batch_size": b, **p} for p in points]
        res = run_configs("fair_tune", workload, configs, settings, **run)
        return configs[int(np.nanargmin([trial_objective(r) for r in res]))], res

    def retrain(config):
        res = run_configs("fair_retrain", workload, [config], settings, repeats=seeds,
                          **{**run, "seed": seed + 1})
        return np.array([trial_objective(r) for r in res]), res

    best_small, tuned_small = tune(b_small)
    best_large, tuned_large = tune(b_large)
    base, r0 = retrain(best_small)
    fixed, r1 = retrain({**best_small, "batch_size": b_large})
    retuned, r2 = retrain(best_large)
    measured = FairMeasured(
        workload=workload, batch_sizes=[b_small, b_large], steps_budget=steps_budget,
        seeds=seeds, best_config_small=best_small, best_config_large=best_large, base=base,
        fixed=fixed, retuned=retuned,
        metric=settings.selection_metric or wl.selection_metric)
    return measured, [*tuned_small, *tuned_large, *r0, *r1, *r2]


def decide_fair(m: FairMeasured) -> FairDecision:
    """Same attainable performance when the retuned gap is within 2 standard errors."""
    gap_fixed, se_fixed, _ = welch(m.fixed, m.base)
    gap_retuned, se_retuned, _ = welch(m.retuned, m.base)
    b_small, b_large = m.batch_sizes
    if abs(gap_retuned) <= 2 * se_retuned:
        text = (f"batch size does not change attainable performance: retuned at B={b_large} "
                f"the gap is {gap_retuned:+.4f} (SE {se_retuned:.4f}); with the learning rate "
                f"of B={b_small} it is {gap_fixed:+.4f} (SE {se_fixed:.4f}), so compare batch "
                f"sizes only after re-tuning")
    else:
        text = (f"the retuned gap {gap_retuned:+.4f} exceeds 2 SE ({se_retuned:.4f}): either "
                f"the search at B={b_large} was too small or steps_budget is too short for "
                f"one of the sizes; do not read this as a batch-size effect yet")
    return FairDecision(
        gap_fixed=gap_fixed, se_fixed=se_fixed, gap_retuned=gap_retuned, se_retuned=se_retuned,
        text=text)


BATCH_SIZE_FAIR_COMPARISON_QUESTION = ("Does the batch size change the validation performance we "
                                       "can reach, once the learning rate and regularization are "
                                       "re-tuned?")


def batch_size_fair_comparison(workload: str = "mnist1d_mlp", *, quick: bool = False,
                               **options) -> ProcedureResult:
    """Does the batch size change attainable validation performance? (D8c)

    (i) *Fixed*: the learning rate (and dropout) tuned at the smallest size
    are reused at the largest. (ii) *Retuned*: learning rate and dropout
    (the nuisance regularizer) are tuned again at the largest size. Each
    winner is retrained with ``seeds`` seeds; the gap is the difference of
    the means and its SE :math:`\\sqrt{s_1^2/n_1 + s_2^2/n_2}` comes from
    the retrain spread. Decision: "batch size does not change attainable
    performance" when :math:`|\\text{gap}_{ii}| \\le 2\\,\\text{SE}`.
    ``options`` are :func:`measure_fair`'s. ``quick=True``: ``mnist1d_mlp``, B ∈ {32, 256},
    1,500 steps, 4 configs, 3 seeds.
    """
    if quick:
        workload = "mnist1d_mlp"
        options.update(batch_sizes=(32, 256), steps_budget=1_500, n_configs=4, seeds=3,
                       eval_every=50)
    m, trials = measure_fair(workload, **options)
    d = decide_fair(m)
    b_small, b_large = m.batch_sizes
    numbers = {"workload": m.workload, "batch_sizes": m.batch_sizes,
               "steps_budget": m.steps_budget, "seeds": m.seeds,
               "best_config_small": m.best_config_small,
               "best_config_large": m.best_config_large,
               "objective_small_mean": float(np.mean(m.base)),
               "objective_fixed_mean": float(np.mean(m.fixed)),
               "objective_retuned_mean": float(np.mean(m.retuned)),
               "gap_fixed": d.gap_fixed, "se_fixed": d.se_fixed,
               "gap_retuned": d.gap_retuned, "se_retuned": d.se_retuned,
               "fixed_gap_exceeds_2se": abs(d.gap_fixed) > 2 * d.se_fixed,
               "retuned_gap_within_2se": abs(d.gap_retuned) <= 2 * d.se_retuned,
               "lr_ratio_large_to_small": m.best_config_large["lr"] / m.best_config_small["lr"]}
    fig = batch_size_plots.fair_comparison_plot({f"B={b_small}\n(tuned)": m.base,
                                                 f"B={b_large}\nfixed lr": m.fixed,
                                                 f"B={b_large}\nretuned": m.retuned}, m.metric)
    caveats = ["The gaps are judged against retrain noise (seed-to-seed), with "
               f"{m.seeds} seeds per arm: a small sample, so 2 SE is a rough line.",
               f"Both sizes get the same number of steps ({m.steps_budget}), so the larger "
               f"batch sees {b_large // b_small}x more examples."]
    return ProcedureResult(
        question=BATCH_SIZE_FAIR_COMPARISON_QUESTION,
        decision=d.text, numbers=numbers, figures={"fair_comparison": fig}, trials=trials,
        caveats=caveats)
