# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 8 — Choosing the batch size
#
# The playbook ("Choosing the batch size") in one sentence:
#
# > The batch size governs the training speed and shouldn't be used to
# > directly tune the validation set performance. Often, the ideal batch size
# > will be the largest batch size supported by the available hardware.
#
# This tutorial takes that sentence apart with `refplay.procedures` on the
# MNIST-1D MLP (`mnist1d_mlp`):
#
# 1. **throughput** against batch size, and the playbook's rule that a
#    doubling of the batch should "double (or at least nearly double)" it
#    (`batch_throughput`);
# 2. **steps to a result** against batch size, with the learning rate
#    re-tuned for every size: perfect scaling, then diminishing returns
#    (`steps_to_result`);
# 3. why the batch size is **not tuned for validation performance**: the
#    same comparison with the learning rate fixed and re-tuned
#    (`batch_size_fair_comparison`);
# 4. **ghost batch norm**: batch-norm statistics over groups of V examples,
#    whatever the batch size (`nn.norms.BatchNorm(virtual_batch_size=V)`).
#
# Run it as a script (`python tutorials/08_batch_size.py`; it writes a
# workspace and its plots under `runs/08_batch_size/`), or open it as a
# notebook with jupytext. `REFPLAY_TUTORIAL_QUICK=1` runs the procedures at
# their `quick=True` size (the test suite's).

# %%
import math
import os

import numpy as np

from refplay import io, procedures, tutorials
from refplay.procedures.batch_size import NEARLY_DOUBLES
from refplay.nn.norms import BatchNorm
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

QUICK = os.environ.get("REFPLAY_TUTORIAL_QUICK") == "1"
OUT = io.output_dir("08_batch_size")
# A fresh workspace on every run (or the one REFPLAY_TUTORIAL_WORKSPACE names, whose
# finished studies are read, not trained again).
WORKSPACE = tutorials.workspace(OUT)
RUN = dict(quick=QUICK, workers=0, workspace=WORKSPACE)


def save(result: procedures.ProcedureResult) -> None:
    for name, fig in result.figures.items():
        path = OUT / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        print("wrote", path)


# %% [markdown]
# ## 1. Throughput: does doubling the batch nearly double it?
# "For each batch size, we should train for long enough to get a reliable
# estimate of the *training throughput*": examples processed per second, or
# equivalently the time per step, since time per step = batch size /
# throughput.
#
# > When the accelerators aren't yet saturated, if the batch size doubles,
# > the training throughput should also double (or at least nearly double).
# > [...] If the training throughput increases only up to some maximum batch
# > size, then we should only consider batch sizes up to that maximum batch
# > size, even if a larger batch size is supported by the hardware.
#
# refplay reads "nearly double" as at least 1.5× per doubling (so 1.5² =
# 2.25× for a step of 4× in batch size). `batch_throughput` times a few SGD
# steps at each size in this process and walks up the sizes until a step
# falls short. The timings are this machine's, now, shared with whatever
# else runs, so your numbers will differ from anyone else's; what does not
# differ is how the decision follows from them, which the asserts check.

# %%
tp = procedures.batch_throughput("mnist1d_mlp", quick=QUICK)
t = tp.numbers
print(f"{'batch':>6}  {'ms/step':>8}  {'examples/s':>11}  {'gain':>6}  {'needed':>6}")
needed = [NEARLY_DOUBLES ** math.log2(b1 / b0)
          for b0, b1 in zip(t["batch_sizes"], t["batch_sizes"][1:])]
for i, (b, sps, eps) in enumerate(zip(t["batch_sizes"], t["seconds_per_step"],
                                      t["examples_per_second"])):
    gain = f"{t['gains'][i - 1]:6.2f}" if i else "     -"
    need = f"{needed[i - 1]:6.2f}" if i else "     -"
    print(f"{b:6d}  {1e3 * sps:8.3f}  {eps:11,.0f}  {gain}  {need}")
print("decision:", tp.decision)
save(tp)
# The decision is the rule applied to the measured numbers, whatever they are:
rule = procedures.throughput_decision(t["batch_sizes"], t["examples_per_second"])
assert t["max_useful_batch"] == rule.max_useful_batch
first_short = next((i for i, (g, r) in enumerate(zip(t["gains"], needed)) if g < r), None)
expected = t["batch_sizes"][-1] if first_short is None else t["batch_sizes"][first_short]
assert t["max_useful_batch"] == expected
assert all(np.isclose(b / s, e) for b, s, e in zip(t["batch_sizes"], t["seconds_per_step"],
                                                   t["examples_per_second"]))

