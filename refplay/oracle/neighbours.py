r"""Neighbour forms: the update rules people write when they mean a playbook rule.

The playbook fixes one form of each rule (:mod:`refplay.optim`). Next to it
live forms that are correct elsewhere — ``torch.optim.Adam`` adds ε *after*
the bias correction, ``torch.optim.RMSprop`` starts from :math:`v_0 = 0` and
keeps η outside its momentum buffer, torch's NAdam is Dozat's — and forms
that are common mistakes (the bias correction on m only, one step ahead, a
flipped sign). Each is a :class:`Form` with its equation; :func:`build` turns
one into an optimizer with the ``init``/``update`` interface of
:class:`refplay.optim.Optimizer`, so it can be a reference
(``oracle.compare(step, "adam", form="torch")``) or a suspect (the diagnosis
in :mod:`refplay.oracle.diagnose` replays every form on your gradients).

The playbook's own equations stay in :mod:`refplay.optim`; these are
references *beside* them, each tested against the framework it names
(``tests/test_oracle_neighbours_vs_frameworks.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from refplay import _validate, optim
from refplay.tree import Tree

__all__ = ["Form", "FORMS", "PLAYBOOK", "forms", "get_form", "build", "replay", "equation"]

PLAYBOOK = "playbook"
DOCS = "docs/oracle.md#neighbour-forms"


class Form(NamedTuple):
    """One form of a rule: its name, what it is, where it is found and its equation.

    ``kind`` is ``"playbook"``, ``"variant"`` (what some framework or paper
    computes) or ``"mistake"`` (a known bug). ``extra`` holds hyperparameters
    only this form has, with their defaults (torch NAdam's ``momentum_decay``).
    ``make(hparams) -> (slots, leaf_rule)`` in the format of
    :class:`refplay.optim.Optimizer`; ``None`` for the playbook form.
    """

    rule: str
    name: str
    kind: str
    says: str
    found_in: str
    text: str
    latex: str
    aliases: tuple = ()
    extra: dict = {}
    make: Callable | None = None


def _bc(beta: float, s: int) -> float:
    """:math:`1 - \\beta^s` in float64."""
    return 1.0 - beta ** s


# ------------------------------------------------------------------ Adam family
def _adam_torch(hp):
    r""":math:`\theta \leftarrow \theta - \eta_t \hat m / (\sqrt{\hat v} + \epsilon)`,
    :math:`\hat m = m/(1-\beta_1^{t+1})`, :math:`\hat v = v/(1-\beta_2^{t+1})`."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]

    def rule(theta, g, m, v, *, lr, t):
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g**2
        m_hat, v_hat = m / _bc(b1, t + 1), v / _bc(b2, t + 1)
        return theta - lr * (m_hat / (np.sqrt(v_hat) + eps)), m, v

    return (("m", 0.0), ("v", 0.0)), rule


def _adam_like(hp, direction):
    """Adam's moments with ``direction(m, v, t) -> step before η``: the mistakes' skeleton."""
    b1, b2 = hp["beta1"], hp["beta2"]

    def rule(theta, g, m, v, *, lr, t):
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g**2
        return theta - lr * direction(m, v, t), m, v

    return (("m", 0.0), ("v", 0.0)), rule


def _adam_eps_in_sqrt(hp):
    r""":math:`\theta \leftarrow \theta - \eta_t b_{t+1} m/\sqrt{v + \epsilon}`."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    return _adam_like(hp, lambda m, v, t: (math.sqrt(_bc(b2, t + 1)) / _bc(b1, t + 1))
                      * (m / np.sqrt(v + eps)))


def _adam_bias_m_only(hp):
    r""":math:`\theta \leftarrow \theta - \eta_t
    \frac{m/(1-\beta_1^{t+1})}{\sqrt{v} + \epsilon}`."""
    b1, eps = hp["beta1"], hp["eps"]
    return _adam_like(hp, lambda m, v, t: (m / _bc(b1, t + 1)) / (np.sqrt(v) + eps))


def _adam_bias_ahead(hp):
    r"""The playbook's step with :math:`b_{t+2}` in place of :math:`b_{t+1}` (a step counter
    incremented twice, or started at 1 and incremented before use)."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    return _adam_like(hp, lambda m, v, t: (math.sqrt(_bc(b2, t + 2)) / _bc(b1, t + 2))
                      * (m / (np.sqrt(v) + eps)))


