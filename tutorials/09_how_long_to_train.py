# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 9 — Determining the number of steps for each training run
#
# The playbook ("Determining the number of steps for each training run")
# starts by splitting workloads in two:
#
# > When training is **compute-bound**, training is limited by how long we
# > are willing to wait and not by how much training data we have or some
# > other factor. [...] When training is **not compute-bound**, we can afford
# > to train as long as we would like to, and, at some point, training longer
# > doesn't help much (or even causes problematic overfitting).
#
# The two cases get two different procedures, and this tutorial runs both
# with `refplay.procedures` on the MNIST-1D MLP (`mnist1d_mlp`):
#
# * **not compute-bound**: an initial `max_train_steps` from a
#   constant-learning-rate sweep (`initial_max_train_steps`), its negative
#   control (a linear model, which cannot fit the training set), the
#   self-deception a bad learning-rate grid allows, and the refinement from
#   where the best checkpoints fall (`refine_max_train_steps`);
# * **compute-bound**: Round 1 short, Round 2 long (`two_rounds`), and the
#   schedule pitfall between them (`rsqrt_pitfall`, exactly 1 − N₁/N₂).
#
# Run it as a script (`python tutorials/09_how_long_to_train.py`; it writes a
# workspace and its plots under `runs/09_how_long_to_train/`), or open it as a
# notebook with jupytext. `REFPLAY_TUTORIAL_QUICK=1` runs the procedures at
# their `quick=True` size (the test suite's).

# %%
import math
import os

from refplay import io, procedures, schedules, train, tutorials
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

QUICK = os.environ.get("REFPLAY_TUTORIAL_QUICK") == "1"
OUT = io.output_dir("09_how_long_to_train")
# A fresh workspace on every run (or the one REFPLAY_TUTORIAL_WORKSPACE names, whose
# finished studies are read, not trained again).
WORKSPACE = tutorials.workspace(OUT)
RUN = dict(quick=QUICK, workers=0, workspace=WORKSPACE)


def save(result: procedures.ProcedureResult, prefix: str) -> None:
    """Write each of the procedure's figures as OUT/<prefix>_<name>.png."""
    for name, fig in result.figures.items():
        path = OUT / f"{prefix}_{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        print("wrote", path)


# %% [markdown]
# ## Not compute-bound: how many steps does it take to fit the training set?
# "Never tune the `max_train_steps` number in a study. Pick a value and use
# it for all trials." The playbook's way to pick the first value
# ("Algorithm for picking an initial candidate for max_train_steps using a
# learning rate sweep"):
#
# > - This procedure assumes it is possible to not only "perfectly" fit the
# >   training set, but to do so using a constant learning rate schedule.
# > - [...] find any such configuration and use its value of
# >   `max_train_steps` as a starting point `N`.
# > - Run a constant learning rate sweep (i.e. grid search the learning rate)
# >   without data augmentation and without regularization where each trial
# >   trains for `N` steps.
# > - The number of steps required for the fastest trial in the sweep to reach
# >   perfect training performance is our initial guess for `max_train_steps`.
#
# "Perfectly fit" is informal; refplay reads it as the playbook suggests for
# the log loss: the step at which "the misclassification error reached zero
# on the training set" (the whole training split, evaluated in eval mode
# every 50 steps). `initial_max_train_steps` finds N by doubling from 500
# steps at the grid's middle learning rate, then sweeps the grid with
# `schedule="constant"` and dropout, label smoothing and weight decay forced
# to 0. Adam's learning rates: 2·10⁻³, 6·10⁻³ and 2·10⁻² at the quick size,
# seven from 10⁻⁴ to 10⁻¹ at full size.

# %%
fit = procedures.initial_max_train_steps("mnist1d_mlp", **RUN)
nums = fit.numbers
print("decision:", fit.decision)
print(f"N from doubling: {nums['probe_steps']} -> each trial of the sweep runs {nums['sweep_steps']}")
for lr, steps, status in zip(nums["lrs"], nums["steps_to_fit"], nums["statuses"]):
    when = f"at step {steps}" if steps is not None else f"not within {nums['sweep_steps']} steps"
    print(f"  lr {lr:8.2g}: {status:10}  training error 0 {when}")
