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

import time
from pathlib import Path

from refplay.procedures import warmup
from refplay.reproduce.base import Entry, ReproResult, Upstream, add_caveat, save_png

__all__ = ["ENTRY", "run", "CAVEAT"]

CAVEAT = ("Laptop analogue: post-LayerNorm residual CNN on MNIST-1D instead of a stride-1 "
          "WideResNet on CIFAR-10 (the stride change is not unstable here); 400 steps, one seed. "
          "Here 3 x lr* is feasible even without warmup.")


def run(quick: bool, out_dir, workspace, workers: int | None = 0) -> ReproResult:
    start = time.perf_counter()
    r = warmup.warmup_study(quick=quick, workspace=workspace, workers=workers)
    n = r.numbers
    fig = r.figures["fig8_lr_sweep_warmup"]
    fig.suptitle("Figure 4: which learning rates train, with and without a 10% warmup?",
                 fontsize=11)
    add_caveat(fig, CAVEAT)
    png = save_png(fig, Path(out_dir) / "fig4_stride_instability.png")
    u, three = n["fig8"]["unstable"], n["three_x"] or {}
    check = {"lr_star": u["lr_star"], "three_x_lr": three.get("lr"),
             "feasible_with_warmup": three.get("feasible_warmup"),
             "feasible_without_warmup": three.get("feasible_none"),
             "largest_feasible": u["largest_feasible"],
             "largest_feasible_warmup": u["largest_feasible_warmup"]}
    holds = bool(three.get("feasible_warmup"))
    decision = (f"with a {n['sweep_warmup_steps']}-step warmup every lr up to "
                f"{u['largest_feasible_warmup']:g} trains (without: up to "
                f"{u['largest_feasible']:g}); 3 x lr* = {three.get('lr')} is feasible with warmup"
                + (" and also without" if three.get("feasible_none") else ""))
    return ReproResult("fig4", {"lr_sweep": png}, n, decision, holds, check, quick, CAVEAT,
                       time.perf_counter() - start, {"lr_sweep": fig})


ENTRY = Entry(
    id="fig4",
    title="A change that makes training unstable at high learning rates, fixed by warmup",
    section="How can optimization failures be debugged and mitigated?",
    anchor="how-can-optimization-failures-be-debugged-and-mitigated",
    upstream=(Upstream("stride_instability.png"),),
    claim_id="CL24",
    claim="A warmup of 10% of the steps makes 3x the no-warmup lr* feasible.",
    caveat=CAVEAT, run=run)
