# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 10 — Training instability: identify it, then warmup and clipping
#
# The playbook ("How can optimization failures be debugged and
# mitigated?"): "Any workload will become unstable if the learning rate is
# too large. Instability is only an issue when it forces us to use a
# learning rate that's too small." This tutorial follows its recipe:
#
# 1. **Identify** it: "Do a learning rate sweep and find the best learning
#    rate lr*. Plot training loss curves for learning rates just above lr*.
#    If the learning rates > lr* show loss instability (loss goes up not down
#    during periods of training), then it is likely that fixing the
#    instability will result in better training." (Figures 7a, 7b)
# 2. **Look closely** at the start: "it's usually worth doing a run of ~500
#    steps at learning rate = 2x the best, evaluating every step" (Figure 5).
# 3. **Warmup**: a ramp from 0 to the base learning rate lets a rate train
#    that diverges without it (Figure 6).
# 4. **Gradient clipping**: "Choose a gradient clipping threshold based on
#    the 90th percentile of gradient norms", and beware thresholds that clip
#    more than half of the updates (Figure 9).
#
# The playbook's figures come from ResNets and Transformers; refplay has
# MNIST-1D models whose instabilities were calibrated to show the same
# *mechanisms* (`refplay.train.unstable`, `docs/instability.md`): a residual
# 1-D CNN with LayerNorm *after* each residual addition ("post-norm"), and a
# deep residual MLP without normalization whose initial weights are too
# large. The magnitudes are not the playbook's. Each step is a procedure of
# `refplay.procedures` that runs the trials and returns a decision, its
# numbers and its figures.
#
# Run it as a script (`python tutorials/10_instability.py`; it writes the
# figures under `runs/10_instability/`), or open it as a notebook.
# `REFPLAY_TUTORIAL_QUICK=1` uses a coarser learning-rate grid.

# %%
import os
import shutil

import numpy as np

from refplay import io, train
from refplay.procedures import clipping, instability
from refplay.train import unstable
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

QUICK = os.environ.get("REFPLAY_TUTORIAL_QUICK") == "1"
OUT = io.output_dir("10_instability")
WORKSPACE = OUT / "workspace"            # the procedures' trials, recorded as studies
shutil.rmtree(WORKSPACE, ignore_errors=True)
SETUP = unstable.WARMUP                  # the post-norm residual CNN on MNIST-1D
LRS = (0.02, 0.04, 0.16, 0.64) if QUICK else SETUP.lrs


def show(result, name: str) -> dict:
    """Print a procedure's question and decision, save its figures; return its numbers."""
    print(f"Q: {result.question}\nA: {result.decision}")
    for path in result.save_figures(OUT / name).values():
        print("wrote", path)
    return result.numbers


# %% [markdown]
# ## 1. Identifying instability: a learning-rate sweep, then above lr*
# `instability.stability_scan` sweeps the learning rate of the post-norm
# network (Nesterov momentum, constant rate, 400 steps), takes the best one
# as lr*, asks the boundary check of Tutorial 5 whether lr* sits at the edge
# of the infeasible region, and then trains 5 × lr* recording the loss of
# every step, looking for loss spikes (periods where the loss goes up).

# %%
scan = show(instability.stability_scan(lrs=LRS, factors=(5,), quick=QUICK,
                                       workspace=WORKSPACE), "scan")
lr_star = scan["lr_star"]
for lr, status, error in zip(scan["lrs"], scan["statuses"], scan["objectives"]):
    print(f"  lr {lr:5.2f}: {status:10} best validation error {error:.3f}")
(hot,) = scan["above_lr_star"]
print(f"at 5 × lr* = {hot['lr']:.2f}: {hot['status']}, {len(hot['events'])} loss spikes, "
      f"the largest {max(e['height'] for e in hot['events']):.1f}× its running minimum")
assert scan["statuses"][-1] == "infeasible" and lr_star < scan["lrs"][-1]
assert not scan["best_at_infeasible_edge"]
assert hot["events"] and max(e["height"] for e in hot["events"]) > 2

# %% [markdown]
# Two readings. The best rate is *not* at the edge of the infeasible
# region: the largest rate diverges, but several rates between lr* and it
# train (Figure 7a's pattern, "best at the edge of feasibility", is absent).
# Yet above lr* the training loss goes up, by more than 2× its running
# minimum, and comes back down: "loss instability". By the playbook's test,
# this network is worth stabilizing.
#
# ## 2. Spikes need dense evaluation
# Evaluating every 100 steps, as one might by default, averages a spike
# away. `instability.early_instability_check` trains 2 × lr* once and
# compares the loss of every step with the same trial's coarse view (the
# mean training loss between evaluations every 100 steps):

