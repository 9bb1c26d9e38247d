"""Figure 7: a learning-rate sweep limited by instability (7a) and the loss above lr* (7b).

The playbook ("Identifying unstable workloads"): do a learning-rate sweep,
find lr*, *"plot training loss curves for learning rates just above lr*"*.
Its Figure 7a has every rate above the best infeasible; 7b shows a loss
that declines, jumps, and declines slowly to a worse value. Laptop analogue
(``unstable.WARMUP``): the post-LayerNorm ResNet on MNIST-1D, 400 steps
(the 5x/10x runs 1,600 in the full size). Claim (reported): whether lr* sits
at the infeasible edge (``instability_limited``), and whether the loss goes
up during training above lr*.
"""

from __future__ import annotations

import time
from pathlib import Path

from refplay.procedures import instability
from refplay.reproduce.base import Entry, ReproResult, Upstream, add_caveat, save_png

__all__ = ["ENTRY", "run", "CAVEAT"]

CAVEAT = ("Laptop analogue: post-LayerNorm residual CNN on MNIST-1D, Nesterov, a 400-step sweep "
          "and 4x longer runs above lr*, one seed (the playbook: a Transformer, 100k steps). "
          "Shows whether instability caps lr here, not the playbook's numbers.")


def run(quick: bool, out_dir, workspace, workers: int | None = 0) -> ReproResult:
    start = time.perf_counter()
    r = instability.stability_scan(quick=quick, workspace=workspace, workers=workers)
    n = r.numbers
    pngs, figs = {}, {}
    for panel, key, fname in (("7a", "fig7a_lr_sweep", "fig7a_axis_model_with_instability.png"),
                              ("7b", "fig7b_above_lr_star", "fig7b_loss_model_with_instability.png")):
        add_caveat(r.figures[key], CAVEAT)
        pngs[panel] = save_png(r.figures[key], Path(out_dir) / fname)
        figs[panel] = r.figures[key]
    rises = [x["factor"] for x in n["above_lr_star"] if x["events"] or x["status"] != "complete"]
    check = {"boundary_decision": n["boundary_decision"], "lr_star": n["lr_star"],
             "divergence_threshold": n["divergence_threshold"], "factors_with_rise": rises}
    holds = n["boundary_decision"] == "instability_limited" and bool(rises)
    return ReproResult("fig7", pngs, n, r.decision, holds, check, quick, CAVEAT,
                       time.perf_counter() - start, figs)


ENTRY = Entry(
    id="fig7",
    title="A learning-rate sweep limited by instability; the training loss above lr*",
    section="Identifying unstable workloads", anchor="identifying-unstable-workloads",
    upstream=(Upstream("axis_model_with_instability.png"),
              Upstream("loss_model_with_instability.png")),
    claim_id="",
    claim="The best learning rate sits at the edge of the infeasible region (boundary check "
          "'instability_limited') and above lr* the loss goes up during training.",
    caveat=CAVEAT, run=run)