# %% [markdown]
# The same rule on a step-time model instead of a stopwatch makes the
# answer exact. Say a step costs a fixed overhead *a* plus *c* per example,
# t(B) = a + c·B (here a = 1 ms, c = 10 µs). Doubling B multiplies the
# throughput B/t(B) by 2(a + cB)/(a + 2cB), which is at least 1.5 exactly when
# B ≤ a/(2c) = 50. So from 8 the doublings 8 → 16 → 32 → 64 all pass, and
# 64 → 128 is the first that fails: the largest useful batch size is 64.
# `batch_throughput` takes such a model as its `measure` argument (the
# tests use one too).

# %%
A_OVERHEAD, C_PER_EXAMPLE = 1e-3, 10e-6


def step_time_model(workload, batch_size, steps):
    """(seconds per step, peak MiB, peak RSS MiB) of the model t(B) = a + c·B."""
    return A_OVERHEAD + C_PER_EXAMPLE * batch_size, 0.01 * batch_size, 200.0


modelled = procedures.batch_throughput("mnist1d_mlp", batch_sizes=(8, 16, 32, 64, 128, 256),
                                       measure=step_time_model)
print("gains per doubling:", [round(g, 3) for g in modelled.numbers["gains"]])
print("decision:", modelled.decision)
assert modelled.numbers["max_useful_batch"] == 64
assert all(g >= 1.5 for g in modelled.numbers["gains"][:3])
assert modelled.numbers["gains"][3] < 1.5
assert modelled.numbers["max_throughput_batch"] == 256      # still faster, just not enough

# %% [markdown]
# Throughput keeps growing past 64 (256 is the fastest), but each doubling
# buys less than 1.5×: "All benefits of using a larger batch size assume the
# training throughput increases. If it doesn't, fix the bottleneck or use
# the smaller batch size."
#
# ## 2. Steps to a result, with the learning rate re-tuned per batch size
# Training time = (time per step) × (number of steps). The playbook:
#
# > As the batch size increases, the total number of steps needed to reach a
# > fixed performance goal typically decreases (provided all relevant
# > hyperparameters are re-tuned when the batch size is changed [...]).
# > - E.g. Doubling the batch size might halve the total number of steps
# >   required. This is called **perfect scaling**.
# > - Perfect scaling holds for all batch sizes up to a critical batch size,
# >   beyond which one achieves diminishing returns.
# > - Eventually, increasing the batch size no longer reduces the number of
# >   training steps (but never increases it).
#
# `steps_to_result` follows Shallue et al. (2018): for every batch size, a
# quasi-random search over Nesterov momentum's learning rate and γ (the same
# points for every size, constant learning rate); each configuration's
# steps-to-result is the first evaluation step at which the validation error
# reaches the target, and the size's steps-to-result is the best over the
# search. (Quick size: B ∈ {16, 64, 256, 1024}, target error 0.45, 6
# configurations, one seed; full size: seven sizes from 16 to 1024, 8
# configurations, two seeds.) The log₂ slope of steps against batch size,
# (log₂ S(B₂) − log₂ S(B₁)) / (log₂ B₂ − log₂ B₁), is −1 under perfect
# scaling and 0 when a bigger batch stops helping.

# %%
sr = procedures.steps_to_result("mnist1d_mlp", **RUN)
s = sr.numbers
print(f"{'batch':>6}  {'steps':>6}  {'examples':>9}  {'best lr':>8}")
for b, steps, ex, lr in zip(s["batch_sizes"], s["steps_to_result"], s["examples_to_result"],
                            s["best_lr"]):
    print(f"{b:6d}  {steps:6d}  {ex:9,d}  {lr:8.3g}")
print(f"log2 slope: smallest sizes {s['small_slope']:.2f}, largest sizes {s['large_slope']:.2f}")
print("decision:", sr.decision)
save(sr)
assert all(steps is not None for steps in s["steps_to_result"])
assert -1.3 <= s["small_slope"] <= -0.7                 # perfect scaling at small B
assert s["large_slope"] > -0.5                          # diminishing returns at large B
assert s["max_steps_increase"] <= s["eval_every"]       # never more steps (to one eval)
assert s["critical_batch"] is not None and s["critical_batch"] < s["batch_sizes"][-1]
assert s["best_lr"][-1] / s["best_lr"][0] >= 2          # the best lr grows with B
ex = s["examples_to_result"]
assert ex[1] / ex[0] < 1.5 and ex[-1] / ex[0] > 2       # flat, then rising

