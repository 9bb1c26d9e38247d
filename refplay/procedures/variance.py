r"""How much do results move by chance, and should we adopt a change? (D9)

The playbook ("Determining whether to adopt a training pipeline change or
hyperparameter configuration") names the sources of variation:

* "**Training procedure variance, retrain variance, or trial variance**: the
  variation we see between training runs that use the same hyperparameters,
  but different random seeds." (:func:`retrain_variance`, one seed stream
  varied at a time; :func:`split_variance`, the validation split itself);
* "**Hyperparameter search variance, or study variance**: the variation in
  results caused by our procedure to select the hyperparameters."
  (:func:`study_variance`, the same study under other sampler seeds);
* "**Data collection and sampling variance**: the variance from any sort of
  random split into training, validation, and test data."

and the decision: "Before adopting a candidate change, consider running the
best trial N times to characterize the run-to-run trial variance" and
"we should only adopt changes that produce improvements that outweigh any
complexity they add" (:func:`adopt`).

**Welch.** With :math:`n_c, n_b` retrains of candidate and baseline, means
:math:`\bar c, \bar b` and sample variances :math:`s_c^2, s_b^2` of an
objective where lower is better, the effect is :math:`d = \bar b - \bar c`
(positive: the candidate is better), :math:`\mathrm{SE} = \sqrt{s_c^2/n_c +
s_b^2/n_b}`, the Welch–Satterthwaite degrees of freedom

.. math:: \nu = \frac{\mathrm{SE}^4}{\frac{(s_c^2/n_c)^2}{n_c - 1} + \frac{(s_b^2/n_b)^2}{n_b - 1}},

and the 95 % interval :math:`d \pm t_{0.975,\nu}\,\mathrm{SE}`.

**McNemar** (paired predictions on the same :math:`n` validation examples):
with :math:`n_{10}` examples the baseline gets right and the candidate wrong
and :math:`n_{01}` the reverse, :math:`d = (n_{01} - n_{10})/n` (the drop in
error rate), :math:`\mathrm{SE} = \sqrt{n_{01} + n_{10} - (n_{01} - n_{10})^2/n}\,/\,n`,
and the exact two-sided p-value :math:`\min(1, 2\,P[X \le \min(n_{01},
n_{10})])`, :math:`X \sim \mathrm{Bin}(n_{01} + n_{10}, 1/2)`.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import NamedTuple

import numpy as np

from refplay import _validate, search
from refplay.analysis.objective import trial_objective
from refplay.analysis.uncertainty import (normal_ppf, spread, student_t_cdf, student_t_ppf,
                                          two_proportion_z, welch)
from refplay.plots import variance as variance_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_configs
from refplay.train.settings import TrialSettings
from refplay.train.workloads import get_workload

__all__ = ["SOURCES", "DEFAULT_CONFIG", "Adoption", "adopt", "retrain_variance",
           "split_variance", "study_variance", "RetrainMeasured", "RetrainDecision",
           "measure_retrains", "decide_retrains", "Effect"]

SOURCES = ("all", "init", "data", "dropout")
DEFAULT_CONFIG = {"optimizer": "adam", "lr": 1e-3}
FIXED_STREAM_SEED = 0     # the value of the seed stream that is held fixed


# ----------------------------------------------------------------- adoption
class Adoption(NamedTuple):
    """The adoption decision and what it rests on (lower objective is better)."""

    decision: str            # "adopt" | "insufficient evidence"
    effect: float            # improvement of the candidate over the baseline (> 0: better)
    ci_low: float            # 95 % interval of the effect
    ci_high: float
    p_value: float           # two-sided
    test: str                # "welch" | "mcnemar"
    n_candidate: int
    n_baseline: int
    min_effect: float
    message: str

    def record(self, *, study: str = "", trial: int | None = None, note: str = "") -> dict:
        """The fields a store's baselines table keeps when a candidate is adopted."""
        return {"study": study, "trial": trial, "note": note, "decision": self.decision,
                "effect": self.effect, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "test": self.test}


