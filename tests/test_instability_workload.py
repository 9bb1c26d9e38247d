"""The instability workload: ``models.residual_mlp`` and ``mnist1d_resmlp`` (docs/instability.md)."""

from __future__ import annotations

import numpy as np
import pytest

from refplay.data.dataset import Batch
from refplay.nn import models
from refplay.train import get_workload, run_trial
from refplay.train import unstable


def _loss(model, params, state, batch):
    return model.loss(params, state, batch, None, train=True)[0]


def _random_batch(model, rng, n=6):
    return Batch(rng.normal(size=(n, *model.input_shape)),
                 rng.integers(0, model.output_shape[0], n), np.ones(n))


@pytest.mark.parametrize("placement,norm", [("pre", "layer"), ("post", "layer"),
                                            ("branch", "layer"), ("none", None),
                                            ("post", "batch")])
def test_residual_mlp_gradients_match_float64_finite_differences(placement, norm):
    model = models.residual_mlp(5, 3, width=4, depth=2, norm=norm, norm_placement=placement,
                                init_gain=1.7, activation="tanh")
    rng = np.random.default_rng(7)
    params, state = model.init_params(rng, dtype=np.float64)
    # Norm scales start at 1 and biases at 0; random values exercise every term.
    params = {k: (rng.normal(size=v.shape) if k.endswith(("/b", "/scale", "/bias")) else v)
              for k, v in params.items()}
    batch = _random_batch(model, rng)
    loss, grads, _, _ = model.loss_and_grads(params, state, batch, None, train=True)
    assert list(grads) == list(params)
    h = 1e-6
    for key, value in params.items():
        for flat in rng.choice(value.size, min(3, value.size), replace=False):
            i = np.unravel_index(flat, value.shape)
            plus, minus = value.copy(), value.copy()
            plus[i] += h
            minus[i] -= h
            fd = (_loss(model, {**params, key: plus}, state, batch)
                  - _loss(model, {**params, key: minus}, state, batch)) / (2 * h)
            assert grads[key][i] == pytest.approx(fd, rel=1e-5, abs=1e-8), (key, i)


def test_residual_mlp_structure_and_init_gain_scales_the_weights():
    pre = models.residual_mlp(40, 10, width=8, depth=3, norm_placement="pre")
    post = models.residual_mlp(40, 10, width=8, depth=3, norm_placement="post")
    p_pre, _ = pre.init_params(np.random.default_rng(0), dtype=np.float64)
    p_post, _ = post.init_params(np.random.default_rng(0), dtype=np.float64)
    # Only the pre-norm network needs a final norm before the head.
    assert "final_norm/scale" in p_pre and "final_norm/scale" not in p_post
    assert sum(k.endswith("/norm/scale") for k in p_post) == 3
    big = models.residual_mlp(40, 10, width=8, depth=3, norm_placement="pre", init_gain=3.0)
    p_big, _ = big.init_params(np.random.default_rng(0), dtype=np.float64)
    for key in ("stem/w", "block_2/dense_a/w", "block_3/dense_b/w"):
        np.testing.assert_allclose(p_big[key], 3.0 * p_pre[key], rtol=1e-15)
    np.testing.assert_array_equal(p_big["head/w"], p_pre["head/w"])    # the head is not scaled


def test_residual_mlp_rejects_bad_arguments_by_name():
    with pytest.raises(ValueError, match="init_gain"):
        models.residual_mlp(init_gain=0.0)
    with pytest.raises(ValueError, match="norm_placement"):
        models.residual_mlp(norm_placement="middle")
    with pytest.raises(ValueError, match="do not fit"):
        models.residual_mlp(norm=None, norm_placement="post")


def test_workload_builds_and_trains_deterministically():
    wl = get_workload("mnist1d_resmlp")
    assert wl.hparams["norm_placement"] == "pre" and wl.hparams["init_gain"] == 1.0
    config = {"optimizer": "nesterov", "lr": 0.05, "gamma": 0.9, "norm_placement": "post",
              "depth": 4, "width": 32}
    a = run_trial(wl, config, seed=3, max_train_steps=30, eval_every=15)
    b = run_trial(wl, config, seed=3, max_train_steps=30, eval_every=15)
    assert a.status == "complete", a.reason
    assert a.same_computation(b)
    assert a.curves["validation/loss"][-1] < a.curves["validation/loss"][0]


def _per_step_losses(setup, variant, steps):
    """Every step's minibatch loss (``TrialResult.train_losses``) of ``variant`` at the spike lr."""
    wl = get_workload(setup.workload, **setup.workload_options)
    result = run_trial(wl, setup.config(variant, setup.measured["spike_lr"]), seed=setup.seed,
                       max_train_steps=steps, eval_every=steps)
    assert result.status == "complete", result.reason
    return np.asarray(result.train_losses)


def test_the_unstable_variant_spikes_where_the_stable_one_does_not():
    # docs/instability.md, Figure 5: post-norm at 2 x lr* returns above its step-0 loss at step
    # 181 (16x its running minimum) and recovers; the BatchNorm block at the same lr does not.
    setup = unstable.EARLY_SPIKE
    spiky = _per_step_losses(setup, "unstable", 260)
    calm = _per_step_losses(setup, "stable", 260)
    assert len(spiky) == len(calm) == 260
    running_min = np.minimum.accumulate(spiky)
    peak = int(np.argmax(spiky[20:])) + 20
    assert spiky[peak] >= 2.0 * running_min[peak - 1]
    assert spiky[peak] > spiky[0]                        # back above the initial loss
    assert spiky[-20:].mean() < 0.25 * spiky[peak]       # ... and recovered
    assert calm[20:].max() < 0.5 * calm[0]
