"""Figure 6: instability during warmup — how long a warmup does a high rate need?

The playbook ("How to apply learning rate warmup"): a Post-LN Transformer
with warmups of 1 ... 40k steps; the short ones collapse back to a high
loss, only the longest trains smoothly. Laptop analogue
(``unstable.WARMUP``): the post-LayerNorm ResNet on MNIST-1D at lr 0.32
(8 × lr*), warmups 0, 10, 40, 100 of 400 steps, then the shortest stable
warmup prepended (400 + W steps) and compared with the baseline at lr*.
Claim: some warmup of at most 10 % of ``max_train_steps`` trains the rate
stably while no warmup does not.
"""

from __future__ import annotations

import time
from pathlib import Path

from refplay.procedures import warmup
from refplay.reproduce.base import Entry, ReproResult, Upstream, add_caveat, save_png

__all__ = ["ENTRY", "run", "CAVEAT"]

CAVEAT = ("Laptop analogue: post-LayerNorm residual CNN on MNIST-1D at 8 x lr*, 400 steps, one "
          "seed (the playbook: a Post-LN Transformer, 1e5 steps). Longer is not always better "
          "here: the 100-step warmup trains worse than the 40-step one.")


def run(quick: bool, out_dir, workspace, workers: int | None = 0) -> ReproResult:
    start = time.perf_counter()
    r = warmup.warmup_study(quick=quick, workspace=workspace, workers=workers)
    n = r.numbers
    fig = r.figures["fig6_warmup_candidates"]
    add_caveat(fig, CAVEAT)
    png = save_png(fig, Path(out_dir) / "fig6_instability_during_warmup.png")
    no_warmup = next(c for c in n["candidates"] if c["warmup_steps"] == 0)
    check = {"shortest_stable_warmup": n["shortest_stable_warmup"],
             "within_10pct": n["within_10pct"], "no_warmup_stable": no_warmup["stable"],
             "prepended_error": n["prepended_error"], "baseline_error": n["baseline_error"]}
    holds = n["within_10pct"] and not no_warmup["stable"]
    return ReproResult("fig6", {"warmup": png}, n, r.decision, holds, check, quick, CAVEAT,
                       time.perf_counter() - start, {"warmup": fig})


ENTRY = Entry(
    id="fig6",
    title="Instability during warmup: training loss for several warmup lengths",
    section="How to apply learning rate warmup", anchor="how-to-apply-learning-rate-warmup",
    upstream=(Upstream("instability_during_warmup.png"),),
    claim_id="",
    claim="A warmup of at most 10% of max_train_steps trains ~10x lr* stably; no warmup does not.",
    caveat=CAVEAT, run=run)
