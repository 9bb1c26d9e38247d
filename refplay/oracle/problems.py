r"""Deterministic test problems for the oracle: only the update rule may differ.

Each problem is a loss :math:`l(\theta)` with a closed-form gradient written in
plain numpy. Its constants (matrices, data, the starting point
:math:`\theta_0`) are drawn once, in float64, from a
``numpy.random.Generator`` seeded by ``np.random.SeedSequence(seed)``, so the
same seed gives bitwise-identical problems on every machine. The gradient is
computed in the dtype of the parameters passed in (float64 or float32): that
is how a float32 run of a framework and a float32 run of refplay see the same
float32 gradients.

The same gradient function drives refplay and the framework under test: at
every step each side receives :math:`\nabla l` evaluated at *its own* current
parameters, so two implementations of the same rule produce the same
trajectory, and two different rules drift apart.

=====================  ==================================================
name                   loss
=====================  ==================================================
``least_squares``      :math:`\tfrac{1}{2m}\lVert A w - b\rVert^2`, A is 20×5
``ill_conditioned``    :math:`\tfrac12 (\theta-\theta^*)^\top H (\theta-\theta^*)`,
                       eigenvalues of H from 10 to 1e-3
``rosenbrock``         :math:`(1-x)^2 + 100 (y - x^2)^2` from (-1.2, 1)
``mlp``                two-layer tanh network 3-4-1, mean squared error,
                       16 fixed examples
=====================  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from refplay import _validate
from refplay.tree import Tree


__all__ = ["Problem", "PROBLEMS", "get", "least_squares", "ill_conditioned", "rosenbrock", "mlp"]

_ADAPTIVE = ("rmsprop", "adam", "nadam")


@dataclass(frozen=True)
class Problem:
    """A deterministic loss with a closed-form gradient.

    ``data`` holds the float64 constants, ``theta0`` the float64 starting
    point; ``base_lr[rule]`` is a peak learning rate at which every rule makes
    visible progress without diverging in 60 steps. ``formula`` states the
    loss in words for the golden-vector files, so that code in another
    language can rebuild the problem from ``data``.
    """

    name: str
    formula: str
    data: dict[str, np.ndarray]
    theta0: dict[str, np.ndarray]
    base_lr: dict[str, float]
    _loss: Callable[[Tree, Tree], float] = field(repr=False)
    _grad: Callable[[Tree, Tree], Tree] = field(repr=False)

    def init_params(self, dtype=np.float64) -> Tree:
        """A fresh copy of :math:`\\theta_0` in ``dtype`` (float64 or float32)."""
        dt = _validate.float_dtype("dtype", dtype)
        return {k: v.astype(dt, copy=True) for k, v in self.theta0.items()}

    def loss(self, params: Mapping[str, np.ndarray]) -> float:
        """:math:`l(\\theta)`, computed in the dtype of ``params``."""
        p = self._checked(params)
        return float(self._loss(p, self._data_like(p)))

    def grad(self, params: Mapping[str, np.ndarray]) -> Tree:
        """:math:`\\nabla l(\\theta)`, computed in the dtype of ``params``."""
        p = self._checked(params)
        return self._grad(p, self._data_like(p))

    def _checked(self, params: Mapping[str, np.ndarray]) -> Tree:
        if set(params) != set(self.theta0):
            raise ValueError(f"params for problem {self.name!r} must have keys "
                             f"{list(self.theta0)}, got {list(params)}")
        out = {}
        for k in self.theta0:                # any key order in, the problem's order out
            a = np.asarray(params[k])
            if a.shape != self.theta0[k].shape:
                raise ValueError(f"params[{k!r}] has shape {a.shape}; problem {self.name!r} "
                                 f"expects {self.theta0[k].shape}")
            out[k] = a.astype(_validate.float_dtype("dtype", a.dtype), copy=False)
        return out

    def _data_like(self, params: Tree) -> Tree:
        dt = next(iter(params.values())).dtype
        return {k: v.astype(dt, copy=False) for k, v in self.data.items()}


def _rng(seed: int, purpose: int) -> np.random.Generator:
    """One generator per purpose, derived from the problem seed (DESIGN.md principle 3)."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(purpose + 1)[purpose])


