# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 7 — Extracting insight from experimental results
#
# The playbook ("Extracting insight from experimental results"): "Before
# analyzing the results of a set of experiments, we should remember the
# original goal", and then go through a checklist before trusting the
# answer:
#
# > - Is the search space large enough?
# > - Have we sampled enough points from the search space?
# > - What fraction of the trials in each study are infeasible?
# > - Does the model exhibit optimization issues?
# > - What can we learn from the training curves of the best trials?
#
# This tutorial runs one study, "does weight decay help the MNIST-1D MLP?",
# and answers each question with `refplay.analysis` (the numbers) and
# `refplay.plots` (the figures drawn from those numbers): axis plots and the
# boundary check, the isolation plot (the playbook's Figure 2), the
# best-of-N distribution (Figure 3), the training curves of the best trials
# and what they say, and the study report that puts it all on one page.
#
# Run it as a script (`python tutorials/07_extracting_insight.py`; it writes
# a workspace, five plots and a report under `runs/07_extracting_insight/`),
# or open it as a notebook with jupytext. `REFPLAY_TUTORIAL_QUICK=1` runs
# fewer and shorter trials (the test suite's size).

# %%
import dataclasses
import math
import os
import shutil

import numpy as np

from refplay import analysis, io, plots, report, search, study
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

QUICK = os.environ.get("REFPLAY_TUTORIAL_QUICK") == "1"
NUM_TRIALS = 20 if QUICK else 40          # 5 (10) learning rates per weight decay value
PER_VALUE = NUM_TRIALS // 4               # trials per weight decay value
MAX_TRAIN_STEPS = 300 if QUICK else 500
OUT = io.output_dir("07_extracting_insight")
WORKSPACE = OUT / "workspace"
shutil.rmtree(WORKSPACE, ignore_errors=True)


def save(fig, name: str) -> None:
    fig.savefig(OUT / f"{name}.png", dpi=100)
    print("wrote", OUT / f"{name}.png")


# %% [markdown]
# ## The study
# The goal: **does L2 weight decay lower the validation error of the
# MNIST-1D MLP trained for a fixed number of steps with Adam?** The weight
# decay strength λ ∈ {0, 10⁻³, 10⁻², 10⁻¹} is scientific (λ = 0 is the
# baseline); the learning rate is nuisance, searched on a log scale over
# [10⁻³, 0.3]; the rest is fixed.

# %%
WEIGHT_DECAYS = [0.0, 1e-3, 1e-2, 1e-1]
spec = study.StudySpec(
    name="weight_decay",
    workload="mnist1d_mlp",
    search_space=search.SearchSpace({
        "weight_decay": search.Discrete(WEIGHT_DECAYS, role="scientific"),
        "lr": search.Float(1e-3, 0.3, scale="log"),
        "optimizer": search.Fixed("adam"),
        "batch_size": search.Fixed(100),
        "schedule": search.Fixed("cosine"),
    }),
    num_trials=NUM_TRIALS, max_train_steps=MAX_TRAIN_STEPS, eval_every=25,
    metric="validation/error_rate", mode="min",
    description="L2 weight decay in {0, 1e-3, 1e-2, 1e-1}, Adam lr tuned in [1e-3, 0.3]",
    goal="Does weight decay lower the validation error?")
study.run(spec, store=WORKSPACE, workers=0, progress=False)
with study.Store(WORKSPACE, readonly=True) as store:
    frame = analysis.load(store, spec.name)
print(f"{len(frame)} trials: {frame.statuses().count('complete')} complete; "
      f"{frame.n_validation} validation examples")
assert len(frame) == NUM_TRIALS and frame.n_validation == 500

# %% [markdown]
# ## Is the search space large enough? The basic hyperparameter axis plot
# "We plot the validation objective value versus one of the hyperparameters
# [...] Each point on the plot corresponds to a single trial", at its best
# checkpoint. "A search space is suspicious if the best point sampled from it
# is close to its boundary." `analysis.boundary_check` reads each
# scientific value's best trial's position in the range (0 = lower edge,
# 1 = upper; "close" is the outer fifth) and counts `n_good`, the trials
# within two standard errors of the best: the playbook's "sense of how many
# points are in the 'good' region".