save(fit, "fit")
CANDIDATE = nums["candidate_max_train_steps"]
reached = [s for s in nums["steps_to_fit"] if s is not None]
assert CANDIDATE is not None and CANDIDATE == min(reached)
assert nums["sweep_steps"] == nums["probe_steps"][-1] and CANDIDATE <= nums["sweep_steps"]
assert nums["fastest_lr"] == nums["lrs"][nums["steps_to_fit"].index(CANDIDATE)]
assert not nums["at_upper_edge"] and not nums["at_lower_edge"]
assert nums["steps_to_fit"][-1] is None          # the largest rate never fits
assert all(c["schedule"] == "constant" and c["dropout"] == 0.0
           for c in (t.config for t in fit.trials))
assert len(train.get_workload("mnist1d_mlp").train.y) == 3_500

# %% [markdown]
# The MLP fits its 3,500 training examples exactly, and the fastest learning
# rate is inside the grid, not at an edge: the candidate is the fewest steps
# any learning rate needed. Notice that the fastest learning rate is not the
# largest one: at a *constant* rate the largest one keeps bouncing around
# and never reaches zero training error within the sweep, while too small a
# rate is simply slow. "Fastest" is an empirical question, which is why the
# playbook sweeps. (In the training-error plot an error of exactly 0 is
# drawn on the dotted floor line, since a log axis has no 0.)
#
# ### The negative control: a model that cannot fit
# The procedure rests on an assumption, so a careful implementation checks
# it. Logistic regression (`mnist1d_logreg`) is linear in the 40 input
# values, and MNIST-1D is built so that no linear model separates it: the
# doubling stops at its cap with the training error far from 0, and the
# decision says the procedure does not apply. (Its plot's dotted floor line
# again stands for 0: the curve stays far above it.)

# %%
control = procedures.initial_max_train_steps("mnist1d_logreg", quick=True, workers=0,
                                             workspace=WORKSPACE)
print("decision:", control.decision)
save(control, "logreg")
assert control.decision.startswith("cannot perfectly fit the training set")
assert control.numbers["probe_steps"][-1] == control.numbers["cap"]
assert control.numbers["final_train_error"] > 0.3

# %% [markdown]
# ### Self-deception with a bad grid
# "**NOTE:** Bad search spaces can make it possible to engage in
# self-deception. For example, if all the learning rates in a study are too
# small, we might incorrectly conclude that a very large value of
# `max_train_steps` is necessary. At a minimum, we should check that the
# optimal learning rate in the study is not at the boundary of the search
# space." The same sweep over two small learning rates, 10⁻³ and 2·10⁻³,
# for 2,500 steps:

# %%
small = procedures.initial_max_train_steps("mnist1d_mlp", lrs=(1e-3, 2e-3), n_steps=2_500,
                                           workers=0, workspace=WORKSPACE)
print("decision:", small.decision)
print(f"candidate from the small grid: {small.numbers['candidate_max_train_steps']} steps, "
      f"from the good grid: {CANDIDATE} "
      f"({small.numbers['candidate_max_train_steps'] / CANDIDATE:.1f}×)")
assert small.numbers["candidate_max_train_steps"] > 1.5 * CANDIDATE
assert small.numbers["at_upper_edge"] and "expand the grid upward" in small.decision

# %% [markdown]
# The small grid asks for well over one and a half times as many steps, and
# would have been believed without the boundary check: its fastest learning
# rate is the largest it tried, so the procedure says to expand the grid
# upward before trusting the number.
#
# ## Refining max_train_steps: where do the best checkpoints fall?
# With a candidate in hand, the real studies run with it, a decaying
# schedule and every trial at the same budget; then:
#
# > From these trials, plot the training step that retrospective checkpoint
# > selection finds in order to refine the choice of `max_train_steps`.
# > - For example, if the best step is always during the first 10% of
# >   training, then the maximum number of steps is way too high.
# > - Alternatively, if the best step is consistently in the last 25% of
# >   training we might benefit from training longer and re-tuning the decay
# >   schedule.
#
# `refine_max_train_steps` reads the best step ÷ steps run of every complete
# trial (`analysis.best_step_fractions`), and refplay reads "consistently" as
# at least three quarters of the trials. Two small studies, the same three
# Adam learning rates with a cosine decay: one at a stingy 300 steps, one at
# the candidate.

# %%
COSINE = [{"optimizer": "adam", "lr": lr, "schedule": "cosine"} for lr in (2e-3, 6e-3, 2e-2)]


