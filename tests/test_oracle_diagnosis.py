"""compare() says what is wrong: planted bugs are named, known forms recognised.

The step functions here are written independently of refplay (closure state,
the equations typed out), as a user would write them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from refplay import optim
from refplay.oracle import assert_matches, compare, diagnose, neighbours, trajectory

HP = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-2}


def user_adam(kind: str = "playbook", *, eps=1e-2, beta1=0.9, beta2=0.999, odd_leaf=None):
    """A user's Adam with one planted bug (``kind``); ``odd_leaf`` gets β₂ = 0.99."""
    st = {"t": 0, "m": {}, "v": {}}

    def step(params, grads, lr):
        st["t"] += 1
        t, out = st["t"], {}
        for k, p in params.items():
            b2 = 0.99 if k == odd_leaf else beta2
            m = st["m"][k] = beta1 * st["m"].get(k, 0.0) + (1 - beta1) * grads[k]
            v = st["v"][k] = b2 * st["v"].get(k, 0.0) + (1 - b2) * grads[k] ** 2
            b = math.sqrt(1 - b2**t) / (1 - beta1**t)
            if kind == "textbook":                # Kingma & Ba, Algorithm 1
                out[k] = p - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
            elif kind == "bias_m_only":
                out[k] = p - lr * (m / (1 - beta1**t)) / (np.sqrt(v) + eps)
            elif kind == "eps_in_sqrt":
                out[k] = p - lr * b * m / np.sqrt(v + eps)
            elif kind == "off_by_one":            # the step counter one ahead
                b_next = math.sqrt(1 - b2 ** (t + 1)) / (1 - beta1 ** (t + 1))
                out[k] = p - lr * b_next * m / (np.sqrt(v) + eps)
            elif kind == "sign_flip":
                out[k] = p + lr * b * m / (np.sqrt(v) + eps)
            else:
                out[k] = p - lr * b * m / (np.sqrt(v) + eps)
        return out

    return step


# The five planted bugs: (kind, odd leaf, the diagnosis name, words the message must contain)
PLANTED = [
    ("bias_m_only", None, "bias_m_only", "Adam with the bias correction on m only"),
    ("eps_in_sqrt", None, "eps_in_sqrt", "Adam with ε inside the square root"),
    ("off_by_one", None, "bias_ahead", "bias correction one step ahead"),
    ("playbook", "dense_1/w", "beta2=0.99", "beta2=0.99 instead of 0.999"),
    ("sign_flip", None, "playbook+sign_flip", "sign of the step flipped"),
]


@pytest.mark.parametrize("kind, leaf, name, words", PLANTED, ids=[p[2] for p in PLANTED])
def test_each_planted_bug_is_named(kind, leaf, name, words):
    rep = compare(user_adam(kind, odd_leaf=leaf), "adam", HP, problem="mlp")
    assert not rep.ok
    assert rep.diagnosis.names == [name], str(rep)
    assert words in str(rep)
    # the matching form reproduces the user's iterates to rounding
    assert all(m.max_abs_diff <= 1e-14 for m in rep.diagnosis.matches)


_HEADLINE = re.compile(
    r"^adam: step differs from the playbook's Adam at update t=1 \(the first with η > 0\) "
    r"on leaf '(?P<leaf>[\w/]+)' \(max \|Δ\| (?P<d>\S+), (?P<nb>\d+) of (?P<n>\d+) elements "
    r"beyond tol 1e-12; (?P<nl>\d) of 4 leaves differ at that update\); "
    r"‖Δθ_yours‖/‖Δθ_ref‖ = (?P<ratio>[^ ]+) \(your step (?P<how>[^)]+)\)\. "
    r"(?P<why>.+) See docs/oracle\.md#neighbour-forms\.$")