class Effect(NamedTuple):
    """A test's reading of candidate vs baseline: the effect, its interval, its p-value."""

    effect: float                # improvement of the candidate (> 0: better)
    half_width: float            # of the level interval around the effect
    p_value: float               # two-sided
    n_candidate: int
    n_baseline: int


def adopt(candidate, baseline, *, min_effect: float = 0.0, test: str = "welch",
          level: float = 0.95) -> Adoption:
    """Adopt the candidate? Its improvement, a ``level`` interval, and a test.

    ``test="welch"``: ``candidate`` and ``baseline`` are objectives of
    retrains (lower is better, e.g. validation error rates of N seeds each).
    ``test="mcnemar"``: they are boolean arrays, ``True`` where the
    prediction on the same validation example is correct (paired).

    Decision: ``"adopt"`` when the whole interval is above 0 (the
    improvement is not trial variance) *and* the effect is at least
    ``min_effect`` (it outweighs the complexity it adds; the playbook
    leaves that threshold to us); else ``"insufficient evidence"``.
    """
    _validate.one_of("test", test, ("welch", "mcnemar"))
    min_effect = _validate.real("min_effect", min_effect)
    level = _validate.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    measure = _welch if test == "welch" else _mcnemar
    effect, half, p, nc, nb = measure(candidate, baseline, level)   # an Effect
    lo, hi = effect - half, effect + half
    if lo > 0 and effect >= min_effect:
        decision = "adopt"
        msg = (f"adopt: the candidate improves the objective by {effect:.4g} "
               f"({level:.0%} CI [{lo:.4g}, {hi:.4g}], p={p:.3g}, {test})")
    else:
        decision = "insufficient evidence"
        why = ("the interval includes no improvement" if lo <= 0
               else f"the effect is below min_effect={min_effect:g}")
        msg = (f"insufficient evidence: {why} (effect {effect:.4g}, {level:.0%} CI "
               f"[{lo:.4g}, {hi:.4g}], p={p:.3g}, {test})")
    return Adoption(decision=decision, effect=effect, ci_low=lo, ci_high=hi, p_value=float(p),
                    test=test, n_candidate=nc, n_baseline=nb, min_effect=min_effect, message=msg)


def _welch(candidate, baseline, level: float) -> Effect:
    """Retrained objectives: ``(effect, half-width of the interval, p, n_c, n_b)``."""
    c = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if c.ndim != 1 or b.ndim != 1 or len(c) < 2 or len(b) < 2:
        raise ValueError(f"welch needs at least 2 retrains of each (1-D), got "
                         f"{c.shape} candidate and {b.shape} baseline")
    if not (np.isfinite(c).all() and np.isfinite(b).all()):
        raise ValueError("candidate and baseline objectives must be finite (drop "
                         "infeasible retrains and say so)")
    effect, se, df = welch(b, c)          # > 0: the candidate's objective is lower
    if se == 0:
        return Effect(effect=effect, half_width=0.0, p_value=1.0 if effect == 0 else 0.0,
                      n_candidate=len(c), n_baseline=len(b))
    return Effect(effect=effect, half_width=student_t_ppf(0.5 + level / 2, df) * se,
                  p_value=2.0 * (1.0 - student_t_cdf(abs(effect) / se, df)),
                  n_candidate=len(c), n_baseline=len(b))


