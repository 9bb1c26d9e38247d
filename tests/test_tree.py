import numpy as np
import pytest

from refplay import tree


def _t():
    return {"dense_1/w": np.arange(6.0).reshape(2, 3), "dense_1/b": np.array([1.0, -2.0])}


def test_global_norm_matches_flat_norm():
    t = _t()
    vec, _ = tree.flatten(t)
    assert tree.global_norm(t) == pytest.approx(np.linalg.norm(vec), rel=1e-15)


def test_flatten_roundtrip_keeps_order_and_shapes():
    t = _t()
    vec, spec = tree.flatten(t)
    back = tree.unflatten(vec, spec)
    assert list(back) == list(t)
    for k in t:
        np.testing.assert_array_equal(back[k], t[k])


def test_unflatten_rejects_wrong_size():
    _, spec = tree.flatten(_t())
    with pytest.raises(ValueError, match="8 elements"):
        tree.unflatten(np.zeros(7), spec)


def test_map_zeros_allclose_and_structure_errors():
    t = _t()
    doubled = tree.map(lambda a, b: a + b, t, t)
    assert tree.allclose(doubled, tree.map(lambda a: 2 * a, t))
    assert not tree.allclose(doubled, t)
    assert tree.max_abs_diff(doubled, t) == 5.0
    z = tree.zeros_like(t)
    assert all(not v.any() for v in z.values())
    with pytest.raises(ValueError, match="missing"):
        tree.check_same_structure(t, {"dense_1/w": t["dense_1/w"]})
    with pytest.raises(ValueError, match="shape"):
        tree.check_same_structure(t, {"dense_1/w": np.zeros((3, 2)), "dense_1/b": t["dense_1/b"]})
    assert tree.num_params(t) == 8
