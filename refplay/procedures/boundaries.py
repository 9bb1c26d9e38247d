"""Identifying bad search-space boundaries: is the best point near the edge of its range?

The playbook ("Identifying bad search space boundaries"): *"A search space is
suspicious if the best point sampled from it is close to its boundary. We
might find an even better point if we expanded the search range in that
direction."* The check is a basic axis plot of the validation error against
the learning rate, one study per range.

**measure → decide → draw.** :func:`measure` runs one Halton study per
learning-rate range (or re-reads it from the workspace) and reads it with
:func:`refplay.analysis.boundary_check` ("close" = the outer 20 % of the log
range); :func:`decide` says, per range, whether to expand it or keep it (pure);
:func:`refplay.plots.axis_plot` draws each study, infeasible or hopeless
trials as red × at ``cap``. :func:`search_space_boundaries` composes them.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from refplay import analysis, plots, search
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import halton_spec, load_frame, run_spec
from refplay.train.result import TrialStatus

__all__ = ["search_space_boundaries", "measure", "decide", "RangeCheck", "Size", "SIZES",
           "RANGES", "CAP", "space", "QUESTION"]

QUESTION = ("Is the learning-rate search range wide enough, or does the best trial sit near "
            "one of its boundaries?")


class Size(NamedTuple):
    """How much each study trains."""

    num_trials: int          # trials per study (one study per range)
    max_train_steps: int
    eval_every: int


SIZES = {"full": Size(num_trials=48, max_train_steps=1000, eval_every=50),
         "quick": Size(num_trials=8, max_train_steps=400, eval_every=100)}
# The playbook's ranges are [1e-5, 2e-4] and [1e-5, 1e-1] around a best rate of
# ~2e-3. This CNN's best Adam rate after 1,000 steps is ~3e-2 (a sweep: error
# 0.25 at 3e-3, 0.06 at 3e-2, 0.10 at 0.1, 0.64 at 0.3), so both ranges are
# scaled to it: the bad one stops 30x below the best, the good one reaches
# rates that fail, as the playbook's right panel does.
RANGES = {"bad": (1e-5, 1e-3), "good": (1e-5, 10.0)}
WARMUP_FRACTION = 0.05
# "Very bad results" are drawn as red × at a cap, like divergent trials: an
# error rate this close to chance (0.9 for 10 classes) has learned almost nothing.
CAP = 0.8


def space(low: float, high: float, max_train_steps: int) -> search.SearchSpace:
    """The learning rate searched on a log scale; everything else fixed."""
    return search.SearchSpace({
        "lr": search.Float(low, high, scale="log"),
        "optimizer": search.Fixed("adam"),
        "schedule": search.Fixed("cosine"),
        "warmup_steps": search.Fixed(max(1, round(WARMUP_FRACTION * max_train_steps))),
        "batch_size": search.Fixed(100),
    })


class RangeCheck(NamedTuple):
    """One range's study, read by the boundary check."""

    range: list                      # [low, high]
    decision: str                    # "expand_high", "expand_low", "ok", "instability_limited"
    best_lr: float | None
    best_error: float | None
    top3_lr: list
    top3_positions: list             # positions in [0, 1] of the log range, best first
    n_trials: int
    n_infeasible: int
    n_above_cap: int                 # complete trials worse than CAP
    divergence_threshold: float | None
    n_good: int
    message: str


def measure(workload: str = "mnist1d_cnn", *, ranges=None, quick: bool = False,
            prefix: str = "search_space", workers: int | None = 0,
            workspace: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """One Halton study per range: ``({name: RangeCheck}, {name: TrialsFrame})``.

    ``prefix`` names the studies (``prefix_<range name>-<hash>``), so another
    caller's studies of the same ranges are re-read rather than run again.
    """
    size = SIZES["quick" if quick else "full"]
    checks, frames = {}, {}
    for name, (low, high) in (ranges or RANGES).items():
        spec = halton_spec(
            f"{prefix}_{name}", workload=workload,
            search_space=space(low, high, size.max_train_steps), num_trials=size.num_trials,
            sampler_seed=0, seed=0, max_train_steps=size.max_train_steps,
            eval_every=size.eval_every, metric="validation/error_rate",
            description=f"{name} range: Adam lr in [{low:g}, {high:g}]",
            goal="Is the learning-rate search range wide enough?")
        run_spec(spec, workspace=workspace, workers=workers)
        frame = frames[name] = load_frame(spec, workspace)
        check = analysis.boundary_check(frame, "lr").checks[()]
        objectives = frame.objectives()
        checks[name] = RangeCheck(
            range=[low, high], decision=check.decision,
            best_lr=check.top_values[0] if check.top_values else None,
            best_error=float(np.nanmin(objectives)) if check.n_complete else None,
            top3_lr=list(check.top_values),
            top3_positions=[round(p, 3) for p in check.positions], n_trials=check.n_trials,
            n_infeasible=sum(s == TrialStatus.INFEASIBLE for s in frame.statuses()),
            n_above_cap=int(np.sum(objectives > CAP)),      # NaN compares False
            divergence_threshold=check.divergence_threshold, n_good=check.n_good,
            message=check.message)
    return checks, frames


_ADVICE = {"expand_high": "of the log range: expand it upward",
           "expand_low": "of the log range: expand it downward",
           "ok": "inside the range: keep it",
           "instability_limited": "at the edge of the infeasible region: fix the instability"}


def decide(checks: dict) -> str:
    """Per range: the boundary check's verdict, where its best trial sits, and what to do."""
    parts = []
    for name, c in checks.items():
        if c.best_lr is None:
            parts.append(f"{name} range: {c.decision} (no complete trial)")
            continue
        sep = ", " if c.decision == "ok" else " "
        parts.append(f"{name} range: {c.decision} (best lr {c.best_lr:.3g} at "
                     f"{c.top3_positions[0]:.2f}{sep}{_ADVICE.get(c.decision, c.message)})")
    return "; ".join(parts)


def search_space_boundaries(workload: str = "mnist1d_cnn", *, ranges=None, quick: bool = False,
                            prefix: str = "search_space", workers: int | None = 0,
                            workspace: str | os.PathLike | None = None) -> ProcedureResult:
    """Is each learning-rate range wide enough? One study per range, checked and drawn.

    Full size: 48 Halton trials of 1,000 steps per range; ``quick=True``: 8 of 400.
    """
    checks, frames = measure(workload, ranges=ranges, quick=quick, prefix=prefix,
                             workers=workers, workspace=workspace)
    figures = {name: plots.axis_plot(frames[name], "lr", cap=CAP, title=(
        f"Figure 1 ({name} boundaries): is lr ∈ [{c.range[0]:g}, {c.range[1]:g}] wide "
        f"enough?\nboundary check: {c.decision}")) for name, c in checks.items()}
    size = SIZES["quick" if quick else "full"]
    return ProcedureResult(
        question=QUESTION, decision=decide(checks),
        numbers={name: c._asdict() for name, c in checks.items()}, figures=figures,
        trials=[(frame.name, row.trial) for frame in frames.values() for row in frame.rows],
        caveats=[f"{size.num_trials} Halton trials of {size.max_train_steps} steps per range, "
                 f"one seed."])
