r"""Which torch / optax / Keras configuration computes each playbook rule.

Every row of the table in ``docs/oracle.md`` is a :class:`Row` here: the
framework configuration that reproduces the playbook rule (possibly with a
per-step edit of the framework's hyperparameters or state), and *controls*:
nearby configurations — usually the framework's default — that must give a
visibly different trajectory. A control that came out equal would mean the
test cannot tell a right configuration from a wrong one, so both directions
are checked: ``refplay oracle check <framework>`` and ``tests/test_oracle*.py``
run the same :func:`run_row`.

Each configuration is turned into a step function ``(params, grads, lr) ->
params`` for :func:`refplay.oracle.compare`: the framework owns its
parameters and state; at step :math:`t` it receives :math:`\nabla l` computed
by the problem's numpy code at the framework's *current* parameters
(torch: ``p.grad = torch.from_numpy(g)``; optax: ``tx.update(grads, state,
params)``; Keras: ``optimizer.apply(grads, variables)``) and its learning rate
is set to :math:`\eta_t` before the step.

Float64 needs care in every framework (verified by the tests):

* jax computes in float32 unless x64 is enabled; the runs here use the
  ``jax.enable_x64(True)`` context, so nothing global changes.
* Keras needs ``keras.config.set_floatx("float64")`` (its learning-rate and
  slot variables follow ``floatx``) *and* jax x64: without x64 a Keras
  variable reports dtype float64 while its jax array holds float32.
* torch keeps NAdam's ``mu_product`` (and every optimizer's ``step``) in the
  *default* dtype, float32 unless ``torch.set_default_dtype(torch.float64)``;
  the runs here set it for the duration of each float64 step.

Frameworks are imported lazily, only when a step function is built.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.oracle import problems as problems_lib
from refplay.oracle.compare import DEFAULT_TOL, compare

StepFn = Callable[[Tree, Tree, float], Tree]

__all__ = ["FRAMEWORKS", "EPS_VALUES", "WEIGHT_DECAY", "MATCH_TOL", "CONTROL_MIN", "FLOAT32_TOL",
           "ROW_NAMES", "Setup", "Row", "RowResult", "rows", "row_hparams", "eps_values",
           "run_setup", "run_row", "check", "require", "INSTALL_HINT",
           "format_table"]

FRAMEWORKS = ("torch", "optax", "keras")
#: ε values every row with an ε is checked at: the placement of ε only shows when it is not tiny.
EPS_VALUES = (1e-8, 1e-2)
#: λ for the weight-decay rows.
WEIGHT_DECAY = 0.1
#: A matching configuration must stay within this max |Δθ| in float64 ...
MATCH_TOL = 1e-12
#: ... and every control must differ by more than this (1000× the match tolerance).
CONTROL_MIN = 1e-9
#: A matching configuration run in float32 stays this close to the float64 reference.
FLOAT32_TOL = DEFAULT_TOL["float32"]

_GAMMA, _RHO, _BETA1, _BETA2 = 0.9, 0.9, 0.9, 0.999

#: How to install the frameworks (pyproject.toml's ``oracle`` extra). torch comes first,
#: pinned: it is the CPU wheel; left to the extra, pip would fetch a multi-GB CUDA build.
INSTALL_HINT = ("pip install torch==2.13.0 && pip install -e '.[oracle]' "
                "(torch first: the pinned CPU wheel, not a multi-GB CUDA build)")


def _import(module: str, framework: str):
    """Import ``module`` for ``framework``'s checks; if it is missing, say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"the {framework} checks need {module}, which is not installed "
                          f"({exc}): {INSTALL_HINT}") from None


def row_hparams(name: str, eps: float | None) -> tuple[str, dict]:
    """``(rule, hparams)`` of refplay's side of row ``name`` at ``eps``."""
    adam = {"beta1": _BETA1, "beta2": _BETA2, "eps": eps}
    table = {
        "sgd": ("sgd", {}),
        "momentum": ("momentum", {"gamma": _GAMMA}),
        "nesterov": ("nesterov", {"gamma": _GAMMA}),
        "rmsprop": ("rmsprop", {"rho": _RHO, "gamma": _GAMMA, "eps": eps}),
        "adam": ("adam", adam),
        "nadam": ("nadam", adam),
        "adam+l2": ("adam", {**adam, "weight_decay": WEIGHT_DECAY, "weight_decay_mode": "l2"}),
        "adamw": ("adam", {**adam, "weight_decay": WEIGHT_DECAY,
                           "weight_decay_mode": "decoupled"}),
    }
    _validate.one_of("row", name, table)
    return table[name]


ROW_NAMES = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "nadam", "adam+l2", "adamw")


def eps_values(name: str) -> tuple:
    """The ε values row ``name`` is checked at: ``(None,)`` for rules without ε."""
    _validate.one_of("row", name, ROW_NAMES)
    return (None,) if name in ("sgd", "momentum", "nesterov") else EPS_VALUES


