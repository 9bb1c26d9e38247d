# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 11 — Deciding whether to adopt a change
#
# The playbook ("Determining whether to adopt a training pipeline change or
# hyperparameter configuration"):
#
# > When we are trying to improve our model, we might observe that a
# > particular candidate change initially achieves a better validation error
# > compared to our incumbent configuration, but find that after repeating the
# > experiment there is no consistent advantage.
#
# It names three sources of that inconsistency, and this tutorial measures
# each one on the MNIST-1D MLP with `refplay.procedures`:
#
# * **trial variance** (`retrain_variance`): the same configuration, other
#   random seeds, one seed stream at a time;
# * **data sampling variance** (`split_variance`): another random
#   train/validation split;
# * **study variance** (`study_variance`): the same search with another
#   sampler seed.
#
# Then it makes the decision with `adopt`: a Welch test on retrains of the
# candidate and the baseline, a McNemar test on the paired predictions of two
# trained models, a minimum effect for changes that cost something, and the
# record of the new baseline in the workspace (`Store.set_baseline`, shown by
# `refplay study list`).
#
# Run it as a script (`python tutorials/11_adopting_a_change.py`; it writes a
# workspace and its plots under `runs/11_adopting_a_change/`), or open it as
# a notebook with jupytext. `REFPLAY_TUTORIAL_QUICK=1` runs fewer seeds and
# shorter trials (the test suite's size).

# %%
import contextlib
import io as stdio
import os

import numpy as np

from refplay import io, procedures, study, train, tutorials
from refplay.cli import main as refplay_main
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

QUICK = os.environ.get("REFPLAY_TUTORIAL_QUICK") == "1"
# quick=True is the procedures' own small size: mnist1d_mlp, 4 seeds, 600 steps.
SIZE = dict(quick=True) if QUICK else dict(workload="mnist1d_mlp", n_seeds=8,
                                            max_train_steps=1_000)
OUT = io.output_dir("11_adopting_a_change")
# A fresh workspace on every run (or the one REFPLAY_TUTORIAL_WORKSPACE names, whose
# finished studies are read, not trained again).
WORKSPACE = tutorials.workspace(OUT)
RUN = dict(workers=0, workspace=WORKSPACE)
METRIC = "validation/error_rate"


def save(result: procedures.ProcedureResult) -> None:
    for name, fig in result.figures.items():
        path = OUT / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        print("wrote", path)


# %% [markdown]
# ## Trial variance, one seed stream at a time
# "**Training procedure variance**, **retrain variance**, or **trial
# variance**: the variation we see between training runs that use the same
# hyperparameters, but different random seeds. For example, different random
# initializations, training data shuffles, dropout masks, [...]"
#
# A refplay trial draws its randomness from separate streams (Tutorial 4):
# the initialization, the order of the training batches, and dropout. The
# baseline here is Adam at the learning rate 10⁻³. `retrain_variance` trains
# it with N trial seeds (every stream moves: "all"), then varies only the
# initialization seed, then only the data-order seed (the model has no
# dropout, so that stream is left out).

# %%
rv = procedures.retrain_variance(**SIZE, **RUN)
n_seeds, n_val = rv.numbers["n_seeds"], rv.numbers["n_validation"]
print(f"baseline {rv.numbers['config']}, {rv.numbers['max_train_steps']} steps, "
      f"{n_seeds} seeds per stream, validation error on {n_val} examples:")
for source in ("all", "init", "data"):
    s = rv.numbers[source]
    print(f"  {source:>4}: mean {s['mean']:.4f}, std {s['std']:.4f}")
print("decision:", rv.decision)
save(rv)
baseline_runs = rv.trials[:n_seeds]                # the "all" retrains come first
baseline_errors = np.array([r.best_metrics[METRIC] for r in baseline_runs])
assert np.isclose(baseline_errors.std(ddof=1), rv.numbers["all"]["std"])
assert all(0.1 < rv.numbers[s]["std"] / rv.numbers["all"]["std"] < 10 for s in ("init", "data"))
assert len({r.seed for r in baseline_runs}) == n_seeds

