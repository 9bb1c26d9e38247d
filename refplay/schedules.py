r"""Learning-rate schedules: pure functions of the optimizer step.

A schedule maps a step ``s = 0, 1, 2, ...`` (the number of updates done so far)
to the learning rate :math:`\eta_s` the optimizer uses for the next update::

    schedule = schedules.warmup(schedules.cosine_decay(base_lr=0.1, decay_steps=10_000),
                                warmup_steps=1_000)
    params, state = opt.update(params, grads, state, lr=schedule(step))
    schedule(np.arange(schedule.total_steps))      # float64 array, for plots

Every schedule is a small frozen dataclass; calling it with a Python or NumPy
integer returns a ``float``, calling it with an integer array returns a
float64 array of the same shape. Steps must be integers ≥ 0 (DESIGN.md:
"Steps, not epochs"). After ``total_steps`` a decaying schedule stays at its
final value.

The families: :func:`constant`, :func:`linear_decay` (with an optional
constant phase first), :func:`cosine_decay` (with a floor), :func:`rsqrt`,
:func:`piecewise_constant`; :func:`warmup` prepends a linear ramp to any of
them. The playbook's round-2 advice for compute-bound training is
:func:`extend_linear` and :func:`extend_cosine`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from refplay import _validate

__all__ = [
    "Schedule", "Constant", "LinearDecay", "CosineDecay", "RSqrt", "PiecewiseConstant", "Warmup",
    "constant", "linear_decay", "cosine_decay", "rsqrt", "piecewise_constant", "warmup",
    "extend_linear", "extend_cosine", "get", "SCHEDULES",
]


def _check_steps(step) -> np.ndarray:
    """``step`` as an int64 array (0-d for a scalar); integers ≥ 0 only."""
    if isinstance(step, (bool, np.bool_)):
        raise TypeError(f"step must be an integer >= 0, got {step!r}")
    if isinstance(step, numbers.Integral):
        steps = np.asarray(int(step), dtype=np.int64)
    else:
        steps = np.asarray(step)
        if steps.dtype.kind not in "iu":
            raise TypeError(f"step must be an integer or an integer array, got dtype {steps.dtype} "
                            f"({step!r:.60})")
        steps = steps.astype(np.int64)
    if steps.size and steps.min() < 0:
        raise ValueError(f"step must be >= 0, got {int(steps.min())}")
    return steps


def _rate(name: str, value) -> float:
    return _validate.real(name, value, low=0.0)


def _set(obj, name: str, value) -> None:
    """Store a validated value on a frozen dataclass (used in ``__post_init__``)."""
    object.__setattr__(obj, name, value)


class Schedule:
    """Base class: ``schedule(step)`` and ``schedule.total_steps``.

    Subclasses implement ``_lr(steps)`` on an int64 array of valid steps and
    return a float64 array.
    """

    def __call__(self, step):
        steps = _check_steps(step)
        lr = np.asarray(self._lr(steps), dtype=np.float64)
        return float(lr) if lr.ndim == 0 else lr

    def _lr(self, steps: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def total_steps(self) -> int | None:
        """Steps until the schedule reaches its final value (``None`` if it never does)."""
        return None


# ------------------------------------------------------------------- constant
@dataclass(frozen=True)
class Constant(Schedule):
    r""":math:`\eta_s = \eta_{\text{base}}` for every step."""

    base_lr: float

    def __post_init__(self):
        _set(self, "base_lr", _rate("base_lr", self.base_lr))

    def _lr(self, steps):
        return np.full(steps.shape, self.base_lr)


# -------------------------------------------------------------- linear decay
@dataclass(frozen=True)
class LinearDecay(Schedule):
    r"""Constant for ``constant_steps``, then linear decay to ``final_lr`` over ``decay_steps``.

    .. math::
        f_s &= \frac{\min(\max(s - s_c, 0), T)}{T} \\
        \eta_s &= (1 - f_s)\, \eta_{\text{base}} + f_s\, \eta_{\text{final}}

    with :math:`s_c` = ``constant_steps`` and :math:`T` = ``decay_steps``
    (written as a weighted average so both ends are exact in floating point).
    The rate reaches ``final_lr`` at step ``total_steps = constant_steps +
    decay_steps`` and stays there.
    """

    base_lr: float
    decay_steps: int
    final_lr: float = 0.0
    constant_steps: int = 0

    def __post_init__(self):
        _set(self, "base_lr", _rate("base_lr", self.base_lr))
        _set(self, "final_lr", _rate("final_lr", self.final_lr))
        _set(self, "decay_steps", _validate.integer("decay_steps", self.decay_steps, low=1))
        _set(self, "constant_steps",
             _validate.integer("constant_steps", self.constant_steps, low=0))

    def _lr(self, steps):
        frac = np.clip(steps - self.constant_steps, 0, self.decay_steps) / self.decay_steps
        return (1.0 - frac) * self.base_lr + frac * self.final_lr

    @property
    def total_steps(self) -> int:
        """The step at which the rate reaches ``final_lr``: ``constant_steps + decay_steps``."""
        return self.constant_steps + self.decay_steps


# -------------------------------------------------------------- cosine decay
@dataclass(frozen=True)
class CosineDecay(Schedule):
    r"""Cosine decay from ``base_lr`` to the floor ``final_lr`` over ``decay_steps``.

    .. math::
        c_s &= \tfrac12 \left(1 + \cos\frac{\pi \min(s, T)}{T}\right) \\
        \eta_s &= c_s\, \eta_{\text{base}} + (1 - c_s)\, \eta_{\text{final}}

    with :math:`T` = ``decay_steps`` (the playbook's ``max_train_steps`` when
    there is no warmup); :math:`c_s` falls from 1 to 0, so the rate falls
    from ``base_lr`` exactly to ``final_lr``.
    """

    base_lr: float
    decay_steps: int
    final_lr: float = 0.0

    def __post_init__(self):
        _set(self, "base_lr", _rate("base_lr", self.base_lr))
        _set(self, "final_lr", _rate("final_lr", self.final_lr))
        _set(self, "decay_steps", _validate.integer("decay_steps", self.decay_steps, low=1))

    def _lr(self, steps):
        frac = np.minimum(steps, self.decay_steps) / self.decay_steps
        c = 0.5 * (1.0 + np.cos(math.pi * frac))
        return c * self.base_lr + (1.0 - c) * self.final_lr

    @property
    def total_steps(self) -> int:
        """The step at which the rate reaches ``final_lr``: ``decay_steps``."""
        return self.decay_steps


# --------------------------------------------------------------------- rsqrt
@dataclass(frozen=True)
class RSqrt(Schedule):
    r"""Inverse-square-root decay.

    .. math:: \eta_s = \eta_{\text{base}} \sqrt{\frac{k}{s + k}}

    with :math:`k` = ``shift`` > 0, so :math:`\eta_0 = \eta_{\text{base}}` and
    the rate halves every time :math:`s + k` quadruples. ``shift=1`` is the
    textbook :math:`\eta/\sqrt{s+1}`. ``warmup(rsqrt(base_lr, shift=W), W)``
    is the Transformer schedule (Vaswani et al. 2017): a linear ramp for
    :math:`W` steps, then :math:`\eta_{\text{base}}\sqrt{W/\text{step}}`.
    It never reaches a final value (``total_steps`` is ``None``).
    """

    base_lr: float
    shift: int = 1

    def __post_init__(self):
        _set(self, "base_lr", _rate("base_lr", self.base_lr))
        _set(self, "shift", _validate.integer("shift", self.shift, low=1))

    def _lr(self, steps):
        return self.base_lr * np.sqrt(self.shift / (steps + self.shift))


# --------------------------------------------------------- piecewise constant
@dataclass(frozen=True)
class PiecewiseConstant(Schedule):
    r"""``values[i]`` for ``boundaries[i-1] <= step < boundaries[i]``.

    .. math:: \eta_s = v_i \quad \text{where } i = \#\{j : b_j \le s\}

    ``boundaries`` are strictly increasing integers > 0 and there is one more
    value than boundaries: ``values[0]`` before ``boundaries[0]``,
    ``values[-1]`` from ``boundaries[-1]`` on (``total_steps``).
    """

    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self):
        b = tuple(_validate.integer(f"boundaries[{i}]", x, low=1)
                  for i, x in enumerate(self.boundaries))
        v = tuple(_rate(f"values[{i}]", x) for i, x in enumerate(self.values))
        if any(b1 <= b0 for b0, b1 in zip(b, b[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got {list(b)}")
        if len(v) != len(b) + 1:
            raise ValueError(f"values must have len(boundaries) + 1 = {len(b) + 1} entries, "
                             f"got {len(v)}")
        _set(self, "boundaries", b)
        _set(self, "values", v)

    def _lr(self, steps):
        index = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), steps, side="right")
        return np.asarray(self.values, dtype=np.float64)[index]

    @property
    def total_steps(self) -> int | None:
        """The last boundary, from which the rate stays at ``values[-1]``; None without any."""
        return self.boundaries[-1] if self.boundaries else None


# --------------------------------------------------------------------- warmup
@dataclass(frozen=True)
class Warmup(Schedule):
    r"""A linear warmup *prepended* to ``schedule``.

    Playbook, "How to apply learning rate warmup": "Warmup involves prepending
    a learning rate schedule that ramps up the learning rate from 0 to some
    stable ``base_learning_rate``" and "if we originally had 10,000
    ``max_train_steps`` and did ``warmup_steps`` for 1000 steps, the new
    training procedure should run for 11,000 steps total."

    .. math::
        \eta_s = \begin{cases}
            \eta^{\text{inner}}_0 \cdot s / W & s < W \\
            \eta^{\text{inner}}_{s - W} & s \ge W
        \end{cases}

    with :math:`W` = ``warmup_steps``. The ramp starts at 0 and reaches the
    inner schedule's first value exactly at step :math:`W`, where the inner
    schedule starts; ``total_steps`` is the inner total plus :math:`W`.
    """

    schedule: Schedule
    warmup_steps: int

    def __post_init__(self):
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"schedule must be a refplay schedule, "
                            f"got {type(self.schedule).__name__}")
        _set(self, "warmup_steps", _validate.integer("warmup_steps", self.warmup_steps, low=0))

    def _lr(self, steps):
        w = self.warmup_steps
        ramp = self.schedule(0) * (steps / w) if w else np.zeros(steps.shape)
        after = self.schedule(np.maximum(steps - w, 0))     # the inner schedule, shifted by W
        return np.where(steps < w, ramp, after)

    @property
    def total_steps(self) -> int | None:
        """The inner schedule's ``total_steps`` plus ``warmup_steps``; None if it has none."""
        inner = self.schedule.total_steps
        return None if inner is None else inner + self.warmup_steps