# %%
save(plots.axis_plot(frame, "lr", by="scientific"), "axis_plot")
checks = analysis.boundary_check(frame, "lr").checks
for (wd,), c in checks.items():
    print(f"λ={wd:g}: {c.message}; n_good={c.n_good} [decision: {c.decision}]")
assert all(c.decision == "ok" for c in checks.values())
assert all(c.n_good >= 1 for c in checks.values())

# %% [markdown]
# No best trial is at an edge: the learning-rate range brackets the good
# region for every λ. And the infeasible fraction, "What fraction of the
# trials in each study are infeasible?", is small (a warning would be
# raised above one half):

# %%
counts = analysis.infeasible_fraction(frame)
for (wd,), c in counts.items():
    print(f"λ={wd:g}: {c.n_infeasible} infeasible, {c.n_failed} failed of {c.n_trials}")
assert not any(c.warning for c in counts.values())

# %% [markdown]
# ## The answer: an isolation plot
# "An isolation plot [...] plots the model performance after 'optimizing
# away' the nuisance hyperparameters": each point is the *best* trial of one
# λ over the learning rates tried, with its binomial standard error
# √(p(1−p)/n) as the error bar, and the λ = 0 baseline drawn as a line
# ("For a fair comparison, the baseline should also have its learning rate
# equally well tuned").

# %%
iso = analysis.isolation(frame, "weight_decay", baseline=0.0)
# The λ values are spaced by factors of 10 and λ = 0 is drawn as a line, so a log axis fits.
save(plots.isolation_plot(dataclasses.replace(iso, scale="log"),
                          baseline_label="no weight decay (λ = 0)",
                          title="Does weight decay help? Best trial per λ, lr tuned"),
     "isolation_plot")
base = iso.baseline
print(f"baseline λ=0: {base.objective:.3f} ± {base.se:.3f} (best of {base.n_trials})")
verdict = {}
for row in iso.rows:
    c = analysis.compare(row.objective, row.se, base.objective, base.se)
    verdict[row.x] = c
    print(f"λ={row.x:g}: {row.objective:.3f} ± {row.se:.3f}, {c.difference:+.3f} vs the "
          f"baseline ({'more' if c.significant else 'less'} than 2 SE)")

# %% [markdown]
# Weight decay does not help here: the smallest λ = 10⁻³ is within noise of
# no weight decay at all, and the strongest, λ = 0.1, is worse than the
# baseline by more than two standard errors. In this short budget the
# network does not overfit (see the training curves below), so there is nothing for
# the regularizer to fix.

# %%
assert not verdict[1e-3].significant
assert verdict[0.1].significant and verdict[0.1].difference > 0
assert not any(c.significant and c.difference < 0 for c in verdict.values())   # no λ helps

# %% [markdown]
# ## Have we sampled enough points? Best of N
# "It's hard to know" how many trials are enough, but one can look at how
# much the best of N trials varies. `analysis.best_of_n` computes the
# distribution of the best of N trials drawn (with replacement) from this
# study's trials, exactly from order statistics, plus a seeded bootstrap;
# `plots.best_of_n_plot` draws it as the playbook's Figure 3 box plots. The
# spread shrinks as N grows; if it is still wide at the budget each
# scientific value got, another study with more trials is the remedy.

# %%
budgets = sorted({1, 2, PER_VALUE, 10, 20})
bon = analysis.best_of_n(frame.objectives(), budgets=budgets, seed=0)
save(plots.best_of_n_plot(bon, title="How much does the best of N trials vary?"), "best_of_n")
for q in bon.exact:
    print(f"N={q.n:2d}: median {q.median:.3f}, interquartile range {q.iqr:.3f}")
