"""Tests for ``refplay.train``: the playbook's trial.

Most tests train a tiny linear-softmax model written here with analytic
gradients (checked against finite differences below) on well-separated
Gaussian blobs, so a whole trial takes milliseconds. The built-in workloads
get a short smoke run each at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refplay import clipping, io, optim
from refplay import tree as tree_lib
from refplay.data.batching import TrainBatches, epoch_order
from refplay.data.dataset import Dataset
from refplay.data.splits import stratified_subset
from refplay.data.synthetic import blobs
from refplay.train import (WORKLOADS, TrialResult, Workload, divergence_reason, eval_steps,
                           evaluate, get_workload, run_trial)
from refplay.nn.layers import Dense, Layer
from refplay.nn.models import Model
from refplay.nn.residual import Sequential
from refplay.train import checkpoints as ckpt
from refplay.train import loop, seeds
from refplay.train.config import parse_config
from tests.helpers import optional_import

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- tiny model
class LinearSoftmax:
    r"""Linear softmax regression with input dropout and a non-trainable state.

    ``logits = (drop(x) - mu) W + b``; the state ``mu`` is an exponential
    moving average of the training batches' feature means (like BatchNorm's
    statistics: updated in training, used as a constant). Loss: weighted mean
    cross-entropy. Analytic gradients::

        dL/dz = wn[:, None] * (softmax(z) - onehot(y)),   wn = w / sum(w)
        dL/dW = (drop(x) - mu)^T dL/dz,                   dL/db = sum_i dL/dz_i
    """

    task = "classification"

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0,
                 fail_at_call: int | None = None, kill_at_call: int | None = None):
        self.in_dim, self.num_classes, self.dropout = in_dim, num_classes, dropout
        self.fail_at_call, self.kill_at_call = fail_at_call, kill_at_call
        self.calls = 0

    def init_params(self, rng, dtype=np.float32):
        w = 0.1 * rng.standard_normal((self.in_dim, self.num_classes))
        return ({"dense/w": w.astype(dtype), "dense/b": np.zeros(self.num_classes, dtype)},
                {"center/mu": np.zeros(self.in_dim, dtype)})

    def predict(self, params, state, x):
        return (x - state["center/mu"]) @ params["dense/w"] + params["dense/b"]

    def loss_and_grads(self, params, state, batch, rng, train=True):
        self.calls += 1
        if self.fail_at_call is not None and self.calls == self.fail_at_call:
            raise RuntimeError("the tiny model failed on purpose")
        if self.kill_at_call is not None and self.calls == self.kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        x = np.asarray(batch.x)
        if train and self.dropout > 0:
            keep = rng.random(x.shape) >= self.dropout
            x = x * keep / x.dtype.type(1 - self.dropout)
        h = x - state["center/mu"]
        z = h @ params["dense/w"] + params["dense/b"]
        z64 = z.astype(np.float64)
        m = z64.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(z64 - m).sum(axis=1))
        per_example = lse - z64[np.arange(len(z64)), batch.y]
        wn = np.asarray(batch.weights, np.float64) / np.sum(batch.weights)
        loss = float(wn @ per_example)
        p = np.exp(z64 - lse[:, None])
        p[np.arange(len(p)), batch.y] -= 1.0
        dz = (wn[:, None] * p).astype(z.dtype)
        grads = {"dense/w": h.T @ dz, "dense/b": dz.sum(axis=0)}
        new_state = state
        if train:
            mu = state["center/mu"]
            new_state = {"center/mu": (0.9 * mu + 0.1 * x.mean(axis=0)).astype(mu.dtype)}
        return loss, grads, new_state, {"outputs": z}


def tiny_workload(dtype="float32", cluster_std=0.5, **model_kwargs) -> Workload:
    splits = blobs(300, num_classes=3, dim=5, cluster_std=cluster_std, center_scale=3.0, seed=3,
                   n_validation=120, n_test=90, dtype=dtype)
    return Workload(name="tiny_linear", train=splits.train, validation=splits.validation,
                    test=splits.test,
                    build_model=functools.partial(LinearSoftmax, 5, 3, **model_kwargs),
                    hparams={"dropout": 0.0}, task="classification", batch_size=30, dtype=dtype,
                    settings={"cluster_std": cluster_std})


ADAM = {"optimizer": "adam", "lr": 0.05, "batch_size": 30}
RUN = {"seed": 0, "max_train_steps": 60, "eval_every": 10}


def test_tiny_model_gradients_match_finite_differences():
    wl = tiny_workload(dtype="float64")
    model = wl.model()
    params, state = model.init_params(np.random.default_rng(0), dtype=np.float64)
    state = {"center/mu": np.linspace(-0.3, 0.4, 5)}
    x = wl.train.x[:7]
    batch = wl.train.subset(np.arange(7)).as_batch()._replace(weights=np.arange(1.0, 8.0))
    loss, grads, _, _ = model.loss_and_grads(params, state, batch, None, train=False)
    h = 1e-6
    for key, value in params.items():
        for idx in np.ndindex(value.shape):
            plus, minus = tree_lib.copy(params), tree_lib.copy(params)
            plus[key][idx] += h
            minus[key][idx] -= h
            fd = (model.loss_and_grads(plus, state, batch, None, train=False)[0]
                  - model.loss_and_grads(minus, state, batch, None, train=False)[0]) / (2 * h)
            assert abs(fd - grads[key][idx]) <= 1e-7 * max(1.0, abs(fd)), (key, idx)
    logits = model.predict(params, state, x)
    assert logits.shape == (7, 3)
    assert math.isfinite(loss)


# ------------------------------------------------------------------------ training loop
def test_tiny_workload_overfits_and_curves_are_at_the_configured_steps():
    wl = tiny_workload(cluster_std=0.3)
    res = run_trial(wl, {"optimizer": "adam", "lr": 0.1}, seed=0, max_train_steps=400,
                    eval_every=50, dense_eval_steps=3)
    assert res.status == "complete", res.reason
    assert res.eval_steps == [0, 1, 2, 3, 50, 100, 150, 200, 250, 300, 350, 400]
    assert res.steps_done == 400 and len(res.grad_norms) == 400
    for name in ("train/loss", "lr", "validation/loss", "validation/error_rate"):
        assert len(res.curves[name]) == len(res.eval_steps), name
    assert math.isnan(res.curves["train/loss"][0])       # no training step before step 0
    assert res.curves["train/loss"][-1] < 0.02            # near-zero training loss
    assert res.curves["train/loss"][-1] < res.curves["train/loss"][1] / 20
    assert res.curves["validation/error_rate"][-1] == 0.0
    assert res.curves["lr"] == [0.1] * len(res.eval_steps)
    assert res.examples_per_second > 0 and res.seconds_per_step > 0


def test_final_step_is_evaluated_when_not_a_multiple_of_eval_every():
    assert eval_steps(25, 10) == [0, 10, 20, 25]
    assert eval_steps(5, 10) == [0, 5]
    assert eval_steps(20, 10, dense_eval_steps=2) == [0, 1, 2, 10, 20]
    res = run_trial(tiny_workload(), ADAM, seed=1, max_train_steps=25, eval_every=10)
    assert res.eval_steps == [0, 10, 20, 25]


def test_train_loss_is_the_mean_batch_loss_over_the_last_interval():
    # Recompute every training-batch loss independently: same initial params,
    # same batches, same optimizer; the curve must hold the interval means.
    wl = tiny_workload()
    res = run_trial(wl, {"optimizer": "sgd", "lr": 0.2}, **RUN)
    model = wl.model()
    streams = seeds.trial_streams(0)
    params, state = model.init_params(seeds.generator(streams.init), dtype=np.float32)
    opt = optim.sgd()
    opt_state = opt.init(params)
    it = TrainBatches(wl.train, 30, seed=streams.data)
    losses, norms = [], []
    for _ in range(RUN["max_train_steps"]):
        loss, grads, state, _ = model.loss_and_grads(params, state, it.next(), None)
        losses.append(loss)
        norms.append(tree_lib.global_norm(grads))
        params, opt_state = opt.update(params, grads, opt_state, 0.2)
    expected = [float(np.mean(losses[s - 10:s])) for s in res.eval_steps[1:]]
    assert res.curves["train/loss"][1:] == expected
    np.testing.assert_array_equal(res.grad_norms, np.asarray(norms))
    final = evaluate(model, params, state, wl.validation, 1024)
    assert res.curves["validation/loss"][-1] == final["loss"]
    assert res.curves["validation/error_rate"][-1] == final["error_rate"]


class _Float64Grads(LinearSoftmax):
    """float64 gradients for float32 parameters: the optimizer casts them leaf by leaf."""

    def loss_and_grads(self, params, state, batch, rng, train=True):
        loss, grads, state, aux = super().loss_and_grads(params, state, batch, rng, train)
        return loss, {k: g.astype(np.float64) for k, g in grads.items()}, state, aux


@pytest.mark.parametrize("float64_grads", [False, True])
def test_trial_computes_bitwise_what_the_optimizer_computes_leaf_by_leaf(tmp_path,
                                                                        float64_grads):
    # After its first step the loop updates packed buffers (one call of the rule per dtype,
    # loop._Packed); float64 gradients of float32 parameters keep the per-leaf update.
    # Either way: the per-leaf optimizer's losses, logged norms, parameters and slots, bitwise.
    wl = tiny_workload()
    if float64_grads:
        wl = dataclasses.replace(wl, build_model=functools.partial(_Float64Grads, 5, 3))
    cfg = {"optimizer": "adam", "lr": 0.05, "weight_decay": 0.01,
           "weight_decay_mode": "decoupled", "grad_clip": 0.3}
    res = run_trial(wl, cfg, seed=0, max_train_steps=25, eval_every=10, checkpoint_dir=tmp_path)
    model = wl.model()
    streams = seeds.trial_streams(0)
    params, state = model.init_params(seeds.generator(streams.init), dtype=np.float32)
    opt = optim.adam(weight_decay=0.01, weight_decay_mode="decoupled")
    opt_state = opt.init(params)
    it = TrainBatches(wl.train, 30, seed=streams.data)
    losses, norms = [], []
    for _ in range(25):
        loss, grads, state, _ = model.loss_and_grads(params, state, it.next(), None)
        losses.append(float(loss))
        norms.append(tree_lib.global_norm(grads))
        grads, _ = clipping.clip_by_global_norm(grads, 0.3)
        params, opt_state = opt.update(params, grads, opt_state, 0.05)
    assert res.train_losses.tolist() == losses
    assert res.grad_norms.tolist() == norms
    assert min(norms) < 0.3 < max(norms)                            # clipped on some steps
    with np.load(tmp_path / ckpt.LATEST, allow_pickle=False) as z:
        arrays = dict(z)
    saved_state = optim.OptState.from_arrays(ckpt.unpack("opt", arrays))
    assert saved_state.step == opt_state.step == 25
    for k, want in params.items():
        assert ckpt.unpack("params", arrays)[k].tobytes() == want.tobytes()
        for slot, tree in opt_state.slots.items():
            assert saved_state.slots[slot][k].tobytes() == tree[k].tobytes()


def test_grad_norm_is_logged_unclipped_and_clipping_changes_the_update():
    wl = tiny_workload()
    cfg = {"optimizer": "sgd", "lr": 0.5}
    recorded, thetas = [], []

    class Recording(LinearSoftmax):
        def loss_and_grads(self, params, *args, **kwargs):
            out = super().loss_and_grads(params, *args, **kwargs)
            thetas.append(tree_lib.copy(params))
            recorded.append({k: v.copy() for k, v in out[1].items()})
            return out

    rec_wl = Workload(name=wl.name, train=wl.train, validation=wl.validation, test=wl.test,
                      build_model=functools.partial(Recording, 5, 3), hparams={"dropout": 0.0},
                      batch_size=30, settings=wl.settings)
    free = run_trial(wl, cfg, seed=0, max_train_steps=20, eval_every=1)
    clipped = run_trial(rec_wl, {**cfg, "grad_clip": 0.05}, seed=0, max_train_steps=20,
                        eval_every=1)
    assert len(recorded) == 20
    raw = np.array([tree_lib.global_norm(r) for r in recorded])
    np.testing.assert_array_equal(clipped.grad_norms, raw)            # the raw gradients' norm
    by_hand = [math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in r.values()))
               for r in recorded]
    np.testing.assert_allclose(clipped.grad_norms, by_hand, rtol=1e-14)
    assert clipped.grad_norms[0] == free.grad_norms[0]               # same θ_0, same batch 0
    assert np.all(clipped.grad_norms > 0.05)                          # logged above the threshold
    assert clipped.curves["train/clipped_fraction"][1:] == [1.0] * 20
    assert clipped.curves["validation/loss"][1] != free.curves["validation/loss"][1]
    assert "train/clipped_fraction" not in free.curves
    # The update used the clipped gradient: θ_{t+1} - θ_t = -lr · (c / ||g_t||) · g_t,
    # a step of length lr · c = 0.025 whatever the raw norm that was logged.
    for t in range(19):
        scale = 0.05 / raw[t]
        for k in thetas[t]:
            np.testing.assert_allclose(thetas[t + 1][k] - thetas[t][k],
                                       -0.5 * scale * recorded[t][k], rtol=2e-4, atol=1e-7)
        step = math.sqrt(sum(float(np.sum(np.square(thetas[t + 1][k] - thetas[t][k],
                                                    dtype=np.float64))) for k in thetas[t]))
        assert step == pytest.approx(0.5 * 0.05, rel=1e-5)


def test_schedule_and_warmup_are_built_from_the_config():
    from refplay import schedules
    cfg = {"optimizer": "momentum", "gamma": 0.9, "lr": 0.1, "schedule": "cosine",
           "warmup_steps": 10}
    res = run_trial(tiny_workload(), cfg, seed=0, max_train_steps=50, eval_every=5)
    expected = schedules.warmup(schedules.cosine_decay(0.1, decay_steps=40), warmup_steps=10)
    assert res.curves["lr"] == [float(expected(s)) for s in res.eval_steps]
    assert res.extras["resolved_config"]["decay_steps"] == 40
    assert res.extras["resolved_config"]["gamma"] == 0.9


def test_ema_of_parameters_is_evaluated_alongside():
    wl = tiny_workload()
    same = run_trial(wl, {**ADAM, "ema_decay": 0.0}, **RUN)
    for name in ("validation/loss", "validation/error_rate"):
        assert same.curves[f"ema/{name}"] == same.curves[name]      # decay 0: EMA = params
    slow = run_trial(wl, {**ADAM, "ema_decay": 0.9}, **RUN, eval_test=True)
    assert slow.curves["ema/validation/loss"][0] == slow.curves["validation/loss"][0]
    assert slow.curves["ema/validation/loss"][1:] != slow.curves["validation/loss"][1:]
    assert "ema/test/error_rate" in slow.curves and "test/loss" in slow.curves


def test_periodic_eval_sample_is_a_fixed_stratified_subset(tmp_path):
    wl = tiny_workload()
    res = run_trial(wl, ADAM, **RUN, periodic_eval_size=30, checkpoint_dir=tmp_path)
    arrays = io.load_npz(tmp_path / ckpt.LATEST)
    params, state = ckpt.unpack("params", arrays), ckpt.unpack("model_state", arrays)
    sample = stratified_subset(wl.validation, 30, seed=0)
    on_sample = evaluate(wl.model(), params, state, sample, 1024)
    assert res.curves["validation/loss"][-1] == on_sample["loss"]
    full = run_trial(wl, ADAM, **RUN)
    assert full.grad_norms.tolist() == res.grad_norms.tolist()      # training is unchanged
    assert full.curves["validation/loss"][-1] != res.curves["validation/loss"][-1]


# --------------------------------------------------------------------------- divergence
def test_divergence_reason():
    assert divergence_reason(3, float("nan"), 1.0, 2.0, 10.0) == "training loss is nan at step 3"
    assert "gradient norm is inf" in divergence_reason(4, 1.0, float("inf"), 2.0, 10.0)
    assert "exceeds 10 x the initial loss" in divergence_reason(5, 20.5, 1.0, 2.0, 10.0)
    assert divergence_reason(5, 19.5, 1.0, 2.0, 10.0) is None
    assert divergence_reason(5, 1e9, 1.0, 2.0, None) is None


def test_huge_learning_rate_is_infeasible_not_an_exception():
    res = run_trial(tiny_workload(), {"optimizer": "sgd", "lr": 1e6}, **RUN)
    assert res.status == "infeasible" and not res.feasible
    step = res.extras["divergence_step"]
    assert f"at step {step}" in res.reason and res.steps_done == step
    assert 0 < step < RUN["max_train_steps"]
    assert len(res.grad_norms) == step + 1        # the diverged step's norm is logged too
    loss_blowup = "exceeded 10 x the initial loss" in res.reason
    assert loss_blowup or "nan" in res.reason or "inf" in res.reason


def test_nan_planted_in_the_data_is_infeasible_at_the_step_that_reads_it():
    wl = tiny_workload()
    train = Dataset(wl.train.x.copy(), wl.train.y, num_classes=3, name="corrupt")
    train.x[17, 2] = np.nan              # corrupt one example after the dataset was validated
    bad = Workload(name="tiny_corrupt", train=train, validation=wl.validation, test=wl.test,
                   build_model=wl.build_model, hparams=wl.hparams, batch_size=30)
    res = run_trial(bad, ADAM, seed=0, max_train_steps=200, eval_every=10)
    # The first step whose batch holds example 17 (10 batches of 30 per epoch).
    streams = seeds.trial_streams(0)
    order = np.concatenate([epoch_order(streams.data, e, 300) for e in range(3)])
    first = int(np.flatnonzero(order == 17)[0]) // 30
    assert res.status == "infeasible"
    assert res.reason == f"training loss is nan at step {first}"
    assert res.steps_done == first


def test_exception_in_the_model_is_failed_with_traceback():
    wl = tiny_workload(fail_at_call=7)
    res = run_trial(wl, ADAM, **RUN)
    assert res.status == "failed"
    assert "Traceback" in res.reason and "the tiny model failed on purpose" in res.reason
    assert res.steps_done == 6 and len(res.grad_norms) == 6
    assert res.eval_steps == [0]


# --------------------------------------------------------------------------- checkpoints
def test_rank_steps_lower_is_better_ties_to_earlier_nan_last():
    history = [(0, 0.5), (10, float("nan")), (20, 0.2), (30, 0.2), (40, 0.9)]
    assert ckpt.rank_steps(history) == [20, 30, 0, 40, 10]
    assert ckpt.best_steps(history, 2) == [20, 30]


@pytest.mark.parametrize("metric", ["validation/loss", "validation/error_rate"])
def test_n_best_checkpoints_and_retrospective_selection(tmp_path, metric):
    wl = tiny_workload(cluster_std=1.5)           # overlapping blobs: a noisy validation curve
    cfg = {"optimizer": "sgd", "lr": 2.0}
    res = run_trial(wl, cfg, seed=0, max_train_steps=120, eval_every=5, checkpoint_dir=tmp_path,
                    keep_best=3, selection_metric=metric)
    assert res.status == "complete"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 + 1 and ckpt.LATEST in files
    curve = np.asarray(res.curves[metric])
    order = np.lexsort((np.asarray(res.eval_steps), curve))   # by value, then by step
    best3 = [res.eval_steps[i] for i in order[:3]]
    assert sorted(files) == sorted([ckpt.best_filename(s) for s in best3] + [ckpt.LATEST])
    assert res.best_step == res.eval_steps[int(np.argmin(curve))] == best3[0]
    assert res.best_metrics[metric] == curve.min()
    assert res.best_metrics["validation/loss"] == res.curves["validation/loss"][
        res.eval_steps.index(res.best_step)]
    assert [Path(p).name for p in res.checkpoint_paths] == [
        *(ckpt.best_filename(s) for s in best3), ckpt.LATEST]
    # Each kept checkpoint holds the parameters that produced its recorded metrics.
    model = wl.model()
    for step in best3:
        arrays = io.load_npz(tmp_path / ckpt.best_filename(step))
        assert int(arrays["step"]) == step
        got = evaluate(model, ckpt.unpack("params", arrays), ckpt.unpack("model_state", arrays),
                       wl.validation, 1024)
        i = res.eval_steps.index(step)
        assert got["loss"] == res.curves["validation/loss"][i]
    # The noisy curve makes this a real retrospective choice: not the last step.
    assert res.best_step < res.eval_steps[-1] and curve[-1] > curve.min()


def test_keep_best_zero_keeps_only_latest(tmp_path):
    run_trial(tiny_workload(), ADAM, **RUN, checkpoint_dir=tmp_path, keep_best=0)
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.LATEST]


def test_checkpoints_load_without_pickle_and_hold_the_full_state(tmp_path):
    res = run_trial(tiny_workload(), {**ADAM, "ema_decay": 0.5}, **RUN, checkpoint_dir=tmp_path)
    with np.load(tmp_path / ckpt.LATEST, allow_pickle=False) as z:
        names = set(z.files)
        assert int(z["step"]) == RUN["max_train_steps"]
        np.testing.assert_array_equal(z["grad_norms"], res.grad_norms)
        np.testing.assert_array_equal(z["eval_steps"], res.eval_steps)
        assert json.loads(str(z["meta/fingerprint"]))["seed"] == 0
    for key in ("params/dense/w", "model_state/center/mu", "opt/step", "opt/m:dense/w",
                "opt/v:dense/b", "ema/dense/w", "data/epoch", "data/position",
                "curve/validation/loss", "history/steps"):
        assert key in names, key


def test_stray_files_from_a_crash_are_cleaned_on_resume(tmp_path):
    wl = tiny_workload()
    first = run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path, keep_best=1)
    (tmp_path / ckpt.best_filename(999)).write_bytes(b"stale")      # a best file never ranked
    (tmp_path / ".latest.npz.abc.tmp").write_bytes(b"half")         # an interrupted write
    again = run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path, keep_best=1)
    assert again.same_computation(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [ckpt.best_filename(first.best_step), ckpt.LATEST])


def test_resume_refuses_a_checkpoint_of_another_trial(tmp_path):
    wl = tiny_workload()
    run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different trial"):
        run_trial(wl, {**ADAM, "lr": 0.01}, **RUN, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different trial"):
        run_trial(wl, ADAM, **{**RUN, "seed": 1}, checkpoint_dir=tmp_path)


def test_rerunning_a_finished_trial_returns_the_same_result(tmp_path):
    wl = tiny_workload()
    first = run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    second = run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    assert second.same_computation(first)


# ------------------------------------------------------------------ kill and resume
_CHILD = r"""
import functools, os, signal, sys
sys.path.insert(0, {repo!r})
from refplay import io
from refplay.train import Workload, run_trial
from tests.test_train import LinearSoftmax, tiny_workload, RESUME_CONFIG, RESUME_RUN

