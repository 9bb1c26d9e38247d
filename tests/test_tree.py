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


def test_helpers_keep_dtypes_and_copy():
    t = {"a/w": np.ones((2, 2), dtype=np.float32), "a/b": np.zeros(3, dtype=np.float64)}
    for out in (tree.zeros_like(t), tree.full_like(t, 0.5), tree.copy(t)):
        assert list(out) == list(t)
        assert all(out[k].dtype == t[k].dtype and out[k].shape == t[k].shape for k in t)
    assert all(np.all(v == 0.5) for v in tree.full_like(t, 0.5).values())
    c = tree.copy(t)
    c["a/w"][0, 0] = 7.0                       # a deep copy: the original is untouched
    assert t["a/w"][0, 0] == 1.0
    cast = tree.astype(t, np.float32)
    assert all(v.dtype == np.float32 for v in cast.values())
    assert tree.map(lambda a: a * 2, t)["a/w"].dtype == np.float32


def test_global_norm_accumulates_in_float64():
    # Each square (1e40) overflows float32 (max 3.4e38); accumulated in float64 the
    # norm is exactly √4 · 1e20. An implementation summing in float32 returns inf.
    t = {"w": np.full(4, 1e20, dtype=np.float32)}
    assert tree.global_norm(t) == pytest.approx(2e20, rel=1e-7)
    assert type(tree.global_norm(t)) is float
    assert tree.global_norm({}) == 0.0


def test_flatten_edge_cases_and_errors():
    vec, spec = tree.flatten({})
    assert vec.size == 0 and spec == [] and tree.unflatten(vec, spec) == {}
    t = {"s": np.array(2.0), "v": np.arange(3.0)}          # a 0-d leaf survives the round trip
    vec, spec = tree.flatten(t)
    np.testing.assert_array_equal(vec, [2.0, 0.0, 1.0, 2.0])
    back = tree.unflatten(vec, spec)
    assert back["s"].shape == () and back["s"] == 2.0
    with pytest.raises(ValueError, match="1-D"):
        tree.unflatten(vec.reshape(2, 2), spec)


def test_structure_checks_name_what_differs():
    t = _t()
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        tree.check_same_structure(t, {**t, "extra": np.zeros(1)})
    swapped = {"dense_1/b": t["dense_1/b"], "dense_1/w": t["dense_1/w"]}
    with pytest.raises(ValueError, match="another order"):
        tree.check_same_structure(t, swapped)
    with pytest.raises(ValueError, match="other tree"):
        tree.map(lambda a, b: a + b, t, {"dense_1/w": t["dense_1/w"]})
    assert not tree.allclose(t, swapped)                  # same leaves, other order
    assert not tree.allclose(t, {"dense_1/w": t["dense_1/w"].ravel(), "dense_1/b": t["dense_1/b"]})
    with pytest.raises(ValueError, match="missing"):
        tree.max_abs_diff(t, {"dense_1/w": t["dense_1/w"]})


def test_check_floating_accepts_float_trees_only():
    out = tree.check_floating({"w": [1.0, 2.0]}, "grads")
    assert out["w"].dtype == np.float64
    with pytest.raises(TypeError, match=r"grads\['i'\].*int"):
        tree.check_floating({"i": np.arange(3)}, "grads")
    with pytest.raises(TypeError, match="params must be a dict"):
        tree.check_floating([np.zeros(2)], "params")



