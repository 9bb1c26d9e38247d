r"""What the training curves of a trial say: the playbook's checklist as flags.

The playbook ("Examining the training curves"): *"For every study, we always
look at the training curves (training error and validation error plotted
versus training step over the duration of training) of at least the best few
trials"*, asking:

* **overfitting** — *"Problematic overfitting occurs when the validation
  error starts increasing at some point during training"*: the metric at the
  last evaluation minus its best exceeds :math:`k \cdot SE`;
* **late_variance** — *"Is there high step-to-step variance in the training
  or validation error late in training?"*: the standard deviation of the last
  ``late_frac`` (20 %) of evaluations around their straight-line trend exceeds
  :math:`k \cdot SE`. Likely causes: batch variance, a small validation set,
  a learning rate that is too high late in training; remedies: a bigger
  batch, more validation data, learning-rate decay, Polyak averaging;
* **still_improving** — *"Are the trials still improving at the end of
  training? If so, this indicates that we are in the 'compute bound'
  regime"*: the best step is in the last 10 % and the metric improved by more
  than :math:`k \cdot SE` over the last 20 % of evaluations;
* **saturated_early** — *"Has performance [...] saturated long before the
  final training step?"*: the best step is in the first half, the final value
  is within :math:`k \cdot SE` of the best (no overfitting), so fewer steps
  would do;
* **train_loss_increasing** — *"training loss increasing during training
  usually indicates a bug in the training pipeline"*: Spearman's rank
  correlation between step and training loss over the second half of training
  exceeds 0.5;
* **instability** — spike events of the per-step loss
  (:func:`refplay.analysis.detect_instability`).

:math:`SE = \sqrt{p(1-p)/n}` is the binomial standard error of the best
error rate :math:`p` on the :math:`n` validation examples. For a metric that
is not an error rate (a loss), or an unknown :math:`n`, refplay uses 1 % of
the best value as the unit instead, and says so in ``se_basis``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.analysis.instability import detect_instability
from refplay.analysis.uncertainty import metric_se

__all__ = ["Flag", "Diagnostics", "curve_diagnostics", "spearman", "FLAGS"]

FLAGS = ("overfitting", "late_variance", "still_improving", "saturated_early",
         "train_loss_increasing", "instability")


class Flag(NamedTuple):
    """One question of the checklist: raised or not, why, and the numbers behind it."""

    name: str
    raised: bool
    message: str
    numbers: dict


@dataclass(frozen=True)
class Diagnostics:
    """The flags of one trial's curves, with the unit (``se``) their thresholds use."""

    metric: str
    se: float                 # the unit of the thresholds
    se_basis: str             # "binomial SE on n=500" or "1% of the best value"
    flags: tuple[Flag, ...]

    @property
    def raised(self) -> tuple[Flag, ...]:
        """The flags that are raised."""
        return tuple(f for f in self.flags if f.raised)

    def __getitem__(self, name: str) -> Flag:
        for f in self.flags:
            if f.name == name:
                return f
        raise KeyError(f"no flag {name!r}; flags are {list(FLAGS)}")


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for < 3 points."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denom if denom > 0 else math.nan


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def curve_diagnostics(result, metric: str = "validation/error_rate", *,
                      n_validation: int | None = None, max_train_steps: int | None = None,
                      mode: str = "min", late_frac: float = 0.2, k: float = 2.0
                      ) -> Diagnostics:
    """Flags for one trial's curves (``result``: a ``TrialResult``); see the module docstring."""
    _validate.real("late_frac", late_frac, low=0.0, high=1.0, low_open=True)
    _validate.real("k", k, low=0.0, low_open=True)
    _validate.one_of("mode", mode, ("min", "max"))
    steps = np.asarray(result.eval_steps, dtype=np.float64)
    if metric not in result.curves:
        raise ValueError(f"metric={metric!r} is not a curve of this trial; curves are "
                         f"{sorted(result.curves)}")
    values = np.asarray(result.curves[metric], dtype=np.float64)
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok]
    sign = 1.0 if mode == "min" else -1.0
    max_steps = int(max_train_steps or result.steps_done or (steps[-1] if len(steps) else 1))
    se, basis = _unit(metric, values, sign, n_validation)
    if len(values) < 3:
        flags = [Flag(name, False, "too few evaluations to judge",
                      {"n_evaluations": int(len(values))}) for name in FLAGS[:4]]
    else:
        flags = _curve_flags(result, metric, steps, values, sign, se,
                             _Judge(k=k, late_frac=late_frac, max_steps=max_steps))
    flags += [_train_loss_flag(result), _instability_flag(result)]
    return Diagnostics(metric, float(se), basis, tuple(flags))


class _Judge(NamedTuple):
    k: float
    late_frac: float
    max_steps: int


def _unit(metric: str, values: np.ndarray, sign: float, n_validation) -> tuple[float, str]:
    """The unit of the thresholds: the binomial SE of the best, else 1 % of the best."""
    if len(values) == 0:
        return math.nan, "no finite evaluation"
    best = float(values[int(np.argmin(sign * values))])
    se = metric_se(metric, best, n_validation)
    basis = f"binomial SE on n={n_validation}" if se is not None else "1% of the best value"
    if se is None or se == 0.0:
        se = max(0.01 * abs(best), 1e-12)
    return se, basis


