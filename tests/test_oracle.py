"""refplay.oracle without any framework: problems, trajectories, compare, golden vectors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from refplay import optim
from refplay.cli import main
from refplay.oracle import compare, golden, lr_values, problems, standard_schedule, trajectory
from refplay.oracle.frameworks import FRAMEWORKS, ROW_NAMES, eps_values, row_hparams, rows

PROBLEM_NAMES = list(problems.PROBLEMS)


# ------------------------------------------------------------------------ problems
def _centered_fd(prob, params, h=1e-6):
    out = {}
    for k, v in params.items():
        g = np.zeros_like(v)
        for i in np.ndindex(v.shape):
            plus = {kk: vv.copy() for kk, vv in params.items()}
            minus = {kk: vv.copy() for kk, vv in params.items()}
            plus[k][i] += h
            minus[k][i] -= h
            g[i] = (prob.loss(plus) - prob.loss(minus)) / (2 * h)
        out[k] = g
    return out


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_gradient_matches_centered_finite_differences(name):
    prob = problems.get(name)
    # at θ_0 and at a perturbed point, so a gradient that is right only at θ_0 fails
    rng = np.random.default_rng(np.random.SeedSequence(7))
    for params in (prob.init_params(),
                   {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in prob.theta0.items()}):
        g, fd = prob.grad(params), _centered_fd(prob, params)
        assert list(g) == list(params)
        for k in g:
            np.testing.assert_allclose(g[k], fd[k], rtol=1e-6, atol=1e-7, err_msg=f"{name} {k}")


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_float32_gradient_is_float32_and_close_to_float64(name):
    prob = problems.get(name)
    p32, p64 = prob.init_params(np.float32), prob.init_params(np.float64)
    g32, g64 = prob.grad(p32), prob.grad(p64)
    for k in g64:
        assert p32[k].dtype == np.float32 and g32[k].dtype == np.float32, k
        assert g64[k].dtype == np.float64
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-5)


def test_problems_are_deterministic_and_seeded():
    a, b, c = problems.mlp(seed=0), problems.mlp(seed=0), problems.mlp(seed=1)
    for k in a.data:
        assert np.array_equal(a.data[k], b.data[k])
    assert not np.array_equal(a.data["x"], c.data["x"])
    assert np.array_equal(problems.least_squares(3).data["A"], problems.least_squares(3).data["A"])
    # the quadratic's conditioning is what its docstring says
    eig = np.linalg.eigvalsh(problems.ill_conditioned().data["H"])
    np.testing.assert_allclose([eig.max(), eig.min()], [10.0, 1e-3], rtol=1e-10)


def test_problem_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="problem='quadratic'.*least_squares"):
        problems.get("quadratic")
    prob = problems.get("rosenbrock")
    with pytest.raises(ValueError, match="keys"):
        prob.grad({"w": np.zeros(2)})
    with pytest.raises(ValueError, match="shape"):
        prob.grad({"xy": np.zeros(3)})
    with pytest.raises(ValueError, match="float16"):
        prob.init_params(np.float16)
    with pytest.raises(ValueError, match="max_eig"):
        problems.ill_conditioned(max_eig=-1.0)


# -------------------------------------------------------------------- trajectories
def test_standard_schedule_is_warmup_then_cosine():
    lrs = standard_schedule(0.1, 60)
    w, t = 10, np.arange(60)
    expected = np.where(t < w, 0.1 * t / w, 0.05 * (1 + np.cos(np.pi * (t - w) / 50)))
    np.testing.assert_allclose(lrs, expected, rtol=1e-14, atol=0)
    assert lrs[0] == 0.0 and lrs[w] == pytest.approx(0.1) and np.all(lrs[1:] > 0)


def test_lr_values_accepts_schedules_sequences_numbers_and_rejects_bad_ones():
    assert np.array_equal(lr_values(lambda t: 0.5 * t, 3), [0.0, 0.5, 1.0])
    assert np.array_equal(lr_values([0.3, 0.2, 0.1, 9.0], 3), [0.3, 0.2, 0.1])
    assert np.array_equal(lr_values(0.25, 2), [0.25, 0.25])
    with pytest.raises(ValueError, match="at least steps=3"):
        lr_values([0.1, 0.2], 3)
    with pytest.raises(ValueError, match="step 1"):
        lr_values([0.1, -0.2, 0.1], 3)


def test_trajectory_equals_the_update_rules_written_out():
    """Independent of refplay.optim: SGD and momentum on least squares by hand."""
    prob = problems.get("least_squares")
    a, b, m = prob.data["A"], prob.data["b"], prob.data["A"].shape[0]
    lrs = standard_schedule(0.1, 55)
    sgd = trajectory("sgd", {}, lrs, prob, 55)
    mom = trajectory("momentum", {"gamma": 0.8}, lrs, prob, 55)
    w_sgd, w_mom, v = prob.theta0["w"].copy(), prob.theta0["w"].copy(), 0.0
    for t in range(55):
        w_sgd = w_sgd - lrs[t] * a.T @ (a @ w_sgd - b) / m
        v = 0.8 * v + a.T @ (a @ w_mom - b) / m
        w_mom = w_mom - lrs[t] * v
        np.testing.assert_allclose(sgd.params["w"][t + 1], w_sgd, rtol=0, atol=1e-14)
        np.testing.assert_allclose(mom.params["w"][t + 1], w_mom, rtol=0, atol=1e-14)
    assert sgd.params["w"].shape == (56, 5) and sgd.grads["w"].shape == (55, 5)
    assert np.array_equal(sgd.lrs, lrs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_trajectory_records_gradients_and_losses_at_each_iterate(dtype):
    tr = trajectory("adam", {"eps": 1e-2}, None, "mlp", 50, dtype)
    prob = problems.get("mlp")
    for t in (0, 17, 49):
        g = prob.grad(tr.at(t))
        for k in g:
            assert tr.params[k].dtype == dtype
            assert np.array_equal(tr.grads[k][t], g[k])
        assert tr.losses[t] == prob.loss(tr.at(t))
    assert tr.losses[-1] < 0.5 * tr.losses[0]            # the problem is actually optimized
    assert tr.dtype == np.dtype(dtype).name and tr.hparams["eps"] == 1e-2


def test_trajectory_is_bitwise_reproducible():
    a = trajectory("rmsprop", {"gamma": 0.9}, None, "rosenbrock", 60)
    b = trajectory("rmsprop", {"gamma": 0.9}, None, "rosenbrock", 60)
    assert np.array_equal(a.params["xy"], b.params["xy"])


def test_trajectory_rejects_unknown_rule_and_hparam():
    with pytest.raises(ValueError, match="optimizer='adamax'"):
        trajectory("adamax")
    with pytest.raises(ValueError, match="betas"):
        trajectory("adam", {"betas": (0.9, 0.999)})


# ------------------------------------------------------------------------- compare
def _adam_step(eps_after_bias_correction: bool, beta1=0.9, beta2=0.999, eps=1e-2):
    """A user's own Adam, written independently of refplay (closure state)."""
    state = {"t": 0, "m": None, "v": None}

    def step(params, grads, lr):
        if state["m"] is None:
            state["m"] = {k: np.zeros_like(v) for k, v in params.items()}
            state["v"] = {k: np.zeros_like(v) for k, v in params.items()}
        state["t"] += 1
        t, out = state["t"], {}
        for k in params:
            m = state["m"][k] = beta1 * state["m"][k] + (1 - beta1) * grads[k]
            v = state["v"][k] = beta2 * state["v"][k] + (1 - beta2) * grads[k] ** 2
            if eps_after_bias_correction:        # torch / optax form
                m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
                out[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
            else:                                # the playbook's ε-hat form
                b = math.sqrt(1 - beta2**t) / (1 - beta1**t)
                out[k] = params[k] - lr * b * m / (np.sqrt(v) + eps)
        return out

    return step


def test_compare_accepts_a_correct_implementation():
    rep = compare(_adam_step(False), "adam", {"eps": 1e-2}, problem="mlp", steps=60)
    assert rep.ok and rep.first_bad_step is None
    assert rep.max <= 1e-12 and rep.max_abs_diff.shape == (60,)
    assert "agrees" in str(rep)


def test_compare_reports_a_wrong_implementation_and_its_first_bad_step():
    rep = compare(_adam_step(True), "adam", {"eps": 1e-2}, problem="mlp", steps=60)
    assert not rep.ok and rep.max > 1e-3
    first = rep.first_bad_step
    assert rep.max_abs_diff[first] > rep.tol and np.all(rep.max_abs_diff[:first] <= rep.tol)
    # step 0 has η_0 = 0, so nothing can differ before update 1
    assert first == rep.first_step_with_lr == 1
    assert f"at update t={first} (the first with η > 0)" in str(rep)


def test_compare_pinpoints_the_step_where_a_bug_starts():
    opt = optim.get("momentum", gamma=0.9)
    box = {"state": None, "t": 0}

    def step(params, grads, lr):
        if box["state"] is None:
            box["state"] = opt.init(params)
        lr = lr * 1.001 if box["t"] >= 23 else lr          # a bug from update 23 on
        box["t"] += 1
        params, box["state"] = opt.update(params, grads, box["state"], lr)
        return params

    rep = compare(step, "momentum", {"gamma": 0.9}, problem="ill_conditioned", steps=50)
    assert rep.first_bad_step == 23
    assert np.all(rep.max_abs_diff[:23] == 0.0)


def test_compare_treats_nan_as_a_failure_and_checks_what_step_fn_returns():
    def nan_step(params, grads, lr):
        return {k: v - lr * g + (np.nan if lr > 0.05 else 0.0) for (k, v), g in
                zip(params.items(), grads.values())}

    rep = compare(nan_step, "sgd", problem="least_squares", steps=50)
    assert rep.max == math.inf
    assert rep.first_bad_step == int(np.argmax(rep.lrs > 0.05)) > 0   # the first NaN step
    with pytest.raises(TypeError, match="keys"):
        compare(lambda p, g, lr: {"nope": p["w"]}, "sgd", problem="least_squares")
    with pytest.raises(ValueError, match="shape"):
        compare(lambda p, g, lr: {"w": p["w"][:2]}, "sgd", problem="least_squares")
    with pytest.raises(TypeError, match="callable"):
        compare("sgd", "sgd")


def test_compare_accepts_reordered_keys_and_float32():
    opt = optim.get("nesterov", gamma=0.9)
    box = {}

    def step(params, grads, lr):
        box.setdefault("s", opt.init(params))
        new, box["s"] = opt.update(params, grads, box["s"], lr)
        return dict(reversed(list(new.items())))           # as jax returns sorted keys

    rep = compare(step, "nesterov", {"gamma": 0.9}, problem="mlp", dtype=np.float32)
    assert rep.dtype == "float32" and rep.tol == 1e-4
    assert rep.ok and 1e-9 < rep.max < 1e-5               # float32 rounding, visible but small


# -------------------------------------------------------------------------- golden
def test_golden_export_round_trips_and_replays(tmp_path):
    path = golden.export(tmp_path, steps=50, rows=["nadam", "momentum"],
                         problems=["mlp", "rosenbrock"])
    manifest = golden.load_manifest(tmp_path)
    assert path == tmp_path / "manifest.json"
    assert manifest["format"] == golden.FORMAT and manifest["format_version"] == 2
    # (nadam at 2 ε + momentum) × 2 problems × 2 dtypes
    assert len(manifest["cases"]) == (2 + 1) * 2 * 2
    for entry in manifest["cases"]:
        case = golden.load_case(tmp_path / entry["json"])
        arrays = np.load(tmp_path / entry["npz"], allow_pickle=False)
        rule, hp = row_hparams(entry["row"], entry["eps"])
        fresh = trajectory(rule, hp, case["lr"], entry["problem"], 50, entry["dtype"])
        assert case["id"] == entry["id"] and case["hparams"] == fresh.hparams
        assert np.array_equal(case["lr"], arrays["lr"])
        assert np.array_equal(case["losses"], arrays["losses"])
        for k, v in fresh.params.items():
            assert case["params"][k].dtype == np.dtype(entry["dtype"])
            assert np.array_equal(case["params"][k], v)                  # JSON is exact
            assert np.array_equal(arrays[f"params/{k}"], v)              # and so is .npz
            assert np.array_equal(case["grads"][k], fresh.grads[k])
        prob = problems.get(entry["problem"])
        for k, v in prob.data.items():
            assert np.array_equal(case["problem"]["data"][k], v)
        # the documented use: feed the recorded gradients, reproduce the parameters
        opt = optim.get(case["rule"], **case["hparams"])
        params = {k: v[0] for k, v in case["params"].items()}
        state = opt.init(params)
        for t in range(case["steps"]):
            params, state = opt.update(params, {k: g[t] for k, g in case["grads"].items()},
                                       state, case["lr"][t])
            for k in params:
                assert np.array_equal(params[k], case["params"][k][t + 1])


def test_golden_is_versioned(tmp_path):
    golden.export(tmp_path, steps=50, rows=["sgd"], problems=["rosenbrock"], dtypes=["float64"])
    case_path = tmp_path / "cases" / "sgd-rosenbrock-float64.json"
    case = json.loads(case_path.read_text())
    case["format_version"] = 3
    case_path.write_text(json.dumps(case))
    with pytest.raises(ValueError, match="format_version=3"):
        golden.load_case(case_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a refplay-oracle-golden"):
        golden.load_manifest(tmp_path)
    with pytest.raises(ValueError, match="row='lion'"):
        golden.export(tmp_path, rows=["lion"])


def test_every_table_row_has_hparams_for_each_eps():
    for name in ROW_NAMES:
        for eps in eps_values(name):
            rule, hp = row_hparams(name, eps)
            optim.get(rule, **hp)                    # valid for refplay
            assert ("eps" in hp) == (eps is not None)


# ----------------------------------------------------------------- docs/oracle.md
DOCS = Path(__file__).resolve().parents[1] / "docs" / "oracle.md"
_DOC_RULES = {"SGD": "sgd", "Momentum": "momentum", "Nesterov": "nesterov", "RMSProp": "rmsprop",
              "Adam": "adam", "NAdam": "nadam", "Adam + L2": "adam+l2", "AdamW": "adamw"}
_DOC_FRAMEWORKS = {"torch": "torch", "optax": "optax", "Keras 3": "keras"}


def _markdown_table(text: str, heading: str) -> list[list[str]]:
    """The first table after ``heading``: its rows (header first) as lists of cells."""
    lines = text[text.index(heading):].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not set("".join(cells)) <= set("- :"):             # skip the --- separator
            rows.append(cells)
    return rows


def test_docs_table_is_the_tested_table():
    """Every cell of docs/oracle.md's table states the verdict of the row that
    tests/test_oracle_frameworks.py::test_table_cell runs, and every row is there."""
    header, *body = _markdown_table(DOCS.read_text(), "## The table")
    assert header[0] == "rule"
    frameworks_in_doc = [_DOC_FRAMEWORKS[h] for h in header[1:]]
    assert sorted(frameworks_in_doc) == sorted(FRAMEWORKS)
    seen = set()
    for cells in body:
        label = cells[0].split(" (")[0]                         # "Adam + L2 (`...`)"
        name = _DOC_RULES[label]
        for fw, cell in zip(frameworks_in_doc, cells[1:]):
            verdict = cell.replace("**", "").split(":")[0].strip()
            row = next(r for r in rows(fw) if r.name == name)
            assert verdict == row.verdict, f"docs say {fw} · {name}: {verdict!r}, " \
                                           f"the tested row says {row.verdict!r}"
            seen.add((fw, name))
    assert seen == {(fw, name) for fw in FRAMEWORKS for name in ROW_NAMES}


def test_docs_detail_every_cell():
    """Each rule's section of docs/oracle.md has a line (configuration and measured
    numbers) for each framework."""
    text = DOCS.read_text()
    sections = {"sgd": "### SGD", "momentum": "### Momentum", "nesterov": "### Nesterov",
                "rmsprop": "### RMSProp", "adam": "### Adam", "nadam": "### NAdam"}
    for name, heading in sections.items():
        table = _markdown_table(text, heading)
        assert {r[0] for r in table[1:] if r[0]} >= {"torch", "optax", "Keras"}, name
    weight_decay = _markdown_table(text, "### Weight decay")
    assert {(r[0], r[1]) for r in weight_decay[1:]} == {
        (row, fw) for row in ("Adam + L2", "AdamW") for fw in ("torch", "optax", "Keras")}


# ----------------------------------------------------------------------------- CLI
def test_cli_export(tmp_path, capsys):
    code = main(["oracle", "export", "--out", str(tmp_path), "--steps", "50",
                 "--problems", "rosenbrock", "--dtypes", "float64"])
    assert code == 0
    assert "wrote 13 cases" in capsys.readouterr().out     # 3 rules without ε + 5 rows × 2 ε
    assert len(golden.load_manifest(tmp_path)["cases"]) == 13


def test_cli_rejects_unknown_framework(capsys):
    assert main(["oracle", "check", "jaxopt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("refplay: error: target='jaxopt'")
    assert "MODULE:FUNCTION" in err[0]


# ------------------------------------------------------------------ a framework not installed
@pytest.mark.parametrize("framework, module", [("torch", "torch"), ("optax", "optax"),
                                               ("optax", "jax"), ("keras", "keras")])
def test_check_without_the_framework_says_which_extra_to_install(framework, module, monkeypatch,
                                                                 capsys):
    """``refplay oracle check torch`` without torch: one plain line naming the extra, exit 2."""
    import importlib.util
    import re
    import sys
    monkeypatch.setitem(sys.modules, module, None)       # import of `module` now fails
    assert main(["oracle", "check", framework]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("refplay: error: ")
    named = re.search(r"checks need (\w+), which is not installed", lines[0])
    assert named, lines[0]
    # the module named is one that really cannot be imported (jax may be missing before optax)
    assert named.group(1) == module or importlib.util.find_spec(named.group(1)) is None
    assert "pip install -e '.[oracle]'" in lines[0] and "torch==2.13.0" in lines[0]
    assert "Traceback" not in captured.err
    assert captured.out == ""                             # no header printed before the error