def _adam_no_bias(hp):
    r""":math:`\theta \leftarrow \theta - \eta_t m/(\sqrt{v} + \epsilon)`."""
    eps = hp["eps"]
    return _adam_like(hp, lambda m, v, t: m / (np.sqrt(v) + eps))


def _nadam_dozat(hp):
    r"""torch's NAdam (Dozat 2016) with momentum schedule
    :math:`\mu_s = \beta_1 (1 - \tfrac12 0.96^{s\psi})`, :math:`s = t + 1`:

    .. math::
        \theta \leftarrow \theta - \eta_t \Big[
            \tfrac{1-\mu_s}{1-\prod_{i\le s}\mu_i} g
            + \tfrac{\mu_{s+1}}{1-\prod_{i\le s+1}\mu_i} m \Big]
            \Big/ \Big(\sqrt{v/(1-\beta_2^s)} + \epsilon\Big)
    """
    b1, b2, eps, psi = hp["beta1"], hp["beta2"], hp["eps"], hp["momentum_decay"]

    def mu(s):
        return b1 * (1.0 - 0.5 * 0.96 ** (s * psi))

    def rule(theta, g, m, v, *, lr, t):
        s = t + 1
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g**2
        prod = math.prod(mu(i) for i in range(1, s + 1))
        denom = np.sqrt(v / _bc(b2, s)) + eps
        theta = theta - (lr * (1.0 - mu(s)) / (1.0 - prod)) * (g / denom)
        theta = theta - (lr * mu(s + 1) / (1.0 - prod * mu(s + 1))) * (m / denom)
        return theta, m, v

    return (("m", 0.0), ("v", 0.0)), rule


def _nadam_optax(hp):
    r"""``optax.nadam`` (``adam(nesterov=True)``):
    :math:`\theta \leftarrow \theta - \eta_t \big[\tfrac{\beta_1 m}{1-\beta_1^{s+1}}
    + \tfrac{(1-\beta_1) g}{1-\beta_1^{s}}\big] / (\sqrt{\hat v} + \epsilon)`, :math:`s = t+1`."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]

    def rule(theta, g, m, v, *, lr, t):
        s = t + 1
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g**2
        m_hat = b1 * m / _bc(b1, s + 1) + (1.0 - b1) * g / _bc(b1, s)
        return theta - lr * (m_hat / (np.sqrt(v / _bc(b2, s)) + eps)), m, v

    return (("m", 0.0), ("v", 0.0)), rule


# ---------------------------------------------------------------------- RMSProp
def _rmsprop(v0: float, eps_in_sqrt: bool, lr_in_buffer: bool):
    r"""RMSProp with each of the playbook's three choices switchable:
    :math:`v_0`, ε inside or outside the root, η inside or outside the buffer.
    The buffer ``m`` holds :math:`m_{t+1}` (η inside) or :math:`m_{t+1}/\eta` (outside)."""

    def make(hp):
        rho, gamma, eps = hp["rho"], hp["gamma"], hp["eps"]

        def rule(theta, g, v, m, *, lr, t):
            v = rho * v + (1.0 - rho) * g**2
            scaled = g / (np.sqrt(v + eps) if eps_in_sqrt else np.sqrt(v) + eps)
            if lr_in_buffer:
                m = gamma * m + lr * scaled
                return theta - m, v, m
            m = gamma * m + scaled
            return theta - lr * m, v, m

        return (("v", v0), ("m", 0.0)), rule

    return make


# -------------------------------------------------------------- momentum family
def _momentum_lr_inside(nesterov: bool):
    r"""Keras' SGD momentum: :math:`u \leftarrow \gamma u + \eta_t g`, then
    :math:`\theta \leftarrow \theta - u` (or :math:`- (\gamma u + \eta_t g)` with Nesterov)."""

    def make(hp):
        gamma = hp["gamma"]

        def rule(theta, g, u, *, lr, t):
            u = gamma * u + lr * g
            return (theta - (gamma * u + lr * g) if nesterov else theta - u), u

        return (("v", 0.0),), rule

    return make


def _momentum_dampened(hp):
    r"""``torch.optim.SGD(momentum=γ, dampening=γ)``:
    :math:`v_1 = g_0`, then :math:`v \leftarrow \gamma v + (1-\gamma) g`;
    :math:`\theta \leftarrow \theta - \eta_t v` (torch starts the buffer at the first
    gradient, undamped)."""
    gamma = hp["gamma"]

    def rule(theta, g, v, *, lr, t):
        v = g if t == 0 else gamma * v + (1.0 - gamma) * g
        return theta - lr * v, v

    return (("v", 0.0),), rule


def _other_rule(name: str):
    """Another playbook rule with this one's hyperparameters (NAdam for Adam, ...)."""

    def make(hp):
        opt = optim.get(name, **{k: v for k, v in hp.items()})
        return opt.slots, opt.rule

    return make