# %% [markdown]
# Three things to read off the table and the plot:
#
# * At small batch sizes a k× larger batch needs about k× fewer steps
#   (slope near −1): perfect scaling. At the largest sizes the steps stop
#   falling (slope above −0.5), and they never rise by more than one
#   evaluation interval.
# * The best learning rate grows with the batch size, by at least 2× from
#   the smallest to the largest. Had we kept the small batch's learning rate,
#   the large batch would have looked slow for the wrong reason: "Changing
#   the batch size requires re-tuning most hyperparameters".
# * Examples-to-result (B × steps) is what a run *consumes*: roughly flat
#   while scaling is perfect, growing beyond the critical batch size. So
#   beyond it, a bigger batch still saves time only if the hardware
#   processes the extra examples for free.
#
# That last point is the playbook's warning about budgets: "Comparing batch
# sizes with an epoch budget only probes the perfect scaling regime, even
# when larger batch sizes might still provide a meaningful speedup by
# reducing the number of training steps required." Give every size the
# example budget the smallest one needed, and look at which sizes reach the
# target within it:

# %%
example_budget = s["examples_to_result"][0]
within = {b: ex <= example_budget for b, ex in zip(s["batch_sizes"], s["examples_to_result"])}
print(f"example budget {example_budget:,} (what B={s['batch_sizes'][0]} needed): "
      + ", ".join(f"B={b} {'reaches' if ok else 'misses'}" for b, ok in within.items()))
assert not within[s["batch_sizes"][-1]]
assert all(not within[b] for b in s["batch_sizes"] if b >= 4 * s["critical_batch"])

# %% [markdown]
# With an epoch budget the largest batch "fails", although in *steps* (and
# so, with enough hardware, in time) it reaches the target at least as fast
# as any other size. A step budget, like the table above, shows both.
#
# ## 3. Why the batch size is not tuned for validation performance
# The playbook's FAQ ("Why shouldn't the batch size be tuned to directly
# improve validation set performance?"):
#
# > - Changing the batch size *without changing any other details of the
# >   training pipeline* will often affect the validation set performance.
# > - However, the difference in validation set performance between two batch
# >   sizes typically goes away if the training pipeline is optimized
# >   independently for each batch size.
# > - The hyperparameters that interact most strongly with the batch size
# >   [...] are the optimizer hyperparameters (e.g. learning rate, momentum)
# >   and the regularization hyperparameters.
#
# `batch_size_fair_comparison` tunes Adam's learning rate and the dropout
# rate (the nuisance regularizer) at a small batch size, then compares a
# large batch size (i) with the small batch's hyperparameters kept and
# (ii) with both re-tuned. Every winner is retrained with 3 seeds; each gap
# (large minus small, in validation error) is judged against its standard
# error from the retrain spread. (Quick size: B = 32 and 256, 1,500 steps,
# 4 configurations per size; full size: 32 and 512, 4,000 steps, 8.)

# %%
fair = procedures.batch_size_fair_comparison("mnist1d_mlp", **RUN)
f = fair.numbers
small, large = f["batch_sizes"]
print(f"B={small} tuned: validation error {f['objective_small_mean']:.3f} "
      f"(lr {f['best_config_small']['lr']:.3g}, dropout {f['best_config_small']['dropout']:.2f})")
print(f"B={large}, B={small}'s hyperparameters: {f['objective_fixed_mean']:.3f}, "
      f"gap {f['gap_fixed']:+.4f} ± {f['se_fixed']:.4f}")
print(f"B={large} retuned: {f['objective_retuned_mean']:.3f}, gap {f['gap_retuned']:+.4f} ± "
      f"{f['se_retuned']:.4f} (lr {f['best_config_large']['lr']:.3g}, dropout "
      f"{f['best_config_large']['dropout']:.2f})")
print("decision:", fair.decision)
save(fair)
assert abs(f["gap_fixed"]) > 2 * f["se_fixed"]           # fixed: a "batch size effect"
assert abs(f["gap_retuned"]) <= 2 * f["se_retuned"]      # retuned: it goes away
assert f["best_config_large"]["lr"] > f["best_config_small"]["lr"]
assert fair.decision.startswith("batch size does not change attainable performance")

