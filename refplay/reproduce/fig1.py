"""Figure 1: bad and good search-space boundaries (two basic axis plots of the learning rate).

The playbook ("Identifying bad search space boundaries"): *"A search space is
suspicious if the best point sampled from it is close to its boundary. We
might find an even better point if we expanded the search range in that
direction."* Its Figure 1 plots validation error against the initial
learning rate for two studies: on the left a range ending at ≈2e-4 whose
three best trials sit at its upper edge; on the right a wider range whose
best trials sit inside it, with infeasible trials (red ×) at high rates.

Laptop analogue (design D2): ``mnist1d_cnn`` trained with Adam, a 5% linear
warmup then cosine decay (so the x axis *is* a peak learning rate), 1,000
steps; two Halton studies of 48 trials over lr ∈ [1e-5, 1e-3] ("bad") and
[1e-5, 10] ("good"): the playbook's ranges scaled to this model's best rate
(see ``RANGES``). The boundary check (``analysis.boundary_check``,
"close" = the outer 20% of the log range) should say ``expand_high`` for the
bad range and ``ok`` for the good one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refplay import analysis, plots, procedures, search
from refplay.reproduce.base import (Entry, ReproResult, Upstream, add_caveat, halton_spec,
                                    load_frame, save_png)

__all__ = ["ENTRY", "Size", "SIZES", "RANGES", "run", "space"]


@dataclass(frozen=True)
class Size:
    num_trials: int          # trials per study (one study per panel)
    max_train_steps: int
    eval_every: int


SIZES = {"full": Size(48, 1000, 50), "quick": Size(8, 400, 100)}
# The playbook's ranges are [1e-5, 2e-4] and [1e-5, 1e-1] around a best rate of
# ~2e-3. This CNN's best Adam rate after 1,000 steps is ~3e-2 (a sweep: error
# 0.25 at 3e-3, 0.06 at 3e-2, 0.10 at 0.1, 0.64 at 0.3), so both ranges are
# scaled to it: the bad one stops 30x below the best, the good one reaches
# rates that fail, as the playbook's right panel does.
RANGES = {"bad": (1e-5, 1e-3), "good": (1e-5, 10.0)}
WARMUP_FRACTION = 0.05
# Figure 1 draws "very bad results" as red × at a cap, like divergent trials:
# an error rate this close to chance (0.9 for 10 classes) has learned almost nothing.
CAP = 0.8

CAVEAT = ("Laptop analogue: MNIST-1D CNN, Adam, {steps:,} steps, {n} Halton trials per panel "
          "(the playbook: ResNet-50 on ImageNet). It reproduces where the best trials sit in the "
          "range, not ImageNet's error rates. Red ×: diverged, or error ≥ 0.8 (chance is 0.9).")


def space(low: float, high: float, max_train_steps: int) -> search.SearchSpace:
    """The learning rate searched on a log scale; everything else fixed."""
    return search.SearchSpace({
        "lr": search.Float(low, high, scale="log"),
        "optimizer": search.Fixed("adam"),
        "schedule": search.Fixed("cosine"),
        "warmup_steps": search.Fixed(max(1, round(WARMUP_FRACTION * max_train_steps))),
        "batch_size": search.Fixed(100),
    })


def run(quick: bool, out_dir, workspace, workers: int | None = 0) -> ReproResult:
    """Run both studies (or read them from ``workspace``), check, draw, save."""
    start = time.perf_counter()
    size = SIZES["quick" if quick else "full"]
    out_dir = Path(out_dir)
    numbers, decisions, figures, pngs = {}, {}, {}, {}
    caveat = CAVEAT.format(steps=size.max_train_steps, n=size.num_trials)
    for panel, (low, high) in RANGES.items():
        spec = halton_spec(
            f"fig1_{panel}", workload="mnist1d_cnn",
            search_space=space(low, high, size.max_train_steps), num_trials=size.num_trials,
            sampler_seed=0, seed=0, max_train_steps=size.max_train_steps,
            eval_every=size.eval_every, metric="validation/error_rate",
            description=f"Figure 1 ({panel} range): Adam lr in [{low:g}, {high:g}]",
            goal="Is the learning-rate search range wide enough?")
        procedures.run_spec(spec, workspace=workspace, workers=workers)
        frame = load_frame(spec, workspace)
        check = analysis.boundary_check(frame, "lr").checks[()]
        decisions[panel] = check.decision
        objectives = frame.objectives()
        numbers[panel] = {
            "range": [low, high],
            "decision": check.decision,
            "best_lr": check.top_values[0] if check.top_values else None,
            "best_error": float(np.nanmin(objectives)) if check.n_complete else None,
            "top3_lr": list(check.top_values),
            "top3_positions": [round(p, 3) for p in check.positions],
            "n_trials": check.n_trials,
            "n_infeasible": sum(s == "infeasible" for s in frame.statuses()),
            "n_above_cap": int(np.sum(objectives > CAP)),     # NaN compares False
            "divergence_threshold": check.divergence_threshold,
            "n_good": check.n_good,
            "message": check.message,
        }
        fig = plots.axis_plot(frame, "lr", cap=CAP, title=(
            f"Figure 1 ({panel} boundaries): is lr ∈ [{low:g}, {high:g}] wide enough?\n"
            f"boundary check: {check.decision}"))
        add_caveat(fig, caveat)
        figures[panel] = fig
        pngs[panel] = save_png(fig, out_dir / f"fig1_{panel}_search_space.png")
    holds = decisions == {"bad": "expand_high", "good": "ok"}
    bad, good = numbers["bad"], numbers["good"]
    decision = (f"bad range: {bad['decision']} (best lr {bad['best_lr']:.3g} at "
                f"{bad['top3_positions'][0]:.2f} of the log range: expand it upward); "
                f"good range: {good['decision']} (best lr {good['best_lr']:.3g} at "
                f"{good['top3_positions'][0]:.2f}, inside the range: keep it)")
    check_numbers = {"bad_decision": decisions["bad"], "good_decision": decisions["good"],
                     "bad_best_position": bad["top3_positions"][0],
                     "good_best_position": good["top3_positions"][0]}
    return ReproResult("fig1", pngs, numbers, decision, holds, check_numbers, quick, caveat,
                       time.perf_counter() - start, figures)


ENTRY = Entry(
    id="fig1",
    title="Examples of bad search space boundaries and acceptable search space boundaries",
    section="Identifying bad search space boundaries",
    anchor="identifying-bad-search-space-boundaries",
    upstream=(Upstream("bad_search_space.png"), Upstream("good_search_space.png")),
    claim_id="",
    claim=("A search space is suspicious if its best points sit near a boundary: the boundary "
           "check says expand_high for lr ∈ [1e-5, 1e-3] (best trial in the top 20% of the log "
           "range) and ok for [1e-5, 10] (best trial inside, failures above it)."),
    caveat=CAVEAT.format(steps=SIZES["full"].max_train_steps, n=SIZES["full"].num_trials),
    run=run,
)
