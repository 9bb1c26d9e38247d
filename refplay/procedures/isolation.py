"""Isolation plots: which weight decay is best, with the learning rate tuned away?

The playbook ("Detecting whether a change is useful with isolation plots"):
*"Each point on an isolation plot corresponds to the performance of the best
trial across some (or all) of the nuisance hyperparameters"*; *"For a fair
comparison, the baseline should also have its learning rate equally well
tuned"*; and *"we can approximate the isolation plot by bucketing the x-axis
values of the basic hyperparameter axis plot and taking the best trial in
each vertical slice defined by the buckets."* Its Figure 2 shows the best
ResNet-50 validation error at five weight decays (1e-7 ... 1e-2), U-shaped,
worst at 1e-2.

Here: ``mnist1d_mlp`` (it overfits, so weight decay can
matter), Nesterov with cosine decay, 2,000 steps, L2 weight decay at the
figure's five values plus 0 (the equally tuned baseline, a dashed line).

* **Exact**: the same 20 Halton learning rates (log [1e-3, 1]) for every
  weight decay, so every value sees exactly the same rates
  (``analysis.isolation``).
* **Bucketed**: one 2-D Halton study of 120 trials (weight decay and lr),
  its weight-decay axis cut into 5 log buckets whose centres are the
  figure's five values (``analysis.isolation(..., buckets=5)``).

**measure → decide → draw.** :func:`measure` runs (or re-reads) both studies
and returns an :class:`IsolationMeasured` (the two
:func:`refplay.analysis.isolation` results); :func:`decide` compares the best
value with the equally tuned baseline (adopt only beyond 2 standard errors),
pure; :func:`refplay.plots.isolation_plot` draws each.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import NamedTuple

from refplay import analysis, plots, search
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import halton_spec, load_frame, named_spec, run_spec

__all__ = ["isolation_study", "measure", "decide", "IsolationMeasured", "IsolationDecision",
           "Size", "SIZES", "WEIGHT_DECAYS", "exact_configs", "bucketed_space", "QUESTION"]

QUESTION = "Which weight decay is best, with the learning rate tuned away?"


class Size(NamedTuple):
    """How much the two studies train."""

    lrs_per_value: int       # exact isolation: learning rates per weight decay (shared)
    bucketed_trials: int     # bucketed isolation: trials of the 2-D Halton study
    max_train_steps: int
    eval_every: int


SIZES = {"full": Size(lrs_per_value=20, bucketed_trials=120, max_train_steps=2000, eval_every=100),
         "quick": Size(lrs_per_value=5, bucketed_trials=30, max_train_steps=400, eval_every=100)}
# The figure's five values are 1.25 decades apart: 10^-7, 10^-5.75, ..., 10^-2.
WEIGHT_DECAYS = tuple(float(10.0 ** (-7 + 1.25 * k)) for k in range(5))
BASELINE = 0.0
LR_RANGE = (1e-3, 1.0)
# Five log buckets centred on the five values: edges 0.625 decades either side.
BUCKET_RANGE = (10.0 ** -7.625, 10.0 ** -1.375)
FIXED = {"optimizer": "nesterov", "gamma": 0.9, "schedule": "cosine", "batch_size": 100}


def _fixed():
    return {k: search.Fixed(v) for k, v in FIXED.items()}


def exact_configs(lrs_per_value: int) -> tuple[list[dict], search.SearchSpace]:
    """Every weight decay (and 0) with the same Halton learning rates."""
    lrs = [c["lr"] for c in search.halton(
        search.SearchSpace(lr=search.Float(*LR_RANGE, scale="log")), lrs_per_value, 0)]
    space = search.SearchSpace({
        "weight_decay": search.Discrete([BASELINE, *WEIGHT_DECAYS], role="scientific"),
        "lr": search.Float(*LR_RANGE, scale="log"), **_fixed()})
    configs = [{"weight_decay": wd, "lr": lr, **FIXED}
               for wd in (BASELINE, *WEIGHT_DECAYS) for lr in lrs]
    return configs, space


def bucketed_space() -> search.SearchSpace:
    """Weight decay and learning rate, both log-uniform: the 2-D Halton study."""
    return search.SearchSpace({
        "weight_decay": search.Float(*BUCKET_RANGE, scale="log", role="scientific"),
        "lr": search.Float(*LR_RANGE, scale="log"), **_fixed()})


class IsolationMeasured(NamedTuple):
    """The two isolations of weight decay (``analysis.Isolation`` each) and the study size."""

    exact: object
    bucketed: object
    size: Size


class IsolationDecision(NamedTuple):
    """Which value is best, exactly and bucketed, which is worst, and what to do."""

    exact_best: int | None       # index into WEIGHT_DECAYS
    bucket_best: int | None
    worst: int
    text: str


def measure(workload: str = "mnist1d_mlp", *, quick: bool = False, prefix: str = "isolation",
            workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[IsolationMeasured, list]:
    """Run (or re-read) the exact and the bucketed study: ``(measured, study names)``."""
    size = SIZES["quick" if quick else "full"]
    common = dict(workload=workload, max_train_steps=size.max_train_steps,
                  eval_every=size.eval_every, seed=0, metric="validation/error_rate",
                  goal="Which weight decay is best, with the learning rate tuned away?")
    configs, space = exact_configs(size.lrs_per_value)
    exact_spec = named_spec(f"{prefix}_exact", sampler="explicit", configs=configs,
                            search_space=space, description="exact isolation: the same "
                            "learning rates for every weight decay", **common)
    bucket_spec = halton_spec(f"{prefix}_bucketed", search_space=bucketed_space(),
                              num_trials=size.bucketed_trials, sampler_seed=0,
                              description="bucketed isolation: one 2-D Halton study", **common)
    run_spec(exact_spec, workspace=workspace, workers=workers)
    run_spec(bucket_spec, workspace=workspace, workers=workers)
    exact = analysis.isolation(load_frame(exact_spec, workspace), "weight_decay",
                               baseline=BASELINE)
    # The five values are log-spaced, but a Discrete parameter carries no scale.
    exact = dataclasses.replace(exact, scale="log")
    bucketed = analysis.isolation(load_frame(bucket_spec, workspace), "weight_decay",
                                  buckets=len(WEIGHT_DECAYS))
    return IsolationMeasured(
        exact=exact, bucketed=bucketed, size=size), [exact_spec.name, bucket_spec.name]


def _argmin(rows) -> int | None:
    finite = [i for i, r in enumerate(rows) if math.isfinite(r.objective)]
    return min(finite, key=lambda i: rows[i].objective) if finite else None


def _worst_key(row) -> float:
    # A value with no complete trial is the worst possible.
    return row.objective if math.isfinite(row.objective) else math.inf


def decide(m: IsolationMeasured) -> IsolationDecision:
    """Adopt the best value only if it beats the equally tuned baseline by > 2 SE."""
    exact_best, bucket_best = _argmin(m.exact.rows), _argmin(m.bucketed.rows)
    worst = max(range(len(m.exact.rows)), key=lambda i: _worst_key(m.exact.rows[i]))
    base = m.exact.baseline
    if exact_best is None or base is None or not math.isfinite(base.objective):
        return IsolationDecision(
            exact_best=exact_best, bucket_best=bucket_best, worst=worst,
            text=(
                "no complete trial for some "
                "value: cannot compare weight decays"))
    best = m.exact.rows[exact_best]
    se = best.se if best.se is not None else math.nan
    verdict = ("adopt it" if base.objective - best.objective > 2 * se else
               "no clear gain over the baseline (less than 2 standard errors)")
    where = ("" if bucket_best is None else
             f"; the bucketed plot's best bucket is {abs(bucket_best - exact_best)} bucket(s) "
             f"from the exact best")
    largest = worst == len(m.exact.rows) - 1
    return IsolationDecision(exact_best=exact_best, bucket_best=bucket_best, worst=worst, text=(
        f"best weight decay {best.x:.2g} (error {best.objective:.3f} ± {se:.3f} SE) vs the "
        f"equally tuned baseline without weight decay ({base.objective:.3f}): {verdict}; "
        f"1e-2 is {'the worst' if largest else 'not the worst'} value{where}"))


def _numbers(m: IsolationMeasured, d: IsolationDecision) -> dict:
    exact, bucketed = m.exact, m.bucketed
    numbers = {
        "weight_decays": list(WEIGHT_DECAYS),
        "exact_best_error": [r.objective for r in exact.rows],
        "exact_n_feasible": [r.n_feasible for r in exact.rows],
        "baseline_best_error": exact.baseline.objective if exact.baseline else None,
        "bucket_centres": [r.x for r in bucketed.rows],
        "bucketed_best_error": [r.objective for r in bucketed.rows],
        "bucketed_n_trials": [r.n_trials for r in bucketed.rows],
        "exact_argmin": WEIGHT_DECAYS[d.exact_best] if d.exact_best is not None else None,
        "bucketed_argmin": (bucketed.rows[d.bucket_best].x if d.bucket_best is not None
                            else None),
    }
    if d.exact_best is not None and exact.baseline is not None:
        numbers["best_minus_baseline"] = (exact.rows[d.exact_best].objective
                                          - exact.baseline.objective)
    return numbers


def isolation_study(workload: str = "mnist1d_mlp", *, quick: bool = False,
                    prefix: str = "isolation", workers: int | None = 0,
                    workspace: str | os.PathLike | None = None) -> ProcedureResult:
    """Exact and bucketed isolation plots of weight decay, and the adoption decision."""
    m, studies = measure(workload, quick=quick, prefix=prefix, workers=workers,
                         workspace=workspace)
    d = decide(m)
    n, size = m.size.lrs_per_value, m.size
    figures = {
        "exact": plots.isolation_plot(m.exact, title=(
            f"Figure 2: which weight decay is best, with the learning rate tuned away?\n"
            f"exact: the same {n} learning rates for every value")),
        "bucketed": plots.isolation_plot(m.bucketed, title=(
            f"Figure 2, bucketed: the best trial per weight-decay slice of one\n"
            f"2-D Halton study ({size.bucketed_trials} trials)"))}
    return ProcedureResult(
        question=QUESTION, decision=d.text, numbers=_numbers(m, d), figures=figures, trials=studies,
        caveats=[f"{size.max_train_steps} steps, one seed; the baseline (no weight "
                 f"decay) is tuned over the same learning rates."])