# %% [markdown]
# With the small batch's hyperparameters the large batch is worse by more
# than two standard errors: an experiment that stopped there would report
# that "the batch size matters". Re-tuned (with a larger learning rate), the
# gap is within two standard errors: "there is currently no convincing
# evidence that the batch size affects the maximum achievable validation
# performance". So the batch size is chosen for speed (sections 1 and 2)
# and then held fixed; the learning rate and regularization are what get
# tuned. (Three seeds per arm make "2 SE" a rough line, as the result's
# caveats say.)
#
# ## 4. Batch norm and the batch size: ghost batches
# "Batch norm is complicated and, in general, should use a different batch
# size than the gradient computation to compute statistics." The playbook's
# batch-norm section:
#
# > Anecdotal reports (mostly on ImageNet) say calculating these normalizing
# > statistics using only ~64 examples actually works better in practice (see
# > Ghost Batch Norm [...]). Decoupling the total batch size and the number of
# > examples used to calculate batch norm statistics is particularly useful
# > for batch size comparisons.
#
# `BatchNorm(C, virtual_batch_size=V)` cuts a training batch into groups of
# V consecutive examples and normalizes each group with its own mean and
# variance; the moving averages used at evaluation are still updated from
# the whole batch. A direct look, on a batch of 16 examples with 3 channels
# and V = 4:

# %%
rng = np.random.default_rng(0)
x = rng.normal(loc=[[1.0, -2.0, 0.5]], scale=[[1.0, 3.0, 0.2]], size=(16, 3)).astype(np.float64)
plain, ghost = BatchNorm(3), BatchNorm(3, virtual_batch_size=4)
params, state = plain.init(dtype=np.float64), plain.init_state(np.float64)
y_plain, _, state_plain = plain.apply(params, state, x, train=True)
y_ghost, _, state_ghost = ghost.apply(params, state, x, train=True)


def normalize(block):
    """(x − mean) / √(var + eps) per channel over the examples of ``block`` (scale 1, bias 0)."""
    return (block - block.mean(axis=0)) / np.sqrt(block.var(axis=0) + plain.eps)


groups = y_ghost.reshape(4, 4, 3)            # (group, example in group, channel)
print("per-group mean of the ghost-BN output (rows: groups, columns: channels):")
print(np.round(groups.mean(axis=1), 12))
print("per-group mean of the plain-BN output:")
print(np.round(y_plain.reshape(4, 4, 3).mean(axis=1), 3))
assert np.allclose(y_plain, normalize(x))                        # one group: the whole batch
assert np.allclose(y_ghost, np.concatenate([normalize(g) for g in x.reshape(4, 4, 3)]))
group_var = x.reshape(4, 4, 3).var(axis=1)
assert np.allclose(groups.mean(axis=1), 0)
assert np.allclose(groups.var(axis=1), group_var / (group_var + plain.eps))   # 1, up to eps
assert not np.allclose(y_ghost, y_plain)
# The EMAs see the whole batch (d = ema_decay = 0.9, from mean 0 and var 1), whatever V is:
d, n = plain.ema_decay, len(x)
assert np.allclose(state_ghost["bn/mean"], d * 0.0 + (1 - d) * x.mean(axis=0), rtol=1e-12)
assert np.allclose(state_ghost["bn/var"], d * 1.0 + (1 - d) * x.var(axis=0) * n / (n - 1),
                   rtol=1e-12)
for key in state_plain:
    assert np.allclose(state_plain[key], state_ghost[key], rtol=1e-12, atol=0)
try:
    ghost.apply(params, state, x[:10], train=True)               # 10 is not a multiple of 4
except ValueError as err:
    print("a batch of 10 with V = 4:", err)
    assert "virtual_batch_size" in str(err)
else:
    raise AssertionError("a batch that V does not divide must be refused")

# %% [markdown]
# Each group of 4 is normalized on its own (its mean is 0 to rounding and
# its variance 1 up to the ε that keeps the division safe), while plain batch norm uses all 16 examples, so its
# groups' means are not 0. The evaluation statistics (the moving averages)
# are identical either way: V changes what training sees, not what
# evaluation uses. A batch that V does not divide is refused by name, by
# default, rather than silently normalized with a smaller last group.
#
# This is what makes batch-size comparisons with batch norm fair: with
# V = 64, B = 64 and B = 512 normalize over the same number of examples, so
# a difference between them is not a difference in the noise of the
# normalizing statistics.
#
# ## Summary
# * Measure throughput at doubling batch sizes; use sizes only while a
#   doubling nearly doubles it.
# * With the learning rate re-tuned for each size, steps to a result halve
#   with each doubling up to a critical batch size, then stop falling; the
#   best learning rate grows with the batch size.
# * Compare batch sizes on steps (or time), not on an epoch budget.
# * The batch size is chosen for speed, not tuned for validation error:
#   once the learning rate and regularization are re-tuned, the gap goes
#   away.
# * With batch norm, fix the number of examples per statistic
#   (`virtual_batch_size`) when you compare batch sizes.
