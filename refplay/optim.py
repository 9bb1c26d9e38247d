r"""The playbook's optimizer update rules, exactly as written.

Source: *Deep Learning Tuning Playbook*, FAQ "What are the update rules for all
the popular optimization algorithms?". Each rule below carries its equations in
its docstring, and its code follows them line for line. :math:`\eta_t`
(``lr``) is the learning rate *for this step*; schedules live in
:mod:`refplay.schedules` and are evaluated by the caller.

An optimizer is a pair of pure functions, as in optax::

    opt = optim.adam(beta1=0.9, beta2=0.999, eps=1e-8)
    state = opt.init(params)
    params, state = opt.update(params, grads, state, lr=schedule(step))

Nothing is updated in place: ``update`` returns new arrays and a new state.

Every rule is elementwise, and + − × ÷ √ are correctly rounded, so a rule
applied once to the concatenation of many arrays computes, bit for bit, what
it computes array by array. ``run_trial`` relies on it: after its first step
it keeps the parameters and slots in one buffer per dtype
(:class:`refplay.tree.FlatLayout`) and calls ``update`` on those buffers, one
call of the rule per step instead of one per parameter array (for a
78-array Transformer, ~1 ms of Python per step less).

Dtypes. float32 parameters stay float32 and float64 stay float64, and so do
the optimizer's buffers; gradients are cast to the dtype of their parameter.
Hyperparameters and ``lr`` are validated into Python floats, which NumPy
treats as "weak" scalars (NEP 50): ``0.9 * v`` rounds 0.9 to ``v``'s dtype and
keeps that dtype. Scalar factors such as Adam's bias correction
:math:`b_{t+1}` and the product :math:`\eta_t b_{t+1}` are computed in float64
(Python arithmetic) and rounded once when they meet an array.

These rules differ from the defaults of popular frameworks in several places
(RMSProp's :math:`v_0 = 1` and learning rate inside the momentum buffer, Adam's
:math:`\epsilon` added before the bias correction, NAdam's numerator); each
docstring says which framework configuration computes the same thing.

Weight decay is not part of the playbook's rules; it is opt-in and explicit:

* ``weight_decay_mode="l2"`` adds :math:`\lambda \theta_t` to the gradient
  before the rule, i.e. the rule sees :math:`\nabla l(\theta_t) + \lambda\theta_t`
  (``torch.optim.SGD/RMSprop/Adam(weight_decay=λ)``; in optax,
  ``optax.chain(optax.add_decayed_weights(λ), <rule>)``).
* ``weight_decay_mode="decoupled"`` applies
  :math:`\theta_{t+1} \leftarrow \theta_{t+1} - \eta_t \lambda \theta_t` after
  the rule (Loshchilov & Hutter 2019, with the decay scaled by the scheduled
  learning rate as in ``torch.optim.AdamW``, ``optax.adamw`` and Keras'
  ``AdamW``/``weight_decay=``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay import tree as tree_lib


__all__ = [
    "OptState", "Optimizer", "sgd", "momentum", "nesterov", "rmsprop", "adam", "nadam",
    "bias_correction", "get", "RULES",
]


class OptState(NamedTuple):
    """Optimizer state: the step count ``t`` (updates done so far) and named slots.

    ``slots`` maps a buffer name of the playbook (``"v"``, ``"m"``) to a tree
    shaped like the parameters. ``to_arrays``/``from_arrays`` convert to and
    from a flat dict of arrays (keys ``"step"`` and ``"<slot>:<param>"``) that
    ``refplay.io.save_npz`` stores without pickle.
    """

    step: int
    slots: dict[str, Tree]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as a flat dict: ``"step"`` and one ``"<slot>:<param>"`` array per leaf."""
        out: dict[str, np.ndarray] = {"step": np.asarray(self.step, dtype=np.int64)}
        for slot, tree in self.slots.items():
            for k, v in tree.items():
                out[f"{slot}:{k}"] = np.asarray(v)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "OptState":
        """The inverse of :meth:`to_arrays` (arrays copied); ``ValueError`` for a malformed key."""
        if "step" not in arrays:
            raise ValueError("optimizer state arrays must contain 'step'")
        step = np.asarray(arrays["step"])
        if step.shape != () or step.dtype.kind not in "iu":
            raise ValueError(f"optimizer state 'step' must be an integer scalar, got {step!r}")
        step = _validate.integer("step", int(step), low=0)
        slots: dict[str, Tree] = {}
        for key, v in arrays.items():
            if key == "step":
                continue
            slot, sep, name = key.partition(":")
            if not sep:
                raise ValueError(f"optimizer state key {key!r} is not of the form 'slot:param'")
            slots.setdefault(slot, {})[name] = np.array(v, copy=True)
        return cls(step=step, slots=slots)