def _mcnemar(candidate, baseline, level: float) -> Effect:
    """Paired correctness on the same examples: ``(effect, half-width, exact p, n, n)``."""
    c = np.asarray(candidate)
    b = np.asarray(baseline)
    if c.dtype != bool or b.dtype != bool or c.shape != b.shape or c.ndim != 1 or not len(c):
        raise ValueError(f"mcnemar needs two boolean arrays of the same length (correct "
                         f"per validation example), got {c.dtype}{c.shape} and "
                         f"{b.dtype}{b.shape}")
    n = len(c)
    n01 = int(np.sum(c & ~b))      # candidate right, baseline wrong
    n10 = int(np.sum(~c & b))
    se = math.sqrt(max(n01 + n10 - (n01 - n10) ** 2 / n, 0.0)) / n
    k, m = min(n01, n10), n01 + n10
    p = min(1.0, 2.0 * sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m) if m else 1.0
    return Effect(effect=(n01 - n10) / n, half_width=normal_ppf(0.5 + level / 2) * se,
                  p_value=p, n_candidate=n, n_baseline=n)


class RetrainMeasured(NamedTuple):
    """Retrains of one config, one seed stream varied at a time (see :func:`retrain_variance`)."""

    workload: str
    config: dict
    n_seeds: int
    max_train_steps: int
    n_validation: int
    objectives: dict             # seed stream -> best validation error per retrain
    correct: list                # per feasible "all" retrain: correct per validation example
    alpha: float


class RetrainDecision(NamedTuple):
    """The spread per stream, the largest source, and how often chance looks significant."""

    stats: dict                  # seed stream -> analysis.uncertainty.Spread
    largest: str | None          # the stream with the largest std
    unpaired_fraction: float     # pairs of "all" retrains an unpaired z-test calls different
    n_pairs: int
    paired_fraction: float       # ... McNemar on the same examples calls different
    text: str


def measure_retrains(workload: str = "mnist1d_cnn", config: dict | None = None, *,
                     n_seeds: int = 10, sources=None, max_train_steps: int = 2_000,
                     eval_every: int = 100, seed: int = 0, alpha: float = 0.05,
                     workers: int | None = 0,
                     workspace: str | os.PathLike | None = None) -> tuple[RetrainMeasured, list]:
    """Run (or re-read) ``n_seeds`` retrains per seed stream: ``(measured, trials)``."""
    n_seeds = _validate.integer("n_seeds", n_seeds, low=2)
    config = dict(config or DEFAULT_CONFIG)
    if sources is None:     # the dropout stream matters only when the model uses dropout
        sources = SOURCES if config.get("dropout", 0) else SOURCES[:-1]
    for s in sources:
        _validate.one_of("sources[i]", s, SOURCES)
    stream_keys = ("init_seed", "data_seed", "dropout_seed")
    clash = [k for k in stream_keys if k in config]
    if clash:
        raise ValueError(f"config sets {clash}: retrain_variance varies the seed streams "
                         f"itself; remove them")
    wl = get_workload(workload)
    settings = TrialSettings(max_train_steps=max_train_steps, eval_every=eval_every, keep_best=0,
                             keep_predictions=True)    # for the paired (McNemar) fraction
    run = dict(seed=seed, workers=workers, workspace=workspace)
    objectives, trials, correct = {}, [], []
    for source in sources:
        if source == "all":
            results = run_configs("retrain_all", workload, [config], settings, repeats=n_seeds,
                                  **run)
            y = wl.validation.y
            correct = [r.predictions == y for r in results
                       if r.feasible and len(r.predictions) == len(y)]
        else:
            varied = f"{source}_seed"
            fixed = {k: FIXED_STREAM_SEED for k in stream_keys if k != varied}
            configs = [{**config, **fixed, varied: i} for i in range(n_seeds)]
            results = run_configs(f"retrain_{source}", workload, configs, settings, **run)
        objectives[source] = [trial_objective(r) for r in results]
        trials += results
    return RetrainMeasured(workload=workload, config=config, n_seeds=n_seeds,
                           max_train_steps=max_train_steps, n_validation=len(wl.validation),
                           objectives=objectives, correct=correct, alpha=alpha), trials