def _curve_flags(result, metric, steps, values, sign, se, judge: _Judge) -> list[Flag]:
    """overfitting, late_variance, still_improving, saturated_early (3+ evaluations)."""
    k = judge.k
    best_i = int(np.argmin(sign * values))
    best, best_step, final = float(values[best_i]), float(steps[best_i]), float(values[-1])
    rise = sign * (final - best)        # how much worse the end is than the best
    flags = [Flag(
        "overfitting", rise > k * se,
        f"{metric} ended {rise:.4g} worse than its best ({best:.4g} at step "
        f"{int(best_step)}): {rise / se:.1f} SE (threshold {k:g})"
        + (": problematic overfitting, add regularization" if rise > k * se else ""),
        {"best": best, "best_step": int(best_step), "final": final, "rise": rise,
         "rise_in_se": rise / se})]
    # late variance: spread around the tail's linear trend
    n_tail = max(3, int(math.ceil(judge.late_frac * len(values))))
    ts, tv = steps[-n_tail:], values[-n_tail:]
    slope, intercept = np.polyfit(ts, tv, 1) if np.ptp(ts) > 0 else (0.0, float(tv.mean()))
    resid = tv - (slope * ts + intercept)
    std = float(np.sqrt(np.sum(resid ** 2) / max(1, len(tv) - 2)))
    flags.append(Flag(
        "late_variance", std > k * se,
        f"the last {n_tail} evaluations vary by {std:.4g} around their trend: "
        f"{std / se:.1f} SE (threshold {k:g}){_lr_hint(result)}"
        + ("; remedies: a bigger batch, more validation data, learning-rate decay, Polyak "
           "averaging" if std > k * se else ""),
        {"std": std, "std_in_se": std / se, "n_points": n_tail}))
    improvement = -sign * float(slope) * float(ts[-1] - ts[0])
    return flags + _budget_flags(best_step / judge.max_steps, improvement, rise, se, n_tail,
                                 judge)


def _budget_flags(fraction, improvement, rise, se, n_tail, judge: _Judge) -> list[Flag]:
    """still_improving (compute-bound) and saturated_early (fewer steps would do)."""
    k, max_steps = judge.k, judge.max_steps
    improving = fraction >= 0.9 and improvement > k * se
    saturated = fraction <= 0.5 and rise <= k * se
    return [Flag(
        "still_improving", improving,
        f"best step at {fraction:.0%} of {max_steps} steps; the last {n_tail} evaluations "
        f"improved by {improvement:.4g} ({improvement / se:.1f} SE)"
        + (": compute-bound, train longer or change the schedule" if improving else ""),
        {"best_step_fraction": fraction, "tail_improvement": improvement,
         "tail_improvement_in_se": improvement / se}), Flag(
        "saturated_early", saturated,
        f"best step at {fraction:.0%} of {max_steps} steps, final value {rise / se:.1f} SE "
        f"from the best" + (": not compute-bound, fewer steps would do" if saturated else ""),
        {"best_step_fraction": fraction, "rise_in_se": rise / se})]


def _lr_hint(result) -> str:
    lr = result.curves.get("lr")
    if lr is None or len(lr) == 0:
        return ""
    return f" (final learning rate {float(lr[-1]):.3g})"


def _train_loss_flag(result) -> Flag:
    losses = np.asarray(getattr(result, "train_losses", np.zeros(0)), dtype=np.float64)
    if len(losses) >= 3:
        steps, source = np.arange(len(losses), dtype=np.float64), "per-step minibatch loss"
    else:
        losses = np.asarray(result.curves.get("train/loss", []), dtype=np.float64)
        steps, source = np.asarray(result.eval_steps, dtype=np.float64), "train/loss curve"
    ok = np.isfinite(losses)
    steps, losses = steps[ok], losses[ok]
    half = len(losses) // 2
    tail = losses[half:]
    rho = spearman(steps[half:], tail) if len(tail) >= 5 else math.nan
    # A material rise, not a noisy plateau: the last quarter of the second half is >10% above
    # its first quarter.
    q = max(1, len(tail) // 4)
    ratio = float(np.mean(tail[-q:]) / np.mean(tail[:q])) if len(tail) >= 5 else math.nan
    raised = bool(math.isfinite(rho) and rho > 0.5 and ratio > 1.1)
    return Flag("train_loss_increasing", raised,
                f"training loss over the second half: Spearman rank correlation with step "
                f"{rho:.2f} (threshold 0.5), end/start ratio {ratio:.2f} (threshold 1.1), from "
                f"the {source}" + (": a rising training loss usually means a pipeline bug"
                                   if raised else ""),
                {"spearman": rho, "ratio": ratio, "n_points": int(len(tail)), "source": source})


def _instability_flag(result) -> Flag:
    losses = np.asarray(getattr(result, "train_losses", np.zeros(0)), dtype=np.float64)
    if len(losses) < 2:
        return Flag("instability", False, "no per-step training loss recorded",
                    {"events": ()})
    events = detect_instability(losses)
    text = "; ".join(f"{e.kind} spike at step {e.start} ({e.height:.1f}x, "
                     f"{'recovered' if e.recovered else 'not recovered'})" for e in events[:3])
    return Flag("instability", bool(events),
                text or "no loss spike above 2x the running minimum", {"events": events})
