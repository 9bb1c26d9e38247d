"""How long to train? Retrospective best steps and the infeasible fraction.

The playbook ("Deciding how long to train when training is not compute-bound"):
*"If the best checkpoints are always close to the end of training [...] we
should increase max_train_steps"* — refplay reads "consistently in the last
25 %" as *at least three quarters of the complete trials have their best step
after 75 % of training*; and *"if the best checkpoints are all in the first
10 % of training, max_train_steps is way too high"*.

And from "Extracting insight from experimental results": *"What fraction of
the trials in each study are infeasible? [...] When a very large fraction of
points in a study are infeasible we should try to adjust the search space"*;
refplay warns above one half.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["BestStepFractions", "best_step_fractions", "InfeasibleCount", "infeasible_fraction",
           "TOO_HIGH", "TRAIN_LONGER", "INFEASIBLE_WARNING"]

TOO_HIGH = 0.10         # every best step before 10% of training: max_train_steps way too high
TRAIN_LONGER = 0.75     # best steps in the last 25% of training
INFEASIBLE_WARNING = 0.5


class BestStepFractions(NamedTuple):
    trials: tuple[int, ...]
    fractions: np.ndarray      # best_step / steps_done of each complete trial
    decision: str              # "ok" | "max_train_steps_too_high" | "train_longer" | "no_data"
    message: str


def best_step_fractions(frame) -> BestStepFractions:
    """Best step ÷ steps run, over complete trials, and the playbook's decision."""
    rows = [r for r in frame.rows if r.status == "complete" and r.best_step is not None
            and r.steps_done > 0]
    fr = np.array([r.best_step / r.steps_done for r in rows], dtype=np.float64)
    trials = tuple(r.trial for r in rows)
    if len(fr) == 0:
        return BestStepFractions(trials, fr, "no_data", "no complete trial")
    late = float(np.mean(fr > TRAIN_LONGER))
    if np.all(fr < TOO_HIGH):
        return BestStepFractions(trials, fr, "max_train_steps_too_high",
                                 f"every best step is in the first {TOO_HIGH:.0%} of training "
                                 f"(latest at {fr.max():.0%}): max_train_steps is way too high")
    if late >= 0.75:
        return BestStepFractions(trials, fr, "train_longer",
                                 f"{late:.0%} of the complete trials have their best step in "
                                 f"the last {1 - TRAIN_LONGER:.0%} of training: increase "
                                 f"max_train_steps (and re-tune the decay schedule)")
    return BestStepFractions(trials, fr, "ok",
                             f"best steps spread over training (median at {np.median(fr):.0%}, "
                             f"{late:.0%} in the last {1 - TRAIN_LONGER:.0%})")


class InfeasibleCount(NamedTuple):
    n_trials: int
    n_infeasible: int
    n_failed: int
    fraction: float            # (infeasible + failed) / trials
    warning: bool              # fraction > 0.5


def infeasible_fraction(frame, by: str | None = "scientific") -> dict[tuple, InfeasibleCount]:
    """``{scientific value: InfeasibleCount}``; failed trials count as infeasible.

    The playbook's definition of infeasible includes trials that *"fail to
    run at all because they violate some implicit constraint"*.
    """
    out = {}
    for value, group in frame.groups(by).items():
        statuses = group.statuses()
        n, ni, nf = len(statuses), statuses.count("infeasible"), statuses.count("failed")
        frac = (ni + nf) / n if n else float("nan")
        out[value] = InfeasibleCount(n, ni, nf, frac, frac > INFEASIBLE_WARNING)
    return out