ckpt_dir, out_dir, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
wl = tiny_workload(dropout=0.2, kill_at_call=n if mode == "step" else None)
if mode == "save":          # die inside the n-th checkpoint write, after it landed
    real, calls = io.save_npz, [0]
    def dying_save(path, arrays, **options):
        calls[0] += 1
        out = real(path, arrays, **options)
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    io.save_npz = dying_save
result = run_trial(wl, RESUME_CONFIG, checkpoint_dir=ckpt_dir, **RESUME_RUN)
result.save(out_dir)
"""

RESUME_CONFIG = {"optimizer": "nadam", "lr": 0.02, "schedule": "linear", "warmup_steps": 5,
                 "ema_decay": 0.8, "grad_clip": 1.0, "dropout": 0.2}
RESUME_RUN = {"seed": 7, "max_train_steps": 90, "eval_every": 7, "keep_best": 2,
              "eval_test": True}


def _child(tmp_path, mode: str, n: int) -> int:
    script = _CHILD.format(repo=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ckpt"),
                           str(tmp_path / "out"), mode, str(n)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(proc.stderr)
    return proc.returncode


def test_kill_and_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    reference = run_trial(tiny_workload(dropout=0.2), RESUME_CONFIG, **RESUME_RUN,
                          checkpoint_dir=tmp_path / "reference")
    assert reference.status == "complete", reference.reason
    rng = np.random.default_rng(2024)
    # SIGKILL at random steps (counted from the start of each process), then
    # once inside a checkpoint write; every restart resumes the latest checkpoint.
    kills = [("step", int(rng.integers(1, 30))) for _ in range(3)] + [("save", 2)]
    resume_points = []
    for mode, n in kills:
        assert _child(tmp_path, mode, n) == -signal.SIGKILL
        assert not (tmp_path / "out").exists()
        resume_points.append(int(io.load_npz(tmp_path / "ckpt" / ckpt.LATEST)["step"]))
    # Each process got further than the last: the kills really hit mid-trial.
    assert resume_points == sorted(resume_points)
    assert 0 < resume_points[-1] < RESUME_RUN["max_train_steps"]
    assert len(set(resume_points)) >= 3
    assert _child(tmp_path, "none", 0) == 0
    resumed = TrialResult.load(tmp_path / "out")
    assert resumed.same_computation(reference)
    np.testing.assert_array_equal(resumed.grad_norms, reference.grad_norms)
    assert resumed.curves.keys() == reference.curves.keys()
    for name, values in reference.curves.items():
        np.testing.assert_array_equal(resumed.curves[name], values, err_msg=name)   # NaN == NaN
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted(
        p.name for p in (tmp_path / "reference").iterdir())
    for name in os.listdir(tmp_path / "reference"):
        a, b = io.load_npz(tmp_path / "reference" / name), io.load_npz(tmp_path / "ckpt" / name)
        for key in a:
            if key not in ("wall_seconds", "train_seconds"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


# ---------------------------------------------------------------------- determinism
def test_same_seed_is_bitwise_identical_and_another_seed_differs():
    wl = tiny_workload(dropout=0.3)
    cfg = {**ADAM, "dropout": 0.3, "ema_decay": 0.9}
    a, b = run_trial(wl, cfg, **RUN), run_trial(wl, cfg, **RUN)
    assert a.same_computation(b)
    assert a.grad_norms.tobytes() == b.grad_norms.tobytes()
    c = run_trial(wl, cfg, **{**RUN, "seed": 1})
    assert not a.same_computation(c)
    assert TrialResult.from_json(a.to_json()).same_computation(a)


def test_numpy_scalars_in_the_config_are_stored_as_plain_numbers(tmp_path):
    cfg = {"optimizer": "adam", "lr": np.float64(0.05), "batch_size": np.int64(30),
           "warmup_steps": np.int32(3)}
    res = run_trial(tiny_workload(), cfg, **RUN, checkpoint_dir=tmp_path)
    assert res.status == "complete"
    assert type(res.config["batch_size"]) is int and res.config["batch_size"] == 30
    back = TrialResult.from_json(res.to_json())
    assert back.same_computation(res)
    assert res.same_computation(run_trial(tiny_workload(), {**ADAM, "warmup_steps": 3}, **RUN))


def test_streams_are_independent_and_overridable():
    s = seeds.trial_streams(5)
    children = np.random.SeedSequence(5).spawn(3)
    for mine, ref in zip(s, children):
        assert mine.generate_state(4).tolist() == ref.generate_state(4).tolist()
    g = seeds.step_generator(s.dropout, 3)
    assert g.random(3).tolist() == np.random.default_rng(s.dropout.spawn(4)[3]).random(3).tolist()
    o = seeds.trial_streams(9, init_seed=5)
    assert o.init.generate_state(4).tolist() == s.init.generate_state(4).tolist()
    assert o.data.generate_state(4).tolist() != s.data.generate_state(4).tolist()


def test_init_seed_and_data_seed_change_one_stream_only():
    wl = tiny_workload()
    base = run_trial(wl, {**ADAM, "init_seed": 0}, **{**RUN, "seed": 0})
    other = run_trial(wl, {**ADAM, "init_seed": 0}, **{**RUN, "seed": 1})
    # Same initialization (step-0 evaluation), different data order (step-0 batch).
    assert other.curves["validation/loss"][0] == base.curves["validation/loss"][0]
    assert other.grad_norms[0] != base.grad_norms[0]
    data_fixed = run_trial(wl, {**ADAM, "data_seed": 0}, **{**RUN, "seed": 1})
    plain0 = run_trial(wl, ADAM, **{**RUN, "seed": 0})
    assert data_fixed.curves["validation/loss"][0] != plain0.curves["validation/loss"][0]
    # Same data order: the step-0 batch is the same, so only θ_0 differs; the
    # batches equal those of seed 0 (checked directly on the iterator).
    assert base.same_computation(run_trial(wl, {**ADAM, "init_seed": 0}, **RUN))
    it_a = TrainBatches(wl.train, 30, seed=seeds.trial_streams(1, data_seed=0).data)
    it_b = TrainBatches(wl.train, 30, seed=seeds.trial_streams(0).data)
    assert all(np.array_equal(it_a.next().x, it_b.next().x) for _ in range(12))


class FirstStepProbe(LinearSoftmax):
    """Records what the first training step sees: θ_0, batch 0, the dropout generator's state."""

    def __init__(self, *args, log: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log

    def loss_and_grads(self, params, state, batch, rng, train=True):
        if self.calls == 0:
            self.log.append({"params": tree_lib.copy(params), "x": np.array(batch.x),
                             "rng": json.dumps(rng.bit_generator.state, default=str)})
        return super().loss_and_grads(params, state, batch, rng, train)


def _first_step(config: dict, seed: int) -> dict:
    log: list = []
    wl = tiny_workload()
    probe = Workload(name=wl.name, train=wl.train, validation=wl.validation, test=wl.test,
                     build_model=functools.partial(FirstStepProbe, 5, 3, log=log),
                     hparams={"dropout": 0.0}, batch_size=30, settings=wl.settings)
    res = run_trial(probe, {**ADAM, "dropout": 0.3, **config}, seed=seed, max_train_steps=3,
                    eval_every=3)
    assert res.status == "complete", res.reason
    return {**log[0], "result": res}


def test_init_data_and_dropout_streams_are_independent():
    def same(a, b, what):
        if what == "params":
            return all(a[what][k].tobytes() == b[what][k].tobytes() for k in a[what])
        if what == "x":
            return a[what].tobytes() == b[what].tobytes()
        return a[what] == b[what]

    base = _first_step({}, seed=0)
    # Changing the data-order seed changes the batches only: same θ_0, same dropout draws.
    data = _first_step({"data_seed": 5}, seed=0)
    assert [same(base, data, w) for w in ("params", "x", "rng")] == [True, False, True]
    # Changing the initialization seed changes θ_0 only.
    init = _first_step({"init_seed": 5}, seed=0)
    assert [same(base, init, w) for w in ("params", "x", "rng")] == [False, True, True]
    # Another trial seed with init and data pinned (the multi-host recipe): only dropout moves,
    # and that alone changes the trial.
    pinned = _first_step({"init_seed": 0, "data_seed": 0}, seed=1)
    assert [same(base, pinned, w) for w in ("params", "x", "rng")] == [True, True, False]
    assert not pinned["result"].same_computation(base["result"])
    assert pinned["result"].curves["validation/loss"][0] == base["result"].curves[
        "validation/loss"][0]


def test_trial_result_round_trips_through_json_and_npz(tmp_path):
    res = run_trial(tiny_workload(), {"optimizer": "sgd", "lr": 1e6, "grad_clip": 5.0}, **RUN,
                    checkpoint_dir=tmp_path / "ckpt", keep_best=2)
    assert res.status == "infeasible" and math.isnan(res.curves["train/loss"][0])
    res.save(tmp_path / "result")
    assert sorted(p.name for p in (tmp_path / "result").iterdir()) == ["arrays.npz",
                                                                     "result.json"]
    on_disk = json.loads((tmp_path / "result" / "result.json").read_text())
    assert on_disk["status"] == "infeasible" and on_disk["reason"] == res.reason
    assert on_disk["grad_norms"] == "arrays.npz:grad_norms"      # arrays live in the .npz
    with np.load(tmp_path / "result" / "arrays.npz", allow_pickle=False) as z:
        assert z["grad_norms"].tobytes() == res.grad_norms.tobytes()
        np.testing.assert_array_equal(z["eval_steps"], res.eval_steps)
        np.testing.assert_array_equal(z["curve:validation/loss"], res.curves["validation/loss"])
    back = TrialResult.load(tmp_path / "result")
    assert back.grad_norms.dtype == np.float64
    assert back.grad_norms.tobytes() == res.grad_norms.tobytes()
    # Every field, timings and paths included (NaN written as JSON NaN and read back).
    assert json.dumps(back.to_dict()) == json.dumps(res.to_dict())
    assert back.same_computation(res) and back.extras["divergence_step"] == res.steps_done
    assert TrialResult.from_json(res.to_json()).to_json() == res.to_json()
    with pytest.raises(ValueError, match="curvez"):
        TrialResult.from_dict({**res.to_dict(), "curvez": {}})
    with pytest.raises(ValueError, match="status='diverged'"):
        TrialResult(config={}, seed=0, status="diverged")


_THREADS_CHILD = r"""
import dataclasses, functools, json, sys
sys.path.insert(0, {repo!r})
import numba, threadpoolctl
from refplay.train import run_trial
from tests.test_train import ADAM, RUN, LinearSoftmax, tiny_workload

def counts():
    blas = {{i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()
             if i["user_api"] == "blas"}}
    return [numba.get_num_threads(), blas]

seen = []
class Probe(LinearSoftmax):
    def loss_and_grads(self, *args, **kwargs):
        seen.append(counts())
        return super().loss_and_grads(*args, **kwargs)

wl = dataclasses.replace(tiny_workload(), build_model=functools.partial(Probe, 5, 3))
before = counts()
result = run_trial(wl, ADAM, **RUN)
print(json.dumps({{"before": before, "seen": seen, "after": counts(), "status": result.status}}))
"""


def test_trial_pins_blas_and_numba_to_one_thread_and_restores_them():
    optional_import("threadpoolctl")
    env = {**os.environ, "NUMBA_NUM_THREADS": "3", "OMP_NUM_THREADS": "2",
           "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", _THREADS_CHILD.format(repo=str(REPO))],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == "complete"
    assert out["before"][0] == 3                      # Numba really had 3 threads before
    assert len(out["seen"]) == RUN["max_train_steps"]
    # Every BLAS library, including SciPy's that Numba's np.dot loads lazily, on one thread.
    assert all(numba_n == 1 and blas and set(blas.values()) == {1}
               for numba_n, blas in out["seen"]), out["seen"][0]
    numba_after, blas_after = out["after"]
    assert numba_after == 3                           # the caller's settings come back
    assert all(blas_after[lib] == n for lib, n in out["before"][1].items())


def test_float64_workloads_train_in_float64_and_float32_stays_float32(tmp_path):
    for dtype in ("float32", "float64"):
        wl = get_workload("spirals_mlp", dtype=dtype)
        res = run_trial(wl, {**ADAM, "batch_size": 50, "ema_decay": 0.5}, seed=0,
                        max_train_steps=5, eval_every=5, checkpoint_dir=tmp_path / dtype)
        assert res.status == "complete", res.reason
        arrays = io.load_npz(tmp_path / dtype / ckpt.LATEST)
        floats = {k: v.dtype.name for k, v in arrays.items()
                  if k.split("/")[0] in ("params", "ema", "opt") and v.dtype.kind == "f"}
        assert any(k.startswith("params/") for k in floats)
        assert any(k.startswith("ema/") for k in floats)
        assert any(k.startswith("opt/") for k in floats)
        assert set(floats.values()) == {dtype}, floats


# ------------------------------------------------------------ per-step costs, same results
class _DrawingLayer(Layer):
    """A layer refplay does not define: it might draw, so the model gets a generator."""

    name = "mine"

    def forward(self, params, x, train=False, rng=None):
        return x, None


def test_draws_in_training_finds_dropout_and_assumes_the_unknown_draws():
    assert not seeds.draws_in_training(get_workload("mnist1d_mlp").model())
    assert seeds.draws_in_training(get_workload("mnist1d_mlp").model(dropout=0.1))
    assert not seeds.draws_in_training(get_workload("mnist1d_transformer").model())
    assert seeds.draws_in_training(get_workload("mnist1d_cnn").model(dropout=0.2))
    net = Sequential([Dense(3, 2, name="dense"), _DrawingLayer()])
    assert seeds.draws_in_training(Model(net, input_shape=(3,)))
    looped = Sequential([Dense(3, 2, name="dense")])
    looped.layers[0].owner = looped                            # a back reference ends the walk
    assert not seeds.draws_in_training(Model(looped, input_shape=(3,)))
    assert seeds.draws_in_training(LinearSoftmax(5, 3))          # not a refplay Model
    declared = LinearSoftmax(5, 3)
    declared.draws_in_training = False                         # a model may say so itself
    assert not seeds.draws_in_training(declared)


def test_a_model_without_dropout_trains_bitwise_the_same_without_a_generator():
    wl = get_workload("mnist1d_mlp")

    def with_generator(**hparams):
        model = wl.model(**hparams)
        model.draws_in_training = True              # forces a generator at every step
        return model

    forced = dataclasses.replace(wl, build_model=with_generator)
    cfg = {"optimizer": "adam", "lr": 1e-2, "batch_size": 64}
    plain = run_trial(wl, cfg, seed=3, max_train_steps=20, eval_every=10)
    drawn = run_trial(forced, cfg, seed=3, max_train_steps=20, eval_every=10)
    assert plain.status == drawn.status == "complete"
    assert plain.same_computation(drawn)
    assert plain.train_losses.tobytes() == drawn.train_losses.tobytes()


@pytest.mark.parametrize("name", ["constant", "linear", "cosine", "rsqrt", "piecewise"])
@pytest.mark.parametrize("warmup_steps", [0, 7])
def test_the_learning_rate_table_equals_one_schedule_call_per_step(name, warmup_steps):
    extra = {"boundaries": [13, 40], "values": [1.0, 0.3, 0.1]} if name == "piecewise" else {}
    tc = parse_config({"optimizer": "sgd", "lr": 0.0123, "schedule": name,
                       "warmup_steps": warmup_steps, **extra}, model_hparams={},
                      max_train_steps=97, default_batch_size=8)
    table = loop._learning_rates(tc.schedule, 97)
    by_step = np.array([float(tc.schedule(s)) for s in range(98)])
    assert table.dtype == np.float64 and table.tobytes() == by_step.tobytes()
    plain_callable = loop._learning_rates(lambda s: 0.5 / (1 + s), 3)
    assert plain_callable.tolist() == [0.5, 0.25, 0.5 / 3, 0.125]


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("config, key", [
    ({"optimizer": "adamw", "lr": 0.1}, "optimizer"),
    ({"optimizer": "adam", "lr": 0.1, "schedule": "cosin"}, "schedule"),
    ({"optimizer": "adam"}, "lr"),
    ({"lr": 0.1}, "optimizer"),
    ({"optimizer": "adam", "lr": 0.1, "dropuot": 0.1}, "dropuot"),
    ({"optimizer": "sgd", "lr": 0.1, "beta1": 0.9}, "beta1"),
    ({"optimizer": "adam", "lr": 0.1, "schedule": "piecewise"}, "boundaries"),
    ({"optimizer": "adam", "lr": -1.0}, "lr"),
    ({"optimizer": "adam", "lr": 0.1, "grad_clip": 0.0}, "grad_clip"),
    ({"optimizer": "adam", "lr": 0.1, "ema_decay": 1.0}, "ema_decay"),
    ({"optimizer": "adam", "lr": 0.1, "batch_size": 0}, "batch_size"),
    ({"optimizer": "adam", "lr": 0.1, "warmup_steps": -1}, "warmup_steps"),
])
def test_bad_configs_raise_value_error_naming_the_key(config, key):
    with pytest.raises(ValueError) as info:
        run_trial(tiny_workload(), config, **RUN)
    message = str(info.value)
    named = [f"{key}=", f"key {key!r}", f"[{key!r}]"]
    assert any(message.startswith(n) or f" {n}" in message for n in named), message


@pytest.mark.parametrize("kwargs, key", [
    ({"eval_every": 0}, "eval_every"),
    ({"eval_every": -5}, "eval_every"),
    ({"max_train_steps": 0}, "max_train_steps"),
    ({"seed": -1}, "seed"),
    ({"keep_best": -1}, "keep_best"),
    ({"divergence_factor": 0.5}, "divergence_factor"),
    ({"selection_metric": "validation/accuracy"}, "selection_metric"),
])
def test_bad_run_arguments_raise_value_error_naming_them(kwargs, key):
    with pytest.raises(ValueError, match=key):
        run_trial(tiny_workload(), ADAM, **{**RUN, **kwargs})


def test_bad_model_hyperparameter_and_oversized_batch_raise_before_training():
    with pytest.raises(ValueError, match="dropout"):
        run_trial(get_workload("spirals_mlp"), {**ADAM, "dropout": 1.5}, **RUN)
    with pytest.raises(ValueError, match="batch_size"):
        run_trial(tiny_workload(), {**ADAM, "batch_size": 301}, **RUN)


def test_workload_hyperparameters_cannot_shadow_trial_config_keys():
    wl = tiny_workload()
    with pytest.raises(ValueError, match="ema_decay"):
        Workload(name="clash", train=wl.train, validation=wl.validation, test=None,
                 build_model=wl.build_model, hparams={"ema_decay": 0.9})
    assert "bn_ema_decay" in get_workload("mnist1d_resnet").hparams


def test_unknown_workload_and_settings_are_errors():
    with pytest.raises(ValueError, match="workload"):
        get_workload("mnist1d_no_such_model")
    with pytest.raises(ValueError, match="shufle_seq"):
        get_workload("mnist1d_mlp", shufle_seq=True)
    with pytest.raises(ValueError, match="width"):
        tiny_workload().model(width=3)


# ------------------------------------------------------------------- built-in workloads
@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_builtin_workloads_train_through_run_trial(name, tmp_path):
    wl = get_workload(name)
    cfg = {"optimizer": "adam", "lr": 3e-3}
    res = run_trial(wl, cfg, seed=0, max_train_steps=30, eval_every=15, checkpoint_dir=tmp_path)
    assert res.status == "complete", res.reason
    assert res.eval_steps == [0, 15, 30]
    assert res.curves["train/loss"][2] < res.curves["train/loss"][1] * 1.5
    assert res.curves["validation/loss"][2] < res.curves["validation/loss"][0]
    again = run_trial(wl, cfg, seed=0, max_train_steps=30, eval_every=15)
    assert again.same_computation(res)