# ------------------------------------------------------------------- catalogue
_ADAM_TEXT = ("m_0 = v_0 = 0; m_{t+1} = b1 m_t + (1-b1) g_t; v_{t+1} = b2 v_t + (1-b2) g_t^2; "
              "b_{t+1} = sqrt(1-b2^(t+1)) / (1-b1^(t+1)); ")
_ADAM_TEX = (r"m_0 = v_0 = 0,\ m_{t+1} = \beta_1 m_t + (1-\beta_1) g_t,\ "
             r"v_{t+1} = \beta_2 v_t + (1-\beta_2) g_t^2,\ "
             r"b_{t+1} = \frac{\sqrt{1-\beta_2^{t+1}}}{1-\beta_1^{t+1}},\ ")
_RMS_TEXT = "v_{t+1} = rho v_t + (1-rho) g_t^2; "
_RMS_TEX = r"v_{t+1} = \rho v_t + (1-\rho) g_t^2,\ "


def _f(rule, name, kind, says, found_in, text, latex, make=None, **kw) -> Form:
    return Form(rule=rule, name=name, kind=kind, says=says, found_in=found_in, text=text,
                latex=latex, make=make, **kw)


_CATALOGUE = [
    # ---- the playbook's own forms (refplay.optim)
    _f("sgd", PLAYBOOK, PLAYBOOK, "the playbook's SGD", "as refplay.optim.sgd computes it",
       "theta_{t+1} = theta_t - lr_t g_t", r"\theta_{t+1} = \theta_t - \eta_t g_t"),
    _f("momentum", PLAYBOOK, PLAYBOOK, "the playbook's momentum",
       "as refplay.optim.momentum computes it",
       "v_0 = 0; v_{t+1} = gamma v_t + g_t; theta_{t+1} = theta_t - lr_t v_{t+1}",
       r"v_0 = 0,\ v_{t+1} = \gamma v_t + g_t,\ \theta_{t+1} = \theta_t - \eta_t v_{t+1}"),
    _f("nesterov", PLAYBOOK, PLAYBOOK, "the playbook's Nesterov",
       "as refplay.optim.nesterov computes it",
       "v_0 = 0; v_{t+1} = gamma v_t + g_t; theta_{t+1} = theta_t - lr_t (gamma v_{t+1} + g_t)",
       r"v_0 = 0,\ v_{t+1} = \gamma v_t + g_t,\ "
       r"\theta_{t+1} = \theta_t - \eta_t (\gamma v_{t+1} + g_t)"),
    _f("rmsprop", PLAYBOOK, PLAYBOOK, "the playbook's RMSProp",
       "as refplay.optim.rmsprop computes it",
       "v_0 = 1; m_0 = 0; " + _RMS_TEXT
       + "m_{t+1} = gamma m_t + lr_t g_t / sqrt(v_{t+1} + eps); theta_{t+1} = theta_t - m_{t+1}",
       r"v_0 = 1,\ m_0 = 0,\ " + _RMS_TEX
       + r"m_{t+1} = \gamma m_t + \frac{\eta_t}{\sqrt{v_{t+1} + \epsilon}} g_t,\ "
         r"\theta_{t+1} = \theta_t - m_{t+1}"),
    _f("adam", PLAYBOOK, PLAYBOOK, "the playbook's Adam", "as refplay.optim.adam computes it",
       _ADAM_TEXT
       + "theta_{t+1} = theta_t - lr_t b_{t+1} m_{t+1} / (sqrt(v_{t+1}) + eps)",
       _ADAM_TEX
       + r"\theta_{t+1} = \theta_t - \eta_t b_{t+1} \frac{m_{t+1}}{\sqrt{v_{t+1}} + \epsilon}"),
    _f("nadam", PLAYBOOK, PLAYBOOK, "the playbook's NAdam", "as refplay.optim.nadam computes it",
       _ADAM_TEXT + "theta_{t+1} = theta_t - lr_t b_{t+1} "
       "(b1 m_{t+1} + (1-b1) g_t) / (sqrt(v_{t+1}) + eps)",
       _ADAM_TEX + r"\theta_{t+1} = \theta_t - \eta_t b_{t+1} "
       r"\frac{\beta_1 m_{t+1} + (1-\beta_1) g_t}{\sqrt{v_{t+1}} + \epsilon}"),
    # ---- Adam
    _f("adam", "torch", "variant",
       "Adam with ε added after the bias correction — the torch/optax form",
       "as torch.optim.Adam and optax.adam compute it (Kingma & Ba, Algorithm 1)",
       _ADAM_TEXT + "theta_{t+1} = theta_t - lr_t (m_{t+1}/(1-b1^(t+1))) / "
       "(sqrt(v_{t+1}/(1-b2^(t+1))) + eps)",
       _ADAM_TEX + r"\theta_{t+1} = \theta_t - \eta_t \frac{\hat m_{t+1}}{\sqrt{\hat v_{t+1}} "
       r"+ \epsilon},\ \hat m = \frac{m}{1-\beta_1^{t+1}},\ \hat v = \frac{v}{1-\beta_2^{t+1}}",
       _adam_torch, aliases=("optax",)),
    _f("adam", "eps_in_sqrt", "mistake", "Adam with ε inside the square root", "",
       _ADAM_TEXT + "theta_{t+1} = theta_t - lr_t b_{t+1} m_{t+1} / sqrt(v_{t+1} + eps)",
       _ADAM_TEX + r"\theta_{t+1} = \theta_t - \eta_t b_{t+1} \frac{m_{t+1}}"
       r"{\sqrt{v_{t+1} + \epsilon}}", _adam_eps_in_sqrt),
    _f("adam", "bias_m_only", "mistake", "Adam with the bias correction on m only", "",
       _ADAM_TEXT + "theta_{t+1} = theta_t - lr_t (m_{t+1}/(1-b1^(t+1))) / (sqrt(v_{t+1}) + eps)",
       _ADAM_TEX + r"\theta_{t+1} = \theta_t - \eta_t \frac{m_{t+1}/(1-\beta_1^{t+1})}"
       r"{\sqrt{v_{t+1}} + \epsilon}", _adam_bias_m_only),
    _f("adam", "bias_ahead", "mistake",
       "Adam with the bias correction one step ahead (b_{t+2} for b_{t+1}: an off-by-one "
       "in the step count)", "",
       _ADAM_TEXT + "theta_{t+1} = theta_t - lr_t b_{t+2} m_{t+1} / (sqrt(v_{t+1}) + eps)",
       _ADAM_TEX + r"\theta_{t+1} = \theta_t - \eta_t b_{t+2} \frac{m_{t+1}}"
       r"{\sqrt{v_{t+1}} + \epsilon}", _adam_bias_ahead),
    _f("adam", "no_bias", "mistake", "Adam without bias correction", "",
       _ADAM_TEXT + "theta_{t+1} = theta_t - lr_t m_{t+1} / (sqrt(v_{t+1}) + eps)",
       _ADAM_TEX + r"\theta_{t+1} = \theta_t - \eta_t \frac{m_{t+1}}{\sqrt{v_{t+1}} + \epsilon}",
       _adam_no_bias),
    _f("adam", "nadam", "variant", "the playbook's NAdam (not Adam)", "",
       "see rule nadam", r"\text{see rule nadam}", _other_rule("nadam")),
    # ---- NAdam
    _f("nadam", "torch", "variant",
       "Dozat's NAdam with momentum schedule mu_s = b1 (1 - 0.96^(s psi)/2) — the torch form",
       "as torch.optim.NAdam computes it",
       _ADAM_TEXT + "s = t+1; mu_s = b1 (1 - 0.5 * 0.96^(s psi)); P_s = prod_{i<=s} mu_i; "
       "theta_{t+1} = theta_t - lr_t [(1-mu_s)/(1-P_s) g_t + mu_{s+1}/(1-P_{s+1}) m_{t+1}] / "
       "(sqrt(v_{t+1}/(1-b2^s)) + eps)",
       _ADAM_TEX + r"\mu_s = \beta_1(1 - \tfrac12 0.96^{s\psi}),\ \theta_{t+1} = \theta_t - "
       r"\eta_t \frac{\frac{1-\mu_s}{1-\prod_{i\le s}\mu_i} g_t + \frac{\mu_{s+1}}"
       r"{1-\prod_{i\le s+1}\mu_i} m_{t+1}}{\sqrt{v_{t+1}/(1-\beta_2^s)} + \epsilon},\ s = t+1",
       _nadam_dozat, aliases=("dozat",), extra={"momentum_decay": 4e-3}),
    _f("nadam", "optax", "variant", "NAdam in optax's form (adam with nesterov=True)",
       "as optax.nadam computes it",
       _ADAM_TEXT + "s = t+1; theta_{t+1} = theta_t - lr_t [b1 m_{t+1}/(1-b1^(s+1)) + "
       "(1-b1) g_t/(1-b1^s)] / (sqrt(v_{t+1}/(1-b2^s)) + eps)",
       _ADAM_TEX + r"\theta_{t+1} = \theta_t - \eta_t \frac{\frac{\beta_1 m_{t+1}}"
       r"{1-\beta_1^{s+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^s}}{\sqrt{v_{t+1}/(1-\beta_2^s)}"
       r" + \epsilon},\ s = t+1", _nadam_optax),
    _f("nadam", "adam", "variant", "the playbook's Adam (not NAdam)", "",
       "see rule adam", r"\text{see rule adam}", _other_rule("adam")),
    # ---- RMSProp
    _f("rmsprop", "torch", "variant",
       "RMSProp with v_0 = 0, ε outside the root and η outside the momentum buffer — "
       "the torch form", "as torch.optim.RMSprop computes it",
       "v_0 = 0; " + _RMS_TEXT + "u_{t+1} = gamma u_t + g_t / (sqrt(v_{t+1}) + eps); "
       "theta_{t+1} = theta_t - lr_t u_{t+1}",
       r"v_0 = 0,\ " + _RMS_TEX + r"u_{t+1} = \gamma u_t + \frac{g_t}{\sqrt{v_{t+1}} + "
       r"\epsilon},\ \theta_{t+1} = \theta_t - \eta_t u_{t+1}", _rmsprop(0.0, False, False)),
    _f("rmsprop", "optax", "variant", "RMSProp with v_0 = 0 — the optax/Keras default",
       "as optax.rmsprop and Keras RMSprop compute it by default",
       "v_0 = 0; m_0 = 0; " + _RMS_TEXT + "m_{t+1} = gamma m_t + lr_t g_t / sqrt(v_{t+1} + eps); "
       "theta_{t+1} = theta_t - m_{t+1}",
       r"v_0 = 0,\ m_0 = 0,\ " + _RMS_TEX + r"m_{t+1} = \gamma m_t + \frac{\eta_t}"
       r"{\sqrt{v_{t+1} + \epsilon}} g_t,\ \theta_{t+1} = \theta_t - m_{t+1}",
       _rmsprop(0.0, True, True),
       aliases=("keras", "v0_zero")),
    _f("rmsprop", "eps_outside_sqrt", "variant", "RMSProp with ε outside the square root",
       "as optax.rmsprop(eps_in_sqrt=False, initial_scale=1.0) computes it",
       "v_0 = 1; m_0 = 0; " + _RMS_TEXT + "m_{t+1} = gamma m_t + lr_t g_t / (sqrt(v_{t+1}) + eps); "
       "theta_{t+1} = theta_t - m_{t+1}",
       r"v_0 = 1,\ m_0 = 0,\ " + _RMS_TEX + r"m_{t+1} = \gamma m_t + \frac{\eta_t}"
       r"{\sqrt{v_{t+1}} + \epsilon} g_t,\ \theta_{t+1} = \theta_t - m_{t+1}",
       _rmsprop(1.0, False, True)),
    _f("rmsprop", "lr_outside_buffer", "variant",
       "RMSProp with η outside the momentum buffer", "",
       "v_0 = 1; u_0 = 0; " + _RMS_TEXT + "u_{t+1} = gamma u_t + g_t / sqrt(v_{t+1} + eps); "
       "theta_{t+1} = theta_t - lr_t u_{t+1}",
       r"v_0 = 1,\ u_0 = 0,\ " + _RMS_TEX + r"u_{t+1} = \gamma u_t + \frac{g_t}"
       r"{\sqrt{v_{t+1} + \epsilon}},\ \theta_{t+1} = \theta_t - \eta_t u_{t+1}",
       _rmsprop(1.0, True, False)),
    # ---- momentum, Nesterov
    _f("momentum", "keras", "variant", "momentum with η inside the buffer — the Keras form",
       "as Keras SGD(momentum=γ) computes it",
       "u_{t+1} = gamma u_t + lr_t g_t; theta_{t+1} = theta_t - u_{t+1}",
       r"u_{t+1} = \gamma u_t + \eta_t g_t,\ \theta_{t+1} = \theta_t - u_{t+1}",
       _momentum_lr_inside(False), aliases=("lr_inside_buffer",)),
    _f("momentum", "dampened", "variant", "momentum with dampening (an EMA of the gradients)",
       "as torch.optim.SGD(momentum=γ, dampening=γ) computes it",
       "v_1 = g_0; v_{t+1} = gamma v_t + (1-gamma) g_t (t >= 1); "
       "theta_{t+1} = theta_t - lr_t v_{t+1}",
       r"v_1 = g_0,\ v_{t+1} = \gamma v_t + (1-\gamma) g_t\ (t \ge 1),\ "
       r"\theta_{t+1} = \theta_t - \eta_t v_{t+1}",
       _momentum_dampened),
    _f("momentum", "nesterov", "variant", "the playbook's Nesterov (not momentum)",
       "", "see rule nesterov", r"\text{see rule nesterov}",
       _other_rule("nesterov")),
    _f("nesterov", "keras", "variant", "Nesterov with η inside the buffer — the Keras form",
       "as Keras SGD(momentum=γ, nesterov=True) computes it",
       "u_{t+1} = gamma u_t + lr_t g_t; theta_{t+1} = theta_t - (gamma u_{t+1} + lr_t g_t)",
       r"u_{t+1} = \gamma u_t + \eta_t g_t,\ \theta_{t+1} = \theta_t - (\gamma u_{t+1} + "
       r"\eta_t g_t)", _momentum_lr_inside(True), aliases=("lr_inside_buffer",)),
    _f("nesterov", "momentum", "variant", "the playbook's momentum (not Nesterov)",
       "", "see rule momentum", r"\text{see rule momentum}",
       _other_rule("momentum")),
]

