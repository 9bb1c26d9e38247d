"""Tests for ``TrialSettings`` and what a trial records for the playbook's procedures:
per-step training losses, training error in eval mode, the divergence rule that keeps
recoveries, a prepended warmup, and the study's spec-time refusals."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refplay import io, search, study
from refplay.data.batching import TrainBatches
from refplay.train import (TrialSettings, Workload, check_trial, curve_names, evaluate,
                           run_trial)
from refplay.train import checkpoints as ckpt
from refplay.train import seeds
from refplay.train.settings import selectable_metrics
from tests.test_train import ADAM, LinearSoftmax, tiny_workload


# --------------------------------------------------------------------------- settings
def test_settings_defaults_and_round_trip():
    s = TrialSettings(max_train_steps=100, eval_every=10)
    assert (s.divergence_factor, s.divergence_window, s.divergence_steps) == (10.0, 50, 10)
    assert TrialSettings.from_dict(s.to_dict()) == s
    assert s.replace(eval_train="all").eval_train == "all"


@pytest.mark.parametrize("field, value, error", [
    ("max_train_steps", 0, ValueError), ("eval_every", 1.5, TypeError),
    ("keep_best", -1, ValueError), ("dense_eval_steps", -2, ValueError),
    ("eval_test", "yes", TypeError), ("eval_train", "some", ValueError),
    ("eval_train", 0, ValueError), ("periodic_eval_size", 0, ValueError),
    ("selection_metric", 3, TypeError), ("selection_metric", "test/error_rate", ValueError),
    ("selection_metric", "ema/test/loss", ValueError), ("divergence_factor", 1.0, ValueError),
    ("divergence_window", 0, ValueError), ("divergence_steps", 51, ValueError),
])
def test_invalid_settings_name_the_field(field, value, error):
    with pytest.raises(error, match=field):
        TrialSettings(**{"max_train_steps": 100, "eval_every": 10, field: value})


@given(max_train_steps=st.integers(-5, 10_000), eval_every=st.integers(-5, 500),
       window=st.integers(-2, 100), steps=st.integers(-2, 100),
       factor=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_settings_are_valid_or_refused_with_the_field_named(max_train_steps, eval_every, window,
                                                            steps, factor):
    kwargs = dict(max_train_steps=max_train_steps, eval_every=eval_every,
                  divergence_window=window, divergence_steps=steps, divergence_factor=factor)
    valid = (max_train_steps >= 1 and eval_every >= 1 and window >= 1 and 1 <= steps <= window
             and (factor is None or (np.isfinite(factor) and factor > 1.0)))
    if valid:
        assert TrialSettings(**kwargs).divergence_steps == steps
    else:
        with pytest.raises(ValueError, match="max_train_steps|eval_every|divergence_"):
            TrialSettings(**kwargs)


def test_unknown_settings_key_is_named():
    with pytest.raises(ValueError, match=r"unknown trial setting\(s\) \['eval_trian'\]"):
        TrialSettings.from_dict({"max_train_steps": 10, "eval_every": 5, "eval_trian": "all"})


def test_curve_names_follow_settings_and_config():
    s = TrialSettings(max_train_steps=10, eval_every=5)
    assert curve_names("classification", s) == [
        "train/loss", "lr", "validation/loss", "validation/error_rate"]
    full = curve_names("classification", s.replace(eval_train=100, eval_test=True),
                       grad_clip=True, ema=True)
    assert full == ["train/loss", "lr", "train/clipped_fraction", "train_eval/loss",
                    "train_eval/error_rate", "validation/loss", "validation/error_rate",
                    "test/loss", "test/error_rate", "ema/validation/loss",
                    "ema/validation/error_rate", "ema/test/loss", "ema/test/error_rate"]
    assert selectable_metrics(full) == [
        "train_eval/loss", "train_eval/error_rate", "validation/loss", "validation/error_rate",
        "ema/validation/loss", "ema/validation/error_rate"]
    assert curve_names("regression", s) == ["train/loss", "lr", "validation/loss"]


def test_run_trial_takes_settings_or_their_fields_as_keywords_not_both():
    wl = tiny_workload()
    s = TrialSettings(max_train_steps=30, eval_every=10)
    a = run_trial(wl, ADAM, seed=0, settings=s)
    b = run_trial(wl, ADAM, seed=0, max_train_steps=30, eval_every=10)
    assert a.same_computation(b)
    assert a.extras["settings"]["max_train_steps"] == 30
    with pytest.raises(TypeError, match="not both"):
        run_trial(wl, ADAM, seed=0, settings=s, eval_every=5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        run_trial(wl, ADAM, seed=0, max_train_steps=30, eval_every=10, evaluate_every=3)


def test_check_trial_refuses_what_no_trial_could_run():
    wl = tiny_workload()          # 300 examples: 210 train after the splits below
    s = TrialSettings(max_train_steps=30, eval_every=10)
    with pytest.raises(ValueError, match="batch_size=10000 is larger than the"):
        check_trial(wl, {**ADAM, "batch_size": 10_000}, s)
    with pytest.raises(ValueError, match="ema/... curves need ema_decay"):
        check_trial(wl, ADAM, s.replace(selection_metric="ema/validation/error_rate"))
    with pytest.raises(ValueError, match="train_eval/... curves need the eval_train"):
        check_trial(wl, ADAM, s.replace(selection_metric="train_eval/error_rate"))
    with pytest.raises(ValueError, match="eval_train=100000 is larger"):
        check_trial(wl, ADAM, s.replace(eval_train=100_000))
    assert check_trial(wl, {**ADAM, "ema_decay": 0.9},
                       s.replace(selection_metric="ema/validation/error_rate")).ema_decay == 0.9


# --------------------------------------------------------------------------- per-step losses
def test_train_losses_are_each_steps_minibatch_loss_and_resume_bitwise(tmp_path):
    wl = tiny_workload(dropout=0.2)       # dropout: the loss depends on the step's own mask
    cfg = {**ADAM, "dropout": 0.2}
    full = run_trial(wl, cfg, seed=3, max_train_steps=40, eval_every=10)
    assert full.train_losses.dtype == np.float64 and len(full.train_losses) == 40
    # Step t's loss, recomputed from the checkpoint after t steps on the t-th batch.
    short = run_trial(wl, cfg, seed=3, max_train_steps=25, eval_every=25,
                      checkpoint_dir=tmp_path / "short")
    np.testing.assert_array_equal(short.train_losses, full.train_losses[:25])
    arrays = io.load_npz(tmp_path / "short" / ckpt.LATEST)
    params, state = ckpt.unpack("params", arrays), ckpt.unpack("model_state", arrays)
    streams = seeds.trial_streams(3)
    batches = TrainBatches(wl.train, 30, seed=streams.data)
    for _ in range(25):
        batches.next()
    loss, *_ = wl.model(dropout=0.2).loss_and_grads(
        params, state, batches.next(), seeds.step_generator(streams.dropout, 25), train=True)
    assert float(loss) == full.train_losses[25]
    # Interrupted after 20 steps, resumed: bitwise the same per-step losses.
    run_trial(wl, cfg, seed=3, max_train_steps=40, eval_every=10, checkpoint_dir=tmp_path / "r",
              divergence_factor=None)
    resumed = run_trial(wl, cfg, seed=3, max_train_steps=40, eval_every=10,
                        checkpoint_dir=tmp_path / "r", divergence_factor=None)
    fresh = run_trial(wl, cfg, seed=3, max_train_steps=40, eval_every=10, divergence_factor=None)
    assert resumed.same_computation(fresh)
    np.testing.assert_array_equal(resumed.train_losses, full.train_losses)


def test_train_losses_survive_save_and_load(tmp_path):
    res = run_trial(tiny_workload(), ADAM, seed=0, max_train_steps=20, eval_every=10)
    res.save(tmp_path)
    back = type(res).load(tmp_path)
    np.testing.assert_array_equal(back.train_losses, res.train_losses)
    assert back.same_computation(res)


# --------------------------------------------------------------------------- training error
def test_train_eval_is_the_training_split_in_eval_mode(tmp_path):
    wl = tiny_workload(dropout=0.3)
    cfg = {**ADAM, "dropout": 0.3}
    res = run_trial(wl, cfg, seed=1, max_train_steps=30, eval_every=30, eval_train="all",
                    checkpoint_dir=tmp_path, keep_best=0)
    arrays = io.load_npz(tmp_path / ckpt.LATEST)
    params, state = ckpt.unpack("params", arrays), ckpt.unpack("model_state", arrays)
    expected = evaluate(wl.model(dropout=0.3), params, state, wl.train, 1024)
    assert res.curves["train_eval/loss"][-1] == expected["loss"]
    assert res.curves["train_eval/error_rate"][-1] == expected["error_rate"]
    # train/loss is the training-mode running mean (dropout on): a different number.
    assert res.curves["train/loss"][-1] != expected["loss"]


def test_train_eval_sample_is_fixed_and_stratified():
    wl = tiny_workload()
    a = run_trial(wl, ADAM, seed=0, max_train_steps=10, eval_every=5, eval_train=60)
    b = run_trial(wl, {**ADAM, "lr": 0.01}, seed=1, max_train_steps=10, eval_every=5,
                  eval_train=60)
    init_a, init_b = a.curves["train_eval/loss"][0], b.curves["train_eval/loss"][0]
    assert np.isfinite(init_a) and np.isfinite(init_b)
    assert len(a.curves["train_eval/error_rate"]) == len(a.eval_steps)


# --------------------------------------------------------------------------- divergence
class SpikyModel(LinearSoftmax):
    """The tiny model, but the reported loss is multiplied by ``scale`` on chosen calls
    (1-based), imitating a loss that shoots up and comes back (the gradients are untouched)."""

    def __init__(self, *args, spike_calls=(), scale=100.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.spike_calls, self.scale = set(spike_calls), scale

    def loss_and_grads(self, params, state, batch, rng, train=True):
        loss, grads, new_state, aux = super().loss_and_grads(params, state, batch, rng, train)
        if self.calls in self.spike_calls:
            loss = loss * self.scale
        return loss, grads, new_state, aux


def spiky_workload(spike_calls, scale=100.0) -> Workload:
    wl = tiny_workload()
    return dataclasses.replace(wl, name="tiny_spiky", build_model=functools.partial(
        SpikyModel, 5, 3, spike_calls=spike_calls, scale=scale))


def test_a_spike_that_recovers_is_recorded_and_the_trial_completes():
    wl = spiky_workload(spike_calls=range(6, 11))          # steps 5..9 blown up, then fine
    res = run_trial(wl, ADAM, seed=0, max_train_steps=60, eval_every=10)
    assert res.status == "complete"
    (spike,) = res.extras["loss_spikes"]
    assert (spike["start"], spike["end"]) == (5, 9)
    assert spike["peak"] == max(res.train_losses[5:10])
    assert spike["peak_ratio"] == spike["peak"] / res.train_losses[0] > 10
    # The strict one-bad-batch rule calls the same run infeasible at the first spike step.
    strict = run_trial(wl, ADAM, seed=0, max_train_steps=60, eval_every=10, divergence_steps=1)
    assert strict.status == "infeasible" and strict.steps_done == 5
    assert "exceeds 10 x the initial loss" in strict.reason


def test_too_many_blown_up_steps_in_the_window_are_infeasible():
    wl = spiky_workload(spike_calls=range(6, 40, 2), scale=1e4)   # every other step from 5
    res = run_trial(wl, ADAM, seed=0, max_train_steps=60, eval_every=10)
    assert res.status == "infeasible"
    assert res.steps_done == 5 + 2 * 9                      # the 10th blown-up step
    assert "on 10 of the last" in res.reason


def test_a_run_that_ends_blown_up_is_infeasible():
    wl = spiky_workload(spike_calls=range(55, 61), scale=1e4)     # steps 54..59, the last
    res = run_trial(wl, ADAM, seed=0, max_train_steps=60, eval_every=10)
    assert res.status == "infeasible" and "never recovered" in res.reason
    assert res.steps_done == 59


def test_no_divergence_factor_leaves_only_nan():
    wl = spiky_workload(spike_calls=range(2, 50), scale=1e6)
    res = run_trial(wl, ADAM, seed=0, max_train_steps=60, eval_every=10, divergence_factor=None)
    assert res.status == "complete" and res.extras["loss_spikes"] == []


def test_a_run_that_ends_above_max_final_loss_is_infeasible_and_below_it_completes():
    wl = tiny_workload()
    base = run_trial(wl, ADAM, seed=0, max_train_steps=60, eval_every=10)
    final = float(np.mean(base.train_losses[-50:]))
    # The same run, judged against thresholds just below and just above its final mean loss.
    high = run_trial(wl, ADAM, seed=0, max_train_steps=60, eval_every=10,
                     max_final_loss=final * 0.999)
    assert high.status == "infeasible" and high.steps_done == 59
    assert "above max_final_loss" in high.reason and f"{final:.4g}" in high.reason
    ok = run_trial(wl, ADAM, seed=0, max_train_steps=60, eval_every=10,
                   max_final_loss=final * 1.001)
    assert ok.status == "complete" and np.array_equal(ok.train_losses, base.train_losses)
    with pytest.raises(ValueError, match="max_final_loss"):
        TrialSettings(max_train_steps=10, eval_every=5, max_final_loss=0.0)


# --------------------------------------------------------------------------- warmup
def test_prepended_warmup_runs_max_train_steps_plus_warmup_steps():
    wl = tiny_workload()
    cfg = {"optimizer": "sgd", "lr": 0.1, "batch_size": 30, "schedule": "cosine",
           "warmup_steps": 1_000, "warmup_prepend": True}
    res = run_trial(wl, cfg, seed=0, max_train_steps=10_000, eval_every=1_000)
    assert res.steps_done == 11_000 and res.extras["total_steps"] == 11_000
    assert res.eval_steps[-1] == 11_000
    lr = dict(zip(res.eval_steps, res.curves["lr"]))
    assert lr[0] == 0.0 and lr[1_000] == 0.1           # ramp, then the base rate
    assert lr[11_000] == 0.0                           # cosine reaches 0 after 10,000 decay steps
    assert res.extras["resolved_config"]["decay_steps"] == 10_000
    # Without it the warmup is carved out of the budget, as before.
    carved = run_trial(wl, {**cfg, "warmup_prepend": False}, seed=0, max_train_steps=10_000,
                       eval_every=1_000)
    assert carved.steps_done == 10_000
    assert carved.extras["resolved_config"]["decay_steps"] == 9_000
    assert "warmup_prepend" not in carved.extras["resolved_config"]


# --------------------------------------------------------------------------- the study seam
def _spec(**overrides):
    d = dict(name="seam", workload="spirals_mlp", num_trials=2, max_train_steps=20, eval_every=10,
             search_space=search.SearchSpace(lr=search.Float(1e-3, 1e-1, scale="log"),
                                             optimizer=search.Fixed("adam")))
    d.update(overrides)
    return study.StudySpec(**d)


@pytest.mark.parametrize("overrides, match", [
    ({"metric": "test/error_rate"}, "touches the test set only after exploration"),
    ({"metric": "ema/validation/error_rate"}, "needs ema_decay in every trial config"),
    ({"metric": "train_eval/error_rate"}, "needs trial.eval_train"),
    ({"trial_settings": {"eval_train": "most"}}, "trial: eval_train='most'"),
    ({"trial_settings": {"eval_every": 3}}, "duplicates the top-level key"),
])
def test_spec_refuses_a_metric_no_trial_reports_before_any_trial(overrides, match):
    with pytest.raises(ValueError, match=match):
        _spec(**overrides)


def test_spec_trial_table_reaches_every_trial(tmp_path):
    spec = study.StudySpec.from_dict({
        "name": "seam", "workload": "spirals_mlp", "num_trials": 2, "max_train_steps": 20,
        "metric": "train_eval/error_rate",
        "trial": {"eval_every": 10, "eval_train": 200, "divergence_steps": 1},
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "scale": "log"},
                         "optimizer": {"type": "fixed", "value": "adam"}}})
    assert spec.settings.eval_train == 200 and spec.settings.divergence_steps == 1
    assert spec.settings.selection_metric == "train_eval/error_rate"
    assert study.StudySpec.from_dict(spec.to_dict()) == spec
    study.run(spec, store=tmp_path, workers=0, progress=False)
    with study.Store(tmp_path, readonly=True) as store:
        result = store.load_result("seam", 0)
    assert "train_eval/error_rate" in result.curves
    assert result.extras["settings"]["eval_train"] == 200
    assert result.extras["selection_metric"] == "train_eval/error_rate"


def test_a_batch_larger_than_the_training_set_is_refused_before_the_study_is_recorded(tmp_path):
    spec = _spec(search_space=search.SearchSpace(lr=search.Float(1e-3, 1e-1, scale="log"),
                                                 optimizer=search.Fixed("adam"),
                                                 batch_size=search.Fixed(100_000)))
    with pytest.raises(ValueError, match="batch_size=100000 is larger than the"):
        study.run(spec, store=tmp_path, workers=0, progress=False)
    assert not (tmp_path / study.DB_NAME).exists()


def test_infeasible_trials_have_no_objective_in_the_store_or_csv(tmp_path):
    spec = _spec(search_space=search.SearchSpace(optimizer=search.Fixed("sgd"),
                                                 lr=search.Discrete([0.1, 1e9])),
                 sampler="grid", num_trials=None, points_per_dim=2)
    study.run(spec, store=tmp_path, workers=0, progress=False)
    with study.Store(tmp_path, readonly=True) as store:
        ok, bad = store.trials("seam")
        study.export_csv(store, "seam", tmp_path / "trials.csv")
    assert ok.status == "complete" and np.isfinite(ok.objective)
    assert bad.status == "infeasible" and np.isnan(bad.objective)
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    header = rows[0].split(",")
    bad_row = rows[2].split(",")
    assert bad_row[header.index("objective")] == ""


# --------------------------------------------------------------------------- seed streams
def test_dropout_seed_changes_the_dropout_stream_only():
    wl = tiny_workload(dropout=0.3)
    cfg = {**ADAM, "dropout": 0.3}
    s1 = seeds.trial_streams(1, dropout_seed=0)
    s0, plain1 = seeds.trial_streams(0), seeds.trial_streams(1)
    assert s1.dropout.spawn_key == s0.dropout.spawn_key and s1.dropout.entropy == s0.dropout.entropy
    assert s1.init.entropy == plain1.init.entropy and s1.data.entropy == plain1.data.entropy
    a = run_trial(wl, {**cfg, "dropout_seed": 0}, seed=1, max_train_steps=20, eval_every=10)
    b = run_trial(wl, cfg, seed=1, max_train_steps=20, eval_every=10)
    # Same initialization and first batch (step-0 validation loss), other dropout masks.
    assert a.curves["validation/loss"][0] == b.curves["validation/loss"][0]
    assert a.train_losses[0] != b.train_losses[0]
    assert a.extras["resolved_config"]["dropout_seed"] == 0
    assert "dropout_seed" not in b.extras["resolved_config"]      # unchanged when unset


# --------------------------------------------------------------------------- predictions
def test_keep_predictions_records_the_best_checkpoints_classes_and_resumes(tmp_path):
    wl = tiny_workload(cluster_std=1.5)
    run = dict(seed=0, max_train_steps=60, eval_every=10, keep_best=1, keep_predictions=True)
    res = run_trial(wl, {"optimizer": "sgd", "lr": 2.0}, **run, checkpoint_dir=tmp_path / "a")
    assert res.predictions.shape == (len(wl.validation),)
    best = io.load_npz(tmp_path / "a" / ckpt.best_filename(res.best_step))
    params, state = ckpt.unpack("params", best), ckpt.unpack("model_state", best)
    logits = wl.model().predict(params, state, wl.validation.x)
    np.testing.assert_array_equal(res.predictions, np.argmax(logits, axis=1))
    error = np.mean(res.predictions != wl.validation.y)
    assert error == pytest.approx(res.best_metrics["validation/error_rate"], abs=1e-15)
    # Off by default; a resumed run keeps the same predictions.
    assert len(run_trial(wl, ADAM, seed=0, max_train_steps=20, eval_every=10).predictions) == 0
    again = run_trial(wl, {"optimizer": "sgd", "lr": 2.0}, **run, checkpoint_dir=tmp_path / "a")
    assert again.same_computation(res)
    with pytest.raises(ValueError, match="keep_predictions=True needs a classification"):
        run_trial("teacher_student", {"optimizer": "sgd", "lr": 0.1}, seed=0,
                  max_train_steps=5, eval_every=5, keep_predictions=True)
