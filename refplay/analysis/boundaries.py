"""Is the search space big enough? The boundary check behind a basic axis plot.

The playbook ("Identifying bad search space boundaries"):

* *"A search space is suspicious if the best point sampled from it is close
  to its boundary. We might find an even better point if we expanded the
  search range in that direction."*
* *"If all trials are infeasible for learning rates greater than some
  threshold value, and if the best performing trials have learning rates at
  the edge of that region, the model may suffer from stability issues
  preventing it from accessing higher learning rates."*

For each scientific value, a trial's **position** on the parameter's scale is

.. math:: u = \\frac{s(x) - s(low)}{s(high) - s(low)},\\quad s = \\log
          \\text{ for log-scaled parameters, else the identity},

so 0 is the lower boundary and 1 the upper one. "Close" is not a number in
the playbook; refplay uses the outer ``near = 0.2`` of the range on either
side. The **divergence threshold** is the smallest infeasible value such that
every larger value is infeasible and every smaller one complete (``None`` if
feasibility is not monotone). "At the edge of that region" is refplay's
reading: the best trial lies in the top third of the feasible range
``[low, threshold]``. ``n_good`` counts the trials within 2 standard errors of
the best: the playbook's "how many points are in the 'good' region".

Decisions, in this order: ``no_complete_trials``; ``instability_limited``
(best at the infeasible edge: expanding will not help, try warmup or
clipping); ``expand_high`` / ``expand_low`` (the best trial near that
boundary; the suggested range extends it by half its width on the
parameter's scale); ``ok``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from refplay import _validate
from refplay.analysis.selection import ranked
from refplay.analysis.uncertainty import metric_se
from refplay.search.space import Discrete, Float, Int
from refplay.train.result import TrialStatus

__all__ = ["BoundaryCheck", "BoundaryReport", "boundary_check", "position", "DECISIONS",
           "EDGE"]

DECISIONS = ("ok", "expand_low", "expand_high", "instability_limited", "no_complete_trials")
EDGE = 2.0 / 3.0     # "at the edge of the infeasible region": the top third of the feasible range


def position(x, low: float, high: float, scale: str):
    """Position(s) of ``x`` in ``[low, high]`` on ``scale`` (0 = low, 1 = high)."""
    x = np.asarray(x, dtype=np.float64)
    if scale == "log":
        return np.log(x / low) / math.log(high / low)
    return (x - low) / (high - low)


def _from_position(u: float, low: float, high: float, scale: str) -> float:
    return low * (high / low) ** u if scale == "log" else low + u * (high - low)


@dataclass(frozen=True)
class BoundaryCheck:
    """The boundary check of one parameter for one scientific value."""

    value: tuple                       # the scientific value
    parameter: str                     # the parameter's name in the space ("adam/lr")
    scale: str
    low: float
    high: float
    top_trials: tuple[int, ...]        # the top-k complete trials, best first
    top_values: tuple[float, ...]      # their parameter values
    positions: tuple[float, ...]       # their positions in [0, 1]
    near_low: bool                     # the best trial is in the bottom ``near`` of the range
    near_high: bool                    # ... in the top ``near``
    divergence_threshold: float | None
    best_at_infeasible_edge: bool
    n_good: int                        # complete trials within ``good_tolerance`` of the best
    good_tolerance: float
    tolerance_basis: str               # "2 binomial SE" or "5% of the best"
    n_complete: int
    n_trials: int                      # trials where the parameter is active, pruned ones left out
    decision: str
    suggested_range: tuple[float, float] | None
    message: str


@dataclass(frozen=True)
class BoundaryReport:
    """The boundary checks of parameter ``param``, one per scientific value."""

    param: str
    near: float
    checks: dict                        # scientific value -> BoundaryCheck

    @property
    def decisions(self) -> dict:
        """``{scientific value: decision}``."""
        return {v: c.decision for v, c in self.checks.items()}


def _numeric_parameter(space, name: str):
    p = space[name]
    if isinstance(p, (Float, Int)):
        return p.scale, float(p.low), float(p.high)
    if isinstance(p, Discrete) and len(p.values) > 1:
        return "linear", float(min(p.values)), float(max(p.values))
    raise ValueError(f"parameter {name!r} ({type(p).__name__}) has no numeric range; a "
                     f"boundary check needs a Float, Int or Discrete parameter")


def _threshold(xs: np.ndarray, statuses: list[TrialStatus]) -> float | None:
    """Smallest infeasible x with every larger x infeasible and every smaller one complete.

    Failed (crashed) and pruned (stopped early) trials say nothing about divergence.
    """
    finished = (TrialStatus.COMPLETE, TrialStatus.INFEASIBLE)
    pairs = sorted((x, s) for x, s in zip(xs.tolist(), statuses) if s in finished)
    if not any(s == TrialStatus.INFEASIBLE for _, s in pairs):
        return None
    first = next(i for i, (_, s) in enumerate(pairs) if s == TrialStatus.INFEASIBLE)
    if all(s == TrialStatus.INFEASIBLE for _, s in pairs[first:]) and \
            all(s == TrialStatus.COMPLETE for _, s in pairs[:first]):
        return pairs[first][0]
    return None


def _suggest(decision: str, low: float, high: float, scale: str, integer: bool):
    if decision == "expand_high":
        new = (low, _from_position(1.5, low, high, scale))
        if scale == "linear" and 0.0 <= low and high <= 1.0 and not integer:
            new = (low, high + 0.5 * (1.0 - high))   # a fraction (momentum, beta): stay below 1
    elif decision == "expand_low":
        new = (_from_position(-0.5, low, high, scale), high)
        if scale == "linear" and low >= 0.0 and new[0] < 0.0:
            new = (low / 2.0, high)                   # a non-negative parameter stays so
    else:
        return None
    if integer:
        new = (max(1, math.floor(new[0])) if scale == "log" else math.floor(new[0]),
               math.ceil(new[1]))
    return (float(f"{new[0]:.3g}"), float(f"{new[1]:.3g}")) if not integer else new


def _good_tolerance(frame, best_value: float, good_tol: float | None) -> tuple[float, str]:
    """How close to the best a trial must be to count as "good", and the basis of it."""
    if good_tol is not None:
        return good_tol, "given"
    se = metric_se(frame.metric, best_value, frame.n_validation)
    if se is not None:
        return 2.0 * se, "2 binomial SE"
    return 0.05 * abs(best_value), "5% of the best"


def _decide(name, best_x, u, bounds, threshold, at_edge, near_low, near_high) -> tuple[str, str]:
    """The decision and its message, in the module docstring's order."""
    low, high = bounds
    if at_edge:
        return "instability_limited", (
            f"every {name} >= {threshold:.3g} diverged and the best ({best_x:.3g}) sits at "
            f"that edge: expanding the range will not help; the model may have a stability "
            f"problem (try warmup or gradient clipping)")
    if near_high:
        return "expand_high", (f"the best {name} ({best_x:.3g}) is at {u:.2f} of the range, "
                               f"close to its upper boundary {high:.3g}")
    if near_low:
        return "expand_low", (f"the best {name} ({best_x:.3g}) is at {u:.2f} of the range, "
                              f"close to its lower boundary {low:.3g}")
    return "ok", f"the best {name} ({best_x:.3g}) is inside the range ({u:.2f})"