#: Every form by ``(rule, name)``, the playbook's first.
FORMS: dict[tuple[str, str], Form] = {(f.rule, f.name): f for f in _CATALOGUE}


def forms(rule: str) -> list[Form]:
    """The forms of ``rule``: the playbook's first, then its neighbours."""
    _validate.one_of("optimizer", rule, optim.RULES)
    return [f for f in _CATALOGUE if f.rule == rule]


def get_form(rule: str, form: str | None = None) -> Form:
    """The form ``form`` (a name or an alias; ``None`` = the playbook's) of ``rule``."""
    form = PLAYBOOK if form is None else form
    for f in forms(rule):
        if form == f.name or form in f.aliases:
            return f
    names = [f.name for f in forms(rule)] + [a for f in forms(rule) for a in f.aliases]
    raise ValueError(f"form={form!r} is not a form of rule {rule!r}; choose one of {names}")


def build(rule: str, hparams: Mapping | None = None, form: str | None = None):
    """An optimizer (``init``/``update`` as :class:`refplay.optim.Optimizer`) for one form.

    ``hparams`` are the rule's (validated by :func:`refplay.optim.get`, defaults
    filled in, weight decay included) plus the form's ``extra`` ones.
    """
    f = get_form(rule, form)
    hparams = dict(hparams or {})
    extra = {k: _validate.real(k, hparams.pop(k, v), low=0.0) for k, v in f.extra.items()}
    base = optim.get(rule, **hparams)
    if f.make is None:
        return base
    hp = {**base.hparams, **extra}
    slots, leaf_rule = f.make(hp)
    return optim.Optimizer(name=f"{rule}/{f.name}", hparams=hp, slots=tuple(slots), rule=leaf_rule)


