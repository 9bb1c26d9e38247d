"""search.gp: the GP against scikit-learn, GP-EI on Branin / Hartmann-3, infeasible regions,
batches, determinism, errors; SearchSpace.to_unit_cube (the inverse of from_unit_cube)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refplay import search
from refplay.search import Choice, Discrete, Fixed, Float, Int, SearchSpace
from refplay.search import gp
from tests.helpers import optional_import

# --------------------------------------------------------------------------
# Test functions (minimization), on the unit square / cube.
# --------------------------------------------------------------------------


def branin(u0: float, u1: float) -> float:
    """Branin-Hoo on [-5, 10] x [0, 15], reached from the unit square; minimum 0.397887."""
    x1, x2 = -5.0 + 15.0 * u0, 15.0 * u1
    return ((x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_C = np.array([1.0, 1.2, 3.0, 3.2])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547],
                         [381, 5743, 8828]])


def hartmann3(x) -> float:
    """Hartmann-3 on [0, 1]^3; minimum -3.86278 at (0.114614, 0.555649, 0.852547)."""
    x = np.asarray(x, np.float64)
    return float(-(_H3_C * np.exp(-(_H3_A * (x - _H3_P) ** 2).sum(1))).sum())


UNIT2 = SearchSpace(u0=Float(0.0, 1.0), u1=Float(0.0, 1.0))
UNIT3 = SearchSpace(u0=Float(0.0, 1.0), u1=Float(0.0, 1.0), u2=Float(0.0, 1.0))


def _branin_trial(c):
    return c, branin(c["u0"], c["u1"]), True


# --------------------------------------------------------------------------
# to_unit_cube
# --------------------------------------------------------------------------


def test_to_unit_cube_inverts_from_unit_cube_for_every_kind():
    space = SearchSpace(b=Float(0.0, 0.999, "log1m"), lr=Float(1e-4, 1.0, "log"),
                        w=Float(-2.0, 3.0), n=Int(1, 100, "log"), m=Int(2, 9),
                        c=Choice(["a", "b", "c"], role="scientific"), d=Discrete([1, 2, 4]),
                        f=Fixed(3))
    u = search.halton_points(300, space.num_dimensions, seed=1)
    for config in space.from_unit_cube(u):
        back = space.from_unit_cube(space.to_unit_cube(config)[None])[0]
        assert list(back) == list(config)
        for key, value in config.items():
            if isinstance(value, float):
                assert back[key] == pytest.approx(value, rel=1e-12, abs=1e-15)
            else:
                assert back[key] == value and type(back[key]) is type(value)


def test_to_unit_cube_coordinates():
    space = SearchSpace(lr=Float(1e-4, 1.0, "log"), n=Int(0, 3), c=Choice(["x", "y"]),
                        b=Float(0.9, 0.999, "log1m"))
    # Float: the scale inverted (lr = 1e-2 is half way in log); high maps just below 1.
    u = space.to_unit_cube({"lr": 1e-2, "n": 0, "c": "y", "b": 0.99})
    np.testing.assert_allclose(u, [0.5, 0.125, 0.75, 0.5], rtol=1e-12)
    assert space.to_unit_cube({"lr": 1.0, "n": 3, "c": "x", "b": 0.999})[0] == \
        np.nextafter(1.0, 0.0)


def test_to_unit_cube_marks_inactive_parameters_nan_and_validates():
    space = SearchSpace(opt=Choice(["sgd", "momentum"], role="scientific"),
                        lr=Float(1e-3, 1.0, "log"),
                        gamma=Float(0.5, 0.99, when={"opt": "momentum"}))
    u = space.to_unit_cube({"opt": "sgd", "lr": 0.1})
    assert u.shape == (3,) and math.isnan(u[2]) and not np.isnan(u[:2]).any()
    assert space.from_unit_cube(np.nan_to_num(u, nan=0.5)[None])[0] == \
        pytest.approx({"opt": "sgd", "lr": 0.1})
    with pytest.raises(ValueError, match=r"config\['lr'\]=5.0 is out of range"):
        space.to_unit_cube({"opt": "sgd", "lr": 5.0})


# --------------------------------------------------------------------------
# The Gaussian process against scikit-learn's
# --------------------------------------------------------------------------


@pytest.mark.parametrize("standardize", [False, True])
def test_posterior_equals_sklearn_gaussian_process(standardize):
    sk_gp = optional_import("sklearn.gaussian_process")
    kernels = optional_import("sklearn.gaussian_process.kernels")
    rng = np.random.default_rng(0)
    x, x_new = rng.random((25, 3)), rng.random((40, 3))
    y = np.sin(6 * x[:, 0]) + x[:, 1] ** 2 - 0.5 * x[:, 2] + 3.0
    ls, amp, noise = np.array([0.3, 0.7, 1.5]), 1.7, 1e-3
    kernel = (kernels.ConstantKernel(amp, constant_value_bounds="fixed")
              * kernels.Matern(length_scale=ls, length_scale_bounds="fixed", nu=2.5))
    ref = sk_gp.GaussianProcessRegressor(kernel, alpha=noise, optimizer=None,
                                         normalize_y=standardize).fit(x, y)
    ref_mean, ref_std = ref.predict(x_new, return_std=True)

    fit = gp.fit_gp(x, y, lengthscales=ls, amplitude=amp, noise=noise, standardize=standardize)
    mean, var = gp.gp_posterior(fit, x_new)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(var, ref_std**2, rtol=0, atol=1e-8)
    assert fit.log_marginal_likelihood == pytest.approx(ref.log_marginal_likelihood_value_,
                                                        abs=1e-8)


def test_matern52_matches_its_formula_pointwise():
    rng = np.random.default_rng(1)
    a, b, ls = rng.random((4, 2)), rng.random((3, 2)), np.array([0.2, 0.9])
    k = gp.matern52(a, b, ls)
    for i in range(4):
        for j in range(3):
            r = math.sqrt((((a[i] - b[j]) / ls) ** 2).sum())
            assert k[i, j] == pytest.approx(
                (1 + math.sqrt(5) * r + 5 * r * r / 3) * math.exp(-math.sqrt(5) * r), rel=1e-12)


def test_marginal_likelihood_fit_finds_the_irrelevant_input():
    rng = np.random.default_rng(2)
    x = rng.random((30, 2))
    y = np.sin(5 * x[:, 0])                      # x[:, 1] does not matter
    fit = gp.fit_gp(x, y)
    assert fit.lengthscales[1] > 5 * fit.lengthscales[0]
    assert fit.lengthscales[1] == gp.LENGTHSCALE_GRID[-1]
    # The fitted hyperparameters beat, in likelihood, the same kernel with swapped length scales.
    swapped = gp.fit_gp(x, y, lengthscales=fit.lengthscales[::-1], amplitude=fit.amplitude,
                        noise=fit.noise)
    assert fit.log_marginal_likelihood > swapped.log_marginal_likelihood
    # And it interpolates unseen points of the smooth function closely.
    x_new = rng.random((50, 2))
    mean, _ = gp.gp_posterior(fit, x_new)
    error = np.abs(mean - np.sin(5 * x_new[:, 0]))
    assert np.median(error) < 0.01 and error.max() < 0.1   # the largest: extrapolating to an edge


def test_expected_improvement_matches_monte_carlo():
    rng = np.random.default_rng(3)
    mean, var, best = np.array([0.0, 1.0, -0.5]), np.array([1.0, 0.25, 0.0]), 0.2
    ei = gp.expected_improvement(mean, var, best)
    draws = mean[:2] + np.sqrt(var[:2]) * rng.standard_normal((400_000, 2))
    np.testing.assert_allclose(ei[:2], np.maximum(best - draws, 0).mean(0), rtol=0.01)
    assert ei[2] == pytest.approx(0.7)          # no uncertainty: the sure improvement


# --------------------------------------------------------------------------
# GP-EI as an optimizer
# --------------------------------------------------------------------------


def _gp_ei_best(objective, space, num_initial, num_steps, seed):
    history = [(c, objective(c), True) for c in search.halton(space, num_initial, seed)]
    for _ in range(num_steps):
        (config,) = search.gp_ei(space, history, 1, seed)
        history.append((config, objective(config), True))
    return min(v for _, v, _ in history)


@pytest.mark.parametrize("name", ["branin", "hartmann3"])
def test_gp_ei_beats_equal_budget_random_search(name):
    space, objective = {
        "branin": (UNIT2, lambda c: branin(c["u0"], c["u1"])),
        "hartmann3": (UNIT3, lambda c: hartmann3([c["u0"], c["u1"], c["u2"]])),
    }[name]
    seeds, num_initial, num_steps = range(8), 4, 12
    gp_best = [_gp_ei_best(objective, space, num_initial, num_steps, s) for s in seeds]
    random_best = [min(objective(c) for c in search.random(space, num_initial + num_steps, s))
                   for s in seeds]
    assert np.mean(gp_best) < np.mean(random_best)
    assert sum(g < r for g, r in zip(gp_best, random_best)) > len(seeds) / 2


def _planted_history(seed, infeasible):
    """10 Halton trials plus a 3 x 3 grid of infeasible trials inside the planted region."""
    history = [(c, None, False) if infeasible(c) else _branin_trial(c)
               for c in search.halton(UNIT2, 10, seed)]
    history += [({"u0": a, "u1": b}, None, False)
                for a in (0.35 * (np.arange(3) + 0.5) / 3)
                for b in (0.55 + 0.45 * (np.arange(3) + 0.5) / 3)]
    return history


def test_no_proposal_lands_in_an_observed_infeasible_region():
    # A box holding one of Branin's three global minima diverges (infeasible).
    def infeasible(c):
        return c["u0"] < 0.35 and c["u1"] > 0.55

    proposals = {True: [], False: []}
    for feasibility in (True, False):
        for seed in range(4):
            history = _planted_history(seed, infeasible)
            for _ in range(8):
                (config,) = search.gp_ei(UNIT2, history, 1, seed, feasibility=feasibility)
                proposals[feasibility].append(config)
                history.append((config, None, False) if infeasible(config)
                               else _branin_trial(config))
    assert not any(infeasible(c) for c in proposals[True])
    # Without the feasibility model the box's unexplored minimum keeps attracting EI.
    assert sum(infeasible(c) for c in proposals[False]) >= 8


def test_all_infeasible_history_is_refused_and_feasibility_is_modelled():
    configs = search.halton(UNIT2, 6, 0)
    history = [(c, None, False) for c in configs]
    with pytest.raises(ValueError, match="at least 2 feasible trials in history, got 0 of 6"):
        search.gp_ei(UNIT2, history, 1, 0)
    # Feasible only where u0 < 0.5: the classifier says so.
    rng = np.random.default_rng(0)
    x = rng.random((40, 2))
    labels = np.where(x[:, 0] < 0.5, 1.0, -1.0)
    fit = gp.fit_gp(x, labels, standardize=False, noise_grid=gp.CLASSIFIER_NOISE_GRID, ard=False)
    p = gp.feasibility_probability(fit, [[0.2, 0.5], [0.8, 0.5]])
    assert p[0] > 0.9 and p[1] < 0.1


def test_batches_are_distinct_deterministic_and_spread_by_the_constant_liar():
    history = [_branin_trial(c) for c in search.halton(UNIT2, 8, 0)]
    batch = search.gp_ei(UNIT2, history, 8, seed=0)
    assert len(batch) == 8 and len({tuple(c.values()) for c in batch}) == 8
    assert search.gp_ei(UNIT2, history, 8, seed=0) == batch          # same seed, same history
    assert search.gp_ei(UNIT2, history, 8, seed=1) != batch
    assert search.gp_ei(UNIT2, history, 1, seed=0) == batch[:1]      # the first pick is greedy
    u = np.array([[c["u0"], c["u1"]] for c in batch])
    gaps = np.sqrt(((u[:, None] - u[None]) ** 2).sum(-1))[np.triu_indices(8, 1)]
    assert gaps.min() > 0.01


def test_mixed_space_with_int_discrete_choice_and_fixed():
    space = SearchSpace(act=Choice(["relu", "tanh", "gelu"]), width=Discrete([8, 16, 32, 64]),
                        depth=Int(1, 6), lr=Float(1e-3, 1.0, "log"), wd=Fixed(0.0))

    def objective(c):  # "tanh" is best; lr best near 0.03, width and depth matter a little
        return ((math.log10(c["lr"]) + 1.5) ** 2 + {"relu": 0.5, "tanh": 0.0, "gelu": 0.7}[c["act"]]
                + 0.01 * c["depth"] + 0.1 / c["width"])

    history = [(c, objective(c), True) for c in search.halton(space, 10, 0)]
    for _ in range(8):
        (config,) = search.gp_ei(space, history, 1, 0)
        assert space.validate_config(config) == config
        history.append((config, objective(config), True))
    best = min(history, key=lambda t: t[1])[0]
    assert best["act"] == "tanh" and abs(math.log10(best["lr"]) + 1.5) < 0.3


# --------------------------------------------------------------------------
# Errors name the field, the value and what is allowed
# --------------------------------------------------------------------------


@pytest.mark.parametrize("history, exc, match", [
    ("abc", TypeError, "history must be a list of"),
    ([({"u0": 0.1, "u1": 0.2}, 1.0)], TypeError, r"history\[0\] must be a \(config, objective"),
    ([({"u0": 0.1, "u1": 0.2}, 1.0, 1)], TypeError, r"history\[0\]: feasible must be True"),
    ([({"u0": 0.1, "u1": 0.2}, math.nan, True)], ValueError,
     r"history\[0\]: a feasible trial's objective must be a finite number, got nan"),
    ([({"u0": 0.1, "u1": 0.2}, 9.0, False)], ValueError,
     r"history\[0\]: an infeasible trial's objective must be None"),
    ([({"u0": 0.1, "u1": 2.0}, 1.0, True)], ValueError,
     r"history\[0\]: config\['u1'\]=2.0 is out of range"),
])
def test_bad_history_is_named(history, exc, match):
    with pytest.raises(exc, match=match):
        search.gp_ei(UNIT2, history, 1, 0)


def test_bad_spaces_and_arguments_are_named():
    history = [_branin_trial(c) for c in search.halton(UNIT2, 4, 0)]
    conditional = SearchSpace(opt=Choice(["sgd", "adam"]), lr=Float(1e-3, 1.0),
                              b=Float(0.5, 0.99, when={"opt": "adam"}))
    with pytest.raises(ValueError, match="does not support conditional parameters; 'b'"):
        search.gp_ei(conditional, [], 1, 0)
    with pytest.raises(ValueError, match="no searched parameter"):
        search.gp_ei(SearchSpace(a=Fixed(1)), [], 1, 0)
    with pytest.raises(TypeError, match="space must be a search.SearchSpace"):
        search.gp_ei({"u0": Float(0, 1)}, history, 1, 0)
    with pytest.raises(ValueError, match=r"n=0 is out of range"):
        search.gp_ei(UNIT2, history, 0, 0)
    with pytest.raises(TypeError, match="feasibility must be True or False"):
        search.gp_ei(UNIT2, history, 1, 0, feasibility="yes")
    with pytest.raises(ValueError, match="give all of lengthscales, amplitude and noise"):
        gp.fit_gp(np.zeros((2, 1)), np.zeros(2), amplitude=1.0)