@dataclass
class _Ctx:
    """What a per-step edit may look at: step index, η_t, η_{t-1}, the row's hparams."""

    t: int
    lr: float
    prev_lr: float
    hp: dict


def _adam_eps(ctx: _Ctx) -> float:
    r"""The ε that torch/optax/Keras-Nadam need at step t to act like the playbook's ε
    added before the bias correction: :math:`\epsilon/\sqrt{1-\beta_2^{t+1}}`."""
    return ctx.hp["eps"] / math.sqrt(1.0 - ctx.hp["beta2"] ** (ctx.t + 1))


# ===================================================================== table rows
@dataclass(frozen=True)
class Setup:
    """One framework configuration: ``build(params0, hparams, dtype) -> step_fn``."""

    label: str
    build: Callable[[Tree, dict, np.dtype], StepFn] = field(repr=False)


@dataclass(frozen=True)
class Row:
    """One cell of the rule × framework table.

    ``verdict`` is "matches" (as configured), "matches with edit" (a per-step
    edit of hyperparameters or state, described in ``note``) or "no
    configuration matches" (``match`` is None; the controls quantify the
    difference). Every control must differ from the playbook rule.
    """

    framework: str
    name: str
    verdict: str
    match: Setup | None
    controls: tuple[Setup, ...]
    note: str

    @property
    def rule(self) -> str:
        """The refplay rule the row is checked against (``adam`` for ``adamw``, ...)."""
        return row_hparams(self.name, 1e-8)[0]

    @property
    def eps_values(self) -> tuple:
        """The ε values the row is checked at (see :func:`eps_values`)."""
        return eps_values(self.name)


def _table(framework: str, *specs: dict) -> tuple[Row, ...]:
    """The rows of ``framework``'s table, one per spec (Row's fields but ``framework``)."""
    return tuple(Row(framework=framework, **spec) for spec in specs)


# =========================================================================== torch
def _torch():
    return _import("torch", "torch")


