# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 6 — The incremental tuning strategy
#
# The playbook ("A scientific approach to improving model performance")
# tunes a model in rounds, starting from a simple configuration and adding
# improvements one at a time, each backed by evidence:
#
# > 1. Identify an appropriately-scoped goal for the next round of experiments.
# > 2. Design and run a set of experiments that makes progress towards this goal.
# > 3. Learn what we can from the results.
# > 4. Consider whether to launch the new best configuration.
#
# This tutorial runs one such round on the MNIST-1D MLP (`mnist1d_mlp`):
# a baseline, a goal, a study whose hyperparameters each have a role
# (**scientific**, **nuisance**, **fixed**), the checks that tell us the study
# needs a second round, and finally the decision to launch, recorded as the
# workspace's new baseline. Along the way it shows the playbook's main
# warning about comparisons: a nuisance hyperparameter held fixed can make a
# small effect look large.
#
# Run it as a script (`python tutorials/06_incremental_tuning.py`; it prints
# this text between its results and writes a workspace and two plots under
# `runs/06_incremental_tuning/`), or open it as a notebook with jupytext.
# `REFPLAY_TUTORIAL_QUICK=1` runs fewer and shorter trials (the test suite's size).

# %%
import os
import shutil

import numpy as np

from refplay import analysis, io, plots, search, study, train, tree
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

QUICK = os.environ.get("REFPLAY_TUTORIAL_QUICK") == "1"
NUM_TRIALS = 12 if QUICK else 24          # configurations per round
MAX_TRAIN_STEPS = 300 if QUICK else 600   # fixed for every trial
OUT = io.output_dir("06_incremental_tuning")
WORKSPACE = OUT / "workspace"
shutil.rmtree(WORKSPACE, ignore_errors=True)   # start from scratch on every run

# %% [markdown]
# ## The starting point: a baseline
# "Before beginning hyperparameter tuning we must determine the starting
# point": a simple, cheap configuration that gets *reasonable* results. Ours
# is Adam with the learning rate 10⁻³, a cosine decay, batches of 100 and
# the MLP's default width of 100 hidden units. Everything else in this
# tutorial is measured against it.
#
# A single configuration is a study too (`sampler="explicit"`). Once it has
# run, `Store.set_baseline` records its trial as the workspace's
# "configuration to beat" (`refplay study list` shows it).

# %%
BASE = {"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "width": 100,
        "batch_size": 100, "schedule": "cosine"}
COMMON = dict(workload="mnist1d_mlp", max_train_steps=MAX_TRAIN_STEPS, eval_every=50,
              metric="validation/error_rate", mode="min")

baseline_spec = study.StudySpec(name="baseline", sampler="explicit", configs=(BASE,),
                                description="the starting configuration", **COMMON)
study.run(baseline_spec, store=WORKSPACE, workers=0, progress=False)
with study.Store(WORKSPACE) as store:
    base_row = store.set_baseline("baseline", 0, note="starting point: Adam, lr 1e-3")
    n_validation = analysis.load(store, "baseline").n_validation
base_se = analysis.binomial_se(base_row.objective, n_validation)
print(f"baseline: validation error {base_row.objective:.3f} ± {base_se:.3f} "
      f"(binomial SE on {n_validation} examples)")
assert base_row.study == "baseline" and base_row.trial == 0 and 0 < base_row.objective < 0.9

# %% [markdown]
# ## Step 1: an appropriately-scoped goal
# "Choosing the goal for the next round of experiments": "If we try to add
# multiple features or answer multiple questions at once, we may not be able
# to disentangle the separate effects on the results." One question per
# round. Ours: **does a wider hidden layer (256 units instead of 100) lower
# the validation error?**
#
# ## Step 2: scientific, nuisance and fixed hyperparameters
# "Scientific hyperparameters are those whose effect on the model's
# performance we're trying to measure"; nuisance hyperparameters "need to be
# optimized over in order to fairly compare different values of the
# scientific hyperparameters"; fixed hyperparameters "will have their values
# fixed in the current round". So:
#
# * `width` ∈ {100, 256} is **scientific**;
# * the learning rate is **nuisance**: "the learning rate is a nuisance
#   hyperparameter because we can only fairly compare models with different
#   numbers of hidden layers if the learning rate is tuned separately for each";
# * Adam's β₁, the batch size and the schedule are **fixed**, and the answer
#   will carry that caveat.
#
# Roles depend on the goal, not on the hyperparameter: the same `width`
# would be fixed in a round that asks which optimizer is better.
#
# `analysis.role_lint` flags the designs the playbook warns about. A
# comparison of optimizers at one fixed learning rate, with the batch size
# searched as if it were a nuisance hyperparameter, gets two warnings; our
# design gets none.