def _base_lr(sgd_family: float, adaptive: float) -> dict[str, float]:
    return {r: (adaptive if r in _ADAPTIVE else sgd_family)
            for r in ("sgd", "momentum", "nesterov", "rmsprop", "adam", "nadam")}


# ------------------------------------------------------------------ least squares
def least_squares(seed: int = 0, m: int = 20, n: int = 5) -> Problem:
    r"""Random least squares: :math:`l(w) = \frac{1}{2m}\lVert A w - b\rVert^2`.

    .. math:: \nabla l(w) = \frac1m A^\top (A w - b)

    :math:`A_{ij}, b_i, (w_0)_j \sim \mathcal N(0, 1)`.
    """
    seed = _validate.integer("seed", seed, low=0)
    m = _validate.integer("m", m, low=1)
    n = _validate.integer("n", n, low=1)
    rng = _rng(seed, 0)
    data = {"A": rng.standard_normal((m, n)), "b": rng.standard_normal(m)}
    theta0 = {"w": rng.standard_normal(n)}

    def loss(p, d):
        r = d["A"] @ p["w"] - d["b"]
        return 0.5 * (r @ r) / m

    def grad(p, d):
        r = d["A"] @ p["w"] - d["b"]
        return {"w": d["A"].T @ r / p["w"].dtype.type(m)}

    return Problem(name="least_squares",
                   formula="l(w) = 1/(2m) * ||A w - b||^2, grad = A^T (A w - b) / m",
                   data=data, theta0=theta0, base_lr=_base_lr(0.1, 0.1), _loss=loss, _grad=grad)


# ------------------------------------------------------- badly conditioned quadratic
def ill_conditioned(seed: int = 0, n: int = 6, max_eig: float = 10.0,
                    min_eig: float = 1e-3) -> Problem:
    r"""A rotated quadratic with condition number ``max_eig / min_eig`` (1e4 by default).

    .. math::
        l(\theta) = \tfrac12 (\theta - \theta^*)^\top H (\theta - \theta^*), \quad
        H = Q \operatorname{diag}(\lambda) Q^\top, \quad
        \nabla l(\theta) = H (\theta - \theta^*)

    with :math:`\lambda` log-spaced from ``max_eig`` to ``min_eig``, :math:`Q`
    a random orthogonal matrix, :math:`\theta^* \sim \mathcal N(0, I)`,
    :math:`\theta_0 = 0`.
    """
    seed = _validate.integer("seed", seed, low=0)
    n = _validate.integer("n", n, low=1)
    max_eig = _validate.real("max_eig", max_eig, low=0.0, low_open=True)
    min_eig = _validate.real("min_eig", min_eig, low=0.0, high=max_eig, low_open=True)
    rng = _rng(seed, 1)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigs = np.geomspace(max_eig, min_eig, n)
    h = (q * eigs) @ q.T
    h = 0.5 * (h + h.T)                      # exactly symmetric
    data = {"H": h, "theta_star": rng.standard_normal(n)}
    theta0 = {"theta": np.zeros(n)}

    def loss(p, d):
        e = p["theta"] - d["theta_star"]
        return 0.5 * (e @ d["H"] @ e)

    def grad(p, d):
        return {"theta": d["H"] @ (p["theta"] - d["theta_star"])}

    return Problem(name="ill_conditioned",
                   formula="l(t) = 1/2 (t - theta_star)^T H (t - theta_star), "
                           "grad = H (t - theta_star)",
                   data=data, theta0=theta0, base_lr=_base_lr(0.05, 0.1), _loss=loss, _grad=grad)


# -------------------------------------------------------------------- Rosenbrock
def rosenbrock(a: float = 1.0, b: float = 100.0) -> Problem:
    r"""Rosenbrock's valley :math:`l(x, y) = (a - x)^2 + b (y - x^2)^2` from :math:`(-1.2, 1)`.

    .. math::
        \partial_x l = -2 (a - x) - 4 b x (y - x^2), \quad
        \partial_y l = 2 b (y - x^2)
    """
    a = _validate.real("a", a)
    b = _validate.real("b", b, low=0.0)
    data = {"a": np.array(a), "b": np.array(b)}
    theta0 = {"xy": np.array([-1.2, 1.0])}

    def loss(p, d):
        x, y = p["xy"]
        return (d["a"] - x) ** 2 + d["b"] * (y - x * x) ** 2

    def grad(p, d):
        x, y = p["xy"]
        two, four = p["xy"].dtype.type(2), p["xy"].dtype.type(4)
        gx = -two * (d["a"] - x) - four * d["b"] * x * (y - x * x)
        gy = two * d["b"] * (y - x * x)
        return {"xy": np.array([gx, gy], dtype=p["xy"].dtype)}

    return Problem(name="rosenbrock",
                   formula="l(x, y) = (a - x)^2 + b (y - x^2)^2, "
                           "grad = (-2 (a - x) - 4 b x (y - x^2), 2 b (y - x^2))",
                   data=data, theta0=theta0, base_lr=_base_lr(2e-4, 0.02), _loss=loss, _grad=grad)


