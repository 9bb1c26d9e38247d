"""Tests for ``refplay.schedules``: hand-written expected values for each family,
warmup shift semantics, round-2 extensions, validation and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refplay import schedules as S

TOL = dict(rtol=1e-15, atol=1e-16)


def _check(schedule, expected):
    """``schedule`` on steps 0..len(expected)-1, both as an array and one step at a time."""
    steps = np.arange(len(expected))
    got = schedule(steps)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == steps.shape
    np.testing.assert_allclose(got, expected, **TOL)
    for s, want in enumerate(expected):
        one = schedule(s)
        assert type(one) is float
        assert one == got[s]


# ----------------------------------------------------------------- families
def test_constant():
    _check(S.constant(0.3), [0.3, 0.3, 0.3, 0.3])
    assert S.constant(0.3).total_steps is None


def test_linear_decay_by_hand():
    _check(S.linear_decay(1.0, decay_steps=4), [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0])
    _check(S.linear_decay(1.0, decay_steps=4, final_lr=0.5),
           [1.0, 0.875, 0.75, 0.625, 0.5, 0.5])
    sched = S.linear_decay(2.0, decay_steps=2, final_lr=1.0, constant_steps=3)
    _check(sched, [2.0, 2.0, 2.0, 2.0, 1.5, 1.0, 1.0])
    assert sched.total_steps == 5


def test_cosine_decay_by_hand():
    c1 = (1 + math.sqrt(2) / 2) / 2     # ½(1 + cos(π/4))
    c3 = (1 - math.sqrt(2) / 2) / 2     # ½(1 + cos(3π/4))
    _check(S.cosine_decay(1.0, decay_steps=4), [1.0, c1, 0.5, c3, 0.0, 0.0])
    # with a floor: η = 0.2 + 0.8 · ½(1 + cos(π s/4))
    _check(S.cosine_decay(1.0, decay_steps=4, final_lr=0.2),
           [1.0, 0.2 + 0.8 * c1, 0.6, 0.2 + 0.8 * c3, 0.2, 0.2])
    assert S.cosine_decay(1.0, 4).total_steps == 4


def test_rsqrt_by_hand():
    sched = S.rsqrt(1.0, shift=3)     # √(3/(s+3))
    np.testing.assert_allclose(sched(np.array([0, 1, 9, 45])),
                               [1.0, math.sqrt(0.75), 0.5, 0.25], **TOL)
    _check(S.rsqrt(2.0), [2.0, 2.0 / math.sqrt(2), 2.0 / math.sqrt(3), 1.0])   # shift=1
    assert sched.total_steps is None


def test_rsqrt_with_warmup_is_the_transformer_schedule():
    # Vaswani et al.: lr ∝ min(step^-0.5, step · W^-1.5), scaled to peak 1 at step W.
    w = 16
    sched = S.warmup(S.rsqrt(1.0, shift=w), w)
    steps = np.arange(1, 200)
    transformer = np.minimum(steps ** -0.5, steps * w ** -1.5) * math.sqrt(w)
    np.testing.assert_allclose(sched(steps), transformer, rtol=1e-14)


def test_piecewise_constant_by_hand():
    sched = S.piecewise_constant([2, 5], [1.0, 0.1, 0.01])
    _check(sched, [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert sched.total_steps == 5
    _check(S.piecewise_constant([], [0.4]), [0.4, 0.4])


# ------------------------------------------------------------------- warmup
def test_warmup_ramp_by_hand():
    _check(S.warmup(S.constant(0.8), 4), [0.0, 0.2, 0.4, 0.6, 0.8, 0.8])
    _check(S.warmup(S.linear_decay(1.0, 4), 2), [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])
    _check(S.warmup(S.constant(0.8), 0), [0.8, 0.8])


def test_warmup_is_prepended_as_in_the_playbook():
    # "if we originally had 10,000 max_train_steps and did warmup_steps for 1000
    # steps, the new training procedure should run for 11,000 steps total."
    inner = S.cosine_decay(0.1, decay_steps=10_000)
    sched = S.warmup(inner, warmup_steps=1_000)
    assert sched.total_steps == 11_000
    k = np.arange(0, 10_001, 7)
    np.testing.assert_array_equal(sched(k + 1_000), inner(k))   # the inner schedule, shifted
    assert sched(1_000) == 0.1 and sched(11_000) == 0.0
    assert sched(0) == 0.0 and sched(500) == pytest.approx(0.05, rel=1e-15)
    assert S.warmup(S.constant(0.1), 10).total_steps is None


def test_get_builds_by_name_with_warmup():
    assert S.get("cosine", base_lr=0.1, decay_steps=100, warmup_steps=10) == \
        S.warmup(S.cosine_decay(0.1, 100), 10)
    assert S.get("linear", base_lr=0.1, decay_steps=100) == S.linear_decay(0.1, 100)
    assert S.get("constant", base_lr=0.2) == S.constant(0.2)
    assert S.get("rsqrt", base_lr=0.2, shift=5) == S.rsqrt(0.2, 5)
    assert S.get("piecewise", boundaries=[3], values=[1.0, 0.5])(3) == 0.5
    with pytest.raises(ValueError, match="schedule='cos'"):
        S.get("cos", base_lr=0.1)
    with pytest.raises(ValueError, match="decay_steps"):
        S.get("constant", base_lr=0.1, decay_steps=100)
    with pytest.raises(ValueError, match="warmup_steps"):
        S.get("constant", base_lr=0.1, warmup_steps=-1)
    with pytest.raises(TypeError):
        S.get(None)


# ------------------------------------------------------------------ round 2
def test_extend_linear_keeps_the_decay_length():
    round1 = S.linear_decay(1.0, decay_steps=4, constant_steps=2)
    round2 = S.extend_linear(round1, max_train_steps=10)
    assert round2 == S.linear_decay(1.0, decay_steps=4, constant_steps=6)
    _check(round2, [1.0] * 7 + [0.75, 0.5, 0.25, 0.0, 0.0])
    assert round2.total_steps == 10
    # Through a warmup: the warmup is kept, the constant phase absorbs the extra steps.
    w = S.extend_linear(S.warmup(round1, 2), max_train_steps=12)
    _check(w, [0.0, 0.5] + [1.0] * 7 + [0.75, 0.5, 0.25, 0.0])
    assert w.total_steps == 12 and w.warmup_steps == 2 and w.schedule.decay_steps == 4


def test_extend_cosine_keeps_the_base_rate():
    round1 = S.cosine_decay(1.0, decay_steps=4, final_lr=0.1)
    round2 = S.extend_cosine(round1, max_train_steps=8)
    assert round2 == S.cosine_decay(1.0, decay_steps=8, final_lr=0.1)
    c1 = (1 + math.sqrt(2) / 2) / 2
    np.testing.assert_allclose(round2(np.array([0, 2, 4, 6, 8, 9])),
                               [1.0, 0.1 + 0.9 * c1, 0.55, 0.1 + 0.9 * (1 - c1), 0.1, 0.1], **TOL)
    w = S.extend_cosine(S.warmup(round1, 2), max_train_steps=10)
    assert w == S.warmup(S.cosine_decay(1.0, 8, 0.1), 2) and w.total_steps == 10


def test_extensions_reject_shrinking_and_other_families():
    with pytest.raises(ValueError, match="max_train_steps"):
        S.extend_linear(S.linear_decay(1.0, 4, constant_steps=2), max_train_steps=5)
    with pytest.raises(ValueError, match="max_train_steps"):
        S.extend_cosine(S.cosine_decay(1.0, 10), max_train_steps=9)
    with pytest.raises(TypeError, match="LinearDecay"):
        S.extend_linear(S.cosine_decay(1.0, 10), max_train_steps=20)
    with pytest.raises(TypeError, match="CosineDecay"):
        S.extend_cosine(S.constant(1.0), max_train_steps=20)


# --------------------------------------------------------------- validation
@pytest.mark.parametrize("schedule", [S.constant(0.1), S.linear_decay(0.1, 10),
                                      S.warmup(S.cosine_decay(0.1, 10), 3)])
def test_steps_must_be_nonnegative_integers(schedule):
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        schedule(-1)
    with pytest.raises(ValueError, match="step"):
        schedule(np.array([0, 3, -2]))
    for bad in (1.0, np.float64(2.0), True, np.array([0.5, 1.0]), "3"):
        with pytest.raises(TypeError, match="step"):
            schedule(bad)
    assert schedule(np.int32(2)) == schedule(2)
    assert schedule(np.zeros((2, 3), dtype=np.uint8)).shape == (2, 3)


def test_invalid_hyperparameters_name_the_field():
    with pytest.raises(ValueError, match="base_lr"):
        S.constant(-0.1)
    with pytest.raises(ValueError, match="base_lr"):
        S.cosine_decay(math.nan, 10)
    with pytest.raises(ValueError, match="final_lr"):
        S.linear_decay(0.1, 10, final_lr=-1.0)
    with pytest.raises(ValueError, match="decay_steps"):
        S.linear_decay(0.1, 0)
    with pytest.raises(TypeError, match="decay_steps"):
        S.cosine_decay(0.1, 10.0)
    with pytest.raises(ValueError, match="constant_steps"):
        S.linear_decay(0.1, 10, constant_steps=-1)
    with pytest.raises(ValueError, match="shift"):
        S.rsqrt(0.1, shift=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        S.warmup(S.constant(0.1), -5)
    with pytest.raises(TypeError, match="schedule"):
        S.warmup(lambda s: 0.1, 5)
    with pytest.raises(ValueError, match="strictly increasing"):
        S.piecewise_constant([5, 5], [1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="len\\(boundaries\\) \\+ 1"):
        S.piecewise_constant([5], [1.0])
    with pytest.raises(ValueError, match=r"boundaries\[0\]"):
        S.piecewise_constant([0], [1.0, 0.5])
    with pytest.raises(ValueError, match=r"values\[1\]"):
        S.piecewise_constant([5], [1.0, -0.5])


# --------------------------------------------------------------- properties
_schedules = st.one_of(
    st.builds(S.constant, st.floats(0, 10)),
    st.builds(S.linear_decay, st.floats(0, 10), st.integers(1, 500), st.floats(0, 10),
              constant_steps=st.integers(0, 100)),
    st.builds(S.cosine_decay, st.floats(0, 10), st.integers(1, 500), st.floats(0, 10)),
    st.builds(S.rsqrt, st.floats(0, 10), st.integers(1, 100)),
)


@settings(max_examples=60, deadline=None)
@given(inner=_schedules, warmup_steps=st.integers(0, 50),
       steps=st.lists(st.integers(0, 2_000), min_size=1, max_size=20))
def test_warmup_shift_and_scalar_array_agreement(inner, warmup_steps, steps):
    sched = S.warmup(inner, warmup_steps)
    arr = np.array(steps)
    values = sched(arr)
    assert [sched(s) for s in steps] == list(values)      # scalar and array paths agree
    for s, v in zip(steps, values):
        if s >= warmup_steps:
            assert v == inner(s - warmup_steps)
        else:   # on the ramp: between 0 and the inner schedule's first value
            assert 0.0 <= v <= inner(0) + 1e-12
    if inner.total_steps is not None:
        assert sched.total_steps == inner.total_steps + warmup_steps


@settings(max_examples=60, deadline=None)
@given(base=st.floats(0, 10), floor=st.floats(0, 10), decay_steps=st.integers(1, 300),
       family=st.sampled_from([S.linear_decay, S.cosine_decay]))
def test_decays_move_monotonically_from_base_to_floor(base, floor, decay_steps, family):
    sched = family(base, decay_steps, floor)
    v = sched(np.arange(decay_steps + 5))
    step = np.diff(v)
    if base >= floor:
        assert np.all(step <= 1e-12 * max(base, 1.0))
    else:
        assert np.all(step >= -1e-12 * max(floor, 1.0))
    assert v[0] == base
    assert np.allclose(v[decay_steps:], floor, rtol=1e-15, atol=1e-15)