@contextlib.contextmanager
def _torch_default_dtype(torch, dtype: np.dtype):
    """float64 runs need float64 scalar state (NAdam's mu_product, every ``step``)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _torch_setup(label: str, make: Callable, before_step: Callable | None = None,
                 lr_late: bool = False) -> Setup:
    """A torch.optim configuration. ``make(torch, params, hp)`` builds the optimizer;
    ``before_step(torch, opt, params, ctx)`` edits hyperparameters or state."""

    def build(params0: Tree, hp: dict, dtype: np.dtype) -> StepFn:
        torch = _torch()
        ps = {k: torch.tensor(v) for k, v in params0.items()}
        with _torch_default_dtype(torch, dtype):
            opt = make(torch, list(ps.values()), hp)
        ctx = _Ctx(t=0, lr=0.0, prev_lr=0.0, hp=hp)

        def step(params: Tree, grads: Tree, lr: float) -> Tree:
            ctx.lr = lr
            for k, p in ps.items():
                p.grad = torch.from_numpy(np.ascontiguousarray(grads[k]))
            opt.param_groups[0]["lr"] = ctx.prev_lr if lr_late else lr
            with _torch_default_dtype(torch, dtype), torch.no_grad():
                if before_step is not None:
                    before_step(torch, opt, list(ps.values()), ctx)
                opt.step()
            ctx.prev_lr, ctx.t = lr, ctx.t + 1
            return {k: p.detach().numpy().copy() for k, p in ps.items()}

        return step

    return Setup(label, build)


def _torch_eps_edit(torch, opt, params, ctx):
    """Before each step, torch's ε ← the playbook's ε moved inside the bias correction."""
    opt.param_groups[0]["eps"] = _adam_eps(ctx)


def _torch_rmsprop_edits(v0: bool = True, eps: bool = True, momentum: bool = True):
    r"""State edits that turn ``torch.optim.RMSprop(alpha=ρ, eps=0, momentum=γ)`` into
    the playbook rule; each flag switches one of them (the controls drop one each).

    * ``v0``: square_avg starts at :math:`1 + \epsilon` (the playbook's
      :math:`v_0 = 1`, plus the ε carried inside it, see next item).
    * ``eps``: before each step add :math:`(1-\rho)\epsilon/\rho` to square_avg.
      Then torch's square_avg after its update is :math:`v_{t+1} + \epsilon`,
      so its :math:`\sqrt{\cdot}` with eps=0 is the playbook's
      :math:`\sqrt{v_{t+1} + \epsilon}`.
    * ``momentum``: before step :math:`t \ge 1` multiply momentum_buffer by
      :math:`\eta_{t-1}/\eta_t`. torch's buffer is the playbook's
      :math:`m_t / \eta_{t-1}` (torch applies η outside the buffer); the
      rescale makes it :math:`m_t/\eta_t`, and torch's step
      :math:`\eta_t(\gamma m_t/\eta_t + g/\sqrt{\cdot})` is then :math:`m_{t+1}`.
    """

    def before_step(torch, opt, params, ctx):
        rho, e = ctx.hp["rho"], ctx.hp["eps"]
        if ctx.t == 0:
            for p in params:
                opt.state[p] = {
                    "step": torch.tensor(0.0),
                    "square_avg": torch.full_like(p, (1.0 if v0 else 0.0) + (e if eps else 0.0)),
                    "momentum_buffer": torch.zeros_like(p),
                }
        for p in params:
            st = opt.state[p]
            if eps and e > 0:
                st["square_avg"].add_((1.0 - rho) * e / rho)
            if momentum and ctx.t >= 1:
                if ctx.lr == 0.0:
                    raise ValueError(
                        f"torch RMSprop cannot reproduce the playbook rule at step {ctx.t}: lr=0 "
                        "after step 0 (torch's step is then 0, the playbook still moves by γ m_t)")
                st["momentum_buffer"].mul_(ctx.prev_lr / ctx.lr)

    return before_step


# Factories ``make(torch, params, hp)`` for the torch rows: each fixes what the row
# varies (momentum, eps placement, class, weight decay) and reads the rest from hp.
def _torch_sgd(**kw):
    return lambda torch, ps, hp: torch.optim.SGD(ps, lr=0.0, foreach=False, **kw)


def _torch_rmsprop(eps_in_torch: bool):
    return lambda torch, ps, hp: torch.optim.RMSprop(
        ps, lr=0.0, alpha=hp["rho"], eps=hp["eps"] if eps_in_torch else 0.0,
        momentum=hp["gamma"], foreach=False)


def _torch_adam(cls="Adam", wd=0.0):
    return lambda torch, ps, hp: getattr(torch.optim, cls)(
        ps, lr=0.0, betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=wd,
        foreach=False)


def _torch_nadam(momentum_decay=4e-3):
    return lambda torch, ps, hp: torch.optim.NAdam(
        ps, lr=0.0, betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
        momentum_decay=momentum_decay, foreach=False)


_TORCH_EPS_EDIT = "ε replaced before step t by ε/√(1−β2^(t+1)) (param_groups[0]['eps'])"

_TORCH_ROWS = _table(
    "torch",
    dict(name="sgd", verdict="matches",
         match=_torch_setup("SGD(lr=η_t)", _torch_sgd()),
         controls=(_torch_setup("SGD(lr=η_{t−1}) — schedule stepped one step late",
                                _torch_sgd(), lr_late=True),),
         note="torch.optim.SGD is θ ← θ − η_t g."),
    dict(name="momentum", verdict="matches",
         match=_torch_setup("SGD(lr=η_t, momentum=γ, dampening=0)", _torch_sgd(momentum=_GAMMA)),
         controls=(_torch_setup("SGD(momentum=γ, dampening=γ)",
                                _torch_sgd(momentum=_GAMMA, dampening=_GAMMA)),),
         note="buf ← γ buf + g; θ ← θ − η_t buf: η stays outside the buffer as in the "
              "playbook."),
    dict(name="nesterov", verdict="matches",
         match=_torch_setup("SGD(lr=η_t, momentum=γ, dampening=0, nesterov=True)",
                            _torch_sgd(momentum=_GAMMA, nesterov=True)),
         controls=(_torch_setup("SGD(momentum=γ, nesterov=False)", _torch_sgd(momentum=_GAMMA)),),
         note="θ ← θ − η_t (g + γ buf), the playbook's form."),
    dict(name="rmsprop", verdict="matches with edit",
         match=_torch_setup("RMSprop(lr=η_t, alpha=ρ, eps=0, momentum=γ) + 3 state edits",
                            _torch_rmsprop(False), _torch_rmsprop_edits()),
         controls=(
             _torch_setup("RMSprop(lr=η_t, alpha=ρ, eps=ε, momentum=γ) (default form)",
                          _torch_rmsprop(True)),
             _torch_setup("edits without square_avg ← 1 (torch's v_0 = 0)",
                          _torch_rmsprop(False), _torch_rmsprop_edits(v0=False)),
             _torch_setup("edits, but eps=ε in torch (√v + ε) instead of the ε edit",
                          _torch_rmsprop(True), _torch_rmsprop_edits(eps=False)),
             _torch_setup("edits without momentum_buffer ← η_{t−1}/η_t · buffer",
                          _torch_rmsprop(False), _torch_rmsprop_edits(momentum=False))),
         note="torch differs in all three respects: v_0 = 0, √v + ε (ε outside the root), "
              "and η outside the momentum buffer. With eps=0 these state edits make it agree: "
              "square_avg ← 1 + ε before step 0; square_avg += (1−ρ)ε/ρ before every step; "
              "momentum_buffer *= η_{t−1}/η_t before step t ≥ 1 (needs η_t > 0 for t ≥ 1)."),
    dict(name="adam", verdict="matches with edit",
         match=_torch_setup(f"Adam(lr=η_t, betas=(β1, β2)), {_TORCH_EPS_EDIT}", _torch_adam(),
                            _torch_eps_edit),
         controls=(_torch_setup("Adam(lr=η_t, betas=(β1, β2), eps=ε)", _torch_adam()),),
         note="torch adds ε to √v̂ after the bias correction; the playbook adds it to √v "
              "before. Equal when ε is replaced by ε/√(1−β2^(t+1)) at every step."),
    dict(name="nadam", verdict="no configuration matches", match=None,
         controls=(
             _torch_setup("NAdam(lr=η_t, betas=(β1, β2), eps=ε) (momentum_decay=4e-3)",
                          _torch_nadam()),
             _torch_setup(f"closest: NAdam(momentum_decay=1e9) so μ_t = β1, {_TORCH_EPS_EDIT}",
                          _torch_nadam(1e9), _torch_eps_edit)),
         note="torch implements Dozat's NAdam: momentum schedule μ_t = β1(1 − ½·0.96^(t·ψ)) "
              "and separate bias corrections Π μ for the gradient and the momentum terms. Even "
              "with μ_t = β1 and the ε edit, the momentum term is divided by 1 − β1^(t+2) "
              "instead of 1 − β1^(t+1); no scalar or state edit fixes the ratio of the two "
              "terms."),
    dict(name="adam+l2", verdict="matches with edit",
         match=_torch_setup(f"Adam(weight_decay=λ), {_TORCH_EPS_EDIT}",
                            _torch_adam(wd=WEIGHT_DECAY), _torch_eps_edit),
         controls=(_torch_setup(f"AdamW(weight_decay=λ), {_TORCH_EPS_EDIT}",
                                _torch_adam("AdamW", WEIGHT_DECAY), _torch_eps_edit),),
         note="torch Adam(weight_decay=λ) adds λθ to the gradient (L2), = refplay "
              "weight_decay_mode='l2'."),
    dict(name="adamw", verdict="matches with edit",
         match=_torch_setup(f"AdamW(weight_decay=λ), {_TORCH_EPS_EDIT}",
                            _torch_adam("AdamW", WEIGHT_DECAY), _torch_eps_edit),
         controls=(_torch_setup(f"Adam(weight_decay=λ), {_TORCH_EPS_EDIT}",
                                _torch_adam(wd=WEIGHT_DECAY), _torch_eps_edit),),
         note="AdamW: θ ← θ(1 − η_t λ) then the Adam step = refplay "
              "weight_decay_mode='decoupled' (λ multiplied by the scheduled η_t)."),
)


# =========================================================================== optax
def _jax_optax():
    return _import("jax", "optax"), _import("optax", "optax")


def _x64(jax, dtype: np.dtype):
    """float64 in jax only inside this context; nothing global changes."""
    return jax.enable_x64(dtype == np.float64)


def _optax_setup(label: str, make: Callable, before_step: Callable | None = None,
                 lr_late: bool = False) -> Setup:
    """An optax configuration. ``make(optax, hp)`` returns a transformation built with
    ``optax.inject_hyperparams`` (so η_t, and ε where edited, can be set per step)."""

    def build(params0: Tree, hp: dict, dtype: np.dtype) -> StepFn:
        jax, optax = _jax_optax()
        with _x64(jax, dtype):
            params = {k: jax.numpy.asarray(v) for k, v in params0.items()}
            tx = make(optax, hp)
            state = tx.init(params)
        ctx = _Ctx(t=0, lr=0.0, prev_lr=0.0, hp=hp)
        box = {"params": params, "state": state}

        def step(_params: Tree, grads: Tree, lr: float) -> Tree:
            ctx.lr = lr
            with _x64(jax, dtype):
                st = box["state"]
                st.hyperparams["learning_rate"] = ctx.prev_lr if lr_late else lr
                if before_step is not None:
                    before_step(st.hyperparams, ctx)
                g = {k: jax.numpy.asarray(v) for k, v in grads.items()}
                updates, box["state"] = tx.update(g, st, box["params"])
                box["params"] = optax.apply_updates(box["params"], updates)
                out = {k: np.array(box["params"][k]) for k in params0}
            ctx.prev_lr, ctx.t = lr, ctx.t + 1
            return out

        return step

    return Setup(label, build)


def _optax_eps_edit(hyperparams, ctx):
    """Before each step, optax's ε ← the playbook's ε moved inside the bias correction."""
    hyperparams["eps"] = _adam_eps(ctx)


# Factories ``make(optax, hp)`` for the optax rows, all through optax.inject_hyperparams
# so that η_t (and ε where edited) can be set before every step.
def _optax_inject(factory, **static):
    """``optax.inject_hyperparams(factory)`` at η = 0; a callable value is read from hp."""
    return lambda optax, hp: optax.inject_hyperparams(
        getattr(optax, factory) if isinstance(factory, str) else factory)(
        learning_rate=0.0, **{k: (v(hp) if callable(v) else v) for k, v in static.items()})


def _optax_rmsprop(**kw):
    return _optax_inject("rmsprop", decay=lambda hp: hp["rho"], eps=lambda hp: hp["eps"],
                         momentum=lambda hp: hp["gamma"], **kw)


_OPTAX_ADAM_KW = {"b1": lambda hp: hp["beta1"], "b2": lambda hp: hp["beta2"],
                  "eps": lambda hp: hp["eps"]}


def _optax_adam_l2(learning_rate, b1, b2, eps):
    """Adam on g + λθ: add_decayed_weights chained before adam (inject_hyperparams' factory)."""
    import optax  # lazy: optional framework, imported only when a step function is built
    return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                       optax.adam(learning_rate, b1, b2, eps))