# %%
def make_space(lr_range: tuple[float, float]) -> search.SearchSpace:
    return search.SearchSpace({
        "width": search.Discrete([100, 256], role="scientific"),
        "lr": search.Float(*lr_range, scale="log"),            # nuisance (the default role)
        "optimizer": search.Fixed("adam"),
        "beta1": search.Fixed(0.9),
        "batch_size": search.Fixed(100),
        "schedule": search.Fixed("cosine"),
    })


space1 = make_space((1e-4, 1e-1))
print("scientific:", space1.scientific(), " nuisance:", space1.nuisance(),
      " fixed:", space1.fixed())
assert space1.scientific() == ("width",) and space1.nuisance() == ("lr",)

bad_design = search.SearchSpace({
    "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
    "lr": search.Fixed(1e-3),
    "batch_size": search.Discrete([50, 100, 200]),
})
for warning in analysis.role_lint(bad_design):
    print(f"lint [{warning.kind}]: {warning.message}")
assert {w.kind for w in analysis.role_lint(bad_design)} == {"fixed_optimizer_hparam",
                                                             "batch_size_searched"}
assert analysis.role_lint(space1) == ()

# %% [markdown]
# ## The round's study
# Quasi-random search over the nuisance range, with the scientific
# hyperparameter on the first Halton coordinate, so each width gets exactly
# half of the trials (Tutorial 2). Every trial runs for the same
# `max_train_steps`: "`max_train_steps` is fixed for all trials of a study".

# %%
round1 = study.StudySpec(
    name="width_round1", search_space=space1, num_trials=NUM_TRIALS, sampler="halton",
    description="width 100 vs 256, Adam lr tuned per width in [1e-4, 0.1]",
    goal="Does a wider hidden layer lower the validation error?", **COMMON)
widths = [t.config["width"] for t in round1.trials()]
print("trials per width:", {w: widths.count(w) for w in (100, 256)})
assert widths.count(100) == widths.count(256) == NUM_TRIALS // 2

study.run(round1, store=WORKSPACE, workers=0, progress=False)
with study.Store(WORKSPACE, readonly=True) as store:
    frame1 = analysis.load(store, round1.name)


def print_trials(frame: analysis.TrialsFrame) -> None:
    print(f"{'width':>5}  {'lr':>8}  {'status':10}  error")
    for r in sorted(frame.rows, key=lambda r: (r.config["width"], r.config["lr"])):
        print(f"{r.config['width']:5d}  {r.config['lr']:8.2g}  {r.status:10}  {r.objective:.3f}")


print_trials(frame1)
assert len(frame1.rows) == NUM_TRIALS

# %% [markdown]
# ## Step 3a: what a fixed learning rate would have said
# The cheapest experiment would train the wider model *at the baseline's
# learning rate* and compare it with the baseline. That treats the learning
# rate as fixed. The playbook: "fixed hyperparameters create caveats for any
# conclusions we draw", and a comparison is fair only if "the learning rate
# is tuned separately for each" value of the scientific hyperparameter.
# Here is that cheap comparison, next to the fair one (each width's best
# trial over the learning rates the study tried, `analysis.best`):

# %%
fixed_spec = study.StudySpec(name="width_at_fixed_lr", sampler="explicit",
                             configs=(BASE, dict(BASE, width=256)), **COMMON)
study.run(fixed_spec, store=WORKSPACE, workers=0, progress=False)
with study.Store(WORKSPACE, readonly=True) as store:
    fixed = {r.config["width"]: r.objective for r in analysis.load(store, fixed_spec.name).rows}