# ---------------------------------------------------------------- constructors
def constant(base_lr: float) -> Constant:
    """A constant learning rate (see :class:`Constant`)."""
    return Constant(base_lr)


def linear_decay(base_lr: float, decay_steps: int, final_lr: float = 0.0, *,
                 constant_steps: int = 0) -> LinearDecay:
    """Linear decay to ``final_lr`` over ``decay_steps``, after ``constant_steps`` at
    ``base_lr`` (see :class:`LinearDecay`)."""
    return LinearDecay(base_lr=base_lr, decay_steps=decay_steps, final_lr=final_lr,
                       constant_steps=constant_steps)


def cosine_decay(base_lr: float, decay_steps: int, final_lr: float = 0.0) -> CosineDecay:
    """Cosine decay to the floor ``final_lr`` over ``decay_steps`` (see :class:`CosineDecay`)."""
    return CosineDecay(base_lr, decay_steps, final_lr)


def rsqrt(base_lr: float, shift: int = 1) -> RSqrt:
    """``base_lr * sqrt(shift / (step + shift))`` (see :class:`RSqrt`)."""
    return RSqrt(base_lr, shift)


def piecewise_constant(boundaries, values) -> PiecewiseConstant:
    """``values[i]`` between ``boundaries[i-1]`` and ``boundaries[i]`` (see
    :class:`PiecewiseConstant`)."""
    return PiecewiseConstant(tuple(boundaries), tuple(values))