# %%
early = show(instability.early_instability_check(workspace=WORKSPACE), "early")
print(f"dense view: largest spike {early['max_spike_height']:.1f}× at step "
      f"{early['max_spike_step']}; coarse view: {np.round(early['sparse_loss'], 3).tolist()} "
      f"(only going down: {early['sparse_monotone']})")
assert early["max_spike_height"] > 2 and early["sparse_monotone"]
assert early["max_spike_step"] > SETUP.max_train_steps // 10

# %% [markdown]
# The per-step loss jumps by more than 2× and recovers; the coarse view only
# ever goes down. Without dense evaluation, the instability would be
# invisible. (On this laptop workload the spike comes mid-run, after the
# first 10 % of training; the playbook's Figure 5 shows one at the start.
# Either way only the per-step loss shows it.)
#
# ## 3. Warmup
# "Learning rate warmup [...] involves prepending a learning rate schedule
# that ramps up the learning rate from 0 to some stable base learning
# rate". The sweep above found a rate that diverges without warmup, the
# largest one. Here it is again with a linear warmup over the first 10 % of
# the 400 steps (`warmup_steps=40`):

# %%
top_lr = scan["lrs"][-1]
workload = train.get_workload(SETUP.workload, **SETUP.workload_options)
warm = train.run_trial(workload, SETUP.config("unstable", top_lr, warmup_steps=40),
                       seed=SETUP.seed, max_train_steps=SETUP.max_train_steps, eval_every=50)
print(f"lr {top_lr}: without warmup {scan['statuses'][-1]}; with 40 warmup steps "
      f"{warm.status}, best validation error {warm.best_metrics['validation/error_rate']:.3f}")
assert scan["statuses"][-1] == "infeasible" and warm.status == "complete"
assert warm.best_metrics["validation/error_rate"] > scan["best_error"]

# %% [markdown]
# The same learning rate that diverged now trains to the end. Warmup does
# not make the rate *good* (compare its error with lr*'s above); it makes it
# *reachable*, which is what a study needs in order to search above lr*.
# `refplay.procedures.warmup.warmup_study` runs the playbook's full
# procedure: the shortest stable `warmup_steps` among candidates, checked
# against 10 % of `max_train_steps`, then prepended and compared with the
# baseline (about a minute on a laptop: `refplay procedure` lists it).
#
# ## 4. Gradient clipping
# The second network, a deep residual MLP without normalization whose
# initial weights are 0.7 of the usual scale, diverges within a few steps:
# its early gradients are huge. The same network at 0.5 of the scale trains,
# and its gradient norms give the thresholds: the playbook's 90th
# percentile, plus smaller and larger ones. `clipping.clipping_study` trains
# the unstable network with each:

# %%
clip = show(clipping.clipping_study(quick=True, workspace=WORKSPACE), "clipping")
print(f"unclipped: {clip['unclipped_status']} after {clip['unclipped_steps_done']} steps")
for run in clip["runs"]:
    print(f"  threshold {run['threshold']:.2f} (p{run['percentile']:.0f} of the stable norms): "
          f"{run['status']}, {run['clipped_fraction']:.0%} of updates clipped, "
          f"best error {run['best_error']:.3f}")
p90 = next(r for r in clip["runs"] if r["percentile"] == 90)
assert clip["unclipped_status"] == "infeasible"
assert p90["status"] == "complete" and p90["clipped_fraction"] <= 0.5
assert all(r["clipped_fraction"] > 0.5 for r in clip["runs"]
           if r["threshold"] in clip["aggressive_thresholds"])
assert clip["aggressive_thresholds"]

# %% [markdown]
# Unclipped, the network diverges; clipped at the 90th percentile of a
# stable run's gradient norms it trains, and fewer than half of its updates
# are clipped. The low threshold clips more than half of the updates: "If
# gradient clipping is needed for more than 50% of the updates, the gradient
# clipping threshold is too aggressive [...] in essence a strange way of
# reducing the learning rate". `clipping.clipping_identity` proves that
# remark for plain SGD: clipping every step *is* SGD with a per-step
# learning rate η·λ/‖g‖ (the two runs agree to float64 rounding, a relative
# difference below 10⁻¹⁰).

# %%
identity = clipping.clipping_identity()
print(f"clipped SGD vs SGD with η_t = ηλ/‖g_t‖ over {identity.steps} steps: largest relative "
      f"difference of the losses {identity.max_rel_loss_diff:.1e}, of the gradient norms "
      f"{identity.max_rel_norm_diff:.1e}")
assert identity.min_norm > identity.threshold          # every step was clipped
assert identity.max_rel_loss_diff < 1e-10 and identity.max_rel_norm_diff < 1e-10