best1 = analysis.best(frame1)
tuned = {w: best1[(w,)].objective for w in (100, 256)}


def gap(errors: dict) -> analysis.Comparison:
    """Width 100 minus width 256, with the binomial SE of the difference."""
    a, b = errors[100], errors[256]
    return analysis.compare(a, analysis.binomial_se(a, n_validation),
                            b, analysis.binomial_se(b, n_validation))


gap_fixed, gap_tuned = gap(fixed), gap(tuned)
for label, errors, g in (("lr fixed at 1e-3", fixed, gap_fixed), ("lr tuned per width", tuned,
                                                                    gap_tuned)):
    print(f"{label:>18}: width 100 {errors[100]:.3f}, width 256 {errors[256]:.3f}, "
          f"gain of the wider model {g.difference:+.3f} ± {g.se:.3f} "
          f"(more than 2 SE: {g.significant})")
print(f"the fixed learning rate makes the gain {gap_fixed.difference / gap_tuned.difference:.1f}"
      f"× what a tuned comparison finds" if gap_tuned.difference > 0 else
      "tuned, the wider model is not better at all")

# %% [markdown]
# At the fixed learning rate the wider model looks clearly better: the gain
# is more than two standard errors. With the learning rate tuned for each
# width, most of that gain disappears and what is left is within the noise
# of a 500-example validation set. The wider network simply trains faster
# at a learning rate that is too small for both; it is not a better model in
# this budget. The fixed-rate comparison measured the learning rate, not the
# width.

# %%
assert fixed[100] == base_row.objective                 # the same trial as the baseline, rerun
assert gap_fixed.significant and gap_fixed.difference > 0
assert not gap_tuned.significant
assert gap_fixed.difference > 3 * abs(gap_tuned.difference)
# 1e-3 is too small for both widths: each one's best learning rate is well above it, and
# tuning it helps the baseline width more than widening the model did.
best_lrs = {w: next(r.config["lr"] for r in frame1.rows if r.trial == best1[(w,)].trial)
            for w in (100, 256)}
print("best learning rate per width:", {w: round(lr, 4) for w, lr in best_lrs.items()})
assert all(lr > 3e-3 for lr in best_lrs.values())
assert fixed[100] - tuned[100] > gap_fixed.difference

# %% [markdown]
# ## Step 3b: is the study itself good enough?
# Before trusting the tuned comparison, the playbook's checklist: "Is the
# search space large enough?" An axis plot shows each trial's error against
# its learning rate; `analysis.boundary_check` asks whether each width's best
# trial is pressed against an edge of the range. And `analysis.importance`
# measures how much the best error moves along each searched axis.

# %%
def look(frame, name: str):
    fig = plots.axis_plot(frame, "lr", by="scientific")
    fig.savefig(OUT / f"{name}.png", dpi=100)
    print("wrote", OUT / f"{name}.png")
    checks = {v[0]: c for v, c in analysis.boundary_check(frame, "lr").checks.items()}
    for c in checks.values():
        print(f"  {c.message} [decision: {c.decision}]")
    ranks = analysis.importance(frame)
    print("  importance (spread of the best error along each axis):",
          ", ".join(f"{i.param} {i.spread:.3f}" for i in ranks))
    return checks, ranks


checks1, importance1 = look(frame1, "axis_plot_round1")
assert importance1[0].param == "lr"
assert importance1[0].spread > 3 * next(i.spread for i in importance1 if i.param == "width")
assert any(c.decision == "expand_high" for c in checks1.values())

# %% [markdown]
# The learning rate matters far more than the width in this space, and the
# best trials sit at the top of the learning-rate range: "We might find an
# even better point if we expanded the search range in that direction." So
# this round's answer is not final yet. The playbook's remedy is a new study
# with a wider range, here [10⁻³, 1], high enough to find where training
# diverges.

# %%
round2 = study.StudySpec(
    name="width_round2", search_space=make_space((1e-3, 1.0)), num_trials=NUM_TRIALS,
    sampler="halton", description="round 1 with the lr range moved up to [1e-3, 1]",
    goal=round1.goal, **COMMON)
study.run(round2, store=WORKSPACE, workers=0, progress=False)
with study.Store(WORKSPACE, readonly=True) as store:
    frame2 = analysis.load(store, round2.name)
