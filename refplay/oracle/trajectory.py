r"""Reference trajectories: the parameters after every step of a playbook rule.

A trajectory is :math:`\theta_0, \theta_1, \dots, \theta_T` where
:math:`\theta_{t+1}` is one update of the rule from :math:`\theta_t` with the
gradient :math:`g_t = \nabla l(\theta_t)` of a deterministic problem
(:mod:`refplay.oracle.problems`) and the learning rate :math:`\eta_t`.
Because the gradients depend only on the parameters, two implementations of
the same rule produce the same trajectory, to rounding.

The default learning rate sequence is the one that exposes where a framework
puts :math:`\eta_t`: a linear warmup from 0 followed by a cosine decay (a
constant learning rate would hide the difference between "lr inside the
momentum buffer" and "lr outside it").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from refplay import _validate, schedules
from refplay.tree import Tree
from refplay.oracle import neighbours
from refplay.oracle import problems as problems_lib


__all__ = ["Trajectory", "trajectory", "standard_schedule", "lr_values"]


def standard_schedule(base_lr: float, steps: int) -> np.ndarray:
    r"""The oracle's learning rates :math:`\eta_0, \dots, \eta_{T-1}`: warmup, then cosine.

    ``warmup_steps = steps // 6`` and the cosine decays to 0 at step ``steps``
    (one past the last step taken), so :math:`\eta_0 = 0` and every later
    :math:`\eta_t > 0` (for ``steps >= 6``; fewer steps get no warmup):

    .. math::
        \eta_t = \begin{cases}
            \eta \, t / W & t < W \\
            \tfrac{\eta}{2}\left(1 + \cos\frac{\pi (t - W)}{T - W}\right) & t \ge W
        \end{cases}

    This is ``schedules.warmup(schedules.cosine_decay(base_lr, steps - W), W)``
    evaluated at ``0 .. steps - 1`` (the playbook's "ramp up from 0 to
    base_learning_rate over warmup_steps", then cosine decay). A step with
    :math:`\eta = 0` is deliberate: it is where Keras' momentum buffer loses a
    gradient (see ``docs/oracle.md``).
    """
    base_lr = _validate.real("base_lr", base_lr, low=0.0, low_open=True)
    steps = _validate.integer("steps", steps, low=2)
    warmup_steps = steps // 6
    schedule = schedules.warmup(schedules.cosine_decay(base_lr, steps - warmup_steps), warmup_steps)
    return np.asarray(schedule(np.arange(steps)), dtype=np.float64)


def lr_values(lr_schedule, steps: int) -> np.ndarray:
    """The learning rates for steps ``0 .. steps-1`` as a float64 array.

    ``lr_schedule`` is a callable ``step -> lr`` (any refplay schedule), a
    sequence of at least ``steps`` numbers, or a single number (constant).
    Every value must be finite and ≥ 0.
    """
    steps = _validate.integer("steps", steps, low=1)
    if callable(lr_schedule):
        lrs = np.array([float(lr_schedule(t)) for t in range(steps)], dtype=np.float64)
    elif np.ndim(lr_schedule) == 0:
        lrs = np.full(steps, _validate.real("lr_schedule", lr_schedule, low=0.0))
    else:
        lrs = np.asarray(lr_schedule, dtype=np.float64)
        if lrs.ndim != 1 or lrs.size < steps:
            raise ValueError(f"lr_schedule must hold at least steps={steps} learning rates, "
                             f"got shape {lrs.shape}")
        lrs = lrs[:steps].copy()
    bad = np.flatnonzero(~np.isfinite(lrs) | (lrs < 0))
    if bad.size:
        raise ValueError(f"lr_schedule gives lr={lrs[bad[0]]!r} at step {bad[0]}; "
                         "learning rates must be finite and >= 0")
    return lrs


@dataclass(frozen=True)
class Trajectory:
    """Parameters after every step of ``rule`` on ``problem``.

    ``params[k][t]`` is leaf ``k`` of :math:`\\theta_t` (``t = 0 .. steps``),
    ``grads[k][t]`` is leaf ``k`` of :math:`g_t = \\nabla l(\\theta_t)` used by
    update ``t`` (``t = 0 .. steps-1``), ``lrs[t]`` is :math:`\\eta_t` and
    ``losses[t]`` is :math:`l(\\theta_t)`. ``state[slot][k][t]`` is the
    optimizer's buffer ``slot`` (``"m"``, ``"v"``) of leaf ``k`` after ``t``
    updates (index 0: the initial value). ``form`` is the playbook's
    (``"playbook"``) or a neighbour form (:mod:`refplay.oracle.neighbours`).
    """

    rule: str
    hparams: dict
    problem: str
    dtype: str
    lrs: np.ndarray
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    losses: np.ndarray
    state: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    form: str = neighbours.PLAYBOOK

    @property
    def steps(self) -> int:
        """The number of updates recorded (one learning rate per step)."""
        return int(self.lrs.size)

    def at(self, t: int) -> Tree:
        """:math:`\\theta_t` as a tree (copies)."""
        t = _validate.integer("t", t, low=0, high=self.steps)
        return {k: v[t].copy() for k, v in self.params.items()}


def trajectory(rule: str, hparams: Mapping | None = None, lr_schedule=None,
               problem: str | problems_lib.Problem = "least_squares", steps: int = 60,
               dtype=np.float64, form: str | None = None) -> Trajectory:
    """Run the playbook rule ``rule`` for ``steps`` steps and record every iterate.

    ``hparams`` go to ``refplay.optim.get(rule, **hparams)``. ``lr_schedule``
    is a schedule, a sequence or a number (see :func:`lr_values`); ``None``
    means :func:`standard_schedule` at the problem's base learning rate for
    this rule. ``dtype`` is float64 (the oracle) or float32. ``form`` picks a
    neighbour form instead of the playbook's (e.g. ``"torch"`` for Adam with ε
    after the bias correction; :func:`refplay.oracle.neighbours.forms`).
    """
    hparams = dict(hparams or {})
    opt = neighbours.build(rule, hparams, form)
    form_name = neighbours.get_form(rule, form).name
    prob = problems_lib.get(problem)
    steps = _validate.integer("steps", steps, low=1)
    dt = _validate.float_dtype("dtype", dtype)
    if lr_schedule is None:
        lr_schedule = standard_schedule(prob.base_lr[rule], max(steps, 2))
    lrs = lr_values(lr_schedule, steps)

    params = prob.init_params(dt)
    state = opt.init(params)
    hist_p = {k: [v.copy()] for k, v in params.items()}
    hist_g: dict[str, list[np.ndarray]] = {k: [] for k in params}
    hist_s = {s: {k: [np.asarray(v).copy()] for k, v in t.items()} for s, t in state.slots.items()}
    losses = [prob.loss(params)]
    for t in range(steps):
        grads = prob.grad(params)
        params, state = opt.update(params, grads, state, float(lrs[t]))
        for k in params:
            hist_g[k].append(grads[k])
            hist_p[k].append(np.asarray(params[k]).copy())
        for s, tree in state.slots.items():
            for k, v in tree.items():
                hist_s[s][k].append(np.asarray(v).copy())
        losses.append(prob.loss(params))
    return Trajectory(
        rule=rule, hparams=dict(opt.hparams), problem=prob.name, dtype=dt.name, lrs=lrs,
        params={k: np.stack(v) for k, v in hist_p.items()},
        grads={k: np.stack(v) for k, v in hist_g.items()},
        losses=np.array(losses, dtype=np.float64),
        state={s: {k: np.stack(v) for k, v in t.items()} for s, t in hist_s.items()},
        form=form_name,
    )