def test_global_norm_of_strided_leaves_sums_in_c_order_as_before():
    """A gradient may be a transposed or strided view; its norm is the float64 dot of its
    elements in C order, the same sum as for a contiguous copy, bitwise."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 8, 5)).astype(np.float32)
    t = {"transposed": base.transpose(2, 0, 1), "strided": base[:, ::3, 1],
         "fortran": np.asfortranarray(base[0]), "scalar": np.float32(2.5)}
    expected = 0.0
    for v in t.values():
        a = np.ascontiguousarray(v, dtype=np.float64).ravel()
        expected += float(a @ a)
    assert tree.global_norm(t) == float(np.sqrt(expected))
    assert np.isnan(tree.global_norm({"w": np.array([1.0, np.nan], np.float32)}))
    assert tree.global_norm({"w": np.array([np.inf, 1.0], np.float32)}) == np.inf


# ------------------------------------------------------------------ FlatLayout
def _mixed_tree(seed=0):
    """float32 and float64 leaves of awkward sizes: a scalar, an empty leaf, sizes that cross
    a 64-byte line and OpenBLAS's dot blocks, a transposed (non-C-contiguous) leaf."""
    rng = np.random.default_rng(seed)
    return {"a/w": rng.standard_normal((3, 5)).astype(np.float32),
            "a/b": rng.standard_normal(7),
            "s": np.asarray(1.5, np.float32),
            "empty": np.zeros((0, 4), np.float32),
            "big/w": rng.standard_normal((33, 31)).astype(np.float32).T,
            "big/b": 1e-30 * rng.standard_normal(1001),
            "last": rng.standard_normal(16).astype(np.float32)}


def test_flat_layout_packs_every_leaf_into_one_buffer_per_dtype_as_views():
    t = _mixed_tree()
    layout = tree.FlatLayout(t)
    flat = layout.pack(t)
    assert list(flat) == ["float32", "float64"]
    assert all(b.ndim == 1 for b in flat.values())
    views = layout.views(flat)
    assert list(views) == list(t)
    for k, v in views.items():
        assert v.dtype == t[k].dtype and v.shape == t[k].shape
        np.testing.assert_array_equal(v, t[k])
        assert v.size == 0 or np.shares_memory(v, flat[t[k].dtype.name])
        seg = layout.segments[k]
        assert seg.start * t[k].dtype.itemsize % 64 == 0          # each leaf on a 64-byte line
    # The gaps between leaves hold zeros: the buffers' sums are the leaves' sums.
    for name, buf in flat.items():
        leaves = [v for v in t.values() if v.dtype.name == name]
        assert np.count_nonzero(buf) == sum(np.count_nonzero(v) for v in leaves)
    views["a/w"][0, 0] = 42.0                                     # a view writes the buffer
    assert flat["float32"][0] == 42.0


@pytest.mark.parametrize("seed", range(4))
def test_flat_layout_global_norm_is_bitwise_the_norm_per_leaf(seed):
    # The logged gradient norm: the same float64 dot per leaf, summed in the same order.
    rng = np.random.default_rng(seed)
    t = {f"leaf_{i}": (rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8)).astype(dtype)
         for i, (n, dtype) in enumerate(zip(rng.integers(1, 3000, 12),
                                            rng.choice([np.float32, np.float64], 12)))}
    layout = tree.FlatLayout(t)
    assert layout.global_norm(layout.pack(t)) == tree.global_norm(t)
    t = _mixed_tree(seed)
    layout = tree.FlatLayout(t)
    assert layout.global_norm(layout.pack(t)) == tree.global_norm(t)


def test_flat_layout_refuses_other_keys_shapes_and_dtypes():
    t = _mixed_tree()
    layout = tree.FlatLayout(t)
    with pytest.raises(ValueError, match="keys"):
        layout.pack({k: t[k] for k in reversed(t)})
    with pytest.raises(ValueError, match="'a/w' has shape"):
        layout.pack({**t, "a/w": t["a/w"][:2]})
    with pytest.raises(ValueError, match="'last' has shape"):     # copyto would broadcast it
        layout.pack({**t, "last": t["last"][None]})
    with pytest.raises(TypeError, match="float64"):               # never cast
        layout.pack({**t, "a/w": t["a/w"].astype(np.float64)})


def test_copy_leaves_writes_in_place():
    t = _mixed_tree()
    dst = tree.zeros_like(t)
    ids = {k: id(v) for k, v in dst.items()}
    tree.copy_leaves(dst, t)
    for k in t:
        assert id(dst[k]) == ids[k]
        np.testing.assert_array_equal(dst[k], t[k])