def decide_retrains(m: RetrainMeasured) -> RetrainDecision:
    """Which stream moves the result most; how often trial variance alone looks significant."""
    stats = {source: spread(values) for source, values in m.objectives.items()}
    unpaired = paired_fraction = math.nan
    n_pairs = 0
    if "all" in m.objectives:
        v = [x for x in m.objectives["all"] if math.isfinite(x)]
        z_crit = normal_ppf(1 - m.alpha / 2)
        pairs = list(itertools.combinations(v, 2))
        sig = sum(abs(two_proportion_z(a, b, m.n_validation)) > z_crit for a, b in pairs)
        unpaired, n_pairs = (sig / len(pairs) if pairs else math.nan), len(pairs)
        # The same pairs, tested on paired predictions (the same validation examples).
        paired = list(itertools.combinations(m.correct, 2))
        paired_fraction = (sum(adopt(a, b, test="mcnemar").p_value < m.alpha
                               for a, b in paired) / len(paired) if paired else math.nan)
    largest = max((s for s in stats if math.isfinite(stats[s].std)),
                  key=lambda s: stats[s].std, default=None)
    first = next(iter(stats))
    text = (f"retrain std {stats.get('all', stats[first]).std:.4f}; the largest "
            f"single source is {largest!r}. Differences between configs smaller than "
            f"about 2 x std/sqrt(N) per arm are within trial variance: retrain the "
            f"candidate and the baseline N times before adopting")
    return RetrainDecision(
        stats=stats, largest=largest, unpaired_fraction=unpaired, n_pairs=n_pairs,
        paired_fraction=paired_fraction, text=text)


RETRAIN_VARIANCE_QUESTION = ("How large is the trial (retrain) variance, and which seed stream "
                             "causes it?")


def retrain_variance(workload: str = "mnist1d_cnn", config: dict | None = None, *,
                     quick: bool = False, **options) -> ProcedureResult:
    """Trial variance of ``config``, by seed stream (one varied at a time).

    * ``"all"``: ``n_seeds`` trial seeds (every stream moves);
    * ``"init"``: ``init_seed = 0..n_seeds-1`` with the other two streams fixed;
    * ``"data"``: ``data_seed`` varied, the others fixed;
    * ``"dropout"``: ``dropout_seed`` varied, the others fixed (meaningful only
      when the config uses dropout: the default ``sources`` include it only then).

    Also the playbook's warning that "trial variance alone can produce
    statistically significant differences" (claim CL33): the fraction of
    pairs of same-config retrains ("all") that an *unpaired* two-proportion
    z-test at ``alpha`` calls different on the validation set.
    ``options`` are :func:`measure_retrains`'s. ``quick=True``: ``mnist1d_mlp``, 4 seeds, 600 steps.
    """
    if quick:
        workload = "mnist1d_mlp"
        options.update(n_seeds=4, max_train_steps=600, eval_every=100)
    m, trials = measure_retrains(workload, config, **options)
    d = decide_retrains(m)
    numbers = {"workload": m.workload, "config": m.config, "n_seeds": m.n_seeds,
               "max_train_steps": m.max_train_steps, "n_validation": m.n_validation,
               **{s: st._asdict() for s, st in d.stats.items()}}
    if "all" in d.stats:
        mean = d.stats["all"].mean
        numbers.update(unpaired_significant_fraction=d.unpaired_fraction, n_pairs=d.n_pairs,
                       paired_significant_fraction=d.paired_fraction,
                       binomial_se_at_mean=math.sqrt(max(mean, 0) * (1 - mean)
                                                     / m.n_validation))
    caveats = ["The playbook's ±0.1 % ImageNet retrain spread is not reproducible here; the "
               "direction and the mechanism are."]
    fig = variance_plots.strip_plot(m.objectives, "validation/error_rate",
                                    title="How much does the result move when only the seed "
                                          "changes?", xlabel="seed stream varied")
    return ProcedureResult(
        question=RETRAIN_VARIANCE_QUESTION,
        decision=d.text, numbers=numbers, figures={"retrain_variance": fig}, trials=trials,
        caveats=caveats)


SPLIT_VARIANCE_QUESTION = ("How much does the random train/validation split change the result "
                           "(data sampling variance)?")


