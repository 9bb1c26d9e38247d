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

from refplay.procedures import instability
from refplay.reproduce.base import Check, Entry, Panel, Upstream
from refplay.train.result import TrialStatus

__all__ = ["ENTRY", "CAVEAT", "check"]

CAVEAT = ("Laptop analogue: post-LayerNorm residual CNN on MNIST-1D, Nesterov, a 400-step sweep "
          "and 4x longer runs above lr*, one seed (the playbook: a Transformer, 100k steps). "
          "Shows whether instability caps lr here, not the playbook's numbers.")


def check(result) -> Check:
    """Claim: lr* sits at the infeasible edge, and above it the loss goes up during training."""
    n = result.numbers
    rises = [x["factor"] for x in n["above_lr_star"]
             if x["events"] or x["status"] != TrialStatus.COMPLETE]
    numbers = {"boundary_decision": n["boundary_decision"], "lr_star": n["lr_star"],
               "divergence_threshold": n["divergence_threshold"], "factors_with_rise": rises}
    return Check(holds=n["boundary_decision"] == "instability_limited" and bool(rises),
                 numbers=numbers)


ENTRY = Entry(
    full_time="28 s (with Figure 4's studies)",   # refplay reproduce all --workers 2, empty workspace, load ~1.5
    id="fig7",
    title="A learning-rate sweep limited by instability; the training loss above lr*",
    section="Identifying unstable workloads", anchor="identifying-unstable-workloads",
    upstream=(Upstream("axis_model_with_instability.png"),
              Upstream("loss_model_with_instability.png")),
    claim_id="",
    claim="The best learning rate sits at the edge of the infeasible region (boundary check "
          "'instability_limited') and above lr* the loss goes up during training.",
    caveat=CAVEAT, procedure=instability.stability_scan, check=check,
    panels=(Panel(name="7a", key="lr_sweep", file="fig7a_axis_model_with_instability.png"),
            Panel(name="7b", key="above_lr_star", file="fig7b_loss_model_with_instability.png")))