# ------------------------------------------------------------------------- MLP
def mlp(seed: int = 0, n: int = 16, d_in: int = 3, hidden: int = 4) -> Problem:
    r"""A two-layer tanh network on fixed data, mean squared error.

    .. math::
        h = \tanh(x W_1 + b_1), \quad \hat y = h W_2 + b_2, \quad
        l = \frac{1}{2n} \sum_i (\hat y_i - y_i)^2

    Backpropagation, written out:
    :math:`\delta = (\hat y - y)/n`, :math:`\nabla W_2 = h^\top \delta`,
    :math:`\nabla b_2 = \sum_i \delta_i`,
    :math:`\delta_h = (\delta W_2^\top) \odot (1 - h^2)`,
    :math:`\nabla W_1 = x^\top \delta_h`, :math:`\nabla b_1 = \sum_i \delta_{h,i}`.
    Targets come from a random teacher network of the same shape plus noise.
    """
    seed = _validate.integer("seed", seed, low=0)
    n = _validate.integer("n", n, low=1)
    d_in = _validate.integer("d_in", d_in, low=1)
    hidden = _validate.integer("hidden", hidden, low=1)
    data_rng, init_rng = _rng(seed, 2), _rng(seed, 3)
    x = data_rng.standard_normal((n, d_in))
    teacher_w1 = data_rng.standard_normal((d_in, hidden))
    teacher_w2 = data_rng.standard_normal((hidden, 1))
    y = np.tanh(x @ teacher_w1) @ teacher_w2 + 0.1 * data_rng.standard_normal((n, 1))
    data = {"x": x, "y": y}
    theta0 = {
        "dense_1/w": init_rng.standard_normal((d_in, hidden)) / np.sqrt(d_in),
        "dense_1/b": np.zeros(hidden),
        "dense_2/w": init_rng.standard_normal((hidden, 1)) / np.sqrt(hidden),
        "dense_2/b": np.zeros(1),
    }

    def forward(p, d):
        h = np.tanh(d["x"] @ p["dense_1/w"] + p["dense_1/b"])
        return h, h @ p["dense_2/w"] + p["dense_2/b"]

    def loss(p, d):
        _, out = forward(p, d)
        r = out - d["y"]
        return 0.5 * float(np.sum(r * r)) / n

    def grad(p, d):
        h, out = forward(p, d)
        one = h.dtype.type(1)
        delta = (out - d["y"]) / h.dtype.type(n)
        delta_h = (delta @ p["dense_2/w"].T) * (one - h * h)
        return {
            "dense_1/w": d["x"].T @ delta_h,
            "dense_1/b": delta_h.sum(axis=0),
            "dense_2/w": h.T @ delta,
            "dense_2/b": delta.sum(axis=0),
        }

    return Problem(name="mlp",
                   formula="h = tanh(x W1 + b1); yhat = h W2 + b2; l = 1/(2n) sum (yhat - y)^2",
                   data=data, theta0=theta0, base_lr=_base_lr(0.1, 0.05), _loss=loss, _grad=grad)


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "least_squares": least_squares,
    "ill_conditioned": ill_conditioned,
    "rosenbrock": rosenbrock,
    "mlp": mlp,
}


def get(name: str | Problem, **kwargs) -> Problem:
    """A problem by name (``least_squares``, ``ill_conditioned``, ``rosenbrock``, ``mlp``).

    A :class:`Problem` passes through unchanged.
    """
    if isinstance(name, Problem):
        if kwargs:
            raise ValueError("keyword arguments are only allowed with a problem name")
        return name
    _validate.one_of("problem", name, PROBLEMS)
    return PROBLEMS[name](**kwargs)
