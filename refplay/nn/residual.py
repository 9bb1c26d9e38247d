r"""Containers: a sequence of layers, and a residual block with the norm placement as a parameter.

Stateful layers
---------------
:mod:`refplay.nn.layers` defines the layer interface (``init``, ``forward``,
``backward``, ``output_shape``). A layer with non-trainable state (BatchNorm's
moving averages) -- and every container here -- implements two more methods
and uses ``apply`` in place of ``forward``::

    state = layer.init_state(dtype)                  # {} when there is none
    out, cache, new_state = layer.apply(params, state, x, train=..., rng=..., mask=...)
    dx, grads = layer.backward(params, dout, cache, need_dx=True)

``mask`` (N,) marks real examples (1) and padding (0); only batch norm reads
it. :func:`apply_layer` calls either kind of layer the same way.

Residual blocks (playbook, "How can optimization failures be debugged and mitigated?")
-----------------------------------------------------------------------------------
    *Add residual connections and normalization if the model doesn't contain
    it already. Normalization should be inside the residual. E.g.
    x + f(Norm(x)). Norm(x + f(x)) known to cause issues. Try initializing
    residual branches to 0 (e.g. ReZero init).*

:class:`Residual` computes, with shortcut :math:`s` (the identity, or a
projection when the shape changes) and residual scale :math:`\alpha`:

=============  ====================================  =====================================
``placement``  block                                 note
=============  ====================================  =====================================
``"branch"``   :math:`s(x) + \alpha\,N(f(x))`        norm inside the residual, at the end
``"pre"``      :math:`s(x) + \alpha\,f(N(x))`        inside, first: the playbook's example
``"post"``     :math:`N(s(x) + \alpha\,f(x))`        after the sum: "known to cause issues"
``"none"``     :math:`s(x) + \alpha\,f(x)`           no normalization
=============  ====================================  =====================================

With ``rezero=True`` the block owns a trainable scalar ``{name}/alpha``
initialized to 0 (Bachlechner et al. 2020, "ReZero"), so at initialization the
block is its shortcut and the branch is switched on by training; otherwise
:math:`\alpha = 1` is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.nn.layers import Layer


__all__ = ["Sequential", "Residual", "apply_layer", "init_state", "PLACEMENTS"]

PLACEMENTS = ("branch", "pre", "post", "none")


def init_state(layer, dtype=np.float32) -> Tree:
    """The layer's state (``{}`` for a stateless layer)."""
    return layer.init_state(dtype) if hasattr(layer, "init_state") else {}


def apply_layer(layer, params: Tree, state: Tree, x: np.ndarray, *, train: bool,
                rng: np.random.Generator | None, mask: np.ndarray | None,
                ) -> tuple[np.ndarray, object, Tree]:
    """``(out, cache, new_state)`` for a stateful or a stateless layer."""
    if hasattr(layer, "apply"):
        return layer.apply(params, state, x, train=train, rng=rng, mask=mask)
    out, cache = layer.forward(params, x, train=train, rng=rng)
    return out, cache, {}


def _merge(into: Tree, part: Tree, where: str) -> None:
    for k, v in part.items():
        if k in into:
            raise ValueError(f"duplicate parameter/state name {k!r} in {where}: give every layer a "
                             "unique name")
        into[k] = v


class Sequential(Layer):
    """Layers applied one after the other: ``x -> layers[0] -> layers[1] -> ...``.

    Parameters and state are the ordered union of the layers' own (names must
    be unique). ``backward`` returns the gradients in reverse layer order; a
    :class:`refplay.nn.models.Model` reorders them as the parameters.
    """

    def __init__(self, layers: Sequence, *, name: str = "sequential"):
        self.layers = list(layers)
        self.name = name
        # Index of the first layer with parameters (a throwaway init is the one
        # exact test). backward() skips input gradients below it: nothing there
        # is trained, so e.g. the first convolution needs no col2im.
        probe = np.random.default_rng(0)
        self._first_trained = next((i for i, layer in enumerate(self.layers)
                                    if layer.init(probe, np.float64)), len(self.layers))

    def init(self, rng: np.random.Generator, dtype=np.float32) -> Tree:
        params: Tree = {}
        for layer in self.layers:
            _merge(params, layer.init(rng, dtype), f"Sequential {self.name!r}")
        return params

    def init_state(self, dtype=np.float32) -> Tree:
        state: Tree = {}
        for layer in self.layers:
            _merge(state, init_state(layer, dtype), f"Sequential {self.name!r}")
        return state

    def apply(self, params, state, x, *, train=False, rng=None, mask=None):
        caches, new_state = [], {}
        for layer in self.layers:
            x, cache, s = apply_layer(layer, params, state, x, train=train, rng=rng, mask=mask)
            caches.append(cache)
            new_state.update(s)
        return x, caches, new_state

    def forward(self, params, x, train=False, rng=None):
        if any(hasattr(layer, "apply") for layer in self.layers):
            raise TypeError(f"Sequential {self.name!r} holds a layer with state: call apply(...)")
        out, caches, _ = self.apply(params, {}, x, train=train, rng=rng)
        return out, caches

    def backward(self, params, dout, cache, need_dx=True):
        grads: Tree = {}
        for i in reversed(range(len(self.layers))):
            if i < self._first_trained and not need_dx:
                return None, grads              # only parameter-free layers remain
            dout, g = self.layers[i].backward(params, dout, cache[i],
                                              need_dx=need_dx or i > self._first_trained)
            grads.update(g)
        return dout, grads

    def output_shape(self, in_shape):
        shape = tuple(in_shape)
        for layer in self.layers:
            shape = tuple(layer.output_shape(shape))
        return shape


