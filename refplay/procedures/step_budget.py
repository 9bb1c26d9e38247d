"""How many steps should each trial run? The initial guess and its refinement.

The playbook ("Deciding how long to train when training is *not*
compute-bound"), on the initial guess:

    "With SGD and a constant learning rate [...] we can find the number of
    steps the *fastest* trial needs to fit the training set perfectly [...]
    we should run a learning rate sweep [...] with no regularization or data
    augmentation [...] The number of steps the fastest trial needs to
    perfectly fit the training set is our initial guess for
    `max_train_steps`."

and, once a study has run with that budget:

    "If the best checkpoints are always close to the end of training [...]
    we should increase max_train_steps [...] If the best checkpoints are all
    in the first 10% of training, max_train_steps is way too high."

:func:`initial_max_train_steps` is the sweep (design D7);
:func:`refine_max_train_steps` reads a finished study (design D6) through
:func:`refplay.analysis.best_step_fractions`.

**Steps to fit.** For a trial evaluated at steps :math:`s_0 < s_1 < \\dots`
with training error :math:`e(s_i)` (``train_eval/error_rate``, eval mode, the
whole training split), the steps to fit are :math:`\\min\\{s_i : e(s_i) \\le
e_\\text{fit}\\}` (``None`` when no evaluation reaches it, or the trial
diverged); the candidate is the minimum over learning rates, so it is known
to one ``eval_every``.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from refplay import _validate, analysis
from refplay import plots
from refplay.plots import step_budget as step_budget_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_configs
from refplay.train.result import TrialResult
from refplay.train.settings import TrialSettings
from refplay.train.workloads import get_workload

__all__ = ["first_step_reaching", "FitSweep", "fastest_fit", "initial_max_train_steps",
           "refine_max_train_steps", "InitialSteps", "measure_initial", "decide_initial",
           "REGULARIZERS", "DOUBLING_START", "DOUBLING_CAP"]

FIT_METRIC = "train_eval/error_rate"
# Model hyperparameters that regularize; the sweep forces each one a workload has to 0.
REGULARIZERS = ("dropout", "label_smoothing")
DOUBLING_START = 500
DOUBLING_CAP = 64_000
QUESTION_INITIAL = ("How many steps does the fastest trial of a constant-learning-rate sweep "
                    "need to fit the training set perfectly (the initial max_train_steps)?")
QUESTION_REFINE = ("Where in training do the best checkpoints fall: is max_train_steps too "
                   "high, too low, or about right?")


def first_step_reaching(result: TrialResult, target: float,
                        metric: str = FIT_METRIC) -> int | None:
    """The first evaluation step at which ``metric <= target``; ``None`` if never.

    An infeasible or failed trial counts only for the evaluations it
    recorded before it stopped (usually none reach the target).
    """
    values = result.curves.get(metric)
    if values is None:
        raise ValueError(f"metric={metric!r} is not a curve of this trial; "
                         f"it has {sorted(result.curves)}")
    for step, v in zip(result.eval_steps, values):
        if math.isfinite(v) and v <= target:
            return int(step)
    return None


class FitSweep(NamedTuple):
    """Steps to fit per learning rate, and the fastest trial."""

    lrs: tuple[float, ...]
    steps_to_fit: tuple            # int or None per lr (None: never fit, or diverged)
    candidate: int | None          # the minimum over lrs; None when no lr fits
    fastest_lr: float | None
    at_upper_edge: bool            # the fastest lr is the largest of the grid
    at_lower_edge: bool            # ... the smallest (and the grid has more than one lr)


def fastest_fit(lrs, steps_to_fit) -> FitSweep:
    """The fastest learning rate and the grid-edge flags, from steps to fit per lr.

    Ties go to the smaller learning rate (the safer choice at equal cost).
    """
    lrs = tuple(float(x) for x in lrs)
    steps_to_fit = tuple(None if s is None else int(s) for s in steps_to_fit)
    if len(lrs) != len(steps_to_fit) or not lrs:
        raise ValueError(f"lrs and steps_to_fit must be non-empty and of equal length, got "
                         f"{len(lrs)} and {len(steps_to_fit)}")
    fits = [(s, lr) for lr, s in zip(lrs, steps_to_fit) if s is not None]
    if not fits:
        return FitSweep(lrs=lrs, steps_to_fit=steps_to_fit, candidate=None, fastest_lr=None,
                        at_upper_edge=False, at_lower_edge=False)
    candidate, fastest = min(fits)
    return FitSweep(lrs=lrs, steps_to_fit=steps_to_fit, candidate=candidate, fastest_lr=fastest,
                    at_upper_edge=fastest == max(lrs) and len(lrs) > 1,
                    at_lower_edge=fastest == min(lrs) and len(lrs) > 1)


def _sweep_config(workload, optimizer: str, lr: float, base_config: dict | None) -> dict:
    """Constant learning rate, no warmup, every regularizer off (checked, not assumed)."""
    config = dict(base_config or {})
    for key in ("schedule", "warmup_steps"):
        if key in config and config[key] not in ("constant", 0):
            raise ValueError(f"base_config[{key!r}]={config[key]!r}: the sweep uses a constant "
                             f"learning rate with no warmup; remove {key!r}")
    if config.get("weight_decay", 0.0):
        raise ValueError(f"base_config['weight_decay']={config['weight_decay']!r}: the sweep "
                         f"runs with no regularization; use 0 or remove it")
    for key in REGULARIZERS:
        if key in workload.hparams:
            if config.get(key, 0.0):
                raise ValueError(f"base_config[{key!r}]={config[key]!r}: the sweep runs with "
                                 f"no regularization; use 0 or remove it")
            config[key] = 0.0
    config.update(optimizer=optimizer, lr=float(lr), schedule="constant")
    return config


class InitialSteps(NamedTuple):
    """What :func:`initial_max_train_steps` trained: the doubling probe and the sweep."""

    workload: str
    optimizer: str
    fit_error: float
    cap: int
    probe_lr: float | None          # the probe's learning rate (None: n_steps was given)
    probe_steps: list               # the budgets the probe tried, doubling
    probe_final_error: float        # the last probe's final training error
    sweep_steps: int | None         # the sweep's budget (None: the probe never fit)
    lrs: list
    steps_to_fit: list              # per lr: the first evaluation step that fits, or None
    statuses: list                  # per lr
    curves: dict                    # lr -> (steps, training error): the probe's, or the sweep's


def _probe(run, wl, optimizer, lr, base_config, fit_error, start, cap, settings):
    """Double the budget from ``start`` at ``lr`` until the training set is fit (or ``cap``)."""
    n, probe = min(_validate.integer("start", start, low=1), cap), []
    while True:
        res = run(name="max_train_steps_probe",
                  configs=[_sweep_config(wl, optimizer, lr, base_config)],
                  settings=settings.replace(max_train_steps=n))[0]
        probe.append((n, res))
        if first_step_reaching(res, fit_error) is not None or n >= cap:
            return probe
        n = min(2 * n, cap)


def measure_initial(workload: str = "mnist1d_mlp", *, optimizer: str = "adam", lrs=None,
                    n_steps: int | None = None, fit_error: float = 0.0, eval_every: int = 50,
                    seed: int = 0, base_config: dict | None = None, cap: int = DOUBLING_CAP,
                    start: int = DOUBLING_START, quick: bool = False, workers: int | None = 0,
                    workspace: str | os.PathLike | None = None) -> tuple[InitialSteps, list]:
    """The probe (when ``n_steps`` is None) and the sweep: ``(measured, trials)``."""
    wl = get_workload(workload)
    _validate.real("fit_error", fit_error, low=0.0, high=1.0)
    _validate.integer("eval_every", eval_every, low=1)
    if lrs is None:
        lrs = (2e-3, 6e-3, 2e-2) if quick else np.geomspace(1e-4, 1e-1, 7)
    if quick:
        cap = min(cap, 4_000)
    lrs = sorted(float(_validate.real("lrs[i]", x, low=0.0, low_open=True)) for x in lrs)
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    cap = _validate.integer("cap", cap, low=1)
    settings = TrialSettings(max_train_steps=1, eval_every=eval_every, eval_train="all",
                             keep_best=0)

    def run(name, configs, settings):
        return run_configs(name, workload, configs, settings, workspace=workspace,
                           workers=workers, seed=seed)

    probe, mid = [], None
    if n_steps is None:
        mid = lrs[(len(lrs) - 1) // 2]
        probe = _probe(run, wl, optimizer, mid, base_config, fit_error, start, cap, settings)
        n_steps = probe[-1][0]
    last = probe[-1][1] if probe else None
    final = (last.curves[FIT_METRIC][-1] if last is not None and last.curves.get(FIT_METRIC)
             else math.nan)
    fields = dict(workload=workload, optimizer=optimizer, fit_error=fit_error, cap=cap,
                  probe_lr=mid, probe_steps=[n for n, _ in probe], probe_final_error=final,
                  lrs=list(lrs))
    trials = [r for _, r in probe]
    if last is not None and first_step_reaching(last, fit_error) is None:
        return InitialSteps(**fields, sweep_steps=None, steps_to_fit=[], statuses=[],
                            curves={mid: _train_error_curve(last)}), trials
    n_steps = _validate.integer("n_steps", n_steps, low=1)
    results = run("max_train_steps_sweep",
                  [_sweep_config(wl, optimizer, lr, base_config) for lr in lrs],
                  settings.replace(max_train_steps=n_steps))
    return InitialSteps(**fields, sweep_steps=n_steps,
                        steps_to_fit=[first_step_reaching(r, fit_error) for r in results],
                        statuses=[str(r.status) for r in results],
                        curves={lr: _train_error_curve(r) for lr, r in zip(lrs, results)}), \
        trials + list(results)


def decide_initial(m: InitialSteps) -> tuple[FitSweep | None, str]:
    """The fastest fit and the playbook's warning at a grid edge: ``(sweep, decision)``."""
    if m.sweep_steps is None:
        return None, (f"cannot perfectly fit the training set: after {m.probe_steps[-1]} steps "
                      f"at lr={m.probe_lr:.3g} the training error is still "
                      f"{m.probe_final_error:.4g} > {m.fit_error:g}, so the procedure's "
                      f"assumption does not hold; choose max_train_steps from a short study's "
                      f"best-step fractions instead")
    sweep = fastest_fit(m.lrs, m.steps_to_fit)
    if sweep.candidate is None:
        return sweep, (f"no learning rate fit the training set within {m.sweep_steps} steps: "
                       f"the procedure's assumption does not hold at this budget")
    text = (f"initial max_train_steps = {sweep.candidate} (the fastest trial, "
            f"lr={sweep.fastest_lr:.3g}, fits the training set at step {sweep.candidate})")
    if sweep.at_upper_edge:
        text += ("; but the fastest learning rate is the largest in the grid: expand "
                 "the grid upward before trusting this")
    elif sweep.at_lower_edge:
        text += "; the fastest learning rate is the smallest in the grid: expand downward"
    return sweep, text