# A leaf rule maps one parameter array, its gradient and its slot arrays (in
# the order of Optimizer.slots) to the new parameter and new slot arrays.
# ``t`` is the number of updates done so far (the playbook's subscript t).
LeafRule = Callable[..., tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class Optimizer:
    """A named update rule: ``init(params) -> state`` and
    ``update(params, grads, state, lr) -> (params, state)``.

    ``slots`` lists the rule's buffers with their initial values, e.g.
    ``(("v", 1.0), ("m", 0.0))`` for RMSProp; ``rule`` is the per-array
    update, written as the playbook's equations.
    """

    name: str
    hparams: dict
    slots: tuple[tuple[str, float], ...]
    rule: LeafRule = field(repr=False, compare=False)

    def init(self, params: Mapping[str, np.ndarray]) -> OptState:
        """Fresh state: step 0 and every slot filled with its initial value."""
        params = tree_lib.check_floating(params, "params")
        return OptState(step=0, slots={s: tree_lib.full_like(params, v0) for s, v0 in self.slots})

    def update(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
               state: OptState, lr: float, *, check: bool = True) -> tuple[Tree, OptState]:
        """One step with learning rate ``lr`` (:math:`\\eta_t`; finite and ≥ 0).

        ``check=True`` (the default) validates every input: ``params`` and
        ``grads`` floating-point trees of the same keys and shapes, ``state``
        this optimizer's state for ``params`` (slots, step, dtypes), ``lr``.
        ``check=False`` skips that and only computes: for a training loop whose
        first update checked the same trees, which keep their keys, shapes and
        dtypes from step to step. The arithmetic is the same, bitwise; the
        checks are a sizeable share of an update of a small model.
        """
        if check:
            params, grads, lr = self.check_inputs(params, grads, state, lr)
        else:
            lr = float(lr)      # a NumPy scalar would not be "weak": it could promote float32
        wd = self.hparams["weight_decay"]
        decoupled = self.hparams["weight_decay_mode"] == "decoupled"
        names = [s for s, _ in self.slots]
        slots, t, rule = state.slots, state.step, self.rule

        new_params: Tree = {}
        new_slots: dict[str, Tree] = {s: {} for s in names}
        for k, theta in params.items():
            g = grads[k].astype(theta.dtype, copy=False)   # gradients take their parameter's dtype
            if wd and not decoupled:
                g = g + wd * theta                       # L2: the rule sees ∇l(θ_t) + λθ_t
            theta_new, *slot_values = rule(theta, g, *[slots[s][k] for s in names], lr=lr, t=t)
            if wd and decoupled:
                theta_new = theta_new - (lr * wd) * theta  # decoupled: − η_t λ θ_t
            new_params[k] = theta_new
            for s, value in zip(names, slot_values):
                new_slots[s][k] = value
        return new_params, OptState(t + 1, new_slots)

    def check_inputs(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
                     state: OptState, lr: float) -> tuple[Tree, Tree, float]:
        """The checks of :meth:`update`: ``(params, grads, lr)`` as arrays and a float, or
        ``TypeError``/``ValueError`` naming the input that does not fit."""
        lr = _validate.real("lr", lr, low=0.0)
        params = tree_lib.check_floating(params, "params")
        grads = tree_lib.check_floating(grads, "grads")
        tree_lib.check_same_structure(params, grads)
        self._check_state(params, state)
        return params, grads, lr

    def _check_state(self, params: Tree, state: OptState) -> None:
        if not isinstance(state, OptState):
            raise TypeError(f"state must be an OptState (from {self.name}.init), "
                            f"got {type(state).__name__}")
        expected = sorted(s for s, _ in self.slots)
        if sorted(state.slots) != expected:
            raise ValueError(f"state has slots {sorted(state.slots)}, but {self.name} expects "
                             f"{expected}; was it created by another optimizer?")
        _validate.integer("state.step", state.step, low=0)
        for s, t in state.slots.items():
            tree_lib.check_same_structure(params, t, "params", f"state.slots[{s!r}]")
            for k, buf in t.items():
                # A float64 buffer would silently promote float32 parameters to float64.
                if np.asarray(buf).dtype != params[k].dtype:
                    raise ValueError(
                        f"state.slots[{s!r}][{k!r}] has dtype {np.asarray(buf).dtype}, but "
                        f"params[{k!r}] has dtype {params[k].dtype}; the optimizer state must "
                        f"have the dtype of its parameters (re-create it with init)")


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

    Same as ``torch.optim.SGD(lr)`` and ``optax.sgd(lr)``.
    """
    def rule(theta, g, *, lr, t):
        theta = theta - lr * g                  # θ_{t+1} = θ_t − η_t ∇l(θ_t)
        return (theta,)

    return Optimizer(name="sgd", hparams=_weight_decay(weight_decay, weight_decay_mode), slots=(),
                     rule=rule)


# ---------------------------------------------------------------------- Momentum
def momentum(gamma: float = 0.9, *, weight_decay: float = 0.0,
             weight_decay_mode: str = "l2") -> Optimizer:
    r"""Heavy-ball momentum (playbook FAQ, "Momentum").

    .. math::
        v_0 &= 0 \\
        v_{t+1} &= \gamma v_t + \nabla l(\theta_t) \\
        \theta_{t+1} &= \theta_t - \eta_t v_{t+1}

    The learning rate stays *outside* the buffer, so a schedule changes the
    step immediately. ``torch.optim.SGD(lr, momentum=γ)`` (dampening 0) and
    ``optax.sgd(lr, momentum=γ)`` compute the same.
    """
    gamma = _unit_interval("gamma", gamma)

    def rule(theta, g, v, *, lr, t):
        v = gamma * v + g                       # v_{t+1} = γ v_t + ∇l(θ_t)
        theta = theta - lr * v                  # θ_{t+1} = θ_t − η_t v_{t+1}
        return theta, v

    hp = {"gamma": gamma, **_weight_decay(weight_decay, weight_decay_mode)}
    return Optimizer(name="momentum", hparams=hp, slots=(("v", 0.0),), rule=rule)


# ---------------------------------------------------------------------- Nesterov
def nesterov(gamma: float = 0.9, *, weight_decay: float = 0.0,
             weight_decay_mode: str = "l2") -> Optimizer:
    r"""Nesterov momentum (playbook FAQ, "Nesterov").

    .. math::
        v_0 &= 0 \\
        v_{t+1} &= \gamma v_t + \nabla l(\theta_t) \\
        \theta_{t+1} &= \theta_t - \eta_t (\gamma v_{t+1} + \nabla l(\theta_t))

    ``torch.optim.SGD(lr, momentum=γ, nesterov=True)`` and
    ``optax.sgd(lr, momentum=γ, nesterov=True)`` compute the same.
    """
    gamma = _unit_interval("gamma", gamma)

    def rule(theta, g, v, *, lr, t):
        v = gamma * v + g                       # v_{t+1} = γ v_t + ∇l(θ_t)
        theta = theta - lr * (gamma * v + g)    # θ_{t+1} = θ_t − η_t (γ v_{t+1} + ∇l(θ_t))
        return theta, v

    hp = {"gamma": gamma, **_weight_decay(weight_decay, weight_decay_mode)}
    return Optimizer(name="nesterov", hparams=hp, slots=(("v", 0.0),), rule=rule)


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
    ``tf.compat.v1.train.RMSPropOptimizer``, whose defaults (ρ = 0.9, γ = 0,
    ε = 1e-10) are used here.
    """
    rho = _unit_interval("rho", rho)
    gamma = _unit_interval("gamma", gamma)
    eps = _eps(eps)

    def rule(theta, g, v, m, *, lr, t):
        v = rho * v + (1.0 - rho) * g**2                 # v_{t+1} = ρ v_t + (1 − ρ) ∇l²
        m = gamma * m + lr / np.sqrt(v + eps) * g        # m_{t+1} = γ m_t + η_t/√(v_{t+1}+ε) ∇l
        theta = theta - m                                # θ_{t+1} = θ_t − m_{t+1}
        return theta, v, m

    hp = {"rho": rho, "gamma": gamma, "eps": eps, **_weight_decay(weight_decay, weight_decay_mode)}
    return Optimizer(name="rmsprop", hparams=hp, slots=(("v", 1.0), ("m", 0.0)), rule=rule)


# ------------------------------------------------------------------ Adam, NAdam
def bias_correction(beta1: float, beta2: float, t: int) -> float:
    r""":math:`b_{t+1} = \sqrt{1 - \beta_2^{t+1}} / (1 - \beta_1^{t+1})` in float64.

    ``t`` is the number of updates done before this one (0 for the first).
    """
    return math.sqrt(1.0 - beta2 ** (t + 1)) / (1.0 - beta1 ** (t + 1))


def adam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, *,
         weight_decay: float = 0.0, weight_decay_mode: str = "l2") -> Optimizer:
    r"""Adam (playbook FAQ, "ADAM").

    .. math::
        m_0 &= 0, \quad v_0 = 0 \\
        m_{t+1} &= \beta_1 m_t + (1 - \beta_1) \nabla l(\theta_t) \\
        v_{t+1} &= \beta_2 v_t + (1 - \beta_2) \nabla l(\theta_t)^2 \\
        b_{t+1} &= \frac{\sqrt{1 - \beta_2^{t+1}}}{1 - \beta_1^{t+1}} \\
        \theta_{t+1} &= \theta_t - \alpha_t \frac{m_{t+1}}{\sqrt{v_{t+1}} + \epsilon} b_{t+1}

    :math:`\alpha_t` is the learning rate ``lr``. :math:`\epsilon` is added to
    :math:`\sqrt{v}` *before* the bias correction (the "ε-hat" form at the end
    of §2 of Kingma & Ba). ``torch.optim.Adam`` and ``optax.adam`` add their
    ε' to the bias-corrected :math:`\sqrt{\hat v}` instead; they compute this
    rule only if ε' is set to :math:`\epsilon / \sqrt{1 - \beta_2^{t+1}}` at
    each step, so the two forms differ most in the first steps and when ε is
    not tiny. The scalar :math:`\alpha_t b_{t+1}` is formed first in float64.
    """
    beta1 = _unit_interval("beta1", beta1)
    beta2 = _unit_interval("beta2", beta2)
    eps = _eps(eps)

    def rule(theta, g, m, v, *, lr, t):
        m = beta1 * m + (1.0 - beta1) * g               # m_{t+1} = β1 m_t + (1 − β1) ∇l
        v = beta2 * v + (1.0 - beta2) * g**2            # v_{t+1} = β2 v_t + (1 − β2) ∇l²
        b = bias_correction(beta1, beta2, t)            # b_{t+1}
        theta = theta - (lr * b) * (m / (np.sqrt(v) + eps))
        return theta, m, v

    hp = {"beta1": beta1, "beta2": beta2, "eps": eps,
          **_weight_decay(weight_decay, weight_decay_mode)}
    return Optimizer(name="adam", hparams=hp, slots=(("m", 0.0), ("v", 0.0)), rule=rule)