class Residual(Layer):
    r"""A residual block; ``placement`` and ``rezero`` as in the module docstring.

    ``branch`` is :math:`f` (a layer or a :class:`Sequential`), ``norm`` is
    :math:`N` (a BatchNorm or LayerNorm over the branch's output channels for
    "branch"/"post", over the input channels for "pre"; None for "none"),
    ``shortcut`` is :math:`s` (None for the identity, else a layer mapping the
    input to the branch's output shape, e.g. a strided 1x1 convolution).
    """

    def __init__(self, branch, *, name: str = "block", norm=None, placement: str = "branch",
                 shortcut=None, rezero: bool = False):
        self.placement = _validate.one_of("placement", placement, PLACEMENTS)
        if (norm is None) != (placement == "none"):
            wanted = "None" if placement == "none" else "a norm layer"
            raise ValueError(f"placement={placement!r} needs norm={wanted}, got norm={norm!r}")
        self.branch = branch
        self.norm = norm
        self.shortcut = shortcut
        self.rezero = bool(rezero)
        self.name = name

    def _parts(self):
        return [p for p in (self.branch, self.norm, self.shortcut) if p is not None]

    def init(self, rng: np.random.Generator, dtype=np.float32) -> Tree:
        params: Tree = {}
        for part in self._parts():
            _merge(params, part.init(rng, dtype), f"Residual {self.name!r}")
        if self.rezero:
            params[f"{self.name}/alpha"] = np.zeros(1, dtype=np.dtype(dtype))
        return params

    def init_state(self, dtype=np.float32) -> Tree:
        state: Tree = {}
        for part in self._parts():
            _merge(state, init_state(part, dtype), f"Residual {self.name!r}")
        return state

    def apply(self, params, state, x, *, train=False, rng=None, mask=None):
        kw = dict(train=train, rng=rng, mask=mask)
        alpha = params[f"{self.name}/alpha"] if self.rezero else None
        new_state: Tree = {}

        def run(layer, inp):
            out, cache, s = apply_layer(layer, params, state, inp, **kw)
            new_state.update(s)
            return out, cache

        skip, c_skip = (x, None) if self.shortcut is None else run(self.shortcut, x)
        c_norm = None
        if self.placement == "pre":
            n, c_norm = run(self.norm, x)
            u, c_branch = run(self.branch, n)
        else:
            u, c_branch = run(self.branch, x)
            if self.placement == "branch":
                u, c_norm = run(self.norm, u)
        if skip.shape != u.shape:
            raise ValueError(f"Residual {self.name!r}: shortcut output {skip.shape} and branch "
                             f"output {u.shape} differ; give the block a projection shortcut")
        y = skip + (u if alpha is None else alpha * u)     # u is the residual term before scaling
        if self.placement == "post":
            y, c_norm = run(self.norm, y)
        return y, (u, c_skip, c_norm, c_branch), new_state

    def backward(self, params, dout, cache, need_dx=True):
        u, c_skip, c_norm, c_branch = cache
        grads: Tree = {}
        alpha = params[f"{self.name}/alpha"] if self.rezero else None
        if self.placement == "post":
            dout, g = self.norm.backward(params, dout, c_norm)      # dy -> d(s(x) + alpha u)
            grads.update(g)
        if alpha is not None:                                      # d alpha = <dout, u>
            grads[f"{self.name}/alpha"] = np.asarray(
                [np.sum(dout.astype(np.float64) * u)], dtype=alpha.dtype)
        du = dout if alpha is None else alpha * dout
        if self.placement == "branch":
            du, g = self.norm.backward(params, du, c_norm)
            grads.update(g)
        dx, g = self.branch.backward(params, du, c_branch,
                                     need_dx=need_dx or self.placement == "pre")
        grads.update(g)
        if self.placement == "pre":
            dx, g = self.norm.backward(params, dx, c_norm, need_dx=need_dx)
            grads.update(g)
        if self.shortcut is None:
            dskip = dout
        else:
            dskip, g = self.shortcut.backward(params, dout, c_skip, need_dx=need_dx)
            grads.update(g)
        return (dx + dskip if need_dx else None), grads

    def output_shape(self, in_shape):
        return tuple(self.branch.output_shape(tuple(in_shape)))