def _optax_adam(factory="adam", **kw):
    return _optax_inject(factory, **_OPTAX_ADAM_KW, **kw)


_OPTAX_EPS_EDIT = "ε set before step t to ε/√(1−β2^(t+1)) via optax.inject_hyperparams"

_OPTAX_ROWS = _table(
    "optax",
    dict(name="sgd", verdict="matches",
         match=_optax_setup("sgd(η)", _optax_inject("sgd")),
         controls=(_optax_setup("sgd with η_{t−1} — schedule one step late",
                                _optax_inject("sgd"), lr_late=True),),
         note="optax.sgd: u = −η_t g."),
    dict(name="momentum", verdict="matches",
         match=_optax_setup("sgd(η, momentum=γ)", _optax_inject("sgd", momentum=_GAMMA)),
         controls=(_optax_setup("sgd(η, momentum=γ, nesterov=True)",
                                _optax_inject("sgd", momentum=_GAMMA, nesterov=True)),),
         note="trace: m ← g + γ m, u = −η_t m (η outside the buffer)."),
    dict(name="nesterov", verdict="matches",
         match=_optax_setup("sgd(η, momentum=γ, nesterov=True)",
                            _optax_inject("sgd", momentum=_GAMMA, nesterov=True)),
         controls=(_optax_setup("sgd(η, momentum=γ)", _optax_inject("sgd", momentum=_GAMMA)),),
         note="u = −η_t (g + γ m)."),
    dict(name="rmsprop", verdict="matches",
         match=_optax_setup("rmsprop(η, decay=ρ, eps=ε, initial_scale=1.0, eps_in_sqrt=True, "
                            "momentum=γ)", _optax_rmsprop(initial_scale=1.0, eps_in_sqrt=True)),
         controls=(_optax_setup("rmsprop(..., initial_scale=0.0) (optax's default v_0)",
                                _optax_rmsprop(initial_scale=0.0, eps_in_sqrt=True)),
                   _optax_setup("rmsprop(..., initial_scale=1.0, eps_in_sqrt=False)",
                                _optax_rmsprop(initial_scale=1.0, eps_in_sqrt=False))),
         note="scale_by_rms → scale by η_t → trace(γ): η is inside the momentum buffer as in "
              "the playbook; initial_scale=1.0 gives v_0 = 1, eps_in_sqrt=True gives √(v + ε)."),
    dict(name="adam", verdict="matches with edit",
         match=_optax_setup(f"adam(η, b1=β1, b2=β2), {_OPTAX_EPS_EDIT}", _optax_adam(),
                            _optax_eps_edit),
         controls=(_optax_setup("adam(η, b1=β1, b2=β2, eps=ε)", _optax_adam()),),
         note="optax adds ε to √v̂ after the bias correction (eps_root=0); equal when ε is "
              "replaced by ε/√(1−β2^(t+1)) at every step."),
    dict(name="nadam", verdict="no configuration matches", match=None,
         controls=(_optax_setup("nadam(η, b1=β1, b2=β2, eps=ε)", _optax_adam("nadam")),
                   _optax_setup(f"closest: nadam, {_OPTAX_EPS_EDIT}", _optax_adam("nadam"),
                                _optax_eps_edit)),
         note="optax.nadam (= adam(nesterov=True)) bias-corrects the momentum term with "
              "1 − β1^(t+2) and the gradient term with 1 − β1^(t+1); the playbook divides both "
              "by 1 − β1^(t+1). The ε edit fixes ε but not the ratio of the two terms."),
    dict(name="adam+l2", verdict="matches with edit",
         match=_optax_setup(f"chain(add_decayed_weights(λ), adam(η, β1, β2)), {_OPTAX_EPS_EDIT}",
                            _optax_adam(_optax_adam_l2), _optax_eps_edit),
         controls=(_optax_setup(f"adamw(η, β1, β2, weight_decay=λ), {_OPTAX_EPS_EDIT}",
                                _optax_adam("adamw", weight_decay=WEIGHT_DECAY),
                                _optax_eps_edit),),
         note="add_decayed_weights chained *before* adam adds λθ to the gradient (L2)."),
    dict(name="adamw", verdict="matches with edit",
         match=_optax_setup(f"adamw(η, β1, β2, weight_decay=λ), {_OPTAX_EPS_EDIT}",
                            _optax_adam("adamw", weight_decay=WEIGHT_DECAY), _optax_eps_edit),
         controls=(_optax_setup(f"chain(add_decayed_weights(λ), adam), {_OPTAX_EPS_EDIT}",
                                _optax_adam(_optax_adam_l2), _optax_eps_edit),),
         note="adamw: u = −η_t (adam direction + λθ): decoupled, λ times the scheduled η_t."),
)