def nadam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, *,
          weight_decay: float = 0.0, weight_decay_mode: str = "l2") -> Optimizer:
    r"""NAdam (playbook FAQ, "NADAM").

    .. math::
        m_0 &= 0, \quad v_0 = 0 \\
        m_{t+1} &= \beta_1 m_t + (1 - \beta_1) \nabla l(\theta_t) \\
        v_{t+1} &= \beta_2 v_t + (1 - \beta_2) \nabla l(\theta_t)^2 \\
        b_{t+1} &= \frac{\sqrt{1 - \beta_2^{t+1}}}{1 - \beta_1^{t+1}} \\
        \theta_{t+1} &= \theta_t - \alpha_t
            \frac{\beta_1 m_{t+1} + (1 - \beta_1) \nabla l(\theta_t)}
                 {\sqrt{v_{t+1}} + \epsilon} b_{t+1}

    The simple Nesterov form of Adam, with the same ε-hat placement as
    :func:`adam` and without Dozat's momentum-decay schedule.
    ``torch.optim.NAdam`` (momentum decay ψ = 0.004 by default), ``optax.nadam``
    and Keras' ``Nadam`` implement other variants and do not match it exactly.
    """
    beta1 = _unit_interval("beta1", beta1)
    beta2 = _unit_interval("beta2", beta2)
    eps = _eps(eps)

    def rule(theta, g, m, v, *, lr, t):
        m = beta1 * m + (1.0 - beta1) * g               # m_{t+1} = β1 m_t + (1 − β1) ∇l
        v = beta2 * v + (1.0 - beta2) * g**2            # v_{t+1} = β2 v_t + (1 − β2) ∇l²
        b = bias_correction(beta1, beta2, t)            # b_{t+1}
        numerator = beta1 * m + (1.0 - beta1) * g       # β1 m_{t+1} + (1 − β1) ∇l
        theta = theta - (lr * b) * (numerator / (np.sqrt(v) + eps))
        return theta, m, v

    hp = {"beta1": beta1, "beta2": beta2, "eps": eps,
          **_weight_decay(weight_decay, weight_decay_mode)}
    return Optimizer(name="nadam", hparams=hp, slots=(("m", 0.0), ("v", 0.0)), rule=rule)


# ----------------------------------------------------------------------- by name
RULES: dict[str, Callable[..., Optimizer]] = {
    "sgd": sgd, "momentum": momentum, "nesterov": nesterov,
    "rmsprop": rmsprop, "adam": adam, "nadam": nadam,
}


def get(name: str, **hparams) -> Optimizer:
    """Build an optimizer by its playbook name, e.g. ``get("nadam", beta1=0.95)``.

    Unknown names and unknown hyperparameters are errors, never ignored.
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string, got {name!r}")
    _validate.one_of("optimizer", name, RULES)
    _validate.known_hparams("optimizer", name, RULES[name], hparams)
    return RULES[name](**hparams)
