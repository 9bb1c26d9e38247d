"""Tests for ``refplay.clipping`` on constructed data (norms computed by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refplay import clipping, tree


def _grads(dtype=np.float64):
    # |g| = √(3² + 4² + 0² + 12²) = √169 = 13
    return {"dense/w": np.array([[3.0, 4.0]], dtype=dtype),
            "dense/b": np.array([0.0, 12.0], dtype=dtype)}


def test_below_threshold_the_gradient_is_unchanged():
    g = _grads()
    clipped, info = clipping.clip_by_global_norm(g, max_norm=20.0)
    assert info == clipping.ClipInfo(norm=13.0, clipped=False, scale=1.0)
    for k in g:
        np.testing.assert_array_equal(clipped[k], g[k])
    # exactly at the threshold nothing is clipped: the playbook clips when |g| > λ
    _, info = clipping.clip_by_global_norm(g, max_norm=13.0)
    assert not info.clipped and info.scale == 1.0


def test_above_threshold_the_norm_is_exactly_lambda():
    g = _grads()
    before = {k: v.copy() for k, v in g.items()}
    clipped, info = clipping.clip_by_global_norm(g, max_norm=6.5)
    assert info.norm == 13.0 and info.clipped and info.scale == 0.5     # λ/|g| = 6.5/13
    # g' = λ g/|g| = [[1.5, 2.0]], [0.0, 6.0]
    np.testing.assert_array_equal(clipped["dense/w"], [[1.5, 2.0]])
    np.testing.assert_array_equal(clipped["dense/b"], [0.0, 6.0])
    assert tree.global_norm(clipped) == 6.5
    for k in g:   # the input is not modified
        np.testing.assert_array_equal(g[k], before[k])

    clipped, info = clipping.clip_by_global_norm(g, max_norm=1.0)
    assert info.scale == 1.0 / 13.0
    np.testing.assert_allclose(clipped["dense/w"], [[3 / 13, 4 / 13]], rtol=1e-15)
    assert abs(tree.global_norm(clipped) - 1.0) <= 1e-15


def test_a_norm_computed_by_the_caller_is_used_as_given():
    # The training loop passes the norm it logs (computed from its packed gradient).
    g = _grads()
    clipped, info = clipping.clip_by_global_norm(g, max_norm=6.5, norm=13.0)
    assert info == clipping.ClipInfo(norm=13.0, clipped=True, scale=0.5)
    np.testing.assert_array_equal(clipped["dense/b"], [0.0, 6.0])
    _, info = clipping.clip_by_global_norm(g, max_norm=6.5, norm=26.0)   # as given, not recomputed
    assert info.norm == 26.0 and info.scale == 0.25
    _, info = clipping.clip_by_global_norm(g, max_norm=6.5, norm=float("nan"))
    assert math.isnan(info.norm) and not info.clipped


def test_float32_stays_float32():
    clipped, info = clipping.clip_by_global_norm(_grads(np.float32), max_norm=1.0)
    assert all(v.dtype == np.float32 for v in clipped.values())
    assert info.norm == 13.0 and type(info.norm) is float
    assert abs(tree.global_norm(clipped) - 1.0) < 1e-6


def test_nonfinite_norm_is_reported_not_hidden():
    g = {"w": np.array([1.0, np.inf])}
    clipped, info = clipping.clip_by_global_norm(g, max_norm=1.0)
    assert math.isinf(info.norm) and not info.clipped
    np.testing.assert_array_equal(clipped["w"], g["w"])
    _, info = clipping.clip_by_global_norm({"w": np.array([np.nan])}, max_norm=1.0)
    assert math.isnan(info.norm)


@settings(max_examples=60, deadline=None)
@given(leaves=st.lists(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=5),
                                  elements=st.floats(-1e3, 1e3)), min_size=1, max_size=3),
       max_norm=st.floats(1e-3, 1e3))
def test_clipped_norm_is_min_of_norm_and_lambda(leaves, max_norm):
    g = {f"layer_{i}": a for i, a in enumerate(leaves)}
    norm = math.sqrt(sum(float(np.sum(a * a)) for a in leaves))
    clipped, info = clipping.clip_by_global_norm(g, max_norm)
    assert info.norm == pytest.approx(norm, rel=1e-12)
    assert info.clipped == (info.norm > max_norm)
    assert tree.global_norm(clipped) == pytest.approx(min(norm, max_norm), rel=1e-12, abs=1e-300)
    for k in g:   # same direction: g' = scale · g
        np.testing.assert_array_equal(clipped[k], info.scale * g[k])


def test_threshold_from_norms_is_the_90th_percentile():
    norms = np.arange(1.0, 101.0)   # 1, 2, ..., 100
    # linear interpolation: position 0.9 · 99 = 89.1 between the values 90 and 91
    assert clipping.threshold_from_norms(norms) == pytest.approx(90.1, rel=1e-15)
    assert clipping.threshold_from_norms(norms, percentile=50) == 50.5
    assert clipping.threshold_from_norms([2.0, 2.0, 2.0]) == 2.0
    assert clipping.clip_fraction(norms, 90.1) == 0.10    # 91..100 are above
    assert clipping.clip_fraction(norms, 90.0) == 0.10    # strictly greater: 90 is not clipped
    assert clipping.clip_fraction(norms, 100.0) == 0.0
    assert clipping.clip_fraction([1.0, np.inf], 5.0) == 0.5


def test_more_than_half_clipped_is_extremely_aggressive():
    norms = [1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    report = clipping.clip_report(norms, threshold=2.0)
    assert report == clipping.ClipReport(threshold=2.0, fraction=0.6, num_steps=10,
                                         aggressive=True)
    assert "reduce the learning rate" in report.advice
    three_quarters = clipping.clip_report(norms[2:], threshold=2.0)
    assert three_quarters.fraction == 0.75 and three_quarters.aggressive
    # exactly half is not "more than 50%"
    half = clipping.clip_report([1.0, 1.0, 5.0, 5.0], threshold=2.0)
    assert half.fraction == 0.5 and not half.aggressive
    assert "reduce" not in half.advice
    # the default threshold (90th percentile) clips about 10%, never aggressively
    default = clipping.clip_report(np.arange(1.0, 101.0))
    assert default.threshold == pytest.approx(90.1) and default.fraction == 0.1
    assert not default.aggressive


def test_bad_input_names_the_field():
    g = _grads()
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="max_norm"):
            clipping.clip_by_global_norm(g, bad)
    with pytest.raises(TypeError, match="max_norm"):
        clipping.clip_by_global_norm(g, "1.0")
    with pytest.raises(TypeError, match=r"grads\['i'\]"):
        clipping.clip_by_global_norm({"i": np.arange(3)}, 1.0)
    with pytest.raises(TypeError, match="grads"):
        clipping.clip_by_global_norm([np.zeros(2)], 1.0)
    with pytest.raises(ValueError, match="percentile"):
        clipping.threshold_from_norms([1.0, 2.0], percentile=101)
    with pytest.raises(ValueError, match="percentile"):
        clipping.threshold_from_norms([1.0, 2.0], percentile=0)
    with pytest.raises(ValueError, match="non-empty"):
        clipping.threshold_from_norms([])
    with pytest.raises(ValueError, match=r"norms\[1\]"):
        clipping.threshold_from_norms([1.0, math.nan])
    with pytest.raises(ValueError, match=r"norms\[0\]"):
        clipping.clip_fraction([-1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match=r"norms\[1\]"):
        clipping.threshold_from_norms([1.0, math.inf])
    with pytest.raises(ValueError, match="threshold"):
        clipping.clip_fraction([1.0], 0.0)
