"""Optuna as a proposer: any Optuna sampler chooses the configurations of a study.

:class:`OptunaProposer` is the adapter the runner's docstring describes
(:mod:`refplay.study.runner`): any Optuna sampler (TPE by default) proposes
the configurations of a ``sampler="external"`` study, through the ask/tell
history, so that the study keeps refplay's recording, crash safety and exact
resume::

    from refplay import study, tuning

    tuning.optimize(objective, space, n_trials=40, proposer=study.OptunaProposer(space),
                    initial_trials=8, batch=2)

Optuna is the ``[interop]`` extra, imported when a proposal is asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from refplay.study.runner import HistoryEntry

__all__ = ["OptunaProposer"]


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