# =========================================================================== Keras
def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = _import("keras", "keras")
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"the Keras oracle runs with KERAS_BACKEND=jax; Keras was already "
                           f"imported with backend {keras.backend.backend()!r}")
    return _import("jax", "keras"), keras


@contextlib.contextmanager
def _keras_dtype(jax, keras, dtype: np.dtype):
    """Keras float64 needs floatx='float64' and jax x64; both restored on exit."""
    old = keras.config.floatx()
    keras.config.set_floatx(np.dtype(dtype).name)
    try:
        with _x64(jax, dtype):
            yield
    finally:
        keras.config.set_floatx(old)


def _keras_slot(opt, var, slot: str):
    """The optimizer variable ``<var.name>_<slot>`` (e.g. ``p0_velocity``)."""
    found = [v for v in opt.variables if v.path.endswith(f"/{var.name}_{slot}")]
    if len(found) != 1:
        raise RuntimeError(f"expected one Keras slot {var.name}_{slot}, found "
                           f"{[v.path for v in opt.variables]}")
    return found[0]


def _keras_setup(label: str, make: Callable, before_step: Callable | None = None,
                 lr_late: bool = False, lr_one: bool = False, add_l2: bool = False) -> Setup:
    """A Keras optimizer configuration. ``make(keras, hp)`` builds it.

    ``lr_one``: run Keras at η = 1 and scale its step by η_t
    (θ_{t+1} = θ_t + η_t (θ' − θ_t)). ``add_l2``: pass g + λθ (an L2 penalty
    λ/2 ‖θ‖², e.g. ``keras.regularizers.L2(λ/2)``) instead of g.
    """

    def build(params0: Tree, hp: dict, dtype: np.dtype) -> StepFn:
        jax, keras = _keras()
        keys = list(params0)
        with _keras_dtype(jax, keras, dtype):
            vs = [keras.Variable(params0[k], dtype=np.dtype(dtype).name, name=f"p{i}")
                  for i, k in enumerate(keys)]
            opt = make(keras, hp)
            opt.build(vs)
        ctx = _Ctx(t=0, lr=0.0, prev_lr=0.0, hp=hp)

        def step(_params: Tree, grads: Tree, lr: float) -> Tree:
            ctx.lr = lr
            with _keras_dtype(jax, keras, dtype):
                before = [np.array(v.value) for v in vs]
                opt.learning_rate = 1.0 if lr_one else (ctx.prev_lr if lr_late else lr)
                if before_step is not None:
                    before_step(opt, vs, ctx)
                gs = [grads[k] + (dtype.type(WEIGHT_DECAY) * before[i] if add_l2 else 0)
                      for i, k in enumerate(keys)]
                opt.apply([np.asarray(g, dtype=dtype) for g in gs], vs)
                if lr_one:
                    for v, b in zip(vs, before):
                        v.assign(b + dtype.type(lr) * (np.array(v.value) - b))
                out = {k: np.array(v.value) for k, v in zip(keys, vs)}
            ctx.prev_lr, ctx.t = lr, ctx.t + 1
            return out

        return step

    return Setup(label, build)


