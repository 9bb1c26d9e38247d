"""Samplers over search spaces: halton, random, grid, explicit; mapping rules;
conditional spaces; hypothesis-generated spaces stay in bounds."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refplay import search
from tests.helpers import playbook_search_space
from refplay.search import Choice, Discrete, Fixed, Float, Int, SearchSpace

PLAIN = (float, int, str, bool)




# --------------------------------------------------------------------------
# halton / random over a space
# --------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [search.halton, search.random])
def test_extensible_reproducible_plain_configs(sampler):
    space = playbook_search_space()
    full = sampler(space, 100, 5)
    assert sampler(space, 37, 5) + sampler(space, 63, 5, skip=37) == full
    assert sampler(space, 100, 5) == full
    assert sampler(space, 100, 6) != full
    for config in full:
        assert type(config) is dict
        assert all(type(v) in PLAIN for v in config.values())
        assert space.validate_config(config) == config


def test_halton_uses_halton_points_in_dimension_order():
    space = SearchSpace(lr=Float(0.0, 1.0), act=Choice(["a", "b", "c"], role="scientific"),
                        depth=Int(0, 9))
    u = search.halton_points(30, 3, 2)
    configs = search.halton(space, 30, 2)
    assert [c["act"] for c in configs] == [["a", "b", "c"][int(x * 3)] for x in u[:, 0]]
    assert [c["lr"] for c in configs] == u[:, 1].tolist()
    assert [c["depth"] for c in configs] == [int(x * 10) for x in u[:, 2]]


def test_conditional_configs_drop_inactive_parameters():
    space = playbook_search_space()
    for config in search.halton(space, 64, 0):
        if config["optimizer"] == "nesterov":
            assert set(config) == {"optimizer", "lr", "momentum", "batch_size", "weight_decay"}
            assert 1e-2 <= config["lr"] <= 10.0
        else:
            assert set(config) == {"optimizer", "lr", "beta1", "batch_size", "weight_decay"}
            assert 1e-4 <= config["lr"] <= 1e-1
        active = space.active_parameters(config)
        assert ("nesterov/lr" in active) == (config["optimizer"] == "nesterov")
        assert ("adam/lr" in active) == (config["optimizer"] == "adam")


@pytest.mark.parametrize("n", [16, 64, 256])
def test_parent_marginal_still_stratified(n):
    """The scientific parent takes coordinate 0 (base 2): a 2-valued parent is split
    exactly in half in any 2^k trials, a 3-valued one within 2 of n/3."""
    for seed in range(4):
        two = Counter(c["optimizer"] for c in search.halton(playbook_search_space(), n, seed, skip=seed))
        assert two == {"nesterov": n // 2, "adam": n // 2}
        space3 = SearchSpace(opt=Choice(["sgd", "nesterov", "adam"], role="scientific"),
                             lr=Float(1e-3, 1.0, scale="log", when={"opt": ["sgd", "nesterov"]}),
                             b1=Float(0.8, 0.99, when={"opt": "adam"}))
        three = Counter(c["opt"] for c in search.halton(space3, n, seed))
        assert all(abs(three[v] - n / 3) < 2 for v in ("sgd", "nesterov", "adam")), three


def test_each_branch_of_a_shared_name_is_stratified():
    """'adam/lr' is coordinate 3 (base 7); Adam trials are every other index (coordinate
    0, base 2), and 7 indices of one parity cover every residue mod 7, so 98 trials put
    exactly 7 Adam learning rates in each seventh of the log range."""
    space = playbook_search_space()
    assert space.dimensions.index("adam/lr") == 3
    configs = search.halton(space, 98, 1, skip=11)
    adam_u = np.array([math.log(c["lr"] / 1e-4) / math.log(1e3) for c in configs
                       if c["optimizer"] == "adam"])
    assert np.bincount((adam_u * 7).astype(int), minlength=7).tolist() == [7] * 7


def test_random_is_uniform_and_skip_matches_slicing():
    space = SearchSpace(x=Float(0.0, 1.0), y=Float(0.0, 1.0))
    rng = np.random.default_rng(np.random.SeedSequence(9))
    u = rng.random((50, 2))
    assert [(c["x"], c["y"]) for c in search.random(space, 40, 9, skip=10)] == \
        [tuple(row) for row in u[10:].tolist()]


def test_sample_dispatches_by_name():
    space = playbook_search_space()
    assert search.sample(space, 8, 1) == search.halton(space, 8, 1)
    assert search.sample(space, 8, 1, sampler="random", skip=2) == search.random(space, 8, 1, 2)
    with pytest.raises(ValueError, match="sampler='sobol' is not allowed"):
        search.sample(space, 8, 1, sampler="sobol")


def test_fixed_only_space():
    space = SearchSpace(wd=Fixed(0.0), opt=Fixed("adam"))
    assert search.halton(space, 3, 0) == [{"wd": 0.0, "opt": "adam"}] * 3
    assert search.random(space, 2, 0) == [{"wd": 0.0, "opt": "adam"}] * 2
    assert search.grid(space, 5) == [{"wd": 0.0, "opt": "adam"}]


def test_sampler_arguments_are_checked():
    with pytest.raises(TypeError, match="space must be a search.SearchSpace"):
        search.halton({"lr": Float(0.1, 1.0)}, 4, 0)
    with pytest.raises(ValueError, match="n=-2"):
        search.halton(playbook_search_space(), -2, 0)
    with pytest.raises(ValueError, match="seed=-1"):
        search.random(playbook_search_space(), 2, -1)


# --------------------------------------------------------------------------
# Mapping rules, checked on chosen unit-cube points
# --------------------------------------------------------------------------


def _map(param, u) -> list:
    return [c["p"] for c in SearchSpace(p=param).from_unit_cube(np.asarray(u)[:, None])]


def test_categorical_and_discrete_map_by_floor_u_times_k():
    u = [0.0, 0.2499, 0.25, 0.5, 0.74999, 0.75, np.nextafter(1.0, 0.0)]
    assert _map(Choice(["a", "b", "c", "d"]), u) == ["a", "a", "b", "c", "c", "d", "d"]
    assert _map(Discrete([8, 2, 4]), [0.0, 0.34, 0.67, 0.999]) == [2, 4, 8, 8]


def test_float_scales():
    u = np.array([0.0, 0.25, 0.5, np.nextafter(1.0, 0.0)])
    lin = _map(Float(-1.0, 3.0), u)
    assert lin[:3] == [-1.0, 0.0, 1.0] and lin[3] <= 3.0
    log = _map(Float(1e-4, 1.0, scale="log"), u)
    np.testing.assert_allclose(log, [1e-4, 1e-3, 1e-2, 1.0], rtol=1e-12)
    assert all(1e-4 <= v <= 1.0 for v in log)


def test_int_linear_gives_every_integer_an_equal_share():
    u = (np.arange(4000) + 0.5) / 4000
    counts = Counter(_map(Int(-2, 5), u))
    assert sorted(counts) == list(range(-2, 6))
    assert set(counts.values()) == {500}  # no half-weight ends as with rounding


def test_int_log_is_log_uniform_on_integers():
    u = (np.arange(100_000) + 0.5) / 100_000
    counts = Counter(_map(Int(1, 8, scale="log"), u))
    for k in range(1, 9):  # P(k) = log((k+1)/k) / log(9)
        assert counts[k] / 1e5 == pytest.approx(math.log((k + 1) / k) / math.log(9), abs=2e-5)


def test_from_unit_cube_checks_its_input():
    space = SearchSpace(x=Float(0.0, 1.0), y=Float(0.0, 1.0))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        space.from_unit_cube(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        space.from_unit_cube(np.array([[0.5, 1.0]]))


# --------------------------------------------------------------------------
# grid and explicit
# --------------------------------------------------------------------------


def test_grid_one_and_two_dimensions():
    space = SearchSpace(lr=Float(1e-3, 1e-1, scale="log"), act=Choice(["relu", "gelu"]),
                        wd=Fixed(0.0))
    configs = search.grid(space, 3)
    assert len(configs) == 6
    lrs = sorted({c["lr"] for c in configs})
    assert lrs[0] == 1e-3 and lrs[2] == 1e-1 and lrs[1] == pytest.approx(1e-2, rel=1e-12)
    assert Counter(c["act"] for c in configs) == {"relu": 3, "gelu": 3}
    assert all(c["wd"] == 0.0 for c in configs)
    lin = search.grid(SearchSpace(m=Float(0.5, 0.9)), 5)
    assert [c["m"] for c in lin] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9], abs=1e-15)
    assert search.grid(SearchSpace(m=Float(0.5, 0.9)), 1) == [{"m": pytest.approx(0.7)}]
    assert [c["k"] for c in search.grid(SearchSpace(k=Int(1, 4)), 10)] == [1, 2, 3, 4]
    assert [c["b"] for c in search.grid(SearchSpace(b=Discrete([32, 64])), 7)] == [32, 64]


def test_grid_conditional_branches_count_separately():
    space = SearchSpace({
        "optimizer": Choice(["nesterov", "adam"], role="scientific"),
        "nesterov/lr": Float(1e-2, 10.0, scale="log", when={"optimizer": "nesterov"}),
        "adam/lr": Float(1e-4, 1e-1, scale="log", when={"optimizer": "adam"}),
    })
    configs = search.grid(space, {"nesterov/lr": 2, "adam/lr": 3})
    assert configs == [{"optimizer": "nesterov", "lr": 1e-2}, {"optimizer": "nesterov", "lr": 10.0},
                       {"optimizer": "adam", "lr": 1e-4},
                       {"optimizer": "adam", "lr": pytest.approx(10**-2.5)},
                       {"optimizer": "adam", "lr": 1e-1}]


def test_grid_refuses_more_than_two_dimensions_and_bad_counts():
    space = SearchSpace(a=Float(0.0, 1.0), b=Float(0.0, 1.0), c=Choice(["x", "y"]))
    with pytest.raises(ValueError, match="more than 2 dimensions"):
        search.grid(space, 2)
    two = SearchSpace(a=Float(0.0, 1.0), c=Choice(["x", "y"]))
    with pytest.raises(ValueError, match="names 'c', which is not a Float or Int"):
        search.grid(two, {"a": 2, "c": 2})
    with pytest.raises(ValueError, match=r"no count for \['a'\]"):
        search.grid(two, {})
    with pytest.raises(ValueError, match="points_per_dim=0"):
        search.grid(two, 0)


def test_explicit_validates_every_config():
    space = playbook_search_space()
    good = {"optimizer": "adam", "lr": np.float64(1e-3), "beta1": 0.9, "batch_size": 64,
            "weight_decay": 0.0}
    nesterov = {"optimizer": "nesterov", "lr": 0.1, "momentum": 0.9, "batch_size": 128,
                "weight_decay": 0.0}
    out = search.explicit(space, [good, nesterov])
    assert out == [{**good, "lr": 1e-3}, nesterov] and type(out[0]["lr"]) is float
    assert search.explicit(space, []) == []
    with pytest.raises(ValueError, match=r"configs\[1\]: config\['lr'\] \(parameter 'adam/lr'\)"):
        search.explicit(space, [good, {**good, "lr": 5.0}])
    with pytest.raises(TypeError, match="list of dicts"):
        search.explicit(space, good)


# --------------------------------------------------------------------------
# Hypothesis: generated spaces never produce a value outside bounds.
# --------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-8, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def parameters(draw):
    kind = draw(st.sampled_from(["float", "log", "int", "logint", "discrete", "choice", "fixed"]))
    if kind in ("float", "log"):
        lo, hi = sorted(draw(st.lists(positive if kind == "log" else finite, min_size=2,
                                      max_size=2, unique=True)))
        return Float(lo, hi, scale="log" if kind == "log" else "linear")
    if kind in ("int", "logint"):
        lo = draw(st.integers(1 if kind == "logint" else -1000, 1000))
        scale = "log" if kind == "logint" else "linear"
        return Int(lo, lo + draw(st.integers(1, 10**6)), scale=scale)
    if kind == "discrete":
        return Discrete(draw(st.lists(finite, min_size=1, max_size=6, unique=True)))
    if kind == "choice":
        return Choice(draw(st.lists(st.text(max_size=3), min_size=1, max_size=6, unique=True)))
    return Fixed(draw(finite))


@st.composite
def spaces(draw):
    params = draw(st.lists(parameters(), min_size=1, max_size=6))
    named = {f"p{i}": p for i, p in enumerate(params)}
    # Optionally make later parameters conditional on an earlier Choice.
    for i, p in enumerate(params):
        parents = [f"p{j}" for j in range(i) if isinstance(params[j], Choice)]
        if parents and draw(st.booleans()):
            parent = draw(st.sampled_from(parents))
            value = draw(st.sampled_from(named[parent].values))
            named[f"p{i}"] = p._replace(when={parent: value})
    return SearchSpace(named)


def _in_bounds(param, value) -> bool:
    if isinstance(param, Float):
        return type(value) is float and param.low <= value <= param.high
    if isinstance(param, Int):
        return type(value) is int and param.low <= value <= param.high
    if isinstance(param, Fixed):
        return value == param.value
    return value in param.values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=spaces(), seed=st.integers(0, 2**32), skip=st.integers(0, 10**6))
def test_generated_spaces_stay_in_bounds(space, seed, skip):
    for sampler in (search.halton, search.random):
        for config in sampler(space, 20, seed, skip=skip):
            active = space.active_parameters(config)
            for name, value in active.items():
                assert _in_bounds(space[name], value), (name, space[name], value)
    assert SearchSpace.from_dict(space.to_dict()) == space
