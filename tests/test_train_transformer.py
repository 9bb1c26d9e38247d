"""The ``mnist1d_transformer`` workload: built the existing way, hyperparameters validated by name,
and a short trial through ``run_trial`` learns and is bitwise repeatable."""

import numpy as np
import pytest

from refplay.train import get_workload, run_trial


def test_workload_builds_the_vit_with_its_hyperparameters():
    wl = get_workload("mnist1d_transformer")
    assert wl.hparams["norm_placement"] == "pre" and wl.hparams["depth"] == 4
    post = wl.model(norm_placement="post", depth=2, width=16, num_heads=2)
    params, _ = post.init_params(np.random.default_rng(0))
    assert "block_2/attn/qkv/w" in params and "block_3/attn/qkv/w" not in params
    assert "final_norm/scale" not in params                # Post-LN: no final norm
    assert params["block_1/attn/qkv/w"].shape == (16, 48)


@pytest.mark.parametrize("config,field", [
    ({"norm_placement": "sandwich"}, "norm_placement"), ({"num_heads": 5}, "num_heads"),
    ({"patch_size": 3}, "patch_size"), ({"heads": 2}, "heads"),
])
def test_bad_hyperparameters_are_refused_by_name(config, field):
    with pytest.raises(ValueError, match=field):
        run_trial("mnist1d_transformer", {"optimizer": "adam", "lr": 1e-3, **config}, seed=0,
                  max_train_steps=2, eval_every=1)


def test_short_trial_learns_and_repeats_bitwise():
    config = {"optimizer": "adam", "lr": 4e-3, "warmup_steps": 4, "norm_placement": "post",
              "depth": 2, "width": 16, "num_heads": 2}
    a = run_trial("mnist1d_transformer", config, seed=3, max_train_steps=40, eval_every=20)
    b = run_trial("mnist1d_transformer", config, seed=3, max_train_steps=40, eval_every=20)
    assert a.feasible and len(a.train_losses) == 40
    assert np.mean(a.train_losses[-5:]) < 0.9 * a.train_losses[0]
    np.testing.assert_array_equal(a.train_losses, b.train_losses)


def test_transformer_setups_give_valid_trial_configs():
    from refplay.train import get_workload, unstable
    from refplay.train.config import parse_config
    setups = [s for s in unstable.SETUPS.values() if s.workload == "mnist1d_transformer"]
    assert {f for s in setups for f in s.figures} == {"4", "5", "6", "7a", "7b", "8"}
    for setup in setups:
        wl = get_workload(setup.workload, **setup.workload_options)
        assert setup.warmup_steps < setup.max_train_steps
        assert setup.max_final_loss == unstable.CHANCE_LOSS_10      # a collapse is infeasible
        for variant in ("stable", "unstable"):
            for warmup in setup.warmup_lengths or (setup.warmup_steps,):
                config = setup.seeded_config(variant, setup.lrs[-1], 1, warmup_steps=warmup)
                tc = parse_config(config, model_hparams=wl.hparams,
                                  max_train_steps=setup.max_train_steps,
                                  default_batch_size=wl.batch_size)
                assert tc.model_hparams["norm_placement"] == setup.config(variant, 1.0)[
                    "norm_placement"]
                assert tc.warmup_steps == warmup
                assert (tc.init_seed, tc.data_seed) == (1, 1)
        assert setup.label("unstable") == "Post-LN" and setup.label("stable") == "Pre-LN"