def _check_one(frame, value, group, param, near, top_k, good_tol):
    names = {group.parameter_of(r, param) for r in group.rows} - {None}
    if not names:
        return None                     # the parameter is inactive for this value
    if len(names) > 1:
        raise ValueError(f"param={param!r} refers to several parameters {sorted(names)} within "
                         f"{frame.label(value)!r}; name one of them")
    (name,) = names
    scale, low, high = _numeric_parameter(frame.space, name)
    integer = isinstance(frame.space[name], Int)
    rows = [r for r in group.rows if group.parameter_of(r, param) is not None]
    xs = np.array([float(r.active[name]) for r in rows])
    statuses = [r.status for r in rows]
    sub = group.where(lambda r: group.parameter_of(r, param) is not None)
    order = ranked(sub)
    n_complete = sum(s == TrialStatus.COMPLETE for s in statuses)
    n_trials = sum(s != TrialStatus.PRUNED for s in statuses)     # pruned: counted nowhere
    threshold = _threshold(xs, statuses)
    if not order:
        return BoundaryCheck(value, name, scale, low, high, (), (), (), False, False, threshold,
                             False, 0, math.nan, "-", n_complete, n_trials,
                             "no_complete_trials", None,
                             f"{frame.label(value)}: no complete trial; every {name} tried "
                             f"was infeasible or failed")
    top = order[:top_k]
    top_values = tuple(float(r.active[name]) for r, _, _ in top)
    positions = tuple(float(u) for u in position(top_values, low, high, scale))
    best_value = top[0][1]
    near_low, near_high = positions[0] < near, positions[0] > 1.0 - near
    at_edge = threshold is not None and threshold > low and \
        float(position(top_values[0], low, threshold, scale)) > EDGE
    good_tol, basis = _good_tolerance(frame, best_value, good_tol)
    n_good = sum(abs(v - best_value) <= good_tol for _, v, _ in order)
    decision, msg = _decide(name, top_values[0], positions[0], (low, high), threshold,
                            at_edge, near_low, near_high)
    suggested = _suggest(decision, low, high, scale, integer)
    if suggested is not None:
        msg += f"; suggested new range [{suggested[0]:.3g}, {suggested[1]:.3g}]"
    return BoundaryCheck(value, name, scale, low, high, tuple(r.trial for r, _, _ in top),
                         top_values, positions, near_low, near_high, threshold, at_edge, n_good,
                         float(good_tol), basis, n_complete, n_trials, decision, suggested,
                         f"{frame.label(value)}: {msg}")


def boundary_check(frame, param: str, by: str | None = "scientific", near: float = 0.2,
                   top_k: int = 3, good_tolerance: float | None = None) -> BoundaryReport:
    """Check ``param``'s search range for each scientific value (see the module docstring).

    ``param`` is a parameter name or a config key (``"lr"`` resolves to each
    trial's active ``"adam/lr"`` / ``"nesterov/lr"``). Values for which
    ``param`` is inactive are left out.
    """
    _validate.real("near", near, low=0.0, high=0.5, low_open=True)
    _validate.integer("top_k", top_k, low=1)
    if frame.space is None:
        raise ValueError(f"study {frame.name!r} has no search space; a boundary check needs "
                         f"the parameter's range")
    frame.values(param, numeric=False)        # validates the name
    checks = {}
    for value, group in frame.groups(by).items():
        check = _check_one(frame, value, group, param, near, top_k, good_tolerance)
        if check is not None:
            checks[value] = check
    return BoundaryReport(param, near, checks)