def equation(rule: str, hparams: Mapping | None = None, form: str | None = None) -> dict:
    """The update equation of a form as ``{"text": ..., "latex": ...}``, weight decay included."""
    f = get_form(rule, form)
    hp = build(rule, hparams, form).hparams
    text, latex = f.text, f.latex
    if text.startswith("see rule "):                 # another rule's playbook form
        other = FORMS[(text.removeprefix("see rule "), PLAYBOOK)]
        text, latex = other.text, other.latex
    if hp.get("weight_decay"):
        if hp["weight_decay_mode"] == "l2":
            text = f"g_t = grad l(theta_t) + wd theta_t (L2, wd = {hp['weight_decay']:g}); " + text
            latex = rf"g_t = \nabla l(\theta_t) + \lambda\theta_t,\ " + latex
        else:
            text += (f"; then theta_{{t+1}} -= lr_t wd theta_t "
                     f"(decoupled, wd = {hp['weight_decay']:g})")
            latex += r",\ \theta_{t+1} \mathrel{-}= \eta_t \lambda \theta_t"
    else:
        text, latex = "g_t = grad l(theta_t); " + text, r"g_t = \nabla l(\theta_t),\ " + latex
    return {"text": text, "latex": latex}


class Replay(NamedTuple):
    """Iterates and optimizer state of a form fed recorded gradients."""

    params: dict[str, np.ndarray]
    state: dict[str, dict[str, np.ndarray]]


