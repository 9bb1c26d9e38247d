"""Figure 6: instability during warmup — each warmup fails when its ramp gets too high.

The playbook ("How to apply learning rate warmup"): a Post-LN Transformer
with warmups of 1 ... 40k steps; each short warmup trains until its ramp
reaches a rate the model cannot take, then the loss climbs back; the longer
the warmup, the later that happens; 40k steps were needed. Laptop analogue
(``unstable.TRANSFORMER_WARMUP_LENGTHS``): the 6-block Post-LN Transformer on
MNIST-1D at lr 0.032 (16 x its lr* without warmup), warmups 0 ... 400 of 500
steps, then constant, 2 seeds. Claim: among the warmups that fail, a longer
one fails later, on every seed.
"""

from __future__ import annotations

from refplay.procedures import warmup
from refplay.reproduce.base import Check, Entry, Panel, Upstream

__all__ = ["ENTRY", "CAVEAT", "check"]

CAVEAT = ("Laptop analogue: 6-block Post-LN Transformer on MNIST-1D, Adam at lr 0.032, warmups "
          "of 0-400 of 500 steps, 2 seeds (the playbook: a Post-LN Transformer, warmups of 1 to "
          "40k of 100k steps). A failed run collapses to chance instead of blowing up.")


def check(result) -> Check:
    """Claim: the failing step grows with the warmup length, on every seed."""
    n = result.numbers
    fails = {}
    for c in n["candidates"]:
        fails.setdefault(f"seed {c['seed']}", {})[c["warmup_steps"]] = c["failing_step"]
    numbers = {"failing_step": fails, "failure_grows_with_warmup": n["failure_grows_with_warmup"],
               "threshold_lr": n["threshold_lr"], "shortest_stable_warmup":
               n["shortest_stable_warmup"], "within_10pct": n["within_10pct"]}
    return Check(holds=bool(n["failure_grows_with_warmup"]), numbers=numbers)


ENTRY = Entry(
    full_time="45 s",   # reproduce all --jobs 1 --workers 2, empty workspace, load ~2
    quick_time="12 s",   # reproduce all --quick --jobs 1 --workers 2, load ~2
    id="fig6",
    title="Instability during warmup: training loss for several warmup lengths",
    section="How to apply learning rate warmup", anchor="how-to-apply-learning-rate-warmup",
    upstream=(Upstream("instability_during_warmup.png"),),
    claim_id="",
    claim="Each warmup that fails fails later than the shorter ones (the ramp reaching a rate "
          "the model cannot take), on every seed.",
    quick_caveat=("Laptop analogue, quick size: 6-block Post-LN Transformer on MNIST-1D at lr "
                  "0.032, warmups 0 / 50 / 200 of 500 steps, one seed."),
    differences=("Same shape: each warmup's loss falls, then climbs back when its ramp gets "
                 'too high, later for longer warmups (log x; the ramps log-log). Unlike the '
                 'original, no warmup here trains the rate (its 40k-step warmup does), the '
                 'loss returns to chance (ln 10) rather than above its start, and the rate at '
                 'failure falls as the warmups lengthen; 500 steps, not 10^5.'),
    caveat=CAVEAT, procedure=warmup.warmup_study, check=check,
    panels=(Panel(
        name="warmup", key="warmup_candidates", file="fig6_instability_during_warmup.png"),))
