"""A study in a few lines, for your own objective; and Optuna as a proposer.

For users who bring their own training code, as short as Optuna's
``create_study().optimize(objective)``::

    from refplay import search, study

    def objective(config, seed):                 # a module-level function
        return train_and_validate(**config, seed=seed)    # a float; NaN/inf: infeasible

    space = search.SearchSpace({
        "optimizer": search.Choice(["sgd", "adam"], role="scientific"),
        "lr": search.Float(1e-4, 1.0, scale="log")})
    result = study.optimize(objective, space, n_trials=24, name="sgd_vs_adam",
                            workspace="ws", metric="validation/error_rate")
    result.best              # Best(trial, objective, config) of the study
    frame = result.frame()   # every analysis function, plot and report.write(frame, ...) reads it

The study is an ordinary refplay study: quasi-random (Halton) by default,
recorded in the workspace's SQLite store, resumable (run the same call
again), parallel with ``workers=N``. The objective may return a float (the
study metric; NaN or infinite means the trial diverged: infeasible) or a full
:class:`~refplay.train.result.TrialResult` (curves, best step). If the first
trials all crash with the same error, the study stops and shows it (see
:mod:`refplay.study.runner`) instead of recording a failure per trial.

:class:`OptunaProposer` is the adapter the runner's docstring describes: any
Optuna sampler (TPE by default) proposes the configurations of a
``sampler="external"`` study, through the ask/tell history, so that the
study keeps refplay's recording, crash safety and exact resume::

    study.optimize(objective, space, n_trials=40, proposer=study.OptunaProposer(space),
                   initial_trials=8, batch=2)

Optuna is the ``[interop]`` extra, imported when a proposal is asked for.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from refplay.study.runner import HistoryEntry, run
from refplay.study.spec import StudySpec
from refplay.study.store import Store, StudyStatus
from refplay.train.result import TrialResult

__all__ = ["optimize", "ObjectiveTrial", "Optimized", "BestTrial", "OptunaProposer"]


@dataclasses.dataclass(frozen=True)
class ObjectiveTrial:
    """A trial function from ``objective(config, seed) -> float | TrialResult``.

    A float is the study metric at the end of training (``max_train_steps``);
    NaN or infinite makes the trial infeasible. ``objective`` may also take
    ``trial_dir`` (keyword) for its checkpoints. Anything else it returns is a
    failed trial naming the type.
    """

    objective: Callable[..., Any]
    metric: str
    max_train_steps: int = 1

    def __call__(self, config: dict, seed: int, *, trial_dir: str | None = None) -> TrialResult:
        """Run the objective once and turn what it returns into a ``TrialResult``."""
        takes_dir = "trial_dir" in inspect.signature(self.objective).parameters
        value = (self.objective(config, seed, trial_dir=trial_dir) if takes_dir
                 else self.objective(config, seed))
        if isinstance(value, TrialResult):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"the objective returned {type(value).__name__}; return a float "
                            f"(the study metric {self.metric!r}) or a TrialResult")
        return TrialResult.from_value(config, seed, value, self.metric, self.max_train_steps)


class BestTrial(NamedTuple):
    """The best complete trial of a study: its number, objective and configuration."""

    trial: int
    objective: float
    config: dict


@dataclasses.dataclass(frozen=True)
class Optimized:
    """What :func:`optimize` returns: the study's status, its best trial and its frame."""

    status: StudyStatus
    workspace: str
    name: str

    @property
    def best(self) -> BestTrial | None:
        """The best complete trial (``None`` when no trial completed)."""
        s = self.status.study
        if s.best_trial is None:
            return None
        return BestTrial(s.best_trial, s.best_value, self.status.best_config)

    @property
    def counts(self) -> dict:
        """``{status: number of trials}``."""
        return self.status.counts

    def frame(self):
        """The study as a :class:`~refplay.analysis.TrialsFrame` (read from the workspace)."""
        from refplay import analysis  # lazy: analysis reads stores, so it sits above study
        with Store(self.workspace, readonly=True) as store:
            return analysis.load(store, self.name)