iqr = {q.n: q.iqr for q in bon.exact}
assert iqr[20] < iqr[2] < iqr[1] and iqr[PER_VALUE] < iqr[1]
assert all(q.min == np.nanmin(frame.objectives()) for q in bon.exact)   # the constant best

# %% [markdown]
# A rough yardstick: each λ got only a handful of learning rates (5 at the
# quick size, 10 at the full one), and luck alone moves the best of that
# many trials by about the interquartile range above.
# The gap between λ = 0 and λ = 10⁻³ is smaller than that range, so this
# study cannot separate them (more trials would be needed to say more). The
# gap of λ = 0.1 is far larger than that range:

# %%
gap_small = abs(verdict[1e-3].difference)
gap_large = verdict[0.1].difference
print(f"IQR of the best of {PER_VALUE}: {iqr[PER_VALUE]:.3f}; gaps: λ=1e-3 {gap_small:.3f}, "
      f"λ=0.1 {gap_large:.3f}")
assert gap_small < iqr[PER_VALUE] < gap_large

# %% [markdown]
# ## What the training curves of the best trials say
# "For every study, we always look at the training curves [...] of at least
# the best few trials." `plots.training_curves` draws the validation error
# (solid) and the training loss (dashed) of the top 3 trials of each λ;
# `analysis.curve_diagnostics` turns the playbook's questions into flags:
# overfitting ("the validation error starts increasing"), high late
# variance, still improving at the end ("compute bound"), saturated early,
# a training loss that increases (a bug), and loss spikes.

# %%
save(plots.training_curves(frame, top_k=3, title="Top 3 trials per λ: do they overfit?"),
     "training_curves")
best = analysis.best(frame)
raised = {}
for (wd,), b in best.items():
    diag = analysis.curve_diagnostics(frame.result(b.trial), frame.metric,
                                      n_validation=frame.n_validation,
                                      max_train_steps=frame.max_train_steps)
    raised[wd] = [f.name for f in diag.raised]
    print(f"λ={wd:g}, trial {b.trial}: flags raised {raised[wd] or 'none'}")
    print(f"    {diag['overfitting'].message}")
assert not any("train_loss_increasing" in r for r in raised.values())
assert not any("overfitting" in raised[wd] for wd in (0.0, 1e-3))

# %% [markdown]
# The contenders, λ = 0 and λ = 10⁻³, do not overfit, and no training loss
# goes up. (A flag on the λ = 0.1 trial, if raised, is about a model that
# never trained well; it does not change the answer.) Where in
# training did each trial reach its best checkpoint? The playbook: "If the
# best checkpoints are always close to the end of training [...] we should
# increase max_train_steps"; if they are all in the first 10 %, it is "way
# too high". `analysis.best_step_fractions` reads that from every complete
# trial:

# %%
bsf = analysis.best_step_fractions(frame)
save(plots.best_step_histogram(bsf, title="Where in training is each trial's best checkpoint?"),
     "best_step_histogram")
print(f"{bsf.message} [decision: {bsf.decision}]")
median = float(np.median(bsf.fractions))
assert bsf.decision != "max_train_steps_too_high" and median > 0.5

# %% [markdown]
# Most best checkpoints fall in the second half of training (the median is
# past half-way), as one expects with a cosine decay to zero: the last steps,
# at small learning rates, are the best ones. Tutorial 9 is about what to
# do when they pile up at the very end.
#
# ## The study report: the whole checklist on one page
# `report.write_report` (or `refplay study report weight_decay`) writes the
# answer, the checklist and the plots above to `report.md` and a
# self-contained `report.html`. Its numbers are the analysis's numbers:

# %%
with study.Store(WORKSPACE, readonly=True) as store:
    written = report.write_report(store, spec.name, OUT / "report")
print("wrote", written.html)
print(written.numbers["answer"])
assert {label: r["best"] for label, r in written.numbers["best"].items()} == {
    frame.label(v): b for v, b in best.items()}
assert written.numbers["counts"]["complete"] == frame.statuses().count("complete")
assert math.isclose(min(b.objective for b in best.values()), np.nanmin(frame.objectives()))
