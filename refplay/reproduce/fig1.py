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

from refplay.procedures import boundaries
from refplay.reproduce.base import Check, Entry, Panel, Upstream

__all__ = ["ENTRY", "CAVEAT", "check"]

CAVEAT = ("Laptop analogue: MNIST-1D CNN, Adam, {steps:,} steps, {n} Halton trials per panel "
          "(the playbook: ResNet-50 on ImageNet). It reproduces where the best trials sit in the "
          "range, not ImageNet's error rates. Red ×: diverged, or error ≥ 0.8 (chance is 0.9).")


def check(result) -> Check:
    """Claim: the boundary check says expand_high for the bad range and ok for the good one."""
    bad, good = result.numbers["bad"], result.numbers["good"]
    numbers = {"bad_decision": bad["decision"], "good_decision": good["decision"],
               "bad_best_position": bad["top3_positions"][0],
               "good_best_position": good["top3_positions"][0]}
    return Check(holds=(bad["decision"], good["decision"]) == ("expand_high", "ok"),
                 numbers=numbers)


def _caveat(size) -> str:
    return CAVEAT.format(steps=size.max_train_steps, n=size.num_trials)


ENTRY = Entry(
    full_time="38 s",   # reproduce all --jobs 1 --workers 2, empty workspace, load ~2
    quick_time="5 s",   # reproduce all --quick --jobs 1 --workers 2, load ~2
    id="fig1",
    title="Examples of bad search space boundaries and acceptable search space boundaries",
    section="Identifying bad search space boundaries",
    anchor="identifying-bad-search-space-boundaries",
    upstream=(Upstream("bad_search_space.png"), Upstream("good_search_space.png")),
    claim_id="",
    claim=("A search space is suspicious if its best points sit near a boundary: the boundary "
           "check says expand_high for lr ∈ [1e-5, 1e-3] (best trial in the top 20% of the log "
           "range) and ok for [1e-5, 10] (best trial inside, failures above it)."),
    caveat=_caveat(boundaries.SIZES["full"]), quick_caveat=_caveat(boundaries.SIZES["quick"]),
    procedure=boundaries.search_space_boundaries, arguments={"prefix": "fig1"}, check=check,
    panels=(Panel(name="bad", key="bad", file="fig1_bad_search_space.png"),
            Panel(name="good", key="good", file="fig1_good_search_space.png")))