def optimize(objective: Callable[..., Any], space, n_trials: int, *, name: str = "study",
             workspace: str | os.PathLike = "refplay-workspace",
             metric: str = "validation/objective", mode: str = "min", seed: int = 0,
             workers: int = 0, max_train_steps: int = 1, proposer=None,
             n_validation: int | None = None, progress: bool | str | None = False,
             **spec_options) -> Optimized:
    """Run ``n_trials`` of ``objective`` over ``space`` as a refplay study; see the module doc.

    ``workers=0`` runs trials in this process (the objective then need not be
    picklable); ``workers=N`` uses N processes (a module-level objective).
    ``proposer`` (e.g. :class:`OptunaProposer`) makes it an adaptive study
    (``sampler="external"``; ``initial_trials`` Halton trials first, default
    0, and rounds of ``batch``, default 1). ``spec_options`` go to
    :class:`~refplay.study.StudySpec` (``description``, ``goal``,
    ``repeats``, ...). ``n_validation`` is recorded for the report's binomial
    standard errors. Running the same call again resumes the study.
    """
    if proposer is not None:
        spec_options = {"sampler": "external", "initial_trials": 0, "batch": 1} | spec_options
    spec = StudySpec(name=name, workload=None, num_trials=n_trials, search_space=space,
                     max_train_steps=max_train_steps, eval_every=max_train_steps, metric=metric,
                     mode=mode, sampler_seed=seed, seed=seed, **spec_options)
    status = run(spec, store=workspace, workers=workers, progress=progress, proposer=proposer,
                 trial_fn=ObjectiveTrial(objective, metric, max_train_steps))
    if n_validation is not None:
        with Store(workspace) as store:
            store.set_meta(name, "n_validation", n_validation)
    return Optimized(status, str(workspace), name)


# ------------------------------------------------------------------ Optuna as a proposer
def _distribution(optuna, p):
    """The Optuna distribution of a refplay parameter (None for a fixed one)."""
    kind = type(p).__name__
    if kind == "Float":
        if p.scale == "log1m":
            raise ValueError("Optuna has no log(1 - x) scale; use scale='linear' or 'log'")
        return optuna.distributions.FloatDistribution(p.low, p.high, log=p.scale == "log")
    if kind == "Int":
        return optuna.distributions.IntDistribution(p.low, p.high, log=p.scale == "log")
    if kind in ("Choice", "Discrete"):
        return optuna.distributions.CategoricalDistribution(list(p.values))
    return None


def _suggest(trial, name: str, d):
    """``trial.suggest_*`` for distribution ``d`` (Optuna's public ask API)."""
    if hasattr(d, "choices"):
        return trial.suggest_categorical(name, list(d.choices))
    if type(d).__name__ == "IntDistribution":
        return trial.suggest_int(name, d.low, d.high, log=d.log)
    return trial.suggest_float(name, d.low, d.high, log=d.log)


@dataclasses.dataclass(frozen=True)
class OptunaProposer:
    """``proposer(history, n, seed) -> n configs`` from an Optuna sampler (TPE by default).

    Each call builds a fresh in-memory Optuna study whose sampler is seeded
    with ``seed``, *tells* it every history entry (feasible ones with their
    objective, lower is better; infeasible ones as failed), and *asks* it
    ``n`` times. It keeps no state, so it proposes the same configurations
    for the same history and seed: a study it drives runs the same serially
    and in parallel, and resumes exactly (the runner records each round).
    ``sampler(seed)`` builds the Optuna sampler.
    """

    space: Any
    sampler: Callable[[int], Any] | None = None

    def _study(self, optuna, seed: int):
        sampler = (optuna.samplers.TPESampler(seed=seed) if self.sampler is None
                   else self.sampler(seed))
        return optuna.create_study(direction="minimize", sampler=sampler)

    def _active(self, values: dict) -> list[str]:
        """The parameters active given the values chosen so far, parents first."""
        out = []
        for name in self.space:
            when = self.space[name].when or {}
            if all(parent in values and values[parent] in allowed
                   for parent, allowed in when.items()):
                out.append(name)
        return out

    def _ask(self, study, dists: dict) -> dict:
        """One configuration (the asked trial stays open: the study is thrown away)."""
        trial, values = study.ask(), {}
        while True:
            todo = [n for n in self._active(values) if n not in values]
            if not todo:
                break
            for name in todo:
                d = dists[name]
                values[name] = self.space[name].value if d is None else _suggest(trial, name, d)
        return {self.space.config_key(n): v for n, v in values.items()}

    def __call__(self, history: Sequence[HistoryEntry], n: int, seed: int) -> list[dict]:
        """The next ``n`` configurations, given the finished trials of the study."""
        import optuna  # lazy: the optional [interop] extra
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = {name: _distribution(optuna, self.space[name]) for name in self.space}
        study = self._study(optuna, seed)
        for entry in history:
            params = {k: v for k, v in self.space.active_parameters(entry.config).items()
                      if dists[k] is not None}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params},
                value=entry.objective if entry.feasible else None,
                state=optuna.trial.TrialState.COMPLETE if entry.feasible
                else optuna.trial.TrialState.FAIL))
        return [self._ask(study, dists) for _ in range(n)]
