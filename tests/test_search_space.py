"""Search spaces: roles, conditions, namespaced names, validation, dict/TOML round trips."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest

from refplay import search
from tests.helpers import playbook_search_space
from refplay.search import Choice, Discrete, Fixed, Float, Int, SearchSpace




def test_contract_example_builds_with_roles():
    space = SearchSpace(
        optimizer=Choice(["nesterov", "adam"], role="scientific"),
        lr=Float(1e-4, 1e-1, scale="log"),
        momentum=Float(0.8, 0.99, when={"optimizer": "nesterov"}),
        weight_decay=Fixed(0.0),
    )
    assert space.roles() == {"optimizer": "scientific", "lr": "nuisance",
                             "momentum": "nuisance", "weight_decay": "fixed"}
    assert space.scientific() == ("optimizer",)
    assert space.nuisance() == ("lr", "momentum")
    assert space.fixed() == ("weight_decay",)
    assert space.names == ("optimizer", "lr", "momentum", "weight_decay")
    assert len(space) == 4 and "lr" in space and list(space) == list(space.names)
    assert space["momentum"].when == {"optimizer": ("nesterov",)}


def test_dimensions_put_scientific_parameters_first():
    space = SearchSpace(lr=Float(1e-3, 1.0, scale="log"), wd=Fixed(0.0),
                        act=Choice(["relu", "gelu"], role="scientific"), depth=Int(1, 4))
    assert space.dimensions == ("act", "lr", "depth")
    assert space.num_dimensions == 3


def test_namespaced_parameters_share_a_config_key():
    space = playbook_search_space()
    assert space.config_key("adam/lr") == "lr" and space.config_key("optimizer") == "optimizer"
    adam = {"optimizer": "adam", "lr": 3e-3, "beta1": 0.9, "batch_size": 64, "weight_decay": 0.0}
    nest = {"optimizer": "nesterov", "lr": 0.5, "momentum": 0.9, "batch_size": 64,
            "weight_decay": 0.0}
    assert space.active_parameters(adam) == {"optimizer": "adam", "adam/lr": 3e-3, "beta1": 0.9,
                                             "batch_size": 64, "weight_decay": 0.0}
    assert space.active_parameters(nest)["nesterov/lr"] == 0.5
    assert "adam/lr" not in space.active_parameters(nest)
    # Each branch checks its own range: 0.5 is a fine Nesterov lr, not an Adam one.
    with pytest.raises(ValueError,
                       match=r"config\['lr'\] \(parameter 'adam/lr'\)=0.5 is out of range"):
        space.validate_config({**adam, "lr": 0.5})


def test_validate_config_normalizes_to_plain_python_scalars():
    space = playbook_search_space()
    config = {"optimizer": np.str_("adam"), "lr": np.float32(0.001), "beta1": np.float64(0.9),
              "batch_size": 64.0, "weight_decay": 0}
    out = space.validate_config(config)
    assert out == {"optimizer": "adam", "lr": float(np.float32(0.001)), "beta1": 0.9,
                   "batch_size": 64, "weight_decay": 0.0}
    assert [type(v) for v in out.values()] == [str, float, float, int, float]
    assert list(out) == ["optimizer", "lr", "beta1", "batch_size", "weight_decay"]


@pytest.mark.parametrize("config, exc, match", [
    ({"optimizer": "adam", "beta1": 0.9, "batch_size": 64, "weight_decay": 0.0},
     ValueError, r"missing 'lr' \(parameter 'adam/lr', which is active because optimizer='adam'"),
    ({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "batch_size": 64, "weight_decay": 0.0,
      "momentum": 0.9}, ValueError, "'momentum' but parameter 'momentum' is inactive"),
    ({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "batch_size": 64, "weight_decay": 0.0,
      "dropout": 0.1}, ValueError, "unknown key 'dropout'"),
    ({"optimizer": "sgd", "lr": 1e-3, "batch_size": 64, "weight_decay": 0.0},
     ValueError, r"config\['optimizer'\]='sgd' is not allowed"),
    ({"optimizer": "adam", "lr": "fast", "beta1": 0.9, "batch_size": 64, "weight_decay": 0.0},
     TypeError, "must be a real number"),
    ({"optimizer": "adam", "lr": math.nan, "beta1": 0.9, "batch_size": 64, "weight_decay": 0.0},
     ValueError, "out of range"),
    ({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "batch_size": 65, "weight_decay": 0.0},
     ValueError, r"config\['batch_size'\]=65 is not allowed"),
    ({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "batch_size": 64, "weight_decay": 0.1},
     ValueError, "fixed value is 0.0"),
    (["optimizer", "adam"], TypeError, "must be a dict"),
])
def test_validate_config_errors_name_the_key(config, exc, match):
    with pytest.raises(exc, match=match):
        playbook_search_space().validate_config(config)


def test_int_and_choice_values_keep_their_kind():
    space = SearchSpace(depth=Int(1, 8), flag=Choice([True, False]), k=Choice([1, 2]))
    assert space.validate_config({"depth": 3, "flag": True, "k": 1}) == {"depth": 3, "flag": True,
                                                                        "k": 1}
    with pytest.raises(TypeError, match="integer"):
        space.validate_config({"depth": True, "flag": True, "k": 1})
    with pytest.raises(TypeError, match="integer"):
        space.validate_config({"depth": 3.0, "flag": True, "k": 1})
    with pytest.raises(ValueError, match="not allowed"):
        space.validate_config({"depth": 3, "flag": 1, "k": 1})   # 1 is not True
    with pytest.raises(ValueError, match="not allowed"):
        space.validate_config({"depth": 3, "flag": True, "k": True})
    with pytest.raises(ValueError, match="out of range"):
        space.validate_config({"depth": 9, "flag": True, "k": 1})


def test_nested_conditions_are_inherited():
    space = SearchSpace({
        "optimizer": Choice(["sgd", "adam"], role="scientific"),
        "schedule": Choice(["constant", "cosine"], when={"optimizer": "adam"}),
        "warmup_steps": Int(0, 1000, when={"schedule": "cosine"}),
        # Same key as adam's warmup: exclusive through the inherited optimizer condition.
        "sgd/warmup_steps": Int(0, 10, when={"optimizer": "sgd"}),
    })
    assert space.active_parameters({"optimizer": "sgd", "warmup_steps": 5}) == {
        "optimizer": "sgd", "sgd/warmup_steps": 5}
    assert space.active_parameters({"optimizer": "adam", "schedule": "cosine",
                                    "warmup_steps": 500})["warmup_steps"] == 500
    with pytest.raises(ValueError, match="'warmup_steps' is inactive"):
        space.validate_config({"optimizer": "adam", "schedule": "constant", "warmup_steps": 5})


def test_parents_may_be_declared_after_children():
    space = SearchSpace(momentum=Float(0.8, 0.99, when={"optimizer": ["nesterov", "momentum"]}),
                        optimizer=Choice(["nesterov", "momentum", "adam"]))
    assert space.validate_config({"optimizer": "momentum", "momentum": 0.9}) == {
        "momentum": 0.9, "optimizer": "momentum"}  # config keys in declaration order


# --------------------------------------------------------------------------
# Invalid spaces: every error names the parameter.
# --------------------------------------------------------------------------

P = Choice(["a", "b"])

INVALID = [
    ("low >= high", dict(x=Float(1.0, 1.0)), ValueError, "'x': need low < high"),
    ("low > high", dict(x=Float(2.0, 1.0)), ValueError, "'x': need low < high"),
    ("infinite bound", dict(x=Float(0.0, math.inf)), ValueError, "'x': high=inf must be finite"),
    ("nan bound", dict(x=Float(math.nan, 1.0)), ValueError, "'x': low=nan must be finite"),
    ("string bound", dict(x=Float("0", 1.0)), TypeError, "'x': low='0'"),
    ("log needs low > 0", dict(x=Float(0.0, 1.0, scale="log")), ValueError,
     "'x': scale='log' needs low > 0"),
    ("log int needs low > 0", dict(n=Int(0, 8, scale="log")), ValueError,
     "'n': scale='log' needs low > 0"),
    ("unknown scale", dict(x=Float(1e-3, 1.0, scale="logarithmic")), ValueError,
     r"'x': scale='logarithmic' is not allowed; choose one of \['linear', 'log', 'log1m'\]"),
    ("int bound not integer", dict(n=Int(1, 2.5)), TypeError, "'n': high=2.5 must be integers"),
    ("int low == high", dict(n=Int(3, 3)), ValueError, "'n': need low < high"),
    ("empty choice", dict(c=Choice([])), ValueError, "'c': values must not be empty"),
    ("duplicate choice", dict(c=Choice(["a", "a"])), ValueError, "'c': duplicate value 'a'"),
    ("ambiguous choice", dict(c=Choice([1, 1.0])), ValueError, "'c': duplicate value 1.0"),
    ("choice from a string", dict(c=Choice("ab")), TypeError, "'c': values must be a list"),
    ("discrete not numeric", dict(b=Discrete([32, "64"])), TypeError,
     "'b': values must be numbers"),
    ("choice of lists", dict(c=Choice([[1], [2]])), TypeError, "'c': values must be finite"),
    ("unknown role", dict(x=Float(0.0, 1.0, role="nuisence")), ValueError,
     "'x': role='nuisence' is not allowed"),
    ("fixed role on a searched parameter", dict(x=Float(0.0, 1.0, role="fixed")), ValueError,
     "'x': role='fixed' is for search.Fixed"),
    ("Fixed with another role", dict(x=Fixed(1.0, role="scientific")), ValueError,
     "'x': a search.Fixed parameter has role 'fixed'"),
    ("unknown parent", dict(x=Float(0.0, 1.0, when={"optimiser": "a"})), ValueError,
     "'x': when refers to unknown parameter 'optimiser'"),
    ("unknown parent value", dict(p=P, x=Float(0.0, 1.0, when={"p": "c"})), ValueError,
     r"'x': when\['p'\] has 'c', which is not a value of 'p'"),
    ("Fixed parent, other value", dict(p=Fixed("a"), x=Float(0.0, 1.0, when={"p": "b"})),
     ValueError, "'x': when\\['p'\\] has 'b'"),
    ("continuous parent", dict(p=Float(0.0, 1.0), x=Float(0.0, 1.0, when={"p": 0.5})), ValueError,
     "'x': when refers to 'p', a Float"),
    ("self reference", dict(p=Choice(["a", "b"], when={"p": "a"})), ValueError,
     "'p': when refers to itself"),
    ("cycle", dict(p=Choice(["a", "b"], when={"q": "c"}), q=Choice(["c", "d"], when={"p": "a"})),
     ValueError, "conditions form a cycle"),
    ("empty when", dict(x=Float(0.0, 1.0, when={})), TypeError, "'x': when must be a non-empty"),
    ("never active", dict(p=P, q=Choice(["c", "d"], when={"p": "a"}),
                          x=Float(0.0, 1.0, when={"q": "c", "p": "b"})), ValueError,
     "'x' can never be active"),
    ("same key, both always active", {"lr": Float(0.1, 1.0), "adam/lr": Float(0.1, 1.0)},
     ValueError, "'lr' and 'adam/lr' both write config key 'lr'"),
    ("same key, overlapping conditions",
     {"p": P, "a/lr": Float(0.1, 1.0, when={"p": ["a", "b"]}),
      "b/lr": Float(0.1, 1.0, when={"p": "b"})}, ValueError, "'a/lr' and 'b/lr' both write"),
    ("empty name part", {"adam//lr": Float(0.1, 1.0)}, ValueError, "'adam//lr' must be"),
    ("empty name", {"": Float(0.1, 1.0)}, ValueError, "parameter name ''"),
    ("not a parameter", dict(x=(0.0, 1.0)), TypeError, "'x' must be a search.Float"),
]


@pytest.mark.parametrize("params, exc, match", [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_spaces_raise_naming_the_parameter(params, exc, match):
    with pytest.raises(exc, match=match):
        SearchSpace(params)


def test_duplicate_names_between_dict_and_keywords():
    with pytest.raises(ValueError, match="'lr' is given twice"):
        SearchSpace({"lr": Float(0.1, 1.0)}, lr=Float(0.1, 1.0))


def test_parameters_are_immutable_specs():
    x = Float(0.0, 1.0)
    with pytest.raises(AttributeError, match="immutable"):
        x.low = 0.5
    assert Float(0.0, 1.0) == Float(0.0, 1.0) != Float(0.0, 2.0)
    assert repr(Float(1e-3, 1.0, "log", role="scientific")) == \
        "Float(0.001, 1.0, 'log', role='scientific')"


# --------------------------------------------------------------------------
# Plain dict / TOML
# --------------------------------------------------------------------------


def test_to_dict_shape_and_round_trip():
    space = playbook_search_space()
    d = space.to_dict()
    assert d["adam/lr"] == {"type": "float", "low": 1e-4, "high": 0.1, "scale": "log",
                            "role": "nuisance", "when": {"optimizer": ["adam"]}}
    assert d["optimizer"] == {"type": "choice", "values": ["nesterov", "adam"],
                              "role": "scientific"}
    assert d["batch_size"]["values"] == [64, 128, 256]  # Discrete values are stored sorted
    assert d["weight_decay"] == {"type": "fixed", "value": 0.0, "role": "fixed"}
    again = SearchSpace.from_dict(d)
    assert again == space and again.to_dict() == d
    assert search.halton(again, 20, 3) == search.halton(space, 20, 3)


def test_from_toml_table():
    text = """