# %% [markdown]
# Each stream alone moves the result, by an amount of the same order as all
# of them together. With this few seeds the standard deviations themselves
# are rough (the relative error of a sample std from N values is about
# 1/√(2(N − 1)), over 40 % for N = 4), so the ordering of the streams is not
# a finding; that none of them is zero is.
#
# ### Can trial variance alone look "significant"?
# "[...] often the trial variance alone can produce statistically
# significant differences between two different trained models that use the
# same hyperparameter settings." The textbook test for two error rates on a
# validation set of n examples treats them as independent binomial
# proportions, with a standard error of √(p(1 − p)/n) each.
# `retrain_variance` applies it (α = 0.05) to every pair of same-config
# retrains, and also the paired McNemar test on their predictions of the
# same validation examples:

# %%
n_pairs = rv.numbers["n_pairs"]
unpaired, paired = (rv.numbers["unpaired_significant_fraction"],
                    rv.numbers["paired_significant_fraction"])
print(f"binomial SE of one error rate on {n_val} examples: "
      f"{rv.numbers['binomial_se_at_mean']:.4f}; retrain std: {rv.numbers['all']['std']:.4f}")
print(f"same-config pairs called 'significant': unpaired {unpaired:.0%}, "
      f"paired (McNemar) {paired:.0%}, of {n_pairs} pairs")
assert n_pairs == n_seeds * (n_seeds - 1) // 2
assert 0.0 <= unpaired <= 1.0 and 0.0 <= paired <= 1.0
if paired > 0:
    print(f"{paired:.0%} of the pairs of *identical configurations* are 'significantly "
          f"different' by the paired test: trial variance alone")
assert rv.numbers["binomial_se_at_mean"] > rv.numbers["all"]["std"]
assert unpaired <= 0.2

# %% [markdown]
# On a 500-example validation set the binomial standard error of one error
# rate is larger than the retrain spread, so the unpaired test rarely fires
# between retrains. The playbook's warning is about ImageNet's 50,000
# validation examples, where the binomial error bar shrinks ten times and
# the retrain spread does not. The paired test is sharper, because the many
# examples that both models get right (or both get wrong) carry no
# information about a difference: whenever its fraction above is not 0, two
# models trained with *the same hyperparameters* were called "significantly
# different" — the playbook's warning, on a laptop. (At the full size of this
# tutorial, 8 seeds of 1,000 steps, it calls about one pair in ten
# different.)
#
# The two kinds of number answer different questions. The binomial SE says
# how well 500 examples estimate one trained model's error on the whole
# distribution; the retrain spread says how much the *configuration's*
# result moves when only the seed does. An adoption decision needs the
# second one.
#
# ## Data sampling variance and study variance
# "**Data collection and sampling variance**: the variance from any sort of
# random split into training, validation, and test data", and
# "**Hyperparameter search variance**, or **study variance**: the variation in
# results caused by our procedure to select the hyperparameters." MNIST-1D's
# split is itself random (`split_seed`), and a study can be rerun with
# another sampler seed:

# %%
sv = procedures.split_variance(quick=QUICK, **RUN)
print("split variance:", sv.decision)
save(sv)
qv = procedures.study_variance(quick=QUICK, **RUN)
print("study variance:", qv.decision)
save(qv)
split_errors, study_bests = sv.numbers["objectives"], qv.numbers["best_objectives"]
assert len(set(split_errors)) > 1 and len(set(study_bests)) > 1
assert np.isclose(np.std(study_bests, ddof=1), qv.numbers["study_std"])

# %% [markdown]
# Both move the result too. "We are most concerned about study variance when
# trying to make conclusions that go beyond the level of an individual point
# in hyperparameters space", and "the study variance depends on the number of
# trials and the search space". With a handful of trials a study is mostly luck
# (Tutorial 7's best-of-N plot shows how that shrinks with more trials).
#
# ## The decision: retrain both, then compare
# "Therefore, before adopting a candidate change, consider running the best
# trial N times to characterize the run-to-run trial variance." And:
#
# > if a new hyperparameter point (or other change) gets a better result than
# > the baseline (taking into account the retrain variance of both the new
# > point and the baseline as best we can), then we probably should adopt it
# > as the new baseline for future comparisons.
#
# The candidate: Adam's learning rate raised from 10⁻³ to 4·10⁻³ (Tutorial 6
# found 10⁻³ too small for this model). It runs with the same N seeds and
# settings as the baseline's retrains; so does a "placebo", the baseline's
# own configuration with N *other* seeds. `adopt(candidate, baseline)` takes
# the objectives of the retrains (lower is better), computes the improvement
# d = mean(baseline) − mean(candidate), its Welch standard error
# √(s_c²/n_c + s_b²/n_b) and 95 % interval d ± t·SE, and adopts only when the
# whole interval is above 0.

