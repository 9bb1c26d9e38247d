"""Tuning your own objective in a few lines: ``refplay.tuning.optimize``.

For users who bring their own training code, as short as Optuna's
``create_study().optimize(objective)``::

    from refplay import search, tuning

    def objective(config, seed):                 # a module-level function
        return train_and_validate(**config, seed=seed)    # a float; NaN/inf: infeasible

    space = search.SearchSpace({
        "optimizer": search.Choice(["sgd", "adam"], role="scientific"),
        "lr": search.Float(1e-4, 1.0, scale="log")})
    result = tuning.optimize(objective, space, n_trials=24, name="sgd_vs_adam",
                             workspace="ws", metric="validation/error_rate")
    result.best              # BestTrial(trial, objective, config) of the study
    frame = result.frame()   # every analysis function, plot and report.write(frame, ...) reads it

The study is an ordinary refplay study: quasi-random (Halton) by default,
recorded in the workspace's SQLite store, resumable (run the same call
again), parallel with ``workers=N``. The objective may return a float (the
study metric; NaN or infinite means the trial diverged: infeasible) or a full
:class:`~refplay.train.result.TrialResult` (curves, best step). If the first
trials all crash with the same error, the study stops and shows it (see
:mod:`refplay.study.runner`) instead of recording a failure per trial.
``proposer=study.OptunaProposer(space)`` lets an Optuna sampler choose the
configurations (:mod:`refplay.study.proposers`).

This module sits above both :mod:`refplay.study` (which runs and records the
trials) and :mod:`refplay.analysis` (which reads them back as a frame):
``Optimized.frame()`` needs the second, and the study package must not import
the analysis built on top of it.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable
from typing import Any, NamedTuple

from refplay import analysis
from refplay.study.runner import run
from refplay.study.spec import StudySpec
from refplay.study.store import Store, StudyStatus
from refplay.train.result import TrialResult

__all__ = ["optimize", "ObjectiveTrial", "Optimized", "BestTrial"]


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

    def frame(self) -> analysis.TrialsFrame:
        """The study as a :class:`~refplay.analysis.TrialsFrame` (read from the workspace)."""
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
    ``proposer`` (e.g. :class:`refplay.study.OptunaProposer`) makes it an adaptive study
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
