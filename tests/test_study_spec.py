"""StudySpec: validation with clear errors, TOML/JSON loading, trials as a pure function
of (spec, trial index)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refplay import search
from refplay.study import StudySpec, check_study_name, trial_seed

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist1d_nesterov_vs_adam.toml"


def space():
    return search.SearchSpace({
        "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
        "nesterov/lr": search.Float(1e-3, 1.0, scale="log", when={"optimizer": "nesterov"}),
        "adam/lr": search.Float(1e-4, 1e-1, scale="log", when={"optimizer": "adam"}),
        "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
        "beta1": search.Float(0.8, 0.99, when={"optimizer": "adam"}),
        "batch_size": search.Fixed(32),
    })


def make(**overrides) -> StudySpec:
    kwargs = dict(name="s1", workload=None, search_space=space(), num_trials=8,
                  max_train_steps=50, eval_every=10, metric="validation/loss")
    kwargs.update(overrides)
    return StudySpec(**kwargs)


# ------------------------------------------------------------------ trials
def test_trial_seed_is_child_index_of_the_seed_sequence():
    children = np.random.SeedSequence(7).spawn(10)
    for i, child in enumerate(children):
        assert trial_seed(7, i) == int(child.generate_state(1, dtype=np.uint32)[0])
    assert len({trial_seed(7, i) for i in range(100)}) == 100


def test_trials_depend_only_on_spec_and_index():
    spec = make(num_trials=6, repeats=2)
    assert spec.budget == 12
    configs = search.halton(space(), 6, 0)
    for t in spec.trials():
        assert t.config == configs[t.index // 2]
        assert (t.config_index, t.repeat) == divmod(t.index, 2)
        assert t.seed == trial_seed(0, t.index)
    # Repeats of one configuration get different seeds (trial variance).
    assert spec.trial(0).config == spec.trial(1).config
    assert spec.trial(0).seed != spec.trial(1).seed
    # An equal spec built separately gives equal trials; a larger one extends them.
    assert make(num_trials=6, repeats=2).trials() == spec.trials()
    bigger = make(num_trials=9, repeats=2)
    assert bigger.trials()[:12] == spec.trials()
    with pytest.raises(ValueError, match="trial index"):
        spec.trial(12)


def test_sampler_seed_and_trial_seed_change_what_they_should():
    a, b = make(sampler_seed=0), make(sampler_seed=1)
    assert [t.config for t in a.trials()] != [t.config for t in b.trials()]
    assert [t.seed for t in a.trials()] == [t.seed for t in b.trials()]
    c = make(seed=5)
    assert [t.config for t in a.trials()] == [t.config for t in c.trials()]
    assert [t.seed for t in a.trials()] != [t.seed for t in c.trials()]


def test_random_grid_and_explicit_samplers():
    r = make(sampler="random", sampler_seed=3)
    assert [t.config for t in r.trials()] == search.random(space(), 8, 3)
    small = search.SearchSpace(lr=search.Float(1e-3, 1.0, scale="log"),
                               optimizer=search.Fixed("adam"))
    g = make(search_space=small, sampler="grid", points_per_dim=5, num_trials=None)
    assert g.num_trials == 5
    assert [t.config for t in g.trials()] == search.grid(small, 5)
    with pytest.raises(ValueError, match="num_trials=4 but sampler='grid' gives 5"):
        make(search_space=small, sampler="grid", points_per_dim=5, num_trials=4)
    configs = [{"optimizer": "adam", "lr": 0.01}, {"optimizer": "sgd", "lr": 0.1}]
    e = make(search_space=None, sampler="explicit", configs=configs, num_trials=None)
    assert e.budget == 2 and [t.config for t in e.trials()] == configs
    with pytest.raises(ValueError, match="lr"):   # validated against the space when given
        make(search_space=small, sampler="explicit", num_trials=None,
             configs=[{"optimizer": "adam", "lr": 5.0}])


# ---------------------------------------------------------------- dict / files
def test_dict_round_trip_and_json_file(tmp_path):
    spec = make(description="d", goal="g", repeats=3, keep_best=2)
    d = spec.to_dict()
    json.dumps(d)  # plain data
    again = StudySpec.from_dict(d)
    assert again == spec and again.trials() == spec.trials()
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    loaded = StudySpec.load(path)
    assert loaded == spec and loaded.source == str(path)


def test_example_spec_loads_with_conditional_nuisance_parameters():
    spec = StudySpec.load(EXAMPLE)
    assert spec.workload == "mnist1d_cnn" and spec.sampler == "halton"
    assert spec.search_space.scientific() == ("optimizer",)
    configs = [t.config for t in spec.trials()]
    assert {c["optimizer"] for c in configs} == {"nesterov", "adam"}
    for c in configs:
        assert ("gamma" in c) == (c["optimizer"] == "nesterov")
        assert ("beta1" in c) == (c["optimizer"] == "adam")
        low, high = (1e-3, 1.0) if c["optimizer"] == "nesterov" else (1e-4, 1e-1)
        assert low <= c["lr"] <= high


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("name", ["", "..", "a/b", "../x", "a\\b", ".hidden", "a..b", "a b",
                                  "x" * 129, "naïve"])
def test_unsafe_study_names_are_rejected(name):
    with pytest.raises(ValueError, match="study name"):
        check_study_name(name)
    with pytest.raises(ValueError, match="study name"):
        make(name=name)


def test_safe_study_names_are_accepted():
    for name in ["a", "round2.lr-sweep_3", "X" * 128]:
        assert check_study_name(name) == name
    with pytest.raises(TypeError, match="study name"):
        check_study_name(3)


@pytest.mark.parametrize("overrides, error, match", [
    ({"num_trials": 0}, ValueError, "num_trials"),
    ({"num_trials": -3}, ValueError, "num_trials"),
    ({"num_trials": 2.0}, TypeError, "num_trials"),
    ({"num_trials": None}, ValueError, "num_trials is required"),
    ({"max_train_steps": 0}, ValueError, "max_train_steps"),
    ({"eval_every": 0}, ValueError, "eval_every"),
    ({"repeats": 0}, ValueError, "repeats"),
    ({"mode": "minimize"}, ValueError, "mode"),
    ({"metric": "val_loss"}, ValueError, "metric"),
    ({"metric": "valid/loss"}, ValueError, "metric"),
    ({"sampler": "sobol"}, ValueError, "sampler"),
    ({"workload": "mnist2d"}, ValueError, "workload"),
    ({"workload": "teacher_student", "metric": "validation/error_rate"}, ValueError,
     "not reported by the trials of workload"),
    ({"workload": "spirals_mlp", "mode": "max"}, ValueError, "lower-is-better"),
    ({"search_space": None}, ValueError, "search_space is required"),
    ({"points_per_dim": 3}, ValueError, "points_per_dim is only for"),
    ({"workload_options": {"n": 10}}, ValueError, "workload_options given without"),
])
def test_spec_validation_errors_name_the_key(overrides, error, match):
    with pytest.raises(error, match=match):
        make(**overrides)


def test_workload_spec_is_accepted():
    spec = make(workload="spirals_mlp", metric="validation/error_rate")
    assert spec.workload == "spirals_mlp"


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


BASE = """
name = "t"
max_train_steps = 10
eval_every = 5
num_trials = 4
metric = "validation/loss"
[search_space.lr]
type = "float"
low = 0.001
high = 0.1
scale = "log"
"""


def test_toml_errors_name_the_file_and_key(tmp_path):
    assert StudySpec.load(_write(tmp_path, BASE)).budget == 4
    with pytest.raises(ValueError, match=r"spec.toml: unknown study spec key\(s\) \['num_trail'\]"):
        StudySpec.load(_write(tmp_path, 'num_trail = 3\n' + BASE))
    with pytest.raises(ValueError, match="missing the required key 'eval_every'"):
        StudySpec.load(_write(tmp_path, BASE.replace("eval_every = 5", "")))
    with pytest.raises(ValueError, match=r"unknown sampler key\(s\) \['sed'\]"):
        StudySpec.load(_write(tmp_path, BASE + '[sampler]\nname = "halton"\nsed = 1\n'))
    with pytest.raises(ValueError, match="not valid TOML"):
        StudySpec.load(_write(tmp_path, "name = \n" + BASE))
    with pytest.raises(ValueError, match="scale"):   # the search space's own validation
        StudySpec.load(_write(tmp_path, BASE.replace('"log"', '"logarithmic"')))
    with pytest.raises(FileNotFoundError):
        StudySpec.load(tmp_path / "missing.toml")
    other = tmp_path / "spec.yaml"
    other.write_text("name: t")
    with pytest.raises(ValueError, match=".toml or .json"):
        StudySpec.load(other)