def _initial_numbers(m: InitialSteps, sweep: FitSweep | None) -> dict:
    if sweep is None:
        return {"workload": m.workload, "optimizer": m.optimizer, "probe_lr": m.probe_lr,
                "probe_steps": m.probe_steps, "final_train_error": m.probe_final_error,
                "fit_error": m.fit_error, "cap": m.cap}
    numbers = {"workload": m.workload, "optimizer": m.optimizer, "fit_error": m.fit_error,
               "sweep_steps": m.sweep_steps, "lrs": list(m.lrs),
               "steps_to_fit": list(sweep.steps_to_fit), "statuses": m.statuses,
               "candidate_max_train_steps": sweep.candidate, "fastest_lr": sweep.fastest_lr,
               "at_upper_edge": sweep.at_upper_edge, "at_lower_edge": sweep.at_lower_edge}
    if m.probe_steps:
        numbers["probe_steps"] = m.probe_steps
    return numbers


def initial_max_train_steps(workload: str = "mnist1d_mlp", *, quick: bool = False,
                            **options) -> ProcedureResult:
    """The playbook's initial ``max_train_steps`` from a constant-learning-rate sweep (D7).

    1. If ``n_steps`` is None, find a budget N by doubling from ``start``
       steps at the middle learning rate until the training error reaches
       ``fit_error`` (up to ``cap``). If it never does, the decision is that
       the procedure's assumption (the model can fit the training set) does
       not hold.
    2. Run every learning rate for N steps: constant schedule, no warmup,
       ``dropout = label_smoothing = weight_decay = 0``, training error on the
       whole training split every ``eval_every`` steps.
    3. The candidate is the fewest steps to fit over the learning rates.
    4. If the fastest learning rate is the largest in the grid, the
       playbook's warning applies: the grid may be hiding a faster one.

    ``options`` are :func:`measure_initial`'s. Full size: ``mnist1d_mlp``,
    Adam, 7 learning rates in [1e-4, 1e-1] (about a minute on 2 cores).
    ``quick=True``: learning rates 2e-3, 6e-3, 2e-2 (unless given), doubling
    from 500 with a cap of 4,000 steps.
    """
    m, trials = measure_initial(workload, quick=quick, **options)
    sweep, decision = decide_initial(m)
    if sweep is None:
        figures = {"train_error": step_budget_plots.train_error_curves(
            m.curves, m.fit_error, None, title="Can the model fit the training set at all?")}
    else:
        figures = {"train_error": step_budget_plots.train_error_curves(m.curves, m.fit_error,
                                                                       sweep.candidate),
                   "steps_to_fit": step_budget_plots.steps_to_fit_plot(sweep, m.statuses,
                                                                       m.sweep_steps)}
    caveats = ["Augmentation is not part of refplay's trial configs yet, so 'augmentation "
               "off' holds trivially; dropout, label smoothing and weight decay are forced "
               "to 0.",
               f"Steps to fit are known to one evaluation interval "
               f"({options.get('eval_every', 50)} steps)."]
    return ProcedureResult(
        question=QUESTION_INITIAL, decision=decision, numbers=_initial_numbers(m, sweep),
        figures=figures, trials=trials, caveats=caveats)


