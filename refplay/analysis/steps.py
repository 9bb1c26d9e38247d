"""How long to train? Retrospective best steps and the infeasible fraction.

The playbook ("Deciding how long to train when training is not compute-bound"):
*"If the best checkpoints are always close to the end of training [...] we
should increase max_train_steps"* — refplay reads "consistently in the last
25 %" as *at least three quarters of the complete trials have their best step
at or after 75 % of training* (a trial at exactly 0.75 counts as late, as the
histogram draws it right of the 75 % line); and *"if the best checkpoints are
all in the first 10 % of training, max_train_steps is way too high"* (every
best step strictly before 10 %).

And from "Extracting insight from experimental results": *"What fraction of
the trials in each study are infeasible? [...] When a very large fraction of
points in a study are infeasible we should try to adjust the search space"*;
refplay warns above one half. The fraction counts the trials that *finished*
(complete or infeasible): a crashed trial (``failed``) says nothing about the
search space — it points at a bug and is reported apart — and a pruned trial
was stopped on purpose, not by divergence.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refplay.train.result import TrialStatus

__all__ = ["BestStepFractions", "best_step_fractions", "InfeasibleCount", "infeasible_fraction",
           "TOO_HIGH", "TRAIN_LONGER", "LATE_SHARE", "INFEASIBLE_WARNING"]

TOO_HIGH = 0.10         # every best step before 10% of training: max_train_steps way too high
TRAIN_LONGER = 0.75     # a best step at or after 75% of training is "late"
LATE_SHARE = 0.75       # ... and at least this share of late trials means "train longer"
INFEASIBLE_WARNING = 0.5


class BestStepFractions(NamedTuple):
    """Best step ÷ steps run of each complete trial, and the playbook's decision.

    ``n_late`` trials have a fraction ``>= TRAIN_LONGER`` (drawn at or right of
    the 75 % line), ``n_early`` one ``< TOO_HIGH``; ``late_fraction`` is
    ``n_late / len(fractions)``.
    """

    trials: tuple[int, ...]
    fractions: np.ndarray      # best_step / steps_done of each complete trial
    decision: str              # "ok" | "max_train_steps_too_high" | "train_longer" | "no_data"
    message: str
    n_late: int = 0
    n_early: int = 0
    late_fraction: float = float("nan")


def best_step_fractions(frame) -> BestStepFractions:
    """Best step ÷ steps run, over complete trials, and the playbook's decision."""
    rows = [r for r in frame.rows if r.status == TrialStatus.COMPLETE
            and r.best_step is not None and r.steps_done > 0]
    fr = np.array([r.best_step / r.steps_done for r in rows], dtype=np.float64)
    trials = tuple(r.trial for r in rows)
    if len(fr) == 0:
        return BestStepFractions(trials, fr, "no_data", "no complete trial")
    n_late, n_early = int(np.sum(fr >= TRAIN_LONGER)), int(np.sum(fr < TOO_HIGH))
    late = n_late / len(fr)
    counts = dict(n_late=n_late, n_early=n_early, late_fraction=late)
    if n_early == len(fr):
        return BestStepFractions(trials, fr, "max_train_steps_too_high",
                                 f"every best step is in the first {TOO_HIGH:.0%} of training "
                                 f"(latest at {fr.max():.0%}): max_train_steps is way too high",
                                 **counts)
    where = (f"{n_late} of {len(fr)} complete trials ({late:.0%}) have their best step at or "
             f"after {TRAIN_LONGER:.0%} of training")
    if late >= LATE_SHARE:
        return BestStepFractions(trials, fr, "train_longer",
                                 f"{where} (at least {LATE_SHARE:.0%}): increase "
                                 f"max_train_steps (and re-tune the decay schedule)", **counts)
    return BestStepFractions(trials, fr, "ok",
                             f"{where}, fewer than {LATE_SHARE:.0%}: best steps spread over "
                             f"training (median at {np.median(fr):.0%})", **counts)


class InfeasibleCount(NamedTuple):
    """The trials of one scientific value by how they ended, and the infeasible fraction.

    ``fraction`` is ``n_infeasible / (n_trials - n_failed - n_pruned)``: the
    share of *finished* trials that diverged (NaN when none finished).
    """

    n_trials: int              # every recorded trial
    n_infeasible: int          # diverged (NaN/Inf or a loss blow-up)
    n_failed: int              # crashed: a bug, not the search space
    fraction: float
    warning: bool              # fraction > 0.5
    n_pruned: int = 0          # stopped early on purpose: neither a result nor a divergence


def infeasible_fraction(frame, by: str | None = "scientific") -> dict[tuple, InfeasibleCount]:
    """``{scientific value: InfeasibleCount}``; see the module docstring."""
    out = {}
    for value, group in frame.groups(by).items():
        n = len(group)
        ni, nf = group.count(TrialStatus.INFEASIBLE), group.count(TrialStatus.FAILED)
        npruned = group.count(TrialStatus.PRUNED)
        finished = n - nf - npruned
        frac = ni / finished if finished else float("nan")
        out[value] = InfeasibleCount(n_trials=n, n_infeasible=ni, n_failed=nf, fraction=frac,
                                     warning=frac > INFEASIBLE_WARNING, n_pruned=npruned)
    return out
