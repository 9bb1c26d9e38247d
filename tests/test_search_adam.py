"""search.adam_space (the playbook's Adam budget rule) and the "log1m" scale it uses for β's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refplay import search, train
from refplay.search import Fixed, Float, Int, SearchSpace


@pytest.mark.parametrize("num_trials, searched", [
    (5, ("lr",)),
    (15, ("lr", "beta1")),
    (30, ("lr", "beta1", "eps")),
    (100, ("lr", "beta1", "eps", "beta2")),
])
def test_budget_rule_dimensions_and_roles(num_trials, searched):
    space = search.adam_space(num_trials)
    assert space.dimensions == searched
    assert space.nuisance() == searched and space.scientific() == ()
    fixed = {name: space[name].value for name in space.fixed()}
    assert fixed == {"optimizer": "adam",
                     **{k: v for k, v in search.ADAM_DEFAULTS.items() if k not in searched}}
    assert space["lr"] == Float(1e-5, 1e-1, "log")
    for name in searched:
        expected_scale = {"lr": "log", "eps": "log", "beta1": "log1m", "beta2": "log1m"}[name]
        assert space[name].scale == expected_scale


@pytest.mark.parametrize("num_trials, num_dimensions", [
    (1, 1), (9, 1), (10, 2), (24, 2), (25, 3), (49, 3), (50, 4), (10_000, 4)])
def test_budget_rule_boundaries(num_trials, num_dimensions):
    # "10-25" and "25+" overlap at 25: 25 is read as "25+"; "substantially more" as >= 50.
    assert search.adam_space(num_trials).num_dimensions == num_dimensions
    assert search.SUBSTANTIALLY_MORE_THAN_25 == 50


@pytest.mark.parametrize("num_trials", [5, 15, 30, 100])
def test_every_sampled_config_is_a_valid_trial_config(num_trials):
    space = search.adam_space(num_trials)
    workload = train.get_workload("spirals_mlp")
    for config in search.halton(space, 64, seed=3):
        parsed = train.parse_config(config, model_hparams=workload.hparams, max_train_steps=10,
                                    default_batch_size=workload.batch_size)
        assert parsed is not None
        assert 1e-5 <= config["lr"] <= 1e-1 and 0.0 <= config["beta1"] <= 0.99
        assert 1e-10 <= config["eps"] <= 1e-2 and 0.9 <= config["beta2"] <= 0.9999


def test_custom_ranges_and_bad_arguments():
    space = search.adam_space(100, lr=(1e-4, 1e-2), beta1=(0.5, 0.95), eps=(1e-9, 1e-3),
                              beta2=(0.99, 0.9999))
    assert space["beta1"] == Float(0.5, 0.95, "log1m") and space["eps"] == Float(1e-9, 1e-3, "log")
    with pytest.raises(ValueError, match=r"num_trials=0 is out of range"):
        search.adam_space(0)
    with pytest.raises(TypeError, match="num_trials must be an integer"):
        search.adam_space(12.5)
    with pytest.raises(TypeError, match=r"beta1 must be a \(low, high\) pair, got 0.9"):
        search.adam_space(15, beta1=0.9)
    with pytest.raises(ValueError, match=r"'beta1': scale='log1m' .* needs high < 1, got high=1.0"):
        search.adam_space(15, beta1=(0.5, 1.0))


# --------------------------------------------------------------------------
# The "log1m" scale
# --------------------------------------------------------------------------


def test_log1m_is_uniform_in_log_one_minus_x():
    space = SearchSpace(beta=Float(0.0, 0.999, "log1m"))
    u = np.array([[0.0], [1 / 3], [2 / 3], [np.nextafter(1.0, 0.0)]])
    betas = [c["beta"] for c in space.from_unit_cube(u)]
    np.testing.assert_allclose(betas, [0.0, 0.9, 0.99, 0.999], rtol=1e-12)
    # Random draws: log10(1 - beta) is uniform on [-3, 0] (Kolmogorov-Smirnov distance).
    draws = np.array([c["beta"] for c in search.random(space, 4000, seed=0)])
    t = np.sort(-np.log10(1.0 - draws) / 3.0)
    ks = np.abs(t - (np.arange(len(t)) + 0.5) / len(t)).max()
    assert ks < 1.63 / math.sqrt(len(t))          # the 1 % critical value


def test_log1m_round_trip_grid_and_dict():
    space = SearchSpace(beta2=Float(0.9, 0.9999, "log1m"))
    for beta in (0.9, 0.95, 0.99, 0.995, 0.999, 0.9999):
        u = space.to_unit_cube({"beta2": beta})
        assert space.from_unit_cube(u[None])[0]["beta2"] == pytest.approx(beta, rel=1e-13)
    assert [c["beta2"] for c in search.grid(space, 4)] == pytest.approx([0.9, 0.99, 0.999,
                                                                          0.9999], rel=1e-12)
    d = space.to_dict()
    assert d["beta2"]["scale"] == "log1m" and SearchSpace.from_dict(d) == space
    assert "log1m" in search.SCALES


@pytest.mark.parametrize("param, match", [
    (Float(0.5, 1.0, "log1m"), "needs high < 1, got high=1.0"),
    (Float(0.5, 2.0, "log1m"), "needs high < 1, got high=2.0"),
    (Int(0, 3, "log1m"), "scale='log1m' is for search.Float"),
])
def test_log1m_refuses_what_it_cannot_map(param, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace(x=param)


def test_fixed_parameters_in_adam_space_are_plain_values():
    space = search.adam_space(5)
    assert isinstance(space["beta2"], Fixed) and space["beta2"].value == 0.999
    (config,) = search.halton(space, 1, seed=0)
    assert config == {"optimizer": "adam", "lr": config["lr"], "beta1": 0.9, "eps": 1e-8,
                      "beta2": 0.999}
