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

from refplay.procedures import warmup
from refplay.reproduce.base import Check, Entry, Panel, Upstream

__all__ = ["ENTRY", "CAVEAT", "check"]

CAVEAT = ("Laptop analogue: post-LayerNorm residual CNN on MNIST-1D at 8 x lr*, 400 steps, one "
          "seed (the playbook: a Post-LN Transformer, 1e5 steps). Longer is not always better "
          "here: the 100-step warmup trains worse than the 40-step one.")


def check(result) -> Check:
    """Claim: some warmup of at most 10 % of the steps trains the rate; no warmup does not."""
    n = result.numbers
    no_warmup = next(c for c in n["candidates"] if c["warmup_steps"] == 0)
    numbers = {"shortest_stable_warmup": n["shortest_stable_warmup"],
               "within_10pct": n["within_10pct"], "no_warmup_stable": no_warmup["stable"],
               "prepended_error": n["prepended_error"], "baseline_error": n["baseline_error"]}
    return Check(holds=n["within_10pct"] and not no_warmup["stable"], numbers=numbers)


ENTRY = Entry(
    full_time="1 s (re-reads Figure 4's studies)",   # refplay reproduce all --workers 2, empty workspace, load ~1.5
    id="fig6",
    title="Instability during warmup: training loss for several warmup lengths",
    section="How to apply learning rate warmup", anchor="how-to-apply-learning-rate-warmup",
    upstream=(Upstream("instability_during_warmup.png"),),
    claim_id="",
    claim="A warmup of at most 10% of max_train_steps trains ~10x lr* stably; no warmup does not.",
    caveat=CAVEAT, procedure=warmup.warmup_study, check=check,
    panels=(Panel(
        name="warmup", key="warmup_candidates", file="fig6_instability_during_warmup.png"),))
