"""Helpers over parameter trees.

A *tree* in refplay is a flat, ordered ``dict[str, np.ndarray]`` whose keys are
stable names such as ``"dense_1/w"``. Flat dicts keep every helper a one-liner,
save directly to ``.npz`` and print readably. Insertion order is the order of
the layers; every helper preserves it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

Tree = dict[str, np.ndarray]

# A leaf of a FlatLayout starts on this boundary of its buffer (a cache line), so a
# leaf view is aligned at least as well as a freshly allocated array.
_ALIGN_BYTES = 64


def check_same_structure(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                         name_a: str = "params", name_b: str = "grads") -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same keys and leaf shapes."""
    if list(a.keys()) != list(b.keys()):
        missing = [k for k in a if k not in b]
        extra = [k for k in b if k not in a]
        if not missing and not extra:
            raise ValueError(f"{name_b} has the keys of {name_a} in another order: "
                             f"{list(b)}; expected the order {list(a)}")
        raise ValueError(
            f"{name_b} must have the same keys as {name_a} in the same order; "
            f"missing {missing}, unexpected {extra}"
        )
    for k, x in a.items():
        y = b[k]
        # ndarray.shape directly: this check runs on every optimizer step.
        sa = x.shape if isinstance(x, np.ndarray) else np.shape(x)
        sb = y.shape if isinstance(y, np.ndarray) else np.shape(y)
        if sa != sb:
            raise ValueError(f"{name_b}[{k!r}] has shape {sb}, but {name_a}[{k!r}] has shape {sa}")


def check_floating(tree: Mapping[str, np.ndarray], name: str = "params") -> Tree:
    """``tree`` as a dict of numpy arrays; ``TypeError`` unless it is a mapping of
    floating-point arrays (the boundary check for parameters and gradients)."""
    if not isinstance(tree, Mapping):
        raise TypeError(f"{name} must be a dict of arrays, got {type(tree).__name__}")
    out = {}
    for k, v in tree.items():
        a = np.asarray(v)
        if a.dtype.kind != "f":
            raise TypeError(f"{name}[{k!r}] must be a floating-point array, got dtype {a.dtype}")
        out[k] = a
    return out


def map(fn: Callable[..., np.ndarray], tree: Mapping[str, np.ndarray],  # noqa: A001
        *rest: Mapping[str, np.ndarray]) -> Tree:
    """Apply ``fn`` leaf by leaf: ``{k: fn(tree[k], *(r[k] for r in rest))}``."""
    for r in rest:
        check_same_structure(tree, r, "tree", "other tree")
    return {k: fn(v, *(r[k] for r in rest)) for k, v in tree.items()}


def zeros_like(tree: Mapping[str, np.ndarray]) -> Tree:
    """A tree of zeros with the shapes and dtypes of ``tree``."""
    return {k: np.zeros_like(v) for k, v in tree.items()}


def full_like(tree: Mapping[str, np.ndarray], value: float) -> Tree:
    """A tree filled with ``value`` with the shapes and dtypes of ``tree``."""
    return {k: np.full_like(v, value) for k, v in tree.items()}


def copy(tree: Mapping[str, np.ndarray]) -> Tree:
    """A deep copy (new arrays)."""
    return {k: np.array(v, copy=True) for k, v in tree.items()}


def global_norm(tree: Mapping[str, np.ndarray]) -> float:
    r"""The global L2 norm :math:`\|g\| = \sqrt{\sum_k \sum_i g_{k,i}^2}`, in float64.

    Accumulating in float64 makes the logged gradient norm independent of the
    parameters' dtype (and of summation order, to within float64 rounding).
    """
    total = 0.0
    for v in tree.values():
        # One copy, straight into C order (a strided gradient is not copied twice), and
        # one BLAS dot per leaf (np.dot is cheaper to call than @; the same sum).
        a = np.asarray(v, dtype=np.float64, order="C").reshape(-1)
        total += float(np.dot(a, a))
    return math.sqrt(total)


def num_params(tree: Mapping[str, np.ndarray]) -> int:
    """Total number of scalars in the tree."""
    return int(sum(np.size(v) for v in tree.values()))


def flatten(tree: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[tuple[str, tuple[int, ...]]]]:
    """Concatenate the leaves into one vector; return it with the spec to undo it.

    The vector's dtype is numpy's common dtype of the leaves.
    """
    spec = [(k, tuple(np.shape(v))) for k, v in tree.items()]
    if not spec:
        return np.zeros(0), spec
    vec = np.concatenate([np.ravel(v) for v in tree.values()])
    return vec, spec


def unflatten(vec: np.ndarray, spec: list[tuple[str, tuple[int, ...]]]) -> Tree:
    """Inverse of :func:`flatten`: split ``vec`` back into named leaves."""
    vec = np.asarray(vec)
    total = int(sum(int(np.prod(s)) for _, s in spec))
    if vec.ndim != 1 or vec.size != total:
        raise ValueError(f"vec must be 1-D with {total} elements for this spec, "
                         f"got shape {vec.shape}")
    out: Tree = {}
    i = 0
    for k, s in spec:
        n = int(np.prod(s))
        out[k] = vec[i:i + n].reshape(s).copy()
        i += n
    return out