print_trials(frame2)
checks2, importance2 = look(frame2, "axis_plot_round2")
for (width,), count in analysis.infeasible_fraction(frame2).items():
    print(f"width {width}: {count.n_infeasible} of {count.n_trials} trials infeasible")
assert all(c.decision in ("ok", "instability_limited") for c in checks2.values())
assert any(r.status == "infeasible" for r in frame2.rows)   # the range now reaches divergence

# %% [markdown]
# Now neither width's best trial is at a boundary, and the largest learning
# rates diverge (red × at the top of the plot), so the range spans the whole
# useful region. The comparison can be read:

# %%
best2 = analysis.best(frame2)
tuned2 = {w: best2[(w,)].objective for w in (100, 256)}
gap2 = gap(tuned2)
print(f"round 2: width 100 {tuned2[100]:.3f}, width 256 {tuned2[256]:.3f}, gain "
      f"{gap2.difference:+.3f} ± {gap2.se:.3f} (more than 2 SE: {gap2.significant})")
assert not gap2.significant
diverged = [r.config["lr"] for r in frame2.rows if r.status == "infeasible"]
print(f"smallest learning rate that diverged: {min(diverged):.3g}")
assert 0.1 < min(diverged) < 1.0

# %% [markdown]
# ## Exploration before exploitation
# "At least initially, we're primarily trying to gain insight into the
# problem", the playbook says, because insight is what makes later rounds
# good: a study that only chased the best number would have missed what this
# round found.
#
# * The learning rate matters much more than the width here.
# * The wider model's advantage at the baseline's learning rate was the
#   learning rate's doing; tuned, the difference is within the noise.
# * The original learning-rate range was too low; the useful region ends
#   where training diverges, between 0.1 and 1.
#
# Each best error above is a single trial with a single seed. The playbook's
# standard for adopting a change also asks for its **trial variance**
# (Tutorial 11); exploiting the final search space with Bayesian
# optimization is Tutorial 12.
#
# ## Step 4: launch, or not?
# "Consider whether to launch the new best configuration." The wider model
# has five times the parameters (and costs about that much more compute per
# step) and showed no significant gain: not adopted. The tuned learning
# rate, on the other hand, improves on the baseline by more than four
# standard errors, at no cost: adopted. `set_baseline` records the new
# configuration to beat; the old record stays in the workspace.

# %%
workload = train.get_workload("mnist1d_mlp")
sizes = {w: tree.num_params(workload.model(width=w).init_params(np.random.default_rng(0))[0])
         for w in (100, 256)}
print(f"parameters: width 100 {sizes[100]:,}, width 256 {sizes[256]:,} "
      f"({sizes[256] / sizes[100]:.1f}×)")
assert 4.5 < sizes[256] / sizes[100] < 5.5

candidates = [(r.objective, f.name, r) for f in (frame1, frame2) for r in f.rows
              if r.status == "complete" and r.config["width"] == 100]
_, launch_study, launch = min(candidates, key=lambda c: (c[0], c[1], c[2].trial))
improvement = analysis.compare(base_row.objective, base_se, launch.objective,
                               analysis.binomial_se(launch.objective, n_validation))
print(f"launch candidate: width 100, lr {launch.config['lr']:.3g} ({launch_study}, trial "
      f"{launch.trial}): error {launch.objective:.3f}, {improvement.difference:.3f} ± "
      f"{improvement.se:.3f} better than the baseline")
assert improvement.difference > 4 * improvement.se
with study.Store(WORKSPACE) as store:
    new_base = store.set_baseline(launch_study, launch.trial,
                                  note="width stays 100; Adam lr retuned")
print(f"new baseline: {new_base.study} trial {new_base.trial}, "
      f"{new_base.metric} {new_base.objective:.3f}")
assert (new_base.study, new_base.trial) == (launch_study, launch.trial)
assert new_base.objective < base_row.objective

# %% [markdown]
# The next round starts from this baseline with a new goal: perhaps the
# batch size (Tutorial 8), the training length (Tutorial 9) or a
# regularizer, each with its own scientific, nuisance and fixed
# hyperparameters.
