"""tuning.optimize (your own objective, a few lines) and study.OptunaProposer (Optuna proposes)."""

from __future__ import annotations

import math

import pytest

from refplay import analysis, search, study, tuning
from refplay.train.result import TrialStatus
from tests.helpers import optional_import


def space():
    return search.SearchSpace({
        "optimizer": search.Choice(["sgd", "adam"], role="scientific"),
        "lr": search.Float(1e-3, 10.0, scale="log")})


def quadratic(config, seed):
    """Best at lr = 0.1 (adam a bit better); diverges (NaN) above lr = 3."""
    if config["lr"] > 3.0:
        return math.nan
    return (math.log10(config["lr"]) + 1.0) ** 2 + (0.0 if config["optimizer"] == "adam" else 0.1)


def broken(config, seed):
    raise KeyError("learning_rate")          # the objective reads a key the space does not have


def wrong_type(config, seed):
    return {"loss": 0.1}


def test_optimize_with_a_float_objective_returns_the_best_and_a_frame(tmp_path):
    result = tuning.optimize(quadratic, space(), n_trials=16, name="quad", workspace=tmp_path)
    frame = result.frame()
    assert len(frame) == 16 and frame.sampler == "halton" and frame.quasi_random
    infeasible = [r for r in frame.rows if r.status == TrialStatus.INFEASIBLE]
    assert infeasible and all(frame.row(r.trial).config["lr"] > 3.0 for r in infeasible)
    assert result.counts["infeasible"] == len(infeasible)
    best = analysis.best(frame, by=None)[()]
    assert result.best.trial == best.trial and result.best.objective == best.objective
    assert result.best.objective == quadratic(result.best.config, 0)
    again = tuning.optimize(quadratic, space(), n_trials=16, name="quad", workspace=tmp_path)
    assert again.status.done == 16 and again.best == result.best       # resumed: nothing re-ran


def test_a_study_whose_first_trials_crash_the_same_way_stops_and_shows_the_error(tmp_path):
    with pytest.raises(study.StudyError, match=r"(?s)first 3 trials .* all failed with the same "
                                               r"error.*KeyError: 'learning_rate'.*--retry-failed"):
        tuning.optimize(broken, space(), n_trials=24, name="broken", workspace=tmp_path)
    with study.Store(tmp_path, readonly=True) as store:
        status = store.status("broken")
    assert status.counts["failed"] == 3 and status.done == 3      # not 24 silent failures


def test_an_objective_returning_something_else_is_a_failed_trial_naming_it(tmp_path):
    with pytest.raises(study.StudyError, match="returned dict; return a float"):
        tuning.optimize(wrong_type, space(), n_trials=8, name="typed", workspace=tmp_path)


def test_optuna_proposes_the_trials_of_an_external_study_deterministically(tmp_path):
    optional_import("optuna")
    runs = []
    for ws in ("a", "b"):
        result = tuning.optimize(quadratic, space(), n_trials=12, name="tpe",
                                workspace=tmp_path / ws, proposer=study.OptunaProposer(space()),
                                initial_trials=4, batch=2)
        with study.Store(tmp_path / ws, readonly=True) as store:
            runs.append((store.records("tpe"), store.proposals("tpe")))
        assert result.status.done == 12
    (records_a, proposals_a), (records_b, proposals_b) = runs
    assert records_a == records_b                                  # same seed, same study
    assert [p.config for p in proposals_a] == [p.config for p in proposals_b]
    assert [p.proposer for p in proposals_a] == \
        ["halton"] * 4 + ["refplay.study.proposers.OptunaProposer"] * 8
    assert [p.history_size for p in proposals_a[4:]] == [4, 4, 6, 6, 8, 8, 10, 10]
    halton = search.halton(space(), 12, 0)
    assert [p.config for p in proposals_a[4:]] != halton[4:]       # TPE, not more Halton