def split_variance(workload: str = "mnist1d_mlp", config: dict | None = None, *,
                   split_seeds=range(5), max_train_steps: int = 2_000, eval_every: int = 100,
                   seed: int = 0, quick: bool = False, workers: int | None = 0,
                   workspace: str | os.PathLike | None = None) -> ProcedureResult:
    """Variation of the objective across random train/validation splits (``split_seed``)."""
    if quick:
        split_seeds, max_train_steps = range(3), 600
    config = dict(config or DEFAULT_CONFIG)
    settings = TrialSettings(max_train_steps=max_train_steps, eval_every=eval_every, keep_best=0,
                             keep_predictions=True)    # for the paired (McNemar) fraction
    split_seeds = [int(s) for s in split_seeds]
    values, trials = [], []
    for s in split_seeds:
        r = run_configs("split_variance", workload, [config], settings,
                        workload_options={"split_seed": s}, seed=seed, workers=workers,
                        workspace=workspace)[0]
        values.append(trial_objective(r))
        trials.append(r)
    st = spread(values)._asdict()
    numbers = {"workload": workload, "config": config, "split_seeds": split_seeds,
               "objectives": values, **{f"split_{k}": v for k, v in st.items()}}
    decision = (f"the objective moves by std {st['std']:.4f} across {len(values)} random "
                f"splits: a difference smaller than this between studies on different splits "
                f"is not evidence")
    fig = variance_plots.strip_plot({"split_seed varied": values}, "validation/error_rate",
                             title="How much does the validation split itself move the result?")
    return ProcedureResult(
        question=SPLIT_VARIANCE_QUESTION,
        decision=decision, numbers=numbers, figures={"split_variance": fig}, trials=trials,
        caveats=["The trial seed is the same for every split, so only the split "
                 "(and what it changes downstream) varies."])


STUDY_VARIANCE_QUESTION = ("How much does the hyperparameter search itself change the best result "
                           "(study variance)?")


def study_variance(workload: str = "mnist1d_mlp", *, n_trials: int = 8, sampler_seeds=range(4),
                   optimizer: str = "adam", lr_range=(1e-4, 3e-2), max_train_steps: int = 1_000,
                   eval_every: int = 100, quick: bool = False, workers: int | None = 0,
                   workspace: str | os.PathLike | None = None) -> ProcedureResult:
    """Study variance: the best objective of the same study under other sampler seeds."""
    if quick:
        n_trials, sampler_seeds, max_train_steps = 4, range(3), 400
    space = search.SearchSpace(lr=search.Float(*lr_range, scale="log"))
    settings = TrialSettings(max_train_steps=max_train_steps, eval_every=eval_every, keep_best=0,
                             keep_predictions=True)    # for the paired (McNemar) fraction
    bests, trials = [], []
    for s in sampler_seeds:
        configs = [{"optimizer": optimizer, **p} for p in search.halton(space, n_trials, int(s))]
        res = run_configs("study_variance", workload, configs, settings, seed=int(s),
                          workers=workers, workspace=workspace)
        bests.append(float(np.nanmin([trial_objective(r) for r in res])))
        trials += res
    st = spread(bests)._asdict()
    numbers = {"workload": workload, "n_trials": n_trials,
               "sampler_seeds": [int(s) for s in sampler_seeds], "best_objectives": bests,
               **{f"study_{k}": v for k, v in st.items()}}
    decision = (f"the best of {n_trials} trials moves by std {st['std']:.4f} across sampler "
                f"seeds: compare studies only beyond this")
    fig = variance_plots.strip_plot({f"best of {n_trials}": bests}, "validation/error_rate",
                             title="How much does the search itself move the best result?")
    return ProcedureResult(
        question=STUDY_VARIANCE_QUESTION,
        decision=decision, numbers=numbers, figures={"study_variance": fig}, trials=trials,
        caveats=["Sampler seed and trial seeds change together here."])