def warmup(schedule: Schedule, warmup_steps: int) -> Warmup:
    """Prepend a linear ramp 0 → ``schedule(0)`` of ``warmup_steps`` (see :class:`Warmup`)."""
    return Warmup(schedule, warmup_steps)


# ------------------------------------------------------ round 2: train longer
def _extend(schedule: Schedule, max_train_steps: int, kind: type, extend_inner) -> Schedule:
    """Apply ``extend_inner`` to ``schedule`` or, through a warmup, to its inner schedule."""
    max_train_steps = _validate.integer("max_train_steps", max_train_steps, low=1)
    if isinstance(schedule, Warmup):
        inner = _extend(schedule.schedule, max_train_steps - schedule.warmup_steps, kind,
                        extend_inner)
        return Warmup(inner, schedule.warmup_steps)
    if not isinstance(schedule, kind):
        raise TypeError(f"schedule must be a {kind.__name__} (optionally inside a warmup), "
                        f"got {type(schedule).__name__}")
    if max_train_steps < schedule.total_steps:
        raise ValueError(f"max_train_steps={max_train_steps} is shorter than the schedule's "
                         f"{schedule.total_steps} steps; round 2 only extends training")
    return extend_inner(schedule, max_train_steps)


def extend_linear(schedule: LinearDecay | Warmup, max_train_steps: int) -> Schedule:
    """Round 2 for a linear schedule: same decay, a longer constant phase first.

    Playbook, "Deciding how long to train when training is compute-bound",
    Round 2: "Use the extra steps to extend the period of training at a high
    learning rate. E.g. if linear schedule then keep the length of the decay
    fixed from Round 1 and extend the period of constant lr in the beginning."

    ``max_train_steps`` is the new total (including any warmup, which is kept).
    """
    return _extend(schedule, max_train_steps, LinearDecay, lambda s, n: LinearDecay(
        s.base_lr, s.decay_steps, s.final_lr, constant_steps=n - s.decay_steps))