@pytest.mark.parametrize("kind, leaf, name, words", PLANTED, ids=[p[2] for p in PLANTED])
def test_message_format_on_the_planted_bugs(kind, leaf, name, words):
    """Leaf, update, element count, step ratio and cause, in that order, on one line."""
    rep = compare(user_adam(kind, odd_leaf=leaf), "adam", HP, problem="mlp")
    first, run, per_leaf = str(rep).splitlines()
    m = _HEADLINE.match(first)
    assert m, first
    assert m["leaf"] == rep.first_bad_leaf and int(m["nb"]) == rep.bad_elements[0]
    assert float(m["d"]) == pytest.approx(rep.leaf_diffs[rep.first_bad_leaf][1], rel=0.06)
    assert run.startswith("  run: adam {") and "on mlp (float64, 60 steps)" in run
    assert per_leaf.startswith("  max |Δθ| per leaf: dense_1/w ")
    if leaf is not None:                               # only that leaf departs at t=1
        assert m["leaf"] == leaf and m["nl"] == "1"
        assert m["why"].startswith(f"Leaf by leaf: on leaf '{leaf}' it equals")
        assert "the other leaves (dense_1/b, dense_2/w, dense_2/b) agree" in m["why"]
    else:
        assert m["nl"] == "4" and m["why"].startswith("It equals ")
    expected_how = {"bias_m_only": "is too large", "eps_in_sqrt": "is too small",
                    "off_by_one": "is too small", "sign_flip": "points the opposite way",
                    "playbook": "is too large"}[kind]
    assert m["how"].startswith(expected_how), m["how"]


def test_step_ratio_and_cosine_measure_the_first_bad_step():
    rep = compare(user_adam("sign_flip"), "adam", HP, problem="mlp")
    assert rep.step_ratio == pytest.approx(1.0, abs=1e-12)
    assert rep.step_cosine == pytest.approx(-1.0, abs=1e-12)
    big = compare(user_adam("bias_m_only"), "adam", HP, problem="mlp")
    # at t=1 both sides hold the same m, v (η_0 = 0): the bug's m/(1-β1²)/(√v + ε) against
    # the playbook's b_2 m/(√v + ε) is the same direction, 1/√(1-β2²) times as long
    assert big.step_ratio == pytest.approx(1 / math.sqrt(1 - 0.999**2), rel=1e-12)
    assert big.step_cosine == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("eps", [1e-8, 1e-2])
def test_textbook_adam_is_recognised_as_the_torch_form(eps):
    rep = compare(user_adam("textbook", eps=eps), "adam", {"eps": eps}, problem="mlp")
    assert not rep.ok and rep.diagnosis.names == ["torch"]
    text = str(rep)
    assert "ε added after the bias correction — the torch/optax form" in text
    assert "at eps=0 the two forms agree" in text
    # ... and with eps = 0 the two forms are the same rule
    assert compare(user_adam("textbook", eps=0.0), "adam", {"eps": 0.0}, problem="mlp").ok
    # ... and it is the torch form, selected as the reference
    assert compare(user_adam("textbook", eps=eps), "adam", {"eps": eps}, problem="mlp",
                   form="torch").ok


def test_float32_agreement_carries_the_rounding_caveat():
    rep = compare(user_adam("textbook", eps=1e-8), "adam", {"eps": 1e-8}, problem="mlp",
                  dtype=np.float32)
    assert rep.ok and "check in float64 too" in str(rep)      # the float32 pass
    bad = compare(user_adam("textbook"), "adam", HP, problem="mlp", dtype=np.float32)
    assert not bad.ok and bad.diagnosis.names == ["torch"], str(bad)


def test_lr_one_step_late_is_named():
    opt = optim.get("momentum", gamma=0.9)
    box = {"prev": 0.0}

    def step(params, grads, lr):
        box.setdefault("s", opt.init(params))
        new, box["s"] = opt.update(params, grads, box["s"], box["prev"])
        box["prev"] = lr
        return new

    rep = compare(step, "momentum", {"gamma": 0.9}, problem="ill_conditioned")
    assert rep.diagnosis.names == ["playbook+lr_late"], str(rep)
    assert "learning rate one step late" in str(rep)


def test_an_unknown_bug_says_so_and_names_none():
    def step(params, grads, lr):
        return {k: v - lr * np.tanh(g) for (k, v), g in zip(params.items(), grads.values())}

    rep = compare(step, "sgd", problem="mlp")
    assert not rep.ok and not rep.diagnosis.found
    assert "None of the" in str(rep) and "known forms and common mistakes matches" in str(rep)


def test_comparison_fields_on_success_and_without_diagnosis():
    rep = compare(user_adam(), "adam", HP, problem="mlp")
    assert rep.ok and rep.diagnosis is None and rep.first_bad_leaf is None
    assert set(rep.leaf_max) == {"dense_1/w", "dense_1/b", "dense_2/w", "dense_2/b"}
    assert max(rep.leaf_max.values()) == rep.max <= 1e-12
    assert rep.first_step_with_lr == 1 and "agrees with the playbook's Adam" in str(rep)
    quiet = compare(user_adam("textbook"), "adam", HP, problem="mlp", diagnose=False)
    assert not quiet.ok and quiet.diagnosis is None and quiet.first_bad_leaf is not None