def _keras_velocities_to_one(opt, vs, ctx):
    """Before step 0, every '<var>_velocity' slot ← 1: the playbook's :math:`v_0 = 1`."""
    if ctx.t == 0:
        for v in vs:
            slot = _keras_slot(opt, v, "velocity")
            slot.assign(np.ones(slot.shape, dtype=slot.dtype))


def _keras_rescale_momentum(opt, vs, ctx):
    r"""The obvious edit, a control: Keras's buffer holds :math:`-\eta_{t-1} v_t`; rescale it to
    :math:`-\eta_t v_t`. Impossible after a step with :math:`\eta = 0` (the buffer
    then lost that step's gradient), so it is skipped there."""
    if ctx.t >= 1 and ctx.prev_lr > 0:
        for v in vs:
            slot = _keras_slot(opt, v, "momentum")
            slot.assign(np.array(slot.value) * (ctx.lr / ctx.prev_lr))


def _keras_eps_edit(opt, vs, ctx):
    """Before each step, Keras's ε ← the playbook's ε moved inside the bias correction."""
    opt.epsilon = _adam_eps(ctx)


# Factories ``make(keras, hp)`` for the Keras rows.
def _keras_sgd(**kw):
    return lambda keras, hp: keras.optimizers.SGD(learning_rate=0.0, **kw)


