"""How many trials are needed to get good results with quasi-random search?

The playbook: *"A ResNet-50 was tuned on ImageNet with 100 trials. Via
bootstrapping, different amounts of tuning budget were simulated. Box plots
of the best performances for each trial budget are plotted"*; *"Notice how
large the interquartile ranges are when 6 trials were sampled, versus when
20 trials were sampled."* And: *"Even with 20 trials, it is likely that the
difference between especially lucky and unlucky studies will be larger than
the typical variation between re-trains of this model on different random
seeds, with fixed hyperparameters."*

Here: one Halton study on ``mnist1d_cnn`` (Nesterov with cosine decay; lr
log-uniform in [1e-3, 1], momentum γ in [0.8, 0.99], L2 weight decay
log-uniform in [1e-6, 1e-2]), 1,000 validation examples (each is worth
0.1 %). :func:`refplay.analysis.best_of_n` gives the distribution of the best
of N trials for N = 6 ... 20, exactly (from order statistics:
:math:`P(\\text{best of } N \\le x) = 1 - (1 - F(x))^N`) and by bootstrap. The
best configuration is also retrained with new seeds, and the spread of lucky
vs unlucky 20-trial studies (5th to 95th percentile of the best of 20) is
compared with the retrain standard deviation.

**measure → decide → draw.** :func:`measure` runs (or re-reads) the study and
the retrains and returns a :class:`TrialBudgetMeasured`; :func:`decide` reads
the interquartile ranges (pure); :func:`refplay.plots.trial_budget` draws the
bootstrap's boxes.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from refplay import analysis, search
from refplay.analysis.objective import trial_objective
from refplay.analysis.uncertainty import spread
from refplay.plots import trial_budget as trial_budget_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import halton_spec, load_frame, run_configs, run_spec
from refplay.train.settings import TrialSettings

__all__ = ["trials_needed", "measure", "decide", "TrialBudgetMeasured", "Size", "SIZES",
           "BUDGETS", "space", "best_of_n_percentiles", "QUESTION"]

QUESTION = "How many trials are needed to get good results with quasi-random search?"


class Size(NamedTuple):
    """How much the study trains."""

    num_trials: int
    max_train_steps: int
    eval_every: int
    retrains: int            # new-seed runs of the best configuration


SIZES = {"full": Size(num_trials=100, max_train_steps=2000, eval_every=100, retrains=10),
         "quick": Size(num_trials=24, max_train_steps=300, eval_every=100, retrains=3)}
BUDGETS = tuple(range(6, 21))
N_VALIDATION = 1000
N_BOOT = 2000


def space() -> search.SearchSpace:
    """The study's search space: Nesterov's lr, γ and weight decay; the rest fixed."""
    return search.SearchSpace({
        "lr": search.Float(1e-3, 1.0, scale="log"),
        "gamma": search.Float(0.8, 0.99),
        "weight_decay": search.Float(1e-6, 1e-2, scale="log"),
        "optimizer": search.Fixed("nesterov"),
        "schedule": search.Fixed("cosine"),
        "batch_size": search.Fixed(100),
    })


class TrialBudgetMeasured(NamedTuple):
    """The best of N (exact and bootstrap), and the retrains of the best configuration."""

    best_of_n: object                # analysis.best_of_n's result
    metric: str
    objectives: np.ndarray           # every trial's objective (NaN: infeasible)
    retrain_errors: list             # best validation error of each retrain
    size: Size


def best_of_n_percentiles(objectives, n: int, qs) -> list[float]:
    """Percentiles of the best of ``n`` from the exact distribution (``analysis.exact_cdf``)."""
    values = np.sort(np.asarray(objectives, dtype=np.float64)[np.isfinite(objectives)])
    cdf = np.array([analysis.exact_cdf(objectives, n, v) for v in values])
    return [float(values[min(int(np.searchsorted(cdf, q - 1e-12)), len(values) - 1)])
            for q in qs]


def measure(workload: str = "mnist1d_cnn", *, quick: bool = False, prefix: str = "trials",
            workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[TrialBudgetMeasured, list]:
    """Run (or re-read) the Halton study and the retrains: ``(measured, retrain trials)``."""
    size = SIZES["quick" if quick else "full"]
    spec = halton_spec(
        f"{prefix}_trials", workload=workload, workload_options={"n_validation": N_VALIDATION},
        search_space=space(), num_trials=size.num_trials, sampler_seed=0, seed=0,
        max_train_steps=size.max_train_steps, eval_every=size.eval_every,
        metric="validation/error_rate", description="one Halton study, its best of N bootstrapped",
        goal="How many trials are needed to get good results with quasi-random search?")
    run_spec(spec, workspace=workspace, workers=workers)
    frame = load_frame(spec, workspace)
    objectives = frame.objectives()
    best_row = analysis.ranked(frame)[0][0]
    retrains = run_configs(
        f"{prefix}_retrain", workload, [best_row.config],
        TrialSettings(max_train_steps=size.max_train_steps, eval_every=size.eval_every),
        workload_options={"n_validation": N_VALIDATION}, repeats=size.retrains, seed=1,
        workspace=workspace, workers=workers)
    measured = TrialBudgetMeasured(
        best_of_n=analysis.best_of_n(objectives, BUDGETS, n_boot=N_BOOT, seed=0),
        metric=frame.metric, objectives=objectives,
        retrain_errors=[trial_objective(r, "validation/error_rate") for r in retrains], size=size)
    return measured, retrains


def _ratio_text(ratio: float) -> str:
    return "∞ (IQR 0 at N=20)" if math.isinf(ratio) else f"{ratio:.1f}"


def decide(m: TrialBudgetMeasured) -> tuple[dict, str]:
    """The IQR at 6 and 20 trials, their ratio, a lucky study's spread: ``(numbers, text)``."""
    exact = {q.n: q for q in m.best_of_n.exact}
    iqr6, iqr20 = exact[6].iqr, exact[20].iqr
    ratio = iqr6 / iqr20 if iqr20 > 0 else math.inf
    medians = [q.median for q in m.best_of_n.exact]
    best_of_all = float(np.nanmin(m.objectives))
    retrain_std = spread(m.retrain_errors).std
    p5, p95 = best_of_n_percentiles(m.objectives, 20, (0.05, 0.95))
    numbers = {
        "n_trials": m.best_of_n.n_trials, "n_feasible": m.best_of_n.n_feasible,
        "best_of_all": best_of_all,
        "iqr_6": iqr6, "iqr_20": iqr20, "iqr_ratio": ratio,
        "median_6": exact[6].median, "median_20": exact[20].median,
        "bootstrap_iqr_6": m.best_of_n.bootstrap[0].iqr,
        "bootstrap_iqr_20": m.best_of_n.bootstrap[-1].iqr,
        "retrain_errors": m.retrain_errors, "retrain_std": retrain_std,
        "best_of_20_p5_p95": [p5, p95], "lucky_vs_unlucky_over_retrain_std":
            (p95 - p5) / retrain_std if retrain_std > 0 else math.inf,
        # Properties of the best of N draws (they hold for any study by construction).
        "medians_non_increasing": all(b <= a for a, b in zip(medians, medians[1:])),
        "min_whisker_constant": all(q.min == best_of_all for q in m.best_of_n.exact),
    }
    text = (f"the spread of the best result shrinks from IQR {iqr6:.4f} at 6 trials to "
            f"{iqr20:.4f} at 20 (ratio {_ratio_text(ratio)}): budget about 20 trials before "
            f"trusting a comparison; a 20-trial study's luck (5-95%: {p5:.3f}-{p95:.3f}) "
            f"vs re-train std {retrain_std:.4f} over {len(m.retrain_errors)} seeds")
    return numbers, text


def trials_needed(workload: str = "mnist1d_cnn", *, quick: bool = False,
                  prefix: str = "trials", workers: int | None = 0,
                  workspace: str | os.PathLike | None = None) -> ProcedureResult:
    """The best of N trials, bootstrapped from one study; how many trials are enough?

    Full size: 100 trials of 2,000 steps and 10 retrains; ``quick=True``: 24
    trials of 300 steps and 3 retrains.
    """
    m, retrains = measure(workload, quick=quick, prefix=prefix, workers=workers,
                          workspace=workspace)
    numbers, text = decide(m)
    fig = trial_budget_plots.best_of_n_boxes(
        m.best_of_n, metric=m.metric, title=(
            f"Figure 3: have we sampled enough? Best of N of {m.best_of_n.n_trials} trials "
            f"(bootstrap)\nIQR at N=6 / IQR at N=20 = {_ratio_text(numbers['iqr_ratio'])} "
            f"(exact order statistics)"))
    return ProcedureResult(
        question=QUESTION, decision=text, numbers=numbers, figures={"boxes": fig},
        trials=list(retrains),
        caveats=[f"{m.size.num_trials} Halton trials of {m.size.max_train_steps} "
                 f"steps, one seed; {N_VALIDATION} validation examples."])