# %%
SETTINGS = train.TrialSettings(max_train_steps=rv.numbers["max_train_steps"], eval_every=100,
                               keep_best=0, keep_predictions=True)
BASE_CONFIG = rv.numbers["config"]
CANDIDATE_CONFIG = {**BASE_CONFIG, "lr": 4e-3}


def retrains(name: str, config: dict, seed: int) -> tuple[study.StudySpec, list]:
    """``n_seeds`` retrains of ``config`` as one study (trial seeds from the study ``seed``)."""
    spec = procedures.explicit_spec(name, rv.numbers["workload"], [config], SETTINGS,
                                    repeats=n_seeds, seed=seed)
    return spec, procedures.run_spec(spec, **RUN)


candidate_spec, candidate_runs = retrains("candidate_lr4e-3", CANDIDATE_CONFIG, seed=0)
_, placebo_runs = retrains("placebo_same_config", BASE_CONFIG, seed=1)
candidate_errors = np.array([r.best_metrics[METRIC] for r in candidate_runs])
placebo_errors = np.array([r.best_metrics[METRIC] for r in placebo_runs])
print("baseline :", np.round(baseline_errors, 3))
print("candidate:", np.round(candidate_errors, 3))
print("placebo  :", np.round(placebo_errors, 3))
welch = procedures.adopt(candidate_errors, baseline_errors)
placebo = procedures.adopt(placebo_errors, baseline_errors)
print("candidate vs baseline:", welch.message)
print("placebo   vs baseline:", placebo.message)
assert {r.seed for r in placebo_runs}.isdisjoint({r.seed for r in baseline_runs})
assert np.isclose(welch.effect, baseline_errors.mean() - candidate_errors.mean())
assert welch.decision == "adopt" and welch.ci_low > 0
assert placebo.decision == "insufficient evidence" and placebo.ci_low <= 0 <= placebo.ci_high

# %% [markdown]
# The learning-rate change is adopted: its whole 95 % interval is an
# improvement. The placebo, the same configuration under other seeds, is not:
# its interval straddles zero, as it should, because there is nothing to find.
#
# ### The paired test: one model against another
# A classifier's two trained models can also be compared example by
# example. With `keep_predictions=True` a trial records its predicted class
# for every validation example at its best checkpoint
# (`TrialResult.predictions`). McNemar's test looks only at the examples on
# which the two models disagree: n₀₁ that the candidate gets right and the
# baseline wrong, n₁₀ the reverse; d = (n₀₁ − n₁₀)/n, its standard error
# √(n₀₁ + n₁₀ − (n₀₁ − n₁₀)²/n)/n, and the exact p-value is the binomial
# probability of a split at least that lopsided when each disagreement is a
# fair coin. Here it is on the first candidate model against the first
# baseline model:

# %%
y = train.get_workload(rv.numbers["workload"]).validation.y
correct_candidate = candidate_runs[0].predictions == y
correct_baseline = baseline_runs[0].predictions == y
n01 = int(np.sum(correct_candidate & ~correct_baseline))
n10 = int(np.sum(~correct_candidate & correct_baseline))
mcnemar = procedures.adopt(correct_candidate, correct_baseline, test="mcnemar")
print(f"one candidate model vs one baseline model: {n01} examples only the candidate gets "
      f"right, {n10} only the baseline ({(n01 + n10) / len(y):.0%} of {len(y)} disagree)")
print("  ", mcnemar.message)
print(f"width of the 95 % interval: McNemar (one pair) {mcnemar.ci_high - mcnemar.ci_low:.3f}, "
      f"Welch ({n_seeds} retrains each) {welch.ci_high - welch.ci_low:.3f}")
assert mcnemar.effect == (n01 - n10) / len(y)
assert np.isclose(mcnemar.effect, baseline_errors[0] - candidate_errors[0])
assert (n01 + n10) / len(y) > 0.1
assert mcnemar.ci_high - mcnemar.ci_low > welch.ci_high - welch.ci_low