def _keras_rmsprop(keras, hp):
    return keras.optimizers.RMSprop(learning_rate=0.0, rho=hp["rho"], momentum=hp["gamma"],
                                    epsilon=hp["eps"])


def _keras_adam(cls="Adam", **kw):
    return lambda keras, hp: getattr(keras.optimizers, cls)(
        learning_rate=0.0, beta_1=hp["beta1"], beta_2=hp["beta2"], epsilon=hp["eps"], **kw)


def _keras_momentum_row(name: str, nesterov: bool) -> dict:
    """The spec of the momentum or nesterov row: they differ only in ``nesterov``."""
    flag = ", nesterov=True" if nesterov else ""
    sgd = _keras_sgd(momentum=_GAMMA, nesterov=nesterov)
    return dict(
        name=name, verdict="matches with edit",
        match=_keras_setup(f"SGD(learning_rate=1, momentum=γ{flag}), step scaled by η_t", sgd,
                           lr_one=True),
        controls=(_keras_setup(f"SGD(learning_rate=η_t, momentum=γ{flag}) (as is)", sgd),
                  _keras_setup("as is + momentum *= η_t/η_{t−1} before step t ≥ 1 (η_0 = 0 "
                               "here)", sgd, _keras_rescale_momentum)),
        note="Keras keeps η inside its buffer (m ← γm − η_t g), so it equals the playbook only "
             "at constant η. Run it at learning_rate=1 — its buffer is then exactly −v — and "
             "scale each step by η_t: θ_{t+1} = θ_t + η_t(θ' − θ_t). Rescaling the buffer by "
             "η_t/η_{t−1} also works while every η_{t−1} > 0, but a warmup starting at η_0 = 0 "
             "erases g_0 from the buffer and no edit recovers it.")


_KERAS_EPS_EDIT = "optimizer.epsilon set before step t to ε/√(1−β2^(t+1))"

_KERAS_ROWS = _table(
    "keras",
    dict(name="sgd", verdict="matches",
         match=_keras_setup("SGD(learning_rate=η_t)", _keras_sgd()),
         controls=(_keras_setup("SGD with η_{t−1} — schedule one step late", _keras_sgd(),
                                lr_late=True),),
         note="θ ← θ − η_t g."),
    _keras_momentum_row("momentum", False),
    _keras_momentum_row("nesterov", True),
    dict(name="rmsprop", verdict="matches with edit",
         match=_keras_setup("RMSprop(rho=ρ, momentum=γ, epsilon=ε), velocities ← 1 after build",
                            _keras_rmsprop, _keras_velocities_to_one),
         controls=(_keras_setup("RMSprop(rho=ρ, momentum=γ, epsilon=ε) (velocities start at 0)",
                                _keras_rmsprop),),
         note="Keras already puts ε inside the root (√(v + ε)) and η inside the momentum "
              "buffer; only v_0 = 0 differs: assign 1 to every '<var>_velocity' slot."),
    dict(name="adam", verdict="matches",
         match=_keras_setup("Adam(learning_rate=η_t, beta_1=β1, beta_2=β2, epsilon=ε)",
                            _keras_adam()),
         controls=(_keras_setup("Adam with η_{t−1} — schedule one step late", _keras_adam(),
                                lr_late=True),),
         note="Keras 3 Adam is the ε-hat form: α = η√(1−β2^t)/(1−β1^t), "
              "θ ← θ − α m/(√v + ε)."),
    dict(name="nadam", verdict="no configuration matches", match=None,
         controls=(_keras_setup("Nadam(beta_1=β1, beta_2=β2, epsilon=ε)", _keras_adam("Nadam")),
                   _keras_setup(f"closest: Nadam, {_KERAS_EPS_EDIT}", _keras_adam("Nadam"),
                                _keras_eps_edit)),
         note="Keras Nadam is Dozat's variant with the fixed schedule "
              "u_t = β1(1 − ½·0.96^t) (no argument changes it) and products of u_t as bias "
              "corrections; ε is added after v̂. No setting gives the playbook's numerator."),
    dict(name="adam+l2", verdict="matches with edit",
         match=_keras_setup("Adam(...) fed g + λθ (= keras.regularizers.L2(λ/2) on every "
                            "weight)", _keras_adam(), add_l2=True),
         controls=(_keras_setup("Adam(..., weight_decay=λ)",
                                _keras_adam(weight_decay=WEIGHT_DECAY)),),
         note="Keras optimizers have no L2 option: weight_decay is decoupled. Add λθ to the "
              "gradient (an L2(λ/2) regularizer on the loss)."),
    dict(name="adamw", verdict="matches",
         match=_keras_setup("AdamW(..., weight_decay=λ) (or Adam(weight_decay=λ))",
                            _keras_adam("AdamW", weight_decay=WEIGHT_DECAY)),
         controls=(_keras_setup("Adam(...) fed g + λθ (L2)", _keras_adam(), add_l2=True),),
         note="weight_decay: θ ← θ − η_t λ θ before the Adam step = refplay "
              "weight_decay_mode='decoupled' (λ times the scheduled η_t)."),
)


