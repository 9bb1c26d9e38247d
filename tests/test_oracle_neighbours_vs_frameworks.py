"""The neighbour forms against the frameworks they name, in float64.

Each framework optimizer runs *as is* (no edits); it must agree with its
named neighbour form to ≤ 1e-12 (``compare(..., form=...)``), and the
diagnosis of the same run against the playbook's rule must name that form.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

from refplay.oracle import compare, frameworks, neighbours
from tests.helpers import optional_import

os.environ.setdefault("KERAS_BACKEND", "jax")

TOL = frameworks.MATCH_TOL
PROBLEMS = ("mlp", "ill_conditioned")          # four leaves; and the one showing ε at 1e-8


# ------------------------------------------------------------------ step functions
def _torch_step(make, params0):
    """A torch.optim optimizer as a step function, float64 scalars included."""
    torch = optional_import("torch")
    ps = {k: torch.tensor(v) for k, v in params0.items()}

    @contextlib.contextmanager
    def f64():
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            yield
        finally:
            torch.set_default_dtype(old)

    with f64():
        opt = make(torch, list(ps.values()))

    def step(params, grads, lr):
        for k, p in ps.items():
            p.grad = torch.from_numpy(np.ascontiguousarray(grads[k]))
        opt.param_groups[0]["lr"] = lr
        with f64(), torch.no_grad():
            opt.step()
        return {k: p.detach().numpy().copy() for k, p in ps.items()}

    return step


def _optax_step(make, params0):
    """An optax transformation (built with inject_hyperparams) under jax x64."""
    jax, optax = optional_import("jax"), optional_import("optax")
    with jax.enable_x64(True):
        box = {"p": {k: jax.numpy.asarray(v) for k, v in params0.items()}}
        tx = optax.inject_hyperparams(make(optax))(learning_rate=0.0)
        box["s"] = tx.init(box["p"])

    def step(params, grads, lr):
        with jax.enable_x64(True):
            box["s"].hyperparams["learning_rate"] = lr
            g = {k: jax.numpy.asarray(v) for k, v in grads.items()}
            updates, box["s"] = tx.update(g, box["s"], box["p"])
            box["p"] = optax.apply_updates(box["p"], updates)
            return {k: np.array(box["p"][k]) for k in params0}

    return step


def _keras_step(make, params0):
    """A Keras 3 optimizer (jax backend) in float64: floatx and x64 for each step."""
    jax, keras = optional_import("jax"), optional_import("keras")
    keys = list(params0)

    @contextlib.contextmanager
    def f64():
        old = keras.config.floatx()
        keras.config.set_floatx("float64")
        try:
            with jax.enable_x64(True):
                yield
        finally:
            keras.config.set_floatx(old)

    with f64():
        vs = [keras.Variable(params0[k], dtype="float64", name=f"p{i}")
              for i, k in enumerate(keys)]
        opt = make(keras)
        opt.build(vs)

    def step(params, grads, lr):
        with f64():
            opt.learning_rate = lr
            opt.apply([grads[k] for k in keys], vs)
            return {k: np.array(v.value) for k, v in zip(keys, vs)}

    return step


def _check(build, rule, hp, form, problem):
    """The framework run agrees with ``form`` and is diagnosed as ``form``."""
    from refplay.oracle import problems
    prob = problems.get(problem)
    as_form = compare(build(prob.init_params()), rule, hp, problem=prob, form=form, tol=TOL)
    assert as_form.ok, str(as_form)
    vs_playbook = compare(build(prob.init_params()), rule, hp, problem=prob, tol=TOL)
    assert not vs_playbook.ok and vs_playbook.diagnosis.found, str(vs_playbook)
    assert vs_playbook.diagnosis.names == [neighbours.get_form(rule, form).name], \
        str(vs_playbook)
    return vs_playbook


EPS = (1e-8, 1e-2)


# ---------------------------------------------------------------------- torch
@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_torch_adam_as_is_is_the_torch_form(eps, problem):
    hp = {"beta1": 0.9, "beta2": 0.999, "eps": eps}
    rep = _check(lambda p0: _torch_step(lambda torch, ps: torch.optim.Adam(
        ps, lr=0.0, betas=(0.9, 0.999), eps=eps, foreach=False), p0),
        "adam", hp, "torch", problem)
    assert "the torch/optax form" in str(rep) and "eps=0" in str(rep)


@pytest.mark.parametrize("mode, cls", [("l2", "Adam"), ("decoupled", "AdamW")])
def test_torch_adam_weight_decay_l2_and_adamw_are_the_torch_form(mode, cls):
    hp = {"eps": 1e-2, "weight_decay": 0.1, "weight_decay_mode": mode}

    def build(p0, cls=cls):
        return _torch_step(lambda torch, ps: getattr(torch.optim, cls)(
            ps, lr=0.0, eps=1e-2, weight_decay=0.1, foreach=False), p0)

    _check(build, "adam", hp, "torch", "mlp")
    # against the torch form with the other kind of weight decay, the diagnosis names it
    from refplay.oracle import problems
    prob = problems.get("mlp")
    other = "decoupled" if mode == "l2" else "l2"
    rep = compare(build(prob.init_params()), "adam", {**hp, "weight_decay_mode": other},
                  problem=prob, form="torch")
    assert not rep.ok and rep.diagnosis.matches
    assert rep.diagnosis.matches[0].candidate.hparams["weight_decay_mode"] == mode, str(rep)
    assert "instead of" in str(rep) and "weight decay" in str(rep)


@pytest.mark.parametrize("gamma", [0.0, 0.9])
@pytest.mark.parametrize("eps", EPS)
def test_torch_rmsprop_as_is_is_the_torch_form(gamma, eps):
    hp = {"rho": 0.9, "gamma": gamma, "eps": eps}
    _check(lambda p0: _torch_step(lambda torch, ps: torch.optim.RMSprop(
        ps, lr=0.0, alpha=0.9, eps=eps, momentum=gamma, foreach=False), p0),
        "rmsprop", hp, "torch", "mlp")


@pytest.mark.parametrize("eps", EPS)
def test_torch_nadam_as_is_is_dozats_form(eps):
    hp = {"beta1": 0.9, "beta2": 0.999, "eps": eps}
    _check(lambda p0: _torch_step(lambda torch, ps: torch.optim.NAdam(
        ps, lr=0.0, eps=eps, foreach=False), p0), "nadam", hp, "torch", "mlp")


def test_torch_nadam_momentum_decay_is_the_forms_extra_hparam():
    from refplay.oracle import problems
    prob = problems.get("mlp")
    step = _torch_step(lambda torch, ps: torch.optim.NAdam(
        ps, lr=0.0, momentum_decay=0.05, foreach=False), prob.init_params())
    rep = compare(step, "nadam", {"momentum_decay": 0.05}, problem=prob, form="dozat", tol=TOL)
    assert rep.ok and rep.hparams["momentum_decay"] == 0.05, str(rep)


def test_torch_sgd_dampening_is_the_dampened_form():
    _check(lambda p0: _torch_step(lambda torch, ps: torch.optim.SGD(
        ps, lr=0.0, momentum=0.9, dampening=0.9, foreach=False), p0),
        "momentum", {"gamma": 0.9}, "dampened", "mlp")


# ---------------------------------------------------------------------- optax
@pytest.mark.parametrize("eps", EPS)
def test_optax_adam_as_is_is_the_torch_form(eps):
    _check(lambda p0: _optax_step(lambda optax: lambda learning_rate: optax.adam(
        learning_rate, b1=0.9, b2=0.999, eps=eps), p0),
        "adam", {"eps": eps}, "optax", "ill_conditioned")


@pytest.mark.parametrize("eps", EPS)
def test_optax_rmsprop_as_is_is_the_v0_zero_form(eps):
    hp = {"rho": 0.9, "gamma": 0.9, "eps": eps}
    _check(lambda p0: _optax_step(lambda optax: lambda learning_rate: optax.rmsprop(
        learning_rate, decay=0.9, eps=eps, momentum=0.9), p0), "rmsprop", hp, "optax", "mlp")


def test_optax_rmsprop_eps_outside_the_root_is_that_form():
    hp = {"rho": 0.9, "gamma": 0.0, "eps": 1e-2}
    _check(lambda p0: _optax_step(lambda optax: lambda learning_rate: optax.rmsprop(
        learning_rate, decay=0.9, eps=1e-2, initial_scale=1.0, eps_in_sqrt=False), p0),
        "rmsprop", hp, "eps_outside_sqrt", "mlp")


@pytest.mark.parametrize("eps", EPS)
def test_optax_nadam_as_is_is_the_optax_form(eps):
    _check(lambda p0: _optax_step(lambda optax: lambda learning_rate: optax.nadam(
        learning_rate, b1=0.9, b2=0.999, eps=eps), p0), "nadam", {"eps": eps}, "optax", "mlp")


# ---------------------------------------------------------------------- Keras
@pytest.mark.parametrize("rule, nesterov", [("momentum", False), ("nesterov", True)])
def test_keras_sgd_momentum_as_is_is_the_keras_form(rule, nesterov):
    _check(lambda p0: _keras_step(lambda keras: keras.optimizers.SGD(
        learning_rate=0.0, momentum=0.9, nesterov=nesterov), p0),
        rule, {"gamma": 0.9}, "keras", "mlp")


def test_keras_rmsprop_as_is_is_the_v0_zero_form():
    _check(lambda p0: _keras_step(lambda keras: keras.optimizers.RMSprop(
        learning_rate=0.0, rho=0.9, momentum=0.9, epsilon=1e-2), p0),
        "rmsprop", {"rho": 0.9, "gamma": 0.9, "eps": 1e-2}, "keras", "mlp")