# %% [markdown]
# Two models with error rates near 45 % disagree on more than a tenth of
# the validation examples, and to McNemar each disagreement is a coin flip,
# so its interval for this one pair is wider than Welch's interval from the
# retrains. The two tests answer different questions:
#
# * McNemar: is *this trained model* better than *that one* on the
#   distribution the 500 validation examples were drawn from? Its error bar
#   is the finite validation set; it knows nothing about the next seed.
# * Welch on retrains: does *this configuration* beat *that one* when only
#   the seed changes, on *this* validation set? Its error bar is the trial
#   variance; the validation set is held fixed, so its conclusion is
#   conditional on those 500 examples.
#
# The playbook's decision is about configurations ("taking into account the
# retrain variance of both the new point and the baseline"), so retrains
# come first; a validation set this small is a reason to also look at the
# paired test, and to be modest about small effects.
#
# ### Is the improvement worth its cost?
# "However, we should only adopt changes that produce improvements that
# outweigh any complexity they add." The playbook leaves the threshold to us;
# `adopt(..., min_effect=...)` takes it. The learning rate costs nothing, so
# its threshold is 0. A change that, say, doubled the cost of every step
# might be worth it only for a gain of several points of error rate:

# %%
costly = procedures.adopt(candidate_errors, baseline_errors, min_effect=2 * welch.effect)
print(f"with min_effect = {2 * welch.effect:.3f}:", costly.message)
assert costly.decision == "insufficient evidence" and costly.ci_low > 0

# %% [markdown]
# The evidence is the same and the interval is still above zero; only the
# bar moved. Demanding a gain twice as large as the one measured, the
# decision is not to adopt. "Demanding complete certainty that something
# helps isn't the right answer either": the bar is a judgement about cost,
# not about statistics.
#
# ## Recording the new baseline
# "[...] then we probably should adopt it as the new baseline for future
# comparisons." A workspace keeps its history of baselines:
# `Store.set_baseline(study, trial, note=...)` (or `refplay study baseline
# NAME TRIAL --note ...`) records the candidate's best retrain with the
# evidence as its note, and `refplay study list` shows the current one under
# the tracking table (every procedure above ran its trials as studies of this
# workspace; the notes and reproduction commands of each are cut here).

# %%
best_trial = int(np.argmin(candidate_errors))
with study.Store(WORKSPACE) as store:
    row = store.set_baseline(candidate_spec.name, best_trial, note=welch.message)
print(f"baseline recorded: study {row.study}, trial {row.trial}, {row.metric} "
      f"{row.objective:.3f}")
assert (row.study, row.trial) == (candidate_spec.name, best_trial)
assert row.objective == candidate_errors[best_trial]

with contextlib.redirect_stdout(stdio.StringIO()) as out:
    code = refplay_main(["study", "list", "--workspace", str(WORKSPACE)])
listing = out.getvalue()
table = listing.split("\n\n")[0]                    # the table, before each study's notes
baseline_text = " ".join(listing[listing.index("\nbaseline: "):].split())
print(table + "\n...\n" + listing[listing.index("\nbaseline: ") + 1:])
studies_listed = [line.split()[0] for line in table.splitlines()[1:]]
assert code == 0 and candidate_spec.name in studies_listed
assert baseline_text.startswith(f"baseline: study {candidate_spec.name}, trial {best_trial}")
assert "adopt: the candidate improves" in baseline_text

# %% [markdown]
# ## Summary
# * Trial variance is real at every seed stream; measure it by retraining
#   the same configuration N times.
# * On a small validation set the binomial error bar of one model is larger
#   than the retrain spread, so unpaired tests between retrains rarely fire;
#   on a large one they can, which is the playbook's warning.
# * Adopt a change when the interval of its improvement, from retrains of
#   both the candidate and the baseline (`adopt`, Welch), is above zero and
#   the effect outweighs its cost (`min_effect`). A same-config placebo
#   shows the test does not adopt noise.
# * McNemar's paired test compares two trained models on the same
#   examples: its error bar is the finite validation set, and it does not
#   see trial variance.
# * Record the adopted configuration as the workspace's baseline: the
#   configuration to beat in the next round.