def budget_study(max_train_steps: int) -> procedures.ProcedureResult:
    settings = train.TrialSettings(
        max_train_steps=max_train_steps, eval_every=max(10, max_train_steps // 40), keep_best=0)
    results = procedures.run_configs(f"budget_{max_train_steps}", "mnist1d_mlp", COSINE,
                                     settings, workers=0, workspace=WORKSPACE)
    refined = procedures.refine_max_train_steps(results)
    print(f"max_train_steps {max_train_steps}: best steps "
          f"{[r.best_step for r in results]}, validation error "
          f"{[round(r.best_metrics['validation/error_rate'], 3) for r in results]}")
    print("  decision:", refined.decision)
    return refined


stingy = budget_study(300)
save(stingy, "budget_300")
at_candidate = budget_study(CANDIDATE)
save(at_candidate, f"budget_{CANDIDATE}")
assert stingy.numbers["decision_code"] == "train_longer"
assert stingy.numbers["fraction_in_last_25pct"] == 1.0
assert at_candidate.numbers["decision_code"] == "ok"
assert at_candidate.numbers["fraction_in_last_25pct"] < 0.75

# %% [markdown]
# At 300 steps the best checkpoint of every trial is in the last quarter of
# the run: the trials were still improving when the budget ran out. At the
# candidate the best checkpoints sit inside the run, and the decision is to
# keep it. The remaining branch, "way too high",
# shows up when a budget is many times what the trials need.
#
# "When in doubt, err on the side of training longer. Performance should
# never degrade when training longer, assuming retrospective (optimal)
# checkpoint selection is used properly and checkpoints are frequent
# enough." Refplay keeps the best checkpoint of every trial (Tutorial 4),
# which is what makes that promise hold.
#
# ## Compute-bound: two rounds
# When "training loss keeps improving indefinitely", the budget is set by our
# patience, and the playbook recommends tuning in rounds:
#
# > - Round 1: Shorter runs to find good model and optimizer hyperparameters.
# > - Round 2: Very few long runs on good hyperparameter points to get the
# >   final model.
#
# "The biggest question going from `Round i` → `Round i+1` is how to adjust
# learning rate decay schedules." For Round 2 the playbook offers a
# suggestion that it marks as its own speculation:
#
# > **(Speculation)** 🤖 Use the extra steps to extend the period of training
# > at a high learning rate.
# > - E.g. if linear schedule then keep the length of the decay fixed from
# >   Round 1 and extend the period of constant lr in the beginning.
# > - For cosine decay, just keep the base lr from Round 1 and extend
# >   `max_train_steps`.
#
# `schedules.extend_linear` and `schedules.extend_cosine` are those two
# sentences as code:

# %%
N1, N2 = 300, 1_500
round1_linear = schedules.linear_decay(0.01, N1)
round2_linear = schedules.extend_linear(round1_linear, N2)
round2_cosine = schedules.extend_cosine(schedules.cosine_decay(0.01, N1), N2)
print(f"Round 1: linear decay over {round1_linear.decay_steps} steps; Round 2 ({N2} steps): "
      f"{round2_linear.constant_steps} constant steps, then the same "
      f"{round2_linear.decay_steps}-step decay")
print(f"Round 2, cosine: the same base rate {round2_cosine.base_lr}, decaying over "
      f"{round2_cosine.decay_steps} steps")
assert (round2_linear.constant_steps, round2_linear.decay_steps) == (N2 - N1, N1)
assert round2_linear(N2 - 1) == round1_linear(N1 - 1)       # the same final rate
assert round2_cosine.base_lr == 0.01 and round2_cosine.decay_steps == N2

# %% [markdown]
# `two_rounds` runs the whole thing: Round 1 is a quasi-random search over
# Adam's learning rate with a linear decay over the short budget; Round 2
# reruns the top 3 for the long budget with `extend_linear`, and, because the
# suggestion is speculation, also a **control**: the same configurations with
# the linear decay simply stretched over the long budget. (Quick size:
# `mnist1d_mlp`, 6 configurations, 300 → 1,500 steps; full size: the
# MNIST-1D CNN, 16 configurations, 500 → 4,000 steps.)

# %%
rounds = procedures.two_rounds(extension="linear", **RUN)
r = rounds.numbers
print("decision:", rounds.decision)
print(f"{'lr':>8}  {'Round 1':>8}  {'Round 2':>8}  {'control':>8}   (validation error)")
for config, e1, e2, ec in zip(r["top_configs"], r["round1_objectives"], r["round2_objectives"],
                              r["control_objectives"]):
    print(f"{config['lr']:8.3g}  {e1:8.3f}  {e2:8.3f}  {ec:8.3f}")
save(rounds, "rounds")
assert all(e2 < e1 for e1, e2 in zip(r["round1_objectives"], r["round2_objectives"]))
assert r["best_transfers"] == (min(r["round2_objectives"]) == r["round2_objectives"][0])
assert math.isclose(r["extension_gain_over_control"],
                    sum(c - e for c, e in zip(r["control_objectives"], r["round2_objectives"]))
                    / len(r["control_objectives"]))

# %% [markdown]
# Every one of the top configurations does better with the longer budget:
# this workload is compute-bound at these lengths, where "speeding up
# training is equivalent to improving training". Whether Round 1's *order*
# survives is printed above, and three configurations make the rank
# correlation coarse: the playbook warns that "there is no guarantee that
# good hyperparameters found in short, incomplete training are still good
# choices when training length is significantly increased", and that
# whatever Round 1 concludes should be double-checked "as needed". The
# extension-versus-control gap is a measurement of the speculation on one
# small workload, not a verdict on it.
#
# ## The schedule pitfall, exactly
# "One common pitfall when adjusting learning rate schedules between rounds
# is using all the extra training steps with too small of a learning rate."
# The playbook's example: "Tuning sqrt decay on small # of training steps
# then extending to large # will result in the majority of training
# occurring at overly small steps." For the decay
# η_s = η·√(k / (s + k)) (`schedules.rsqrt`), tuned for N₁ steps and simply
# run for N₂, every step s ≥ N₁ has a smaller rate than Round 1's last
# one, so the fraction of Round 2 below it is (N₂ − N₁)/N₂ = 1 − N₁/N₂:

# %%
for n1, n2 in ((N1, N2), (1_000, 10_000), (500, 4_000)):
    frac = procedures.rsqrt_pitfall(n1, n2)
    print(f"rsqrt tuned for {n1:>5} steps, run for {n2:>6}: {frac:.1%} of the steps "
          f"below Round 1's final rate (1 - N1/N2 = {1 - n1 / n2:.1%})")
    assert math.isclose(frac, 1 - n1 / n2, rel_tol=0, abs_tol=1e-12)
assert math.isclose(procedures.rsqrt_pitfall(1_000, 10_000), 0.9, abs_tol=1e-12)
assert math.isclose(rounds.numbers["rsqrt_pitfall_fraction"],
                    1 - r["round1_steps"] / r["round2_steps"], abs_tol=1e-12)

linear_frac = procedures.schedule_pitfall(round1_linear, N1, round2_linear, N2)
cosine_frac = procedures.schedule_pitfall(schedules.cosine_decay(0.01, N1), N1, round2_cosine, N2)
print(f"the playbook's Round-2 extensions, {N1} -> {N2} steps: linear {linear_frac:.1%}, "
      f"cosine {cosine_frac:.1%} of the steps below Round 1's final rate")
assert linear_frac == 0.0 and cosine_frac < 0.01

# %% [markdown]
# Ten times the steps, and 90 % of them at a rate below anything Round 1
# ever used: that is what "the schedule is unlikely to transfer" means. The
# playbook's extensions avoid it by construction: the linear extension
# spends no step below Round 1's final rate (its last step has exactly that
# rate), the stretched cosine less than one percent.
#
# ## Summary
# * Not compute-bound: start `max_train_steps` at the steps the fastest
#   trial of a constant-rate, unregularized learning-rate sweep needs to fit
#   the training set; check the fastest rate is not at the grid's edge, and
#   that the model can fit at all.
# * Then refine it from where retrospective selection puts the best steps:
#   all in the first 10 % → too long; consistently in the last 25 % → longer,
#   and re-tune the decay.
# * Compute-bound: short Round 1, few long Round 2 runs, and keep the extra
#   steps at a high learning rate. Never stretch a schedule that decays with
#   the step count alone, like rsqrt.
#
# Tutorial 8 is about the other half of the budget, the batch size, and
# the way it changes the steps a result needs.