[space.optimizer]
type = "choice"
values = ["nesterov", "adam"]
role = "scientific"

[space."nesterov/lr"]
type = "float"
low = 0.01
high = 10.0
scale = "log"
when = { optimizer = "nesterov" }

[space."adam/lr"]
type = "float"
low = 1e-4
high = 0.1
scale = "log"
when = { optimizer = ["adam"] }

[space.depth]
type = "int"
low = 1
high = 4

[space.weight_decay]
type = "fixed"
value = 0.0
"""
    space = SearchSpace.from_dict(tomllib.loads(text)["space"])
    assert space.names == ("optimizer", "nesterov/lr", "adam/lr", "depth", "weight_decay")
    assert space["adam/lr"] == Float(1e-4, 0.1, "log", when={"optimizer": ("adam",)})
    assert space["depth"] == Int(1, 4)
    assert space.roles()["optimizer"] == "scientific"


@pytest.mark.parametrize("table, exc, match", [
    ({"lr": {"type": "floot", "low": 0.1, "high": 1.0}}, ValueError, "'lr': type='floot'"),
    ({"lr": {"low": 0.1, "high": 1.0}}, ValueError, "'lr': type=None"),
    ({"lr": {"type": "float", "low": 0.1, "high": 1.0, "scaling": "log"}}, ValueError,
     r"'lr': unknown field\(s\) \['scaling'\]"),
    ({"lr": {"type": "float", "low": 0.1}}, ValueError,
     r"'lr': type 'float' needs field\(s\) \['high'\]"),
    ({"lr": {"type": "choice", "values": ["a"], "value": "a"}}, ValueError, "unknown field"),
    ({"lr": {"type": "float", "low": 0.1, "high": 1.0, "scale": "ln"}}, ValueError,
     "'lr': scale='ln' is not allowed"),
    ({"lr": 0.1}, TypeError, "'lr': expected a table"),
    ([("lr", {})], TypeError, "must be a dict"),
])
def test_from_dict_errors(table, exc, match):
    with pytest.raises(exc, match=match):
        SearchSpace.from_dict(table)