def test_compare_trajectories_refuses_mismatched_leaves():
    from refplay.oracle import compare_trajectories
    tr = trajectory("sgd", {}, None, "least_squares", 5)
    with pytest.raises(ValueError, match=r"yours has leaves \['v'\]"):
        compare_trajectories("sgd", {}, tr.lrs, tr.params, {"v": tr.params["w"]}, tr.grads,
                             tol=1e-12)
    same = compare_trajectories("sgd", {}, tr.lrs, tr.params, tr.params, tr.grads, tol=0.0)
    assert same.ok and same.max == 0.0


def test_assert_matches_raises_with_the_message():
    assert assert_matches(user_adam(), "adam", HP, problem="mlp").ok
    with pytest.raises(AssertionError) as exc:
        assert_matches(user_adam("eps_in_sqrt"), "adam", HP, problem="mlp")
    assert str(exc.value).startswith("adam: step differs from the playbook's Adam at update t=1")
    assert "ε inside the square root" in str(exc.value)


# ------------------------------------------------------------ the forms themselves
def test_every_form_has_equations_and_builds():
    for rule in optim.RULES:
        forms = neighbours.forms(rule)
        assert forms[0].name == neighbours.PLAYBOOK
        for f in forms:
            opt = neighbours.build(rule, {}, f.name)
            eq = neighbours.equation(rule, {}, f.name)
            assert eq["text"] and eq["latex"] and opt.init({"w": np.zeros(2)}) is not None
            assert f.kind in ("playbook", "variant", "mistake")


def test_bad_form_and_rule_are_clear_errors():
    with pytest.raises(ValueError, match="form='pytorch' is not a form of rule 'adam'"):
        neighbours.get_form("adam", "pytorch")
    with pytest.raises(ValueError, match="optimizer='adamax'"):
        neighbours.forms("adamax")
    with pytest.raises(ValueError, match="form="):
        compare(user_adam(), "adam", HP, problem="mlp", form="pytorch")


def test_trajectory_records_the_state_of_each_step():
    tr = trajectory("adam", HP, None, "least_squares", 20)
    g, m, v = tr.grads["w"], tr.state["m"]["w"], tr.state["v"]["w"]
    assert m.shape == (21, 5) and np.all(m[0] == 0) and np.all(v[0] == 0)
    for t in range(20):
        np.testing.assert_allclose(m[t + 1], 0.9 * m[t] + 0.1 * g[t], rtol=0, atol=1e-15)
        np.testing.assert_allclose(v[t + 1], 0.999 * v[t] + 0.001 * g[t] ** 2, rtol=0, atol=1e-16)
    assert tr.form == "playbook"
    assert trajectory("adam", HP, None, "least_squares", 20, form="optax").form == "torch"


def test_candidates_cover_the_neighbours_and_skip_the_reference_value():
    stage1, stage2 = diagnose.candidates("adam", HP)
    assert {c.form for c in stage1} >= {"torch", "eps_in_sqrt", "bias_m_only", "bias_ahead"}
    assert all(c.hparams[c.hparam] != HP[c.hparam] for c in stage2)
    wd = diagnose.candidates("adam", {**HP, "weight_decay": 0.1})[0]
    assert any(c.hparams["weight_decay_mode"] == "decoupled" for c in wd)


def test_docs_list_every_neighbour_form():
    """docs/oracle.md's "Neighbour forms" table has one row per form, aliases included."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "oracle.md").read_text()
    section = text[text.index("## Neighbour forms"):]
    rows = [line for line in section.split("\n\n## ")[0].splitlines()
            if line.startswith("| ") and not line.startswith(("| rule", "| ---"))]
    listed = {(r.split("|")[1].strip(), r.split("|")[2].strip()) for r in rows}
    expected = set()
    for (rule, name), f in neighbours.FORMS.items():
        if name != neighbours.PLAYBOOK:
            aliases = f" ({', '.join(f'`{a}`' for a in f.aliases)})" if f.aliases else ""
            expected.add((rule, f"`{name}`{aliases}"))
    assert listed == expected