# ========================================================================== running
_ROWS = {"torch": _TORCH_ROWS, "optax": _OPTAX_ROWS, "keras": _KERAS_ROWS}
_LOADERS = {"torch": _torch, "optax": _jax_optax, "keras": _keras}


def require(framework: str) -> None:
    """Import what ``framework``'s checks use now; ``ImportError`` naming the extra if missing."""
    _validate.one_of("framework", framework, FRAMEWORKS)
    _LOADERS[framework]()


def rows(framework: str) -> list[Row]:
    """The table rows of ``framework`` ("torch", "optax" or "keras"), in :data:`ROW_NAMES` order."""
    _validate.one_of("framework", framework, FRAMEWORKS)
    out = list(_ROWS[framework])
    assert [r.name for r in out] == list(ROW_NAMES)
    return out


@dataclass(frozen=True)
class RowResult:
    """Measured max |Δθ| (over problems and steps) per ε: ``match[eps]`` and
    ``controls[label][eps]``."""

    row: Row
    dtype: str
    match: dict
    controls: dict[str, dict]

    @property
    def ok(self) -> bool:
        """The matching configuration agrees (float64: ≤ MATCH_TOL; float32: ≤
        FLOAT32_TOL) and every control differs by more than CONTROL_MIN, at every ε."""
        tol = MATCH_TOL if self.dtype == "float64" else FLOAT32_TOL
        return (all(d <= tol for d in self.match.values())
                and all(d > CONTROL_MIN for c in self.controls.values() for d in c.values()))


def run_setup(setup: Setup, row: Row, eps: float | None, problem, *, steps: int = 60,
              dtype=np.float64):
    """Compare one configuration with the playbook rule on one problem; a ``Comparison``."""
    rule, hp = row_hparams(row.name, eps)
    prob = problems_lib.get(problem)
    dt = _validate.float_dtype("dtype", dtype)
    step_fn = setup.build(prob.init_params(dt), hp, dt)
    return compare(step_fn, rule, hp, problem=prob, steps=steps, dtype=dt,
                   tol=MATCH_TOL if dt == np.float64 else None, diagnose=False)


def run_row(row: Row, *, problems: Sequence[str] = tuple(problems_lib.PROBLEMS),
            control_problems: Sequence[str] | None = None, steps: int = 60,
            dtype=np.float64) -> RowResult:
    """Measure one row: the matching configuration on ``problems`` and each control on
    ``control_problems`` (default: the same), at every ε of the row.

    In float32 only the matching configuration runs: a control's difference
    could not be told apart from float32 rounding.
    """
    steps = _validate.integer("steps", steps, low=50)
    dt = _validate.float_dtype("dtype", dtype)
    control_problems = problems if control_problems is None else control_problems
    controls = dt == np.float64

    def worst(setup: Setup, probs) -> dict:
        return {eps: max(run_setup(setup, row, eps, p, steps=steps, dtype=dt).max for p in probs)
                for eps in row.eps_values}

    match = worst(row.match, problems) if row.match is not None else {}
    ctrl = {s.label: worst(s, control_problems) for s in row.controls} if controls else {}
    return RowResult(row=row, dtype=dt.name, match=match, controls=ctrl)


def check(framework: str, *, steps: int = 60, dtype=np.float64,
          problems: Sequence[str] = tuple(problems_lib.PROBLEMS)) -> list[RowResult]:
    """Run every row of ``framework``'s table; what ``refplay oracle check`` prints."""
    return [run_row(r, problems=problems, steps=steps, dtype=dtype) for r in rows(framework)]


def format_table(results: Sequence[RowResult]) -> str:
    """A plain-text table: verdict, configuration and measured max |Δθ| per ε."""
    lines = []
    for res in results:
        r = res.row
        eps_txt = lambda d: "  ".join(  # noqa: E731
            (f"{d[e]:.1e}" if e is None else f"ε={e:g}: {d[e]:.1e}") for e in d)
        lines.append(f"{r.framework} · {r.name}: {r.verdict.upper()}"
                     f"{'' if res.ok else '   <-- CHECK FAILED'}")
        if r.match is not None:
            lines.append(f"  config   {r.match.label}")
            lines.append(f"           max|Δθ| {eps_txt(res.match)}")
        for label, d in res.controls.items():
            hidden = [e for e, v in d.items() if not v > CONTROL_MIN]
            lines.append(f"  differs  {label}")
            lines.append(f"           max|Δθ| {eps_txt(d)}"
                         + (f"   <-- not visible on these problems at ε={hidden}"
                            if hidden else ""))
        lines.append(f"  why      {r.note}")
    return "\n".join(lines)
