r"""The playbook's optimizer update rules, exactly as written.

Source: *Deep Learning Tuning Playbook*, FAQ "What are the update rules for all
the popular optimization algorithms?". Each rule below carries its equations in
its docstring and its code follows them line for line. :math:`\eta_t`
(``lr``) is the learning rate *for this step*; schedules live in
:mod:`refplay.schedules` and are evaluated by the caller.

An optimizer is a pair of pure functions, as in optax::

    opt = optim.adam(beta1=0.9, beta2=0.999, eps=1e-8)
    state = opt.init(params)
    params, state = opt.update(params, grads, state, lr=schedule(step))

Nothing is updated in place: ``update`` returns new arrays and a new state.
float32 parameters stay float32 and float64 stay float64; scalar factors such
as Adam's bias correction are computed in float64 and then cast.

These rules differ from the defaults of popular frameworks in several places
(RMSProp's :math:`v_0 = 1` and learning rate inside the momentum buffer, Adam's
:math:`\epsilon` added before the bias correction, NAdam's numerator); see
``docs/oracle.md`` for the framework configurations that match each rule.

Weight decay is not part of the playbook's rules; it is opt-in:

* ``weight_decay_mode="l2"`` adds :math:`\lambda \theta_t` to the gradient
  before the rule (``torch.optim.SGD/Adam(weight_decay=...)``,
  ``optax.add_decayed_weights`` chained *before* the optimizer).
* ``weight_decay_mode="decoupled"`` applies
  :math:`\theta \leftarrow \theta - \eta_t \lambda \theta_t` alongside the rule
  (Loshchilov & Hutter 2019; ``torch.optim.AdamW``, ``optax.adamw`` and Keras'
  ``weight_decay=``, all of which multiply :math:`\lambda` by the scheduled
  learning rate).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay import tree as tree_lib

Tree = dict[str, np.ndarray]

__all__ = [
    "OptState", "Optimizer", "sgd", "momentum", "nesterov", "rmsprop", "adam", "nadam",
    "get", "RULES",
]


class OptState(NamedTuple):
    """Optimizer state: the step count ``t`` (updates done so far) and named slots.

    ``slots`` maps a buffer name of the playbook (``"v"``, ``"m"``) to a tree
    shaped like the parameters. ``to_arrays``/``from_arrays`` convert to and
    from a flat dict of arrays that ``np.savez`` can store without pickle.
    """

    step: int
    slots: dict[str, Tree]

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"step": np.asarray(self.step, dtype=np.int64)}
        for slot, tree in self.slots.items():
            for k, v in tree.items():
                out[f"{slot}:{k}"] = np.asarray(v)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "OptState":
        if "step" not in arrays:
            raise ValueError("optimizer state arrays must contain 'step'")
        slots: dict[str, Tree] = {}
        for key, v in arrays.items():
            if key == "step":
                continue
            slot, sep, name = key.partition(":")
            if not sep:
                raise ValueError(f"optimizer state key {key!r} is not of the form 'slot:param'")
            slots.setdefault(slot, {})[name] = np.array(v, copy=True)
        return cls(step=int(arrays["step"]), slots=slots)


UpdateFn = Callable[[Tree, Tree, OptState, float], tuple[Tree, OptState]]


@dataclass(frozen=True)
class Optimizer:
    """A named update rule: ``init(params) -> state`` and
    ``update(params, grads, state, lr) -> (params, state)``."""

    name: str
    hparams: dict = field(default_factory=dict)
    _init: Callable[[Tree], OptState] = field(repr=False, default=None)
    _update: UpdateFn = field(repr=False, default=None)

    def init(self, params: Mapping[str, np.ndarray]) -> OptState:
        return self._init(dict(params))

    def update(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
               state: OptState, lr: float) -> tuple[Tree, OptState]:
        """One step with learning rate ``lr`` (:math:`\\eta_t`, validated: finite, ≥ 0)."""
        lr = _validate.real("lr", lr, low=0.0)
        tree_lib.check_same_structure(params, grads)
        for slot, t in state.slots.items():
            tree_lib.check_same_structure(params, t, "params", f"state.slots[{slot!r}]")
        wd = self.hparams.get("weight_decay", 0.0)
        mode = self.hparams.get("weight_decay_mode", "l2")
        if wd and mode == "l2":
            # L2 regularization: the rule sees g + λθ.
            grads = {k: g + _cast(wd, g) * params[k] for k, g in grads.items()}
        new_params, new_state = self._update(dict(params), dict(grads), state, lr)
        if wd and mode == "decoupled":
            # Decoupled decay uses θ_t (the parameters before this step).
            new_params = {k: p - _cast(lr * wd, p) * params[k] for k, p in new_params.items()}
        return new_params, new_state


def _cast(x: float, like: np.ndarray):
    """A float64 scalar cast to the dtype of ``like`` (float32 stays float32)."""
    return np.dtype(np.asarray(like).dtype).type(x)


def _unit_interval(name: str, value) -> float:
    return _validate.real(name, value, low=0.0, high=1.0, high_open=True)


def _eps(value) -> float:
    return _validate.real("eps", value, low=0.0)


def _weight_decay(weight_decay, weight_decay_mode) -> dict:
    wd = _validate.real("weight_decay", weight_decay, low=0.0)
    _validate.one_of("weight_decay_mode", weight_decay_mode, ("l2", "decoupled"))
    return {"weight_decay": wd, "weight_decay_mode": weight_decay_mode}


# --------------------------------------------------------------------------- SGD
def sgd(*, weight_decay: float = 0.0, weight_decay_mode: str = "l2") -> Optimizer:
    r"""Stochastic gradient descent (playbook FAQ, "Stochastic gradient descent (SGD)").

    .. math:: \theta_{t+1} = \theta_t - \eta_t \nabla l(\theta_t)
    """
    def init(params: Tree) -> OptState:
        return OptState(step=0, slots={})

    def update(params: Tree, grads: Tree, state: OptState, lr: float):
        new = {}
        for k, theta in params.items():
            g = grads[k]
            new[k] = theta - _cast(lr, theta) * g
        return new, OptState(state.step + 1, {})

    return Optimizer("sgd", _weight_decay(weight_decay, weight_decay_mode), init, update)


# ---------------------------------------------------------------------- Momentum
def momentum(gamma: float = 0.9, *, weight_decay: float = 0.0,
             weight_decay_mode: str = "l2") -> Optimizer:
    r"""Heavy-ball momentum (playbook FAQ, "Momentum").

    .. math::
        v_0 &= 0 \\
        v_{t+1} &= \gamma v_t + \nabla l(\theta_t) \\
        \theta_{t+1} &= \theta_t - \eta_t v_{t+1}

    The learning rate stays *outside* the buffer, so a schedule changes the
    step immediately (``torch.optim.SGD(momentum=γ, dampening=0)`` and
    ``optax.sgd(momentum=γ)`` compute the same).
    """
    gamma = _unit_interval("gamma", gamma)

    def init(params: Tree) -> OptState:
        return OptState(step=0, slots={"v": tree_lib.zeros_like(params)})

    def update(params: Tree, grads: Tree, state: OptState, lr: float):
        new_params, new_v = {}, {}
        for k, theta in params.items():
            g, v = grads[k], state.slots["v"][k]
            v = _cast(gamma, v) * v + g
            new_params[k] = theta - _cast(lr, theta) * v
            new_v[k] = v
        return new_params, OptState(state.step + 1, {"v": new_v})

    return Optimizer("momentum", {"gamma": gamma, **_weight_decay(weight_decay, weight_decay_mode)},
                     init, update)


# ---------------------------------------------------------------------- Nesterov
def nesterov(gamma: float = 0.9, *, weight_decay: float = 0.0,
             weight_decay_mode: str = "l2") -> Optimizer:
    r"""Nesterov momentum (playbook FAQ, "Nesterov").

    .. math::
        v_0 &= 0 \\
        v_{t+1} &= \gamma v_t + \nabla l(\theta_t) \\
        \theta_{t+1} &= \theta_t - \eta_t (\gamma v_{t+1} + \nabla l(\theta_t))
    """
    gamma = _unit_interval("gamma", gamma)

    def init(params: Tree) -> OptState:
        return OptState(step=0, slots={"v": tree_lib.zeros_like(params)})

    def update(params: Tree, grads: Tree, state: OptState, lr: float):
        new_params, new_v = {}, {}
        for k, theta in params.items():
            g, v = grads[k], state.slots["v"][k]
            v = _cast(gamma, v) * v + g
            new_params[k] = theta - _cast(lr, theta) * (_cast(gamma, v) * v + g)
            new_v[k] = v
        return new_params, OptState(state.step + 1, {"v": new_v})

    return Optimizer("nesterov", {"gamma": gamma, **_weight_decay(weight_decay, weight_decay_mode)},
                     init, update)


# ----------------------------------------------------------------------- RMSProp
def rmsprop(rho: float = 0.9, gamma: float = 0.0, eps: float = 1e-10, *,
            weight_decay: float = 0.0, weight_decay_mode: str = "l2") -> Optimizer:
    r"""RMSProp (playbook FAQ, "RMSProp").

    .. math::
        v_0 &= 1, \quad m_0 = 0 \\
        v_{t+1} &= \rho v_t + (1 - \rho) \nabla l(\theta_t)^2 \\
        m_{t+1} &= \gamma m_t + \frac{\eta_t}{\sqrt{v_{t+1} + \epsilon}} \nabla l(\theta_t) \\
        \theta_{t+1} &= \theta_t - m_{t+1}

    Three details differ from ``torch.optim.RMSprop``: :math:`v_0 = 1` (not 0),
    :math:`\epsilon` *inside* the square root, and the learning rate *inside*
    the momentum buffer (so with :math:`\gamma > 0` a change of
    :math:`\eta_t` reaches the parameters gradually). This is TensorFlow 1's
    ``RMSPropOptimizer``, whose defaults (ρ = 0.9, γ = 0, ε = 1e-10) are used here.
    """
    rho = _unit_interval("rho", rho)
    gamma = _unit_interval("gamma", gamma)
    eps = _eps(eps)

    def init(params: Tree) -> OptState:
        return OptState(step=0, slots={"v": tree_lib.full_like(params, 1.0),
                                       "m": tree_lib.zeros_like(params)})

    def update(params: Tree, grads: Tree, state: OptState, lr: float):
        new_params, new_v, new_m = {}, {}, {}
        for k, theta in params.items():
            g, v, m = grads[k], state.slots["v"][k], state.slots["m"][k]
            v = _cast(rho, v) * v + _cast(1.0 - rho, v) * g**2
            m = _cast(gamma, m) * m + _cast(lr, m) / np.sqrt(v + _cast(eps, v)) * g
            new_params[k] = theta - m
            new_v[k], new_m[k] = v, m
        return new_params, OptState(state.step + 1, {"v": new_v, "m": new_m})

    hp = {"rho": rho, "gamma": gamma, "eps": eps, **_weight_decay(weight_decay, weight_decay_mode)}
    return Optimizer("rmsprop", hp, init, update)


# -------------------------------------------------------------------------- Adam
def _bias_correction(beta1: float, beta2: float, t_plus_1: int) -> float:
    r""":math:`b_{t+1} = \sqrt{1 - \beta_2^{t+1}} / (1 - \beta_1^{t+1})`, in float64."""
    return math.sqrt(1.0 - beta2 ** t_plus_1) / (1.0 - beta1 ** t_plus_1)


def adam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, *,
         weight_decay: float = 0.0, weight_decay_mode: str = "l2") -> Optimizer:
    r"""Adam (playbook FAQ, "ADAM").

    .. math::
        m_0 &= 0, \quad v_0 = 0 \\
        m_{t+1} &= \beta_1 m_t + (1 - \beta_1) \nabla l(\theta_t) \\
        v_{t+1} &= \beta_2 v_t + (1 - \beta_2) \nabla l(\theta_t)^2 \\
        b_{t+1} &= \frac{\sqrt{1 - \beta_2^{t+1}}}{1 - \beta_1^{t+1}} \\
        \theta_{t+1} &= \theta_t - \alpha_t \frac{m_{t+1}}{\sqrt{v_{t+1}} + \epsilon} b_{t+1}

    :math:`\epsilon` is added to :math:`\sqrt{v}` *before* the bias
    correction (the "ε-hat" form of Kingma & Ba's Algorithm 1, end of §2).
    ``torch.optim.Adam`` and ``optax.adam`` add ε after it; they agree with
    this rule when ε is replaced by :math:`\epsilon/\sqrt{1-\beta_2^{t+1}}`.
    :math:`\alpha_t` is the learning rate ``lr``. The scalar
    :math:`\alpha_t b_{t+1}` is formed first in float64.
    """
    beta1 = _unit_interval("beta1", beta1)
    beta2 = _unit_interval("beta2", beta2)
    eps = _eps(eps)
    return _adam_family("adam", beta1, beta2, eps, nesterov=False,
                        wd=_weight_decay(weight_decay, weight_decay_mode))


def nadam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, *,
          weight_decay: float = 0.0, weight_decay_mode: str = "l2") -> Optimizer:
    r"""NAdam (playbook FAQ, "NADAM").

    .. math::
        m_0 &= 0, \quad v_0 = 0 \\
        m_{t+1} &= \beta_1 m_t + (1 - \beta_1) \nabla l(\theta_t) \\
        v_{t+1} &= \beta_2 v_t + (1 - \beta_2) \nabla l(\theta_t)^2 \\
        b_{t+1} &= \frac{\sqrt{1 - \beta_2^{t+1}}}{1 - \beta_1^{t+1}} \\
        \theta_{t+1} &= \theta_t - \alpha_t
            \frac{\beta_1 m_{t+1} + (1 - \beta_1) \nabla l(\theta_t)}{\sqrt{v_{t+1}} + \epsilon} b_{t+1}

    This is the simple Nesterov form of Adam without Dozat's momentum
    schedule; ``torch.optim.NAdam``, ``optax.nadam`` and Keras' ``Nadam``
    implement different variants (see ``docs/oracle.md``).
    """
    beta1 = _unit_interval("beta1", beta1)
    beta2 = _unit_interval("beta2", beta2)
    eps = _eps(eps)
    return _adam_family("nadam", beta1, beta2, eps, nesterov=True,
                        wd=_weight_decay(weight_decay, weight_decay_mode))


def _adam_family(name: str, beta1: float, beta2: float, eps: float, *, nesterov: bool,
                 wd: dict) -> Optimizer:
    def init(params: Tree) -> OptState:
        return OptState(step=0, slots={"m": tree_lib.zeros_like(params),
                                       "v": tree_lib.zeros_like(params)})

    def update(params: Tree, grads: Tree, state: OptState, lr: float):
        b = _bias_correction(beta1, beta2, state.step + 1)
        new_params, new_m, new_v = {}, {}, {}
        for k, theta in params.items():
            g, m, v = grads[k], state.slots["m"][k], state.slots["v"][k]
            m = _cast(beta1, m) * m + _cast(1.0 - beta1, m) * g
            v = _cast(beta2, v) * v + _cast(1.0 - beta2, v) * g**2
            numerator = _cast(beta1, m) * m + _cast(1.0 - beta1, m) * g if nesterov else m
            new_params[k] = theta - _cast(lr * b, theta) * (numerator / (np.sqrt(v) + _cast(eps, v)))
            new_m[k], new_v[k] = m, v
        return new_params, OptState(state.step + 1, {"m": new_m, "v": new_v})

    return Optimizer(name, {"beta1": beta1, "beta2": beta2, "eps": eps, **wd}, init, update)


# ----------------------------------------------------------------------- by name
RULES: dict[str, Callable[..., Optimizer]] = {
    "sgd": sgd, "momentum": momentum, "nesterov": nesterov,
    "rmsprop": rmsprop, "adam": adam, "nadam": nadam,
}


def get(name: str, **hparams) -> Optimizer:
    """Build an optimizer by its playbook name, e.g. ``get("nadam", beta1=0.95)``.

    Unknown names and unknown hyperparameters are errors, never ignored.
    """
    _validate.one_of("optimizer", name, RULES)
    factory = RULES[name]
    allowed = [p for p in inspect.signature(factory).parameters]
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for optimizer {name!r}; allowed {allowed}")
    return factory(**hparams)