def _train_error_curve(result: TrialResult) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(result.eval_steps, dtype=np.int64),
            np.asarray(result.curves.get(FIT_METRIC, []), dtype=np.float64))


def refine_max_train_steps(frame_or_results) -> ProcedureResult:
    """Is ``max_train_steps`` right? The best-step fractions of a finished study (D6).

    ``frame_or_results``: an :class:`refplay.analysis.TrialsFrame` (e.g.
    ``analysis.load(store, name)``) or a list of ``TrialResult``. Decision
    (:func:`refplay.analysis.best_step_fractions`): every best step in the
    first 10 % → "too long"; at least 3/4 of the trials in the last 25 % →
    "train longer and re-tune the decay"; otherwise "ok".
    """
    frame = frame_or_results
    if isinstance(frame, (list, tuple)):
        frame = analysis.from_results(frame)
    if not isinstance(frame, analysis.TrialsFrame):
        raise TypeError(f"frame_or_results must be a TrialsFrame or a list of TrialResult, "
                        f"got {type(frame_or_results).__name__}")
    bsf = analysis.best_step_fractions(frame)
    decisions = {"max_train_steps_too_high": "too long: lower max_train_steps",
                 "train_longer": "train longer and re-tune the decay schedule",
                 "ok": "ok: keep max_train_steps", "no_data": "no complete trial to judge"}
    fr = bsf.fractions
    numbers = {"n_complete": len(fr), "decision_code": bsf.decision,
               "median_fraction": float(np.median(fr)) if len(fr) else math.nan,
               "max_fraction": float(fr.max()) if len(fr) else math.nan,
               "fraction_in_last_25pct": bsf.late_fraction}
    return ProcedureResult(
        question=QUESTION_REFINE, decision=f"{decisions[bsf.decision]} ({bsf.message})",
        numbers=numbers, figures={"best_step_fractions": plots.best_step_histogram(bsf)},
        trials=list(bsf.trials),
        caveats=["The 'last 25 %' rule is refplay's reading of 'consistently close "
                 "to the end': at least three quarters of the complete trials."])