def replay(opt, theta0: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
           lrs: np.ndarray, dtype=np.float64) -> Replay:
    r"""Feed ``grads[k][t]`` and ``lrs[t]`` to ``opt`` from :math:`\theta_0`, in ``dtype``.

    Returns :math:`\theta_0 \dots \theta_T` per leaf (shape ``[T+1, ...]``) and
    the state slots after each update (``state[slot][leaf]``, shape
    ``[T+1, ...]``, index 0 the initial state). Open loop: the gradients do not
    depend on the replayed parameters, which is what lets a form be checked
    against a trajectory somebody else computed.
    """
    params: Tree = {k: np.asarray(v, dtype=dtype).copy() for k, v in theta0.items()}
    state = opt.init(params)
    hist = {k: [v.copy()] for k, v in params.items()}
    slots = {s: {k: [np.asarray(v).copy()] for k, v in t.items()} for s, t in state.slots.items()}
    for t in range(len(lrs)):
        g = {k: np.asarray(grads[k][t], dtype=dtype) for k in params}
        params, state = opt.update(params, g, state, float(lrs[t]))
        for k, v in params.items():
            hist[k].append(np.asarray(v).copy())
        for s, tree in state.slots.items():
            for k, v in tree.items():
                slots[s][k].append(np.asarray(v).copy())
    return Replay({k: np.stack(v) for k, v in hist.items()},
                  {s: {k: np.stack(v) for k, v in t.items()} for s, t in slots.items()})
