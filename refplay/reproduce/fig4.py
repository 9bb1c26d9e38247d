"""Figure 4: a change that makes high learning rates unstable, fixed by warmup.

The playbook ("How can optimization failures be debugged and mitigated?"):
a WideResNet with stride (1,1) in its first residual block is unstable at
high learning rates, and 1,000 warmup steps fix it. The stride change shows
nothing on MNIST-1D (``docs/instability.md``), so the laptop analogue is the
post-LayerNorm ResNet (``unstable.WARMUP``) swept with and without a 10 %
warmup, beside the stable BatchNorm block. Claim CL24: a warmup of 10 % of
the steps makes 3 × lr* (no warmup) feasible — true here, but trivially:
3 × lr* is feasible without warmup too (reported in the check).
"""

from __future__ import annotations

from refplay.procedures import warmup
from refplay.reproduce.base import Check, Entry, Panel, Upstream
from refplay.train.result import TrialStatus

__all__ = ["ENTRY", "CAVEAT", "check", "three_x"]

CAVEAT = ("Laptop analogue: post-LayerNorm residual CNN on MNIST-1D instead of a stride-1 "
          "WideResNet on CIFAR-10 (the stride change is not unstable here); 400 steps, one seed. "
          "Here 3 x lr* is feasible even without warmup.")


def three_x(lrs, sweeps: dict) -> dict | None:
    """The first grid rate at or above 3 x lr* (no warmup), and whether it trains with and
    without the warmup; ``None`` when there is no lr* or no such rate on the grid."""
    lr_star = sweeps["lr_star"]
    above = [lr for lr in lrs if lr_star and lr >= 3 * lr_star - 1e-12]
    if not above:
        return None
    i = list(lrs).index(above[0])
    return {"lr": above[0],
            "feasible_warmup": sweeps["statuses_warmup"][i] == TrialStatus.COMPLETE,
            "feasible_none": sweeps["statuses"][i] == TrialStatus.COMPLETE}


def check(result) -> Check:
    """Claim: with a 10 % warmup, 3 x the no-warmup lr* is feasible."""
    n = result.numbers
    u = n["lr_sweeps"]["unstable"]
    three = three_x(n["lrs"], u) or {}
    numbers = {"lr_star": u["lr_star"], "three_x_lr": three.get("lr"),
               "feasible_with_warmup": three.get("feasible_warmup"),
               "feasible_without_warmup": three.get("feasible_none"),
               "largest_feasible": u["largest_feasible"],
               "largest_feasible_warmup": u["largest_feasible_warmup"]}
    decision = (f"with a {n['sweep_warmup_steps']}-step warmup every lr up to "
                f"{u['largest_feasible_warmup']:g} trains (without: up to "
                f"{u['largest_feasible']:g}); 3 x lr* = {three.get('lr')} is feasible with warmup"
                + (" and also without" if three.get("feasible_none") else ""))
    return Check(holds=bool(three.get("feasible_warmup")), numbers=numbers, decision=decision)


ENTRY = Entry(
    full_time="58 s",   # refplay reproduce all --workers 2, empty workspace, load ~1.5
    id="fig4",
    title="A change that makes training unstable at high learning rates, fixed by warmup",
    section="How can optimization failures be debugged and mitigated?",
    anchor="how-can-optimization-failures-be-debugged-and-mitigated",
    upstream=(Upstream("stride_instability.png"),),
    claim_id="CL24",
    claim="A warmup of 10% of the steps makes 3x the no-warmup lr* feasible.",
    caveat=CAVEAT, procedure=warmup.warmup_study, check=check,
    panels=(Panel(name="lr_sweep", key="lr_sweep_warmup", file="fig4_stride_instability.png",
                  title="Figure 4: which learning rates train, with and without a 10% warmup?"),))
