"""Tests for the playbook's update rules (``refplay.optim``).

The first part checks each rule against the playbook's equations computed by
hand: scalar Python-float arithmetic, one coordinate at a time, written
directly from the FAQ "What are the update rules for all the popular
optimization algorithms?" -- never by calling the implementation. The problem
is the quadratic ``l(θ) = ½ Σ c_i θ_i²`` (so ``∇l = c θ``) with a learning rate
that changes every step.

The second part holds property tests (hypothesis): dtypes, save/restore,
validation, and the identities that follow from the equations.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refplay import io, optim
from refplay import tree as tree_lib

# ----------------------------------------------------------------- tiny problem
THETA0 = {"w": [1.0, -2.0], "b": [0.5]}   # two leaves, three coordinates
CURV = {"w": [3.0, 0.5], "b": [-1.0]}     # c_i of l(θ) = ½ Σ c_i θ_i²
LRS = [0.1, 0.05, 0.2]                    # η_0, η_1, η_2: a time-varying learning rate
EXACT = 1e-15                             # "asserted exactly": |got − want| ≤ 1e-15


def _params(dtype=np.float64):
    return {k: np.array(v, dtype=dtype) for k, v in THETA0.items()}


def _grads(params):
    return {k: np.asarray(CURV[k], dtype=p.dtype) * p for k, p in params.items()}


def _run(opt, lrs=LRS, params=None):
    """Run ``opt`` on the quadratic; return θ after each step (a list of trees)."""
    params = _params() if params is None else params
    state = opt.init(params)
    thetas = []
    for lr in lrs:
        params, state = opt.update(params, _grads(params), state, lr)
        thetas.append(params)
    return thetas


def _by_hand(rule_for_one_coordinate, lrs=LRS):
    """Apply a scalar hand-written rule to every coordinate; same layout as :func:`_run`."""
    per_key = {k: [rule_for_one_coordinate(th, c, lrs) for th, c in zip(THETA0[k], CURV[k])]
               for k in THETA0}
    return [{k: [coords[t] for coords in per_key[k]] for k in THETA0} for t in range(len(lrs))]


def _assert_exact(got_steps, want_steps):
    assert len(got_steps) == len(want_steps)
    for t, (got, want) in enumerate(zip(got_steps, want_steps)):
        for k in want:
            assert got[k].dtype == np.float64
            for i, w in enumerate(want[k]):
                g = float(got[k][i])
                assert abs(g - w) <= EXACT, f"step {t + 1}, {k}[{i}]: got {g!r}, by hand {w!r}"


def _max_diff(a_steps, b_steps):
    return max(abs(float(a[k][i]) - float(b[k][i]))
               for a, b in zip(a_steps, b_steps) for k in a for i in range(len(a[k])))


# ------------------------------------------------- hand computations, one scalar
# Each function follows the playbook's equations literally for one coordinate θ
# with gradient ∇l(θ) = c θ and returns [θ_1, θ_2, θ_3].

def hand_sgd(theta, c, lrs):
    out = []
    for lr in lrs:
        g = c * theta
        theta = theta - lr * g                       # θ_{t+1} = θ_t − η_t ∇l(θ_t)
        out.append(theta)
    return out


def hand_momentum(theta, c, lrs, gamma=0.9):
    v, out = 0.0, []                                 # v_0 = 0
    for lr in lrs:
        g = c * theta
        v = gamma * v + g                            # v_{t+1} = γ v_t + ∇l(θ_t)
        theta = theta - lr * v                       # θ_{t+1} = θ_t − η_t v_{t+1}
        out.append(theta)
    return out


def hand_nesterov(theta, c, lrs, gamma=0.9):
    v, out = 0.0, []                                 # v_0 = 0
    for lr in lrs:
        g = c * theta
        v = gamma * v + g                            # v_{t+1} = γ v_t + ∇l(θ_t)
        theta = theta - lr * (gamma * v + g)         # θ_{t+1} = θ_t − η_t (γ v_{t+1} + ∇l(θ_t))
        out.append(theta)
    return out


def hand_rmsprop(theta, c, lrs, rho=0.9, gamma=0.9, eps=1e-2):
    v, m, out = 1.0, 0.0, []                         # v_0 = 1, m_0 = 0
    for lr in lrs:
        g = c * theta
        v = rho * v + (1 - rho) * g * g              # v_{t+1} = ρ v_t + (1 − ρ) ∇l²
        m = gamma * m + lr / math.sqrt(v + eps) * g  # m_{t+1} = γ m_t + η_t/√(v_{t+1} + ε) ∇l
        theta = theta - m                            # θ_{t+1} = θ_t − m_{t+1}
        out.append(theta)
    return out


def hand_adam(theta, c, lrs, beta1=0.9, beta2=0.999, eps=1e-8, nesterov=False):
    m, v, out = 0.0, 0.0, []                         # m_0 = 0, v_0 = 0
    for t, lr in enumerate(lrs):
        g = c * theta
        m = beta1 * m + (1 - beta1) * g              # m_{t+1} = β1 m_t + (1 − β1) ∇l
        v = beta2 * v + (1 - beta2) * g * g          # v_{t+1} = β2 v_t + (1 − β2) ∇l²
        b = math.sqrt(1 - beta2 ** (t + 1)) / (1 - beta1 ** (t + 1))   # b_{t+1}
        num = beta1 * m + (1 - beta1) * g if nesterov else m           # NAdam's numerator
        theta = theta - lr * num / (math.sqrt(v) + eps) * b
        out.append(theta)
    return out


# ------------------------------------------------------ each rule, three steps
def test_sgd_first_three_steps_by_hand():
    _assert_exact(_run(optim.sgd()), _by_hand(hand_sgd))
    # One coordinate written out in full: θ = 1, c = 3.
    # θ1 = 1 − 0.1·3 = 0.7; θ2 = 0.7 − 0.05·2.1 = 0.595; θ3 = 0.595 − 0.2·1.785 = 0.238
    assert _run(optim.sgd())[2]["w"][0] == pytest.approx(0.238, abs=1e-15)


def test_momentum_first_three_steps_by_hand():
    _assert_exact(_run(optim.momentum(gamma=0.9)), _by_hand(hand_momentum))
    # θ = 1, c = 3: v1 = 3, θ1 = 0.7; v2 = 2.7 + 2.1 = 4.8, θ2 = 0.7 − 0.05·4.8 = 0.46
    assert _run(optim.momentum(gamma=0.9))[1]["w"][0] == pytest.approx(0.46, abs=1e-15)


def test_nesterov_first_three_steps_by_hand():
    _assert_exact(_run(optim.nesterov(gamma=0.9)), _by_hand(hand_nesterov))
    # θ = 1, c = 3: v1 = 3, θ1 = 1 − 0.1·(2.7 + 3) = 0.43
    assert _run(optim.nesterov(gamma=0.9))[0]["w"][0] == pytest.approx(0.43, abs=1e-15)


def test_rmsprop_first_three_steps_by_hand_with_lr_inside_the_buffer():
    opt = optim.rmsprop(rho=0.9, gamma=0.9, eps=1e-2)
    got = _run(opt)
    _assert_exact(got, _by_hand(hand_rmsprop))

    # The playbook puts η_t inside the momentum buffer. With a time-varying η_t
    # that is not the same as the common "lr outside the buffer" form
    # m ← γ m + ∇l/√(v + ε), θ ← θ − η_t m (torch.optim.RMSprop's placement).
    def lr_outside(theta, c, lrs, rho=0.9, gamma=0.9, eps=1e-2):
        v, m, out = 1.0, 0.0, []
        for lr in lrs:
            g = c * theta
            v = rho * v + (1 - rho) * g * g
            m = gamma * m + g / math.sqrt(v + eps)
            theta = theta - lr * m
            out.append(theta)
        return out

    assert _max_diff(got, _by_hand(lr_outside)) > 1e-3
    # With a constant η the two placements coincide (up to rounding):
    const = [0.1, 0.1, 0.1]
    assert _max_diff(_run(opt, const), _by_hand(lr_outside, const)) < 1e-14

    # ε sits inside the square root, not beside it.
    def eps_outside(theta, c, lrs, rho=0.9, gamma=0.9, eps=1e-2):
        v, m, out = 1.0, 0.0, []
        for lr in lrs:
            g = c * theta
            v = rho * v + (1 - rho) * g * g
            m = gamma * m + lr / (math.sqrt(v) + eps) * g
            theta = theta - m
            out.append(theta)
        return out

    assert _max_diff(got, _by_hand(eps_outside)) > 1e-4


def test_rmsprop_starts_with_v_equal_one():
    state = optim.rmsprop().init(_params())
    np.testing.assert_array_equal(state.slots["v"]["w"], [1.0, 1.0])
    np.testing.assert_array_equal(state.slots["m"]["w"], [0.0, 0.0])


@pytest.mark.parametrize("eps", [1e-8, 0.3])
def test_adam_first_three_steps_by_hand(eps):
    got = _run(optim.adam(beta1=0.9, beta2=0.999, eps=eps))
    _assert_exact(got, _by_hand(lambda th, c, lrs: hand_adam(th, c, lrs, eps=eps)))


def test_adam_eps_hat_differs_from_eps_after_bias_correction():
    eps = 0.3  # not tiny, so the placement matters
    got = _run(optim.adam(beta1=0.9, beta2=0.999, eps=eps))

    def eps_after_correction(theta, c, lrs, beta1=0.9, beta2=0.999):
        # torch.optim.Adam / optax.adam: m̂ = m/(1 − β1^{t+1}), v̂ = v/(1 − β2^{t+1}),
        # θ ← θ − η m̂ / (√v̂ + ε)
        m, v, out = 0.0, 0.0, []
        for t, lr in enumerate(lrs):
            g = c * theta
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            m_hat = m / (1 - beta1 ** (t + 1))
            v_hat = v / (1 - beta2 ** (t + 1))
            theta = theta - lr * m_hat / (math.sqrt(v_hat) + eps)
            out.append(theta)
        return out

    assert _max_diff(got, _by_hand(eps_after_correction)) > 1e-2
    # ...and the two agree when the framework's ε' is ε / √(1 − β2^{t+1}) at each step,
    # as the adam docstring says.
    def eps_rescaled(theta, c, lrs, beta1=0.9, beta2=0.999):
        m, v, out = 0.0, 0.0, []
        for t, lr in enumerate(lrs):
            g = c * theta
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            m_hat = m / (1 - beta1 ** (t + 1))
            v_hat = v / (1 - beta2 ** (t + 1))
            eps_prime = eps / math.sqrt(1 - beta2 ** (t + 1))
            theta = theta - lr * m_hat / (math.sqrt(v_hat) + eps_prime)
            out.append(theta)
        return out

    assert _max_diff(got, _by_hand(eps_rescaled)) < 1e-13


@pytest.mark.parametrize("eps", [1e-8, 0.3])
def test_nadam_first_three_steps_by_hand(eps):
    got = _run(optim.nadam(beta1=0.9, beta2=0.999, eps=eps))
    _assert_exact(got, _by_hand(lambda th, c, lrs: hand_adam(th, c, lrs, eps=eps, nesterov=True)))
    # NAdam's numerator really is β1 m_{t+1} + (1 − β1) ∇l, not Adam's m_{t+1}.
    assert _max_diff(got, _run(optim.adam(eps=eps))) > 1e-3


def test_bias_correction_by_hand():
    # b_1 = √(1 − 0.999) / (1 − 0.9) = √0.001 / 0.1
    assert optim.bias_correction(0.9, 0.999, 0) == math.sqrt(1 - 0.999) / (1 - 0.9)
    assert optim.bias_correction(0.9, 0.999, 2) == math.sqrt(1 - 0.999**3) / (1 - 0.9**3)
    assert optim.bias_correction(0.0, 0.0, 5) == 1.0


# ----------------------------------------------------------------- weight decay
def test_weight_decay_l2_and_decoupled_by_hand():
    lam = 0.1

    def adam_l2(theta, c, lrs, beta1=0.9, beta2=0.999, eps=0.3):
        m, v, out = 0.0, 0.0, []
        for t, lr in enumerate(lrs):
            g = c * theta + lam * theta              # the rule sees ∇l(θ_t) + λ θ_t
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            b = math.sqrt(1 - beta2 ** (t + 1)) / (1 - beta1 ** (t + 1))
            theta = theta - lr * m / (math.sqrt(v) + eps) * b
            out.append(theta)
        return out

    def adam_decoupled(theta, c, lrs, beta1=0.9, beta2=0.999, eps=0.3):
        m, v, out = 0.0, 0.0, []
        for t, lr in enumerate(lrs):
            g = c * theta
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            b = math.sqrt(1 - beta2 ** (t + 1)) / (1 - beta1 ** (t + 1))
            theta = theta - lr * m / (math.sqrt(v) + eps) * b - lr * lam * theta  # − η_t λ θ_t
            out.append(theta)
        return out

    def momentum_l2(theta, c, lrs, gamma=0.9):
        v, out = 0.0, []
        for lr in lrs:
            v = gamma * v + (c * theta + lam * theta)
            theta = theta - lr * v
            out.append(theta)
        return out

    def momentum_decoupled(theta, c, lrs, gamma=0.9):
        v, out = 0.0, []
        for lr in lrs:
            v = gamma * v + c * theta
            theta = theta - lr * v - lr * lam * theta
            out.append(theta)
        return out

    l2 = _run(optim.adam(eps=0.3, weight_decay=lam, weight_decay_mode="l2"))
    dec = _run(optim.adam(eps=0.3, weight_decay=lam, weight_decay_mode="decoupled"))
    _assert_exact(l2, _by_hand(adam_l2))
    _assert_exact(dec, _by_hand(adam_decoupled))
    assert _max_diff(l2, dec) > 1e-3          # for Adam the two kinds of decay differ

    _assert_exact(_run(optim.momentum(weight_decay=lam)), _by_hand(momentum_l2))
    _assert_exact(_run(optim.momentum(weight_decay=lam, weight_decay_mode="decoupled")),
                  _by_hand(momentum_decoupled))
    # For plain SGD they coincide: θ − η(g + λθ) = θ − ηg − ηλθ.
    sgd_l2 = _run(optim.sgd(weight_decay=lam))
    sgd_dec = _run(optim.sgd(weight_decay=lam, weight_decay_mode="decoupled"))
    assert _max_diff(sgd_l2, sgd_dec) < 1e-15


def test_update_is_pure():
    params = _params()
    before = {k: v.copy() for k, v in params.items()}
    opt = optim.adam()
    state = opt.init(params)
    grads = _grads(params)
    g_before = {k: v.copy() for k, v in grads.items()}
    new_params, new_state = opt.update(params, grads, state, 0.1)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
        np.testing.assert_array_equal(grads[k], g_before[k])
        assert not state.slots["m"][k].any()
    assert state.step == 0 and new_state.step == 1


@pytest.mark.parametrize("name", sorted(optim.RULES))
@pytest.mark.parametrize("wd_mode", [None, "l2", "decoupled"])
def test_update_without_checks_computes_bitwise_the_same(name, wd_mode):
    """``check=False`` (the training loop after its first update) skips only the checks."""
    opt = _optimizer(name, wd_mode)
    rng = np.random.default_rng(7)
    params = {"dense/w": rng.standard_normal((4, 3)).astype(np.float32),
              "dense/b": rng.standard_normal(3).astype(np.float32)}
    checked = (params, opt.init(params))
    fast = (params, opt.init(params))
    for step, lr in enumerate([0.1, 0.03, np.float64(0.2), 0.05]):
        grads = _grads_like(params, seed=step)
        checked = opt.update(*checked[:1], grads, checked[1], lr)
        fast = opt.update(*fast[:1], grads, fast[1], lr, check=step == 0)
        params = checked[0]
        for k in params:
            assert checked[0][k].dtype == fast[0][k].dtype == np.float32   # a NumPy lr too
            assert checked[0][k].tobytes() == fast[0][k].tobytes(), (name, step, k)
            for slot in checked[1].slots:
                assert checked[1].slots[slot][k].tobytes() == fast[1].slots[slot][k].tobytes()
        assert checked[1].step == fast[1].step == step + 1


def _many_leaves(seed):
    """A tree like a small Transformer's: many leaves of both float dtypes, odd sizes, a scalar,
    values from 1e-30 to 1e3 (tiny gradients, near-subnormal float32 products)."""
    rng = np.random.default_rng(seed)
    shapes = [(5, 3), (3,), (), (17,), (33, 7), (1,), (64, 64), (2, 2, 2)]
    tree = {}
    for i, shape in enumerate(shapes):
        for dtype in (np.float32, np.float64):
            scale = 10.0 ** rng.integers(-30, 4)
            tree[f"layer_{i}/{np.dtype(dtype).name}"] = np.asarray(
                scale * rng.standard_normal(shape), dtype=dtype)
    return tree


@pytest.mark.parametrize("name", sorted(optim.RULES))
@pytest.mark.parametrize("wd_mode", [None, "l2", "decoupled"])
def test_one_update_of_packed_buffers_is_bitwise_the_update_per_leaf(name, wd_mode):
    """The training loop's fast path: every rule is elementwise and + − × ÷ √ are correctly
    rounded, so one update of the concatenated leaves (one buffer per dtype,
    ``tree.FlatLayout``) equals the update leaf by leaf, bit for bit."""
    opt = _optimizer(name, wd_mode)
    params = _many_leaves(0)
    layout = tree_lib.FlatLayout(params)
    per_leaf = (params, opt.init(params))
    flat_params = layout.pack(params)
    flat_state = optim.OptState(0, {s: layout.pack(t) for s, t in per_leaf[1].slots.items()})
    for step, lr in enumerate([0.1, 0.03, np.float64(0.2), 0.05, 1e-3]):
        grads = {k: g * 10.0 ** (step - 2) for k, g in _many_leaves(step + 1).items()}
        per_leaf = opt.update(*per_leaf[:1], grads, per_leaf[1], lr, check=step == 0)
        flat_params, flat_state = opt.update(flat_params, layout.pack(grads), flat_state, lr,
                                             check=False)
        got = layout.views(flat_params)
        for k, want in per_leaf[0].items():
            assert got[k].dtype == want.dtype
            assert got[k].tobytes() == want.tobytes(), (name, step, k)
            for slot, flat in flat_state.slots.items():
                want_slot = per_leaf[1].slots[slot][k]
                assert layout.views(flat)[k].tobytes() == want_slot.tobytes(), (slot, step, k)
        assert flat_state.step == per_leaf[1].step == step + 1


def test_check_inputs_is_the_boundary_of_update():
    opt = optim.adam()
    params = _params()
    state = opt.init(params)
    with pytest.raises(ValueError, match="lr"):
        opt.check_inputs(params, _grads(params), state, -1.0)
    with pytest.raises(ValueError, match="missing"):
        opt.check_inputs(params, {"w": _grads(params)["w"]}, state, 0.1)
    checked_params, grads, lr = opt.check_inputs(params, _grads(params), state, 0.1)
    assert type(lr) is float and checked_params.keys() == grads.keys() == params.keys()


# ============================================================ property tests
RULE_NAMES = sorted(optim.RULES)
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _tree_strategy(dtype):
    """Small trees: one or two leaves with shapes up to 3x4, finite moderate values."""
    elements = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)
    shapes = hnp.array_shapes(min_dims=1, max_dims=2, max_side=4)
    return st.lists(shapes, min_size=1, max_size=2).flatmap(
        lambda ss: st.tuples(*[hnp.arrays(dtype, s, elements=elements) for s in ss])
    ).map(lambda leaves: {f"layer_{i}/w": a for i, a in enumerate(leaves)})


def _grads_like(params, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}


def _optimizer(name, wd_mode=None):
    kwargs = {} if wd_mode is None else {"weight_decay": 0.01, "weight_decay_mode": wd_mode}
    if name in ("momentum", "nesterov"):
        kwargs["gamma"] = 0.9
    if name == "rmsprop":
        kwargs["gamma"] = 0.5
    return optim.get(name, **kwargs)


@SETTINGS
@given(params=_tree_strategy(np.float32), name=st.sampled_from(RULE_NAMES),
       wd_mode=st.sampled_from([None, "l2", "decoupled"]), seed=st.integers(0, 2**32 - 1),
       grads_f64=st.booleans())
def test_float32_in_float32_out(params, name, wd_mode, seed, grads_f64):
    opt = _optimizer(name, wd_mode)
    state = opt.init(params)
    for step in range(2):
        grads = _grads_like(params, seed + step)
        if grads_f64:   # float64 gradients are cast to the parameters' dtype
            grads = {k: g.astype(np.float64) for k, g in grads.items()}
        params, state = opt.update(params, grads, state, 0.01)
        for k, p in params.items():
            assert p.dtype == np.float32, (k, p.dtype)
        for slot in state.slots.values():
            for k, s in slot.items():
                assert s.dtype == np.float32, (k, s.dtype)


@SETTINGS
@given(params=_tree_strategy(np.float64), name=st.sampled_from(RULE_NAMES),
       before=st.integers(0, 3), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_state_round_trip_continues_identically(params, name, before, seed, dtype):
    params = {k: v.astype(dtype) for k, v in params.items()}
    opt = _optimizer(name, "decoupled")
    lrs = [0.1, 0.03, 0.2, 0.05, 0.07, 0.01]
    grads = [_grads_like(params, seed + i) for i in range(len(lrs))]

    # Uninterrupted run.
    p, s = params, opt.init(params)
    for lr, g in zip(lrs, grads):
        p, s = opt.update(p, g, s, lr)

    # Interrupted after `before` steps: save the state to .npz, load it, continue.
    q, s2 = params, opt.init(params)
    for lr, g in zip(lrs[:before], grads[:before]):
        q, s2 = opt.update(q, g, s2, lr)
    with tempfile.TemporaryDirectory() as tmp:
        path = io.save_npz(Path(tmp) / "opt_state.npz", s2.to_arrays())
        restored = optim.OptState.from_arrays(io.load_npz(path))
    assert restored.step == before
    for lr, g in zip(lrs[before:], grads[before:]):
        q, restored = opt.update(q, g, restored, lr)

    assert restored.step == s.step == len(lrs)
    for k in p:
        np.testing.assert_array_equal(q[k], p[k])     # bitwise identical
        assert q[k].dtype == dtype
    for slot in s.slots:
        for k in p:
            np.testing.assert_array_equal(restored.slots[slot][k], s.slots[slot][k])


# ------------------------------------------------------------------ validation
_bad_real = st.one_of(st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False,
                                exclude_max=False),
                      st.sampled_from([math.nan, math.inf, -math.inf]))
_bad_unit = st.one_of(_bad_real, st.floats(min_value=1.0, allow_nan=False))

_UNIT_FIELDS = [("momentum", "gamma"), ("nesterov", "gamma"), ("rmsprop", "rho"),
                ("rmsprop", "gamma"), ("adam", "beta1"), ("adam", "beta2"),
                ("nadam", "beta1"), ("nadam", "beta2")]
_NONNEG_FIELDS = [("rmsprop", "eps"), ("adam", "eps"), ("nadam", "eps")] + [
    (name, "weight_decay") for name in RULE_NAMES]


@SETTINGS
@given(case=st.sampled_from(_UNIT_FIELDS), value=_bad_unit)
def test_hyperparameters_outside_unit_interval_raise(case, value):
    name, field = case
    with pytest.raises(ValueError, match=field):
        optim.get(name, **{field: value})


@SETTINGS
@given(case=st.sampled_from(_NONNEG_FIELDS), value=_bad_real)
def test_negative_or_nonfinite_hyperparameters_raise(case, value):
    name, field = case
    with pytest.raises(ValueError, match=field):
        optim.get(name, **{field: value})


@SETTINGS
@given(name=st.sampled_from(RULE_NAMES), lr=_bad_real)
def test_negative_or_nonfinite_lr_raises(name, lr):
    opt = optim.get(name)
    params = _params()
    with pytest.raises(ValueError, match="lr"):
        opt.update(params, _grads(params), opt.init(params), lr)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_wrong_types_raise_type_error(name):
    opt = optim.get(name)
    params = _params()
    with pytest.raises(TypeError, match="lr"):
        opt.update(params, _grads(params), opt.init(params), "0.1")
    with pytest.raises(TypeError, match="weight_decay"):
        optim.get(name, weight_decay="0.1")
    with pytest.raises(ValueError, match="weight_decay_mode"):
        optim.get(name, weight_decay_mode="adamw")
    with pytest.raises(TypeError, match=r"params\['i'\]"):
        opt.init({"i": np.arange(3)})
    with pytest.raises(TypeError, match="grads"):
        opt.update(params, [params["w"], params["b"]], opt.init(params), 0.1)
    if name != "sgd":
        field = {"momentum": "gamma", "nesterov": "gamma", "rmsprop": "rho"}.get(name, "beta1")
        with pytest.raises(TypeError, match=field):
            optim.get(name, **{field: None})


@pytest.mark.parametrize("name", RULE_NAMES)
def test_mismatched_grads_raise(name):
    opt = optim.get(name)
    params = _params()
    state = opt.init(params)
    grads = _grads(params)
    with pytest.raises(ValueError, match="missing"):
        opt.update(params, {"w": grads["w"]}, state, 0.1)
    with pytest.raises(ValueError, match="unexpected"):
        opt.update(params, {**grads, "extra": np.zeros(1)}, state, 0.1)
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape \(3,\)"):
        opt.update(params, {"w": np.zeros(3), "b": grads["b"]}, state, 0.1)


def test_state_from_another_optimizer_or_params_is_rejected():
    params = _params()
    adam_state = optim.adam().init(params)
    with pytest.raises(ValueError, match="slots"):
        optim.momentum().update(params, _grads(params), adam_state, 0.1)
    small = optim.adam().init({"w": np.zeros(2)})
    with pytest.raises(ValueError, match="state.slots"):
        optim.adam().update(params, _grads(params), small, 0.1)
    with pytest.raises(ValueError, match="step"):
        optim.OptState.from_arrays({"m:w": np.zeros(2)})
    with pytest.raises(ValueError, match="step"):
        optim.OptState.from_arrays({"step": np.array(-1)})
    with pytest.raises(ValueError, match="slot:param"):
        optim.OptState.from_arrays({"step": np.array(0), "w": np.zeros(2)})
    # A float64 state must not silently turn float32 parameters into float64 ones.
    p32 = _params(np.float32)
    state64 = optim.adam().init(params)
    with pytest.raises(ValueError, match=r"state.slots\['m'\]\['w'\] has dtype float64"):
        optim.adam().update(p32, _grads(p32), state64, 0.1)


def test_grads_must_be_real_floats_in_the_same_key_order():
    opt = optim.sgd()
    params = _params()
    state = opt.init(params)
    grads = _grads(params)
    with pytest.raises(TypeError, match=r"grads\['w'\].*complex"):
        opt.update(params, {**grads, "w": grads["w"] + 1j}, state, 0.1)
    with pytest.raises(ValueError, match="another order"):
        opt.update(params, dict(reversed(list(grads.items()))), state, 0.1)


def test_get_rejects_unknown_names_and_hyperparameters():
    with pytest.raises(ValueError, match="optimizer='adamw'"):
        optim.get("adamw")
    with pytest.raises(ValueError, match="momentum"):   # SGD has no momentum: use "momentum"
        optim.get("sgd", momentum=0.9)
    with pytest.raises(ValueError, match="beta_1"):
        optim.get("adam", beta_1=0.9)
    with pytest.raises(TypeError):
        optim.get(None)
    opt = optim.get("nadam", beta1=0.95, eps=1e-3)
    assert opt.name == "nadam" and opt.hparams["beta1"] == 0.95 and opt.hparams["eps"] == 1e-3


# ------------------------------------------------------------------ identities
def _trajectory(opt, params, seed, lrs):
    state = opt.init(params)
    for i, lr in enumerate(lrs):
        params, state = opt.update(params, _grads_like(params, seed + i), state, lr)
    return params


_lrs = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5)


@SETTINGS
@given(params=_tree_strategy(np.float64), seed=st.integers(0, 2**32 - 1), lrs=_lrs,
       name=st.sampled_from(["momentum", "nesterov"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_momentum_and_nesterov_with_gamma_zero_equal_sgd(params, seed, lrs, name, dtype):
    params = {k: v.astype(dtype) for k, v in params.items()}
    a = _trajectory(optim.get(name, gamma=0.0), params, seed, lrs)
    b = _trajectory(optim.sgd(), params, seed, lrs)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])   # v = 0·v + g = g exactly


@SETTINGS
@given(params=_tree_strategy(np.float64), seed=st.integers(0, 2**32 - 1), lrs=_lrs,
       beta2=st.floats(0.0, 0.9999), eps=st.floats(1e-8, 1.0))
def test_nadam_with_beta1_zero_equals_adam_with_beta1_zero(params, seed, lrs, beta2, eps):
    a = _trajectory(optim.nadam(beta1=0.0, beta2=beta2, eps=eps), params, seed, lrs)
    b = _trajectory(optim.adam(beta1=0.0, beta2=beta2, eps=eps), params, seed, lrs)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])   # m = 0·m + 1·g = g, numerator = g


@SETTINGS
@given(params=_tree_strategy(np.float64), seed=st.integers(0, 2**32 - 1),
       etas=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=5),
       beta1=st.sampled_from([0.0, 0.5, 0.9]), beta2=st.floats(0.5, 0.999))
def test_adam_with_huge_eps_approaches_sgd(params, seed, etas, beta1, beta2):
    r"""Choi et al. (2019), "On Empirical Comparisons of Optimizers": when ε ≫ √v,
    θ ← θ − α_t m/(√v + ε) b_t ≈ θ − (α_t b_t/ε) m. With β1 = 0 (m = ∇l) that is SGD
    with learning rate α_t b_t/ε; with β1 > 0, m = (1 − β1)·(the momentum buffer with
    γ = β1), so it is momentum with η_t = α_t b_t (1 − β1)/ε."""
    eps = 1e8
    alphas = [eta * eps for eta in etas]     # keep α_t/ε of order one so steps are not tiny
    b = [optim.bias_correction(beta1, beta2, t) for t in range(len(etas))]
    if beta1 == 0.0:
        ref_opt, ref_lrs = optim.sgd(), [a * bt / eps for a, bt in zip(alphas, b)]
    else:
        ref_opt = optim.momentum(gamma=beta1)
        ref_lrs = [a * bt * (1 - beta1) / eps for a, bt in zip(alphas, b)]

    adam_opt = optim.adam(beta1=beta1, beta2=beta2, eps=eps)
    p, s = params, adam_opt.init(params)
    q, r = params, ref_opt.init(params)
    path = 0.0    # Σ_t max |θ_{t+1} − θ_t| along the reference trajectory
    for i, (alpha, lr) in enumerate(zip(alphas, ref_lrs)):
        g = _grads_like(params, seed + i)
        p, s = adam_opt.update(p, g, s, alpha)
        q_next, r = ref_opt.update(q, g, r, lr)
        path += max(np.abs(q_next[k] - q[k]).max() for k in q)
        q = q_next
    # Each step's relative error is about √v/ε ≤ ~1e-7 here (|g| ≲ 6).
    for k in p:
        np.testing.assert_allclose(p[k], q[k], rtol=0, atol=1e-6 * path + 1e-14)
    assert path > 1e-6   # the limit is not vacuous: the steps are not negligible


# -------------------------------------------------------------- the demo command
def test_demo_prints_the_rule_and_its_first_steps_by_hand(capsys):
    from refplay import demo
    from refplay.cli import main

    # l(θ) = ½ θᵀ diag(3, 0.5) θ from θ_0 = (1, −1) at η = 0.1, SGD by hand:
    # θ_1 = (1 − 0.3, −1 + 0.05) = (0.7, −0.95); θ_2 = (0.7 − 0.21, −0.95 + 0.0475)
    (t0, th0), (t1, th1), (t2, th2) = demo.run("sgd", steps=2, lr=0.1)
    assert (t0, t1, t2) == (0, 1, 2)
    np.testing.assert_array_equal(th0, [1.0, -1.0])
    np.testing.assert_allclose(th1, [0.7, -0.95], rtol=0, atol=1e-15)
    np.testing.assert_allclose(th2, [0.49, -0.9025], rtol=0, atol=1e-15)

    assert main(["demo", "--rule", "rmsprop", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "refplay/optim.py: optim.rmsprop" in out
    assert "m_{t+1} = γ m_t + (η_t / √(v_{t+1} + ε)) ∇l(θ_t)" in out
    # RMSProp's first step by hand (v_0 = 1, ρ = 0.9, γ = 0, ε = 1e-10): g = 3,
    # v_1 = 0.9 + 0.1·9 = 1.8, θ_1 = 1 − 0.1·3/√(1.8 + 1e-10)
    first = 1 - 0.1 * 3 / math.sqrt(1.8 + 1e-10)
    assert f"θ_1 = [ {first:.12f}," in out and "θ_3" not in out

    for flag, value in (("--steps", "-1"), ("--lr", "-0.1")):
        assert main(["demo", flag, value]) == 2
        err = capsys.readouterr()
        assert err.out == ""                                  # validated before printing
        assert f"{flag[2:]}={value}" in err.err or f"{flag[2:]}={float(value)}" in err.err


def test_refplay_command_and_python_m_refplay_list_the_commands():
    import os
    import shutil
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = shutil.which("refplay")
    assert script is not None, "the `refplay` console script is not installed (pip install -e .)"
    for cmd in ([script, "--help"], [sys.executable, "-m", "refplay", "--help"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        for command in ("demo", "oracle", "study"):
            assert command in proc.stdout, (cmd, proc.stdout)
    proc = subprocess.run([sys.executable, "-m", "refplay", "demo", "--rule", "sgd",
                           "--steps", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "θ_1 = [ 0.700000000000, -0.950000000000]" in proc.stdout
