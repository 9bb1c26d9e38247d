"""Figure 8: warmup lets the unstable model use a larger learning rate.

The playbook ("How to apply learning rate warmup"): Pre-LN vs Post-LN
Transformers, validation loss against the base learning rate with and
without warmup; warmup moves the best rate ~4.6x (Post-LN) and ~2.8x
(Pre-LN). Laptop analogue (``unstable.WARMUP``): post-LayerNorm vs the
BatchNorm ResNet block on MNIST-1D, 400 steps, a 40-step (10 %) warmup.
Claim CL22: lr* with warmup ≥ 2 × lr* without, for the unstable variant.
"""

from __future__ import annotations

from refplay.procedures import warmup
from refplay.reproduce.base import Check, Entry, Panel, Upstream

__all__ = ["ENTRY", "CAVEAT", "check"]

CAVEAT = ("Laptop analogue: post-LayerNorm (unstable) vs BatchNorm (stable) residual CNN on "
          "MNIST-1D, 400 steps, one seed (the playbook: Pre-/Post-LN Transformers on WMT). The "
          "direction of warmup's effect, not its size.")


def check(result) -> Check:
    """Claim: for the unstable variant, the best rate with warmup is at least 2 x without."""
    sweeps = result.numbers["lr_sweeps"]
    u = sweeps["unstable"]
    numbers = {v: {"lr_star": s["lr_star"], "lr_star_warmup": s["lr_star_warmup"],
                   "ratio": s["ratio"]} for v, s in sweeps.items()}
    decision = (f"warmup moves the unstable variant's best lr {u['ratio']:.1f}x "
                f"({u['lr_star']:g} -> {u['lr_star_warmup']:g})" if u["ratio"] else None)
    return Check(holds=bool(u["ratio"] and u["ratio"] >= 2.0), numbers=numbers,
                 decision=decision)


ENTRY = Entry(
    full_time="1 s (re-reads Figure 4's studies)",   # refplay reproduce all --workers 2, empty workspace, load ~1.5
    id="fig8",
    title="Beneficial effect of warmup on the best learning rate",
    section="How to apply learning rate warmup", anchor="how-to-apply-learning-rate-warmup",
    upstream=(Upstream("beneficial_effect_warmup.png"),),
    claim_id="CL22",
    claim="For the unstable variant, the best learning rate with warmup is at least 2x the best "
          "without.",
    caveat=CAVEAT, procedure=warmup.warmup_study, check=check,
    panels=(Panel(
        name="lr_sweep", key="lr_sweep_warmup", file="fig8_beneficial_effect_warmup.png"),))