def allclose(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *,
             rtol: float = 1e-7, atol: float = 0.0) -> bool:
    """True when both trees have the same structure and every leaf is close."""
    if list(a.keys()) != list(b.keys()):
        return False
    return all(np.shape(a[k]) == np.shape(b[k]) and np.allclose(a[k], b[k], rtol=rtol, atol=atol)
               for k in a)


def max_abs_diff(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """Largest absolute leaf-wise difference between two trees of the same structure."""
    check_same_structure(a, b, "a", "b")
    diffs = [float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
             for k in a if np.size(a[k])]
    return max(diffs, default=0.0)


def astype(tree: Mapping[str, np.ndarray], dtype) -> Tree:
    """Cast every leaf to ``dtype``."""
    return {k: np.asarray(v).astype(dtype) for k, v in tree.items()}


class _Segment(NamedTuple):
    """Where one leaf sits: its buffer (named by dtype), first element, shape, size."""

    buffer: str
    start: int
    shape: tuple[int, ...]
    size: int


class FlatLayout:
    """One contiguous 1-D buffer per dtype holding every leaf of a tree, each leaf a view.

    ::

        layout = FlatLayout(params)
        flat = layout.pack(params)          # {"float32": 1-D array}: the leaves, in order
        views = layout.views(flat)          # {"dense_1/w": view into flat["float32"], ...}
        layout.global_norm(flat) == global_norm(params)     # bitwise

    An elementwise computation done once on the buffers equals, element by
    element, the same computation done leaf by leaf (the training loop updates
    the parameters this way: one call of the optimizer's rule instead of one
    per leaf). Buffers are keyed by dtype name (``"float32"``), in order of
    first appearance. Each leaf starts on a 64-byte boundary of its buffer; the
    gaps between leaves are zeros that no view includes.
    """

    def __init__(self, tree: Mapping[str, np.ndarray]) -> None:
        self.segments: dict[str, _Segment] = {}
        self.sizes: dict[str, int] = {}          # elements per buffer, gaps included
        self.dtypes: dict[str, np.dtype] = {}
        for k, v in tree.items():
            v = np.asarray(v)
            name = v.dtype.name
            start = self.sizes.get(name, 0)
            per_line = max(1, _ALIGN_BYTES // v.dtype.itemsize)
            padded = -(-v.size // per_line) * per_line
            self.dtypes[name] = v.dtype
            self.segments[k] = _Segment(name, start, v.shape, v.size)
            self.sizes[name] = start + padded

    def zeros(self) -> Tree:
        """New zero buffers, one per dtype."""
        return {name: np.zeros(n, self.dtypes[name]) for name, n in self.sizes.items()}

    def pack(self, tree: Mapping[str, np.ndarray]) -> Tree:
        """New buffers holding the leaves of ``tree`` (this layout's keys, shapes, dtypes)."""
        if list(tree) != list(self.segments):
            raise ValueError(f"the tree's keys {list(tree)} are not this layout's "
                             f"{list(self.segments)}")
        flat = self.zeros()
        copy_leaves(self.views(flat), tree)
        return flat

    def views(self, flat: Mapping[str, np.ndarray]) -> Tree:
        """The tree whose leaves are views of the buffers ``flat`` (no copy)."""
        return {k: flat[s.buffer][s.start:s.start + s.size].reshape(s.shape)
                for k, s in self.segments.items()}

    def global_norm(self, flat: Mapping[str, np.ndarray]) -> float:
        """:func:`global_norm` of ``views(flat)``, bitwise: the same float64 dot per leaf,
        summed in the same order, with one conversion to float64 per buffer."""
        wide = {name: np.asarray(b, dtype=np.float64) for name, b in flat.items()}
        total = 0.0
        for s in self.segments.values():
            a = wide[s.buffer][s.start:s.start + s.size]
            total += float(np.dot(a, a))
        return math.sqrt(total)


def copy_leaves(dst: Mapping[str, np.ndarray], src: Mapping[str, np.ndarray]) -> None:
    """Copy every leaf of ``src`` into the leaf of ``dst`` with its key, in place.

    The leaves must have the same shapes and dtypes: a leaf of another dtype
    raises ``TypeError`` (never cast), a leaf of another shape ``ValueError``.
    """
    for k, d in dst.items():
        s = src[k]
        if not isinstance(s, np.ndarray):
            s = np.asarray(s)
        if s.shape != d.shape:        # an assignment would broadcast it
            raise ValueError(f"leaf {k!r} has shape {s.shape}; expected {d.shape}")
        if s.dtype != d.dtype:        # an assignment would cast it
            raise TypeError(f"leaf {k!r} has dtype {s.dtype}; expected {d.dtype}")
        d[...] = s