def extend_cosine(schedule: CosineDecay | Warmup, max_train_steps: int) -> Schedule:
    """Round 2 for a cosine schedule: the same base rate over more steps.

    Playbook, Round 2: "For cosine decay, just keep the base lr from Round 1
    and extend ``max_train_steps`` as in Chinchilla paper." The cosine is
    stretched so it ends at the new ``max_train_steps`` (which includes any
    warmup, which is kept).
    """
    return _extend(schedule, max_train_steps, CosineDecay, lambda s, n: CosineDecay(
        s.base_lr, n, s.final_lr))


# --------------------------------------------------------------------- by name
SCHEDULES = {
    "constant": constant, "linear": linear_decay, "cosine": cosine_decay,
    "rsqrt": rsqrt, "piecewise": piecewise_constant,
}


def get(name: str, *, warmup_steps: int = 0, **hparams) -> Schedule:
    """Build a schedule by name, e.g. ``get("cosine", base_lr=0.1, decay_steps=10_000)``.

    Names: ``constant``, ``linear``, ``cosine``, ``rsqrt``, ``piecewise``; the
    hyperparameters are those of the matching constructor. ``warmup_steps > 0``
    prepends a warmup (``warmup_steps=0`` returns the schedule itself).
    Unknown names and unknown hyperparameters are errors.
    """
    if not isinstance(name, str):
        raise TypeError(f"schedule name must be a string, got {name!r}")
    _validate.one_of("schedule", name, SCHEDULES)
    _validate.known_hparams("schedule", name, SCHEDULES[name], hparams,
                            also_allowed=["warmup_steps"])
    schedule = SCHEDULES[name](**hparams)
    warmup_steps = _validate.integer("warmup_steps", warmup_steps, low=0)
    return Warmup(schedule, warmup_steps) if warmup_steps else schedule
