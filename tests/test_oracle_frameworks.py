"""The rule × framework table of docs/oracle.md, checked against real torch, optax and Keras.

Every row: the stated configuration agrees with the playbook rule to ≤ 1e-12 in
float64 (warmup-then-cosine learning rate, 60 steps, ε ∈ {1e-8, 1e-2}), and
every control — the framework's default, or the stated edit with one piece
left out — differs by more than 1e-9, so a wrong "matches" cannot pass.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from refplay.oracle import compare, frameworks, problems, standard_schedule, trajectory
from tests.helpers import optional_import

os.environ.setdefault("KERAS_BACKEND", "jax")

# The CLI runs all four problems; two (one of them with four leaves) keep CI fast.
# ill_conditioned shows every control, even ε placement at ε = 1e-8 (Rosenbrock's
# gradients of ~100 hide that one: max|Δθ| ≈ 1e-10 there).
MATCH_PROBLEMS = ("mlp", "ill_conditioned")
CONTROL_PROBLEMS = ("ill_conditioned",)
_MODULES = {"torch": ("torch",), "optax": ("jax", "optax"), "keras": ("jax", "keras")}


def _require(framework):
    for name in _MODULES[framework]:
        optional_import(name)


def _row(framework, name):
    return next(r for r in frameworks.rows(framework) if r.name == name)


CELLS = [(fw, name) for fw in frameworks.FRAMEWORKS for name in frameworks.ROW_NAMES]


def test_a_missing_framework_fails_under_ci_and_skips_locally(monkeypatch):
    """The mechanism that makes every test below fail, not skip, in CI (``.ci/run``
    sets REFPLAY_REQUIRE_OPTIONAL=1) when torch, jax, optax or Keras is missing."""
    missing = "refplay_no_such_framework"
    monkeypatch.setenv("REFPLAY_REQUIRE_OPTIONAL", "1")
    with pytest.raises(pytest.fail.Exception, match="required under CI"):
        optional_import(missing)
    monkeypatch.delenv("REFPLAY_REQUIRE_OPTIONAL")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        optional_import(missing)


@pytest.mark.parametrize("framework,name", CELLS, ids=[f"{f}-{n}" for f, n in CELLS])
def test_table_cell(framework, name):
    _require(framework)
    row = _row(framework, name)
    res = frameworks.run_row(row, problems=MATCH_PROBLEMS, control_problems=CONTROL_PROBLEMS)
    assert set(res.match) == (set(row.eps_values) if row.match is not None else set())
    for eps, d in res.match.items():
        assert d <= frameworks.MATCH_TOL, f"{row.match.label} at eps={eps}: max|Δθ| = {d:.3e}"
    assert row.controls, "every row needs a control"
    for label, per_eps in res.controls.items():
        for eps, d in per_eps.items():
            assert d > frameworks.CONTROL_MIN, f"control {label!r} at eps={eps} did not differ"
    if row.verdict == "no configuration matches":
        assert row.match is None
        # the closest configuration is still far off: order-1e-2 differences in θ
        assert min(min(d.values()) for d in res.controls.values()) > 1e-3
    else:
        assert row.match is not None and res.ok


@pytest.mark.parametrize("framework", frameworks.FRAMEWORKS)
def test_float32_matching_configs_stay_near_the_float64_reference(framework):
    _require(framework)
    for row in frameworks.rows(framework):
        if row.match is None:
            continue
        res = frameworks.run_row(row, problems=("ill_conditioned",), dtype=np.float32)
        assert res.controls == {}
        for eps, d in res.match.items():
            assert 0.0 < d <= frameworks.FLOAT32_TOL, f"{row.name} eps={eps}: {d:.3e}"


# ------------------------------------------------- the claims, one by one
def test_keras_momentum_matches_as_is_only_at_constant_lr():
    _require("keras")
    for name in ("momentum", "nesterov"):
        row = _row("keras", name)
        as_is = row.controls[0]
        assert "(as is)" in as_is.label
        rule, hp = frameworks.row_hparams(name, None)
        prob = problems.get("mlp")
        const = compare(as_is.build(prob.init_params(), hp, np.dtype(np.float64)), rule, hp,
                        lr_schedule=0.05, problem=prob, steps=50)
        assert const.ok, str(const)


def test_keras_buffer_rescale_works_while_every_lr_is_positive():
    """The rescale m *= η_t/η_{t-1} is exact when η_0 > 0 (here: the schedule shifted
    by one step); with η_0 = 0 it fails (the table's control shows that)."""
    _require("keras")
    row = _row("keras", "momentum")
    rescale = row.controls[1]
    assert "η_t/η_{t−1}" in rescale.label
    rule, hp = frameworks.row_hparams("momentum", None)
    prob = problems.get("mlp")
    shifted = standard_schedule(prob.base_lr[rule], 61)[1:]
    assert np.all(shifted > 0)
    rep = compare(rescale.build(prob.init_params(), hp, np.dtype(np.float64)), rule, hp,
                  lr_schedule=shifted, problem=prob, steps=60)
    assert rep.max <= frameworks.MATCH_TOL, str(rep)


def test_torch_rmsprop_at_eps_0_needs_exactly_two_state_edits():
    """The issue's statement: with ε = 0 (torch eps=0), v_0 ← 1 and the momentum
    rescale suffice; dropping either breaks it."""
    _require("torch")
    row = _row("torch", "rmsprop")
    by_label = {s.label: s for s in row.controls}
    two_edits = row.match                                 # at ε = 0 the ε edit adds 0
    assert frameworks.run_setup(two_edits, row, 0.0, "mlp").max <= frameworks.MATCH_TOL
    for label in ("edits without square_avg ← 1 (torch's v_0 = 0)",
                  "edits without momentum_buffer ← η_{t−1}/η_t · buffer"):
        assert frameworks.run_setup(by_label[label], row, 0.0, "mlp").max > 1e-3


def test_torch_rmsprop_edit_refuses_a_zero_lr_after_step_0():
    _require("torch")
    row = _row("torch", "rmsprop")
    rule, hp = frameworks.row_hparams("rmsprop", 1e-8)
    prob = problems.get("rosenbrock")
    step = row.match.build(prob.init_params(), hp, np.dtype(np.float64))
    with pytest.raises(ValueError, match="lr=0 after step 0"):
        compare(step, rule, hp, lr_schedule=[0.01, 0.0, 0.01], problem=prob, steps=3)


# ------------------------------------------------------------- float64 pitfalls
def test_torch_nadam_keeps_mu_product_in_the_default_dtype():
    torch = optional_import("torch")
    prob = problems.get("mlp")
    lrs = standard_schedule(prob.base_lr["nadam"], 60)

    def run(default_dtype):
        old = torch.get_default_dtype()
        torch.set_default_dtype(default_dtype)
        try:
            ps = {k: torch.tensor(v) for k, v in prob.init_params().items()}
            opt = torch.optim.NAdam(list(ps.values()), lr=0.0, foreach=False)
            for t in range(60):
                g = prob.grad({k: p.detach().numpy() for k, p in ps.items()})
                for k, p in ps.items():
                    p.grad = torch.from_numpy(g[k])
                opt.param_groups[0]["lr"] = float(lrs[t])
                opt.step()
        finally:
            torch.set_default_dtype(old)
        state = opt.state[ps["dense_1/w"]]
        return {k: p.detach().numpy() for k, p in ps.items()}, state["mu_product"].dtype

    p32, mu32 = run(torch.float32)
    p64, mu64 = run(torch.float64)
    assert (mu32, mu64) == (torch.float32, torch.float64)
    assert p32["dense_1/w"].dtype == np.float64              # the parameters are float64 ...
    diff = max(np.abs(p32[k] - p64[k]).max() for k in p64)
    assert diff > frameworks.MATCH_TOL                         # ... but the run is not


def test_optax_without_x64_silently_computes_in_float32():
    jax, optax = optional_import("jax"), optional_import("optax")
    prob = problems.get("mlp")
    params = prob.init_params()                                  # float64 numpy
    tx = optax.sgd(0.1)
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        updates, _ = tx.update(prob.grad(params), tx.init(params), params)
        new = optax.apply_updates(params, updates)
    assert np.asarray(new["dense_1/w"]).dtype == np.float32


def test_keras_float64_needs_floatx_and_x64():
    jax, keras = optional_import("jax"), optional_import("keras")
    prob = problems.get("mlp")
    rule, hp = "adam", {"eps": 1e-8}
    ref = trajectory(rule, hp, None, prob, 60)
    old = keras.config.floatx()
    try:
        results = {}
        for floatx, x64 in (("float64", True), ("float32", True), ("float64", False)):
            keras.config.set_floatx(floatx)
            with jax.enable_x64(x64), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vs = [keras.Variable(v, dtype="float64", name=f"p{i}")
                      for i, v in enumerate(prob.init_params().values())]
                opt = keras.optimizers.Adam(learning_rate=0.0, epsilon=1e-8)
                for t in range(60):
                    g = prob.grad(dict(zip(prob.theta0, (np.asarray(v.value) for v in vs))))
                    opt.learning_rate = float(ref.lrs[t])
                    opt.apply(list(g.values()), vs)
                results[floatx, x64] = (
                    max(np.abs(np.asarray(v.value, np.float64) - ref.params[k][-1]).max()
                        for k, v in zip(prob.theta0, vs)),
                    np.asarray(vs[0].value).dtype, opt.learning_rate.dtype)
    finally:
        keras.config.set_floatx(old)
    assert results["float64", True][0] <= frameworks.MATCH_TOL
    # floatx float32: the learning rate variable is float32 → visible difference
    assert results["float32", True][2] == "float32"
    assert results["float32", True][0] > frameworks.MATCH_TOL
    # no x64: the variable says float64, its array is float32
    assert results["float64", False][1] == np.float32
    assert results["float64", False][0] > 1e-7


def test_cli_check_prints_the_table(capsys):
    _require("torch")
    from refplay.cli import main
    code = main(["oracle", "check", "torch", "--problems", "ill_conditioned", "mlp"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "8/8 rows as stated" in out and "torch · rmsprop: MATCHES WITH EDIT" in out
    assert "NO CONFIGURATION MATCHES" in out
