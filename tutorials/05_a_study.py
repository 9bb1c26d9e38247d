# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 5 — A study, from spec to spreadsheet
#
# The playbook ("Creating a set of studies"): "A study specifies a set of
# hyperparameter configurations to be run for subsequent analysis. Each
# configuration is called a 'trial'." This tutorial runs two small studies
# with `refplay.study` and goes through the playbook's routine after each one:
#
# 1. choose the **scientific**, **nuisance** and **fixed** hyperparameters and
#    write the study down as a `StudySpec`;
# 2. run it with `study.run`, which records every trial in a SQLite store,
#    and keeps the **infeasible** ones (the trials that diverged), each with its
#    reason;
# 3. read the **tracking table** ("Setting up experiment tracking") and the
#    trials table;
# 4. draw a **basic hyperparameter axis plot** and check whether the best trial
#    sits near the edge of the search space ("Identifying bad search space
#    boundaries"). It does, so
# 5. run a second study with a wider range. That one is interrupted on
#    purpose, resumed, and run a third time to show that nothing runs twice;
# 6. export everything to CSV.
#
# Run it as a script (`python tutorials/05_a_study.py`; it writes a workspace
# folder, the two studies' reports, two axis plots and two CSV files under
# `runs/05_a_study/` in the current directory (set `REFPLAY_OUT=DIR` to write
# under `DIR/05_a_study/`), and takes some 10-20 s), or open it as a notebook
# with jupytext.
# `REFPLAY_TUTORIAL_QUICK=1` runs fewer and shorter trials; that is how the
# test suite runs it.

# %%
import contextlib
import csv
import dataclasses
import io
import math
import os
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from refplay import analysis, io as refplay_io, plots, report, search, study
from refplay.cli import main as refplay_main
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

QUICK = os.environ.get("REFPLAY_TUTORIAL_QUICK") == "1"
NUM_TRIALS = 12 if QUICK else 16          # configurations per study
MAX_TRAIN_STEPS = 400 if QUICK else 1000  # fixed for every trial of a study
OUT = refplay_io.output_dir("05_a_study")  # runs/05_a_study/ by default
WORKSPACE = OUT / "study_workspace"       # the SQLite store and one folder per trial
shutil.rmtree(WORKSPACE, ignore_errors=True)   # start from scratch on every run of the script

# %% [markdown]
# ## The question, and the role of each hyperparameter
# The goal of this round is the playbook's own example: "determine which
# optimizer produces the lowest validation error in a given number of steps",
# here Nesterov momentum vs Adam on the MNIST-1D MLP (`mnist1d_mlp`, fast
# enough for a tutorial). So:
#
# * `optimizer` is the **scientific** hyperparameter.
# * The learning rate is a **nuisance** hyperparameter: a comparison is only
#   fair if each optimizer gets its best learning rate. It is a *conditional*
#   hyperparameter, and "the conditional hyperparameter called `learning_rate`
#   is a *different* hyperparameter for `optimizer="Nesterov_momentum"` versus
#   `optimizer="Adam"`", so it has two names, `"nesterov/lr"` and
#   `"adam/lr"`, each with its own range. Both write the config key `"lr"`.
# * Momentum γ, Adam's β₁, the batch size and the schedule are **fixed**.
#   That is affordable but "fixed hyperparameters create caveats for any
#   conclusions we draw": this round's answer holds for γ = β₁ = 0.9 only.
#   (`Fixed(..., when=...)` fixes a conditional hyperparameter.)
#
# The learning-rate ranges are on purpose not well chosen. Adam's spans five
# decades and reaches values that diverge. Nesterov's stops at 0.1, a
# timid first guess. The rest of this tutorial shows how a study finds both
# problems.

# %%
def make_space(nesterov_lr: tuple[float, float]) -> search.SearchSpace:
    return search.SearchSpace({
        "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
        "nesterov/lr": search.Float(*nesterov_lr, scale="log", when={"optimizer": "nesterov"}),
        "adam/lr": search.Float(1e-4, 10.0, scale="log", when={"optimizer": "adam"}),
        "gamma": search.Fixed(0.9, when={"optimizer": "nesterov"}),
        "beta1": search.Fixed(0.9, when={"optimizer": "adam"}),
        "batch_size": search.Fixed(100),
        "schedule": search.Fixed("cosine"),
    })


space1 = make_space(nesterov_lr=(1e-3, 0.1))
print("roles:", space1.roles())
assert space1.scientific() == ("optimizer",)
assert space1.nuisance() == ("nesterov/lr", "adam/lr")
assert set(space1.fixed()) == {"gamma", "beta1", "batch_size", "schedule"}

# %% [markdown]
# ## The study, written down before it runs
# A `StudySpec` holds what the playbook says a study chooses: the search
# space, the number of trials and the search algorithm (`sampler="halton"`,
# quasi-random search, see Tutorial 2), plus the fixed `max_train_steps`, the
# workload, and the metric that decides which trial is best. `description` and
# `goal` are the notes that go into the tracking table. The same spec can be
# a TOML file; see `examples/mnist1d_nesterov_vs_adam.toml`.
#
# **A trial is a pure function of (spec, trial index)**: trial `t` runs
# configuration `t` of the Halton sequence with the seed
# `SeedSequence(spec.seed, spawn_key=(t,))`. It does not depend on which
# trials ran before it, on which machine, or in what order. That is what makes
# resuming and parallel runs exact.

# %%
round1 = study.StudySpec(
    name="nesterov_vs_adam_round1",
    description="MNIST-1D MLP: Nesterov vs Adam, lr tuned per optimizer (Nesterov lr <= 0.1)",
    goal="Which optimizer gives the lower validation error in max_train_steps steps?",
    workload="mnist1d_mlp",
    search_space=space1,
    num_trials=NUM_TRIALS,
    sampler="halton",
    sampler_seed=0,
    seed=0,
    max_train_steps=MAX_TRAIN_STEPS,
    eval_every=100,
    metric="validation/error_rate",
    mode="min",
)
for t in round1.trials()[:3]:
    print(t)
assert round1.budget == NUM_TRIALS
assert round1.trial(3).seed == study.trial_seed(0, 3) == int(
    np.random.SeedSequence(0, spawn_key=(3,)).generate_state(1)[0])
# The scientific hyperparameter alternates (Halton's first coordinate): each
# optimizer gets half of the trials.
assert [t.config["optimizer"] for t in round1.trials()] == ["nesterov", "adam"] * (NUM_TRIALS // 2)

# %% [markdown]
# ## Running it: serially, in this process
# `study.run(spec, store=WORKSPACE, workers=0)` runs the trials one after
# another in this process. With `workers=N` it starts a pool of N worker
# processes, which is what `refplay study run spec.toml --workers 2` does. A
# *script* that starts a process pool has to put that call under
# `if __name__ == "__main__":`, because every worker re-imports the main
# module, and without the guard each worker would start the study again. A
# tutorial (or notebook) runs its code at the top level, so it stays serial,
# which is fine for trials this small (the store records each trial's time).
# `tests/test_study_runner.py` checks that a pool records the same results,
# bit for bit.

# %%
start = time.perf_counter()
status1 = study.run(round1, store=WORKSPACE, workers=0)
seconds1 = time.perf_counter() - start
print(f"{status1.done} trials in {seconds1:.1f} s: {status1.counts}")
with study.Store(WORKSPACE, readonly=True) as store:
    trial_seconds = [t.trial_seconds for t in store.trials(round1.name)]
print(f"seconds per trial: median {np.median(trial_seconds):.2f}, max {max(trial_seconds):.2f}")
assert status1.done == round1.budget and status1.missing == 0
assert status1.counts["failed"] == 0

# %% [markdown]
# ## The tracking table
# The playbook keeps one spreadsheet row per study, with the columns "Study
# name", "A link to wherever the config for the study is stored", "Notes or a
# short description of the study", "Number of trials run", "Performance on the
# validation set of the best checkpoint in the study" and "Specific
# reproduction commands". The store keeps that row up to date as trials finish:

# %%
def tracking_row(store: study.Store, name: str) -> dict:
    """The playbook's spreadsheet columns for study ``name``."""
    row = store.get_study(name)
    best = f"{row.best_value:.3f} (trial {row.best_trial}, step {row.best_step})"
    return {"Study name": row.name,
            "Config": str(store.workspace / row.spec_copy),
            "Notes": row.description,
            "Trials run": f"{row.trials_run}/{row.budget}",
            f"Best {row.metric}": best,
            "Reproduce": row.command}


with study.Store(WORKSPACE, readonly=True) as store:
    for column, value in tracking_row(store, round1.name).items():
        print(f"{column:>29}: {value}")
    row1 = store.get_study(round1.name)
    trials1 = store.trials(round1.name)

complete1 = [t for t in trials1 if t.status == "complete"]
assert row1.trials_run == len(trials1) == round1.budget
# "The best checkpoint in the study": the lowest error over complete trials.
best1 = min(complete1, key=lambda t: (t.objective, t.trial))
assert (row1.best_value, row1.best_trial, row1.best_step) == (
    best1.objective, best1.trial, best1.best_step)
# The config link is a stored copy of the spec; it loads back to the same study.
stored = study.StudySpec.load(WORKSPACE / row1.spec_copy)
assert stored.identity() == round1.identity()
assert row1.command.startswith("refplay study run ") and row1.spec_copy in row1.command

# %% [markdown]
# ## The trials table keeps the infeasible trials
# Every trial gets a row, including those that diverged. `run_trial` ends a
# trial as **infeasible** when its training loss turns NaN or grows past 10×
# its initial value; the playbook: "An 'infeasible' trial is defined as one
# that either produces NaNs or uncharacteristically high values of the loss".
# A diverged trial is a result: it shows where the learning rate is too large,
# and without it a plot would only show trials that worked.
#
# `objective` is the validation error at the trial's best checkpoint (the
# playbook: "the best value it achieved over the course of training"). The
# infeasible trials here diverged within their first 100 steps, so their best
# (and only) checkpoint is the untrained network at step 0. The study's best
# is chosen among complete trials only.

# %%
def print_trials(trials: list) -> None:
    print(f"{'trial':>5}  {'optimizer':9}  {'lr':>9}  {'status':10}  {'error':>6}  "
          f"{'step':>5}  reason")
    for t in sorted(trials, key=lambda t: (t.config["optimizer"], t.config["lr"])):
        print(f"{t.trial:5d}  {t.config['optimizer']:9}  {t.config['lr']:9.3g}  {t.status:10}  "
              f"{t.objective:6.3f}  {t.best_step:5d}  {t.reason[:58]}")


print_trials(trials1)
infeasible1 = [t for t in trials1 if t.status == "infeasible"]
print(f"{len(infeasible1)} infeasible of {len(trials1)}")
assert len(infeasible1) >= 1
for t in infeasible1:
    assert "at step" in t.reason and t.best_step == 0
    assert t.steps_done < round1.eval_every          # diverged before the first evaluation
    assert t.steps_done < round1.max_train_steps    # it stopped when it diverged
assert all(t.reason == "" and t.steps_done == round1.max_train_steps for t in complete1)
# The diverged trials are Adam's largest learning rates.
assert {t.config["optimizer"] for t in infeasible1} == {"adam"}
assert min(t.config["lr"] for t in infeasible1) > max(
    t.config["lr"] for t in complete1 if t.config["optimizer"] == "adam")

# %% [markdown]
# ## A basic hyperparameter axis plot, drawn from the store
# One point per trial: validation error (at its best checkpoint) against
# learning rate, log scale, one colour per optimizer, the playbook's Figure 1
# style. `analysis.load` reads the study into a `TrialsFrame` (one row per
# trial, with each trial's *active* parameters: the `lr` of an Adam trial is
# parameter `"adam/lr"`, with Adam's range). `plots.axis_plot` draws it:
# infeasible trials are red ×s at a cap above the feasible points, the top 3
# trials of each optimizer are stars, and the dotted lines are each
# optimizer's search range.

# %%
def draw_axis_plot(name: str, path: Path) -> tuple[analysis.TrialsFrame, int]:
    """The axis plot of lr by optimizer; returns the frame and the number of trials drawn."""
    with study.Store(WORKSPACE, readonly=True) as store:
        frame = analysis.load(store, name)
    fig = plots.axis_plot(frame, "lr", by="scientific")
    fig.savefig(path, dpi=100)
    # Every trial is one dot or one cross (the stars sit on top of dots).
    drawn = sum(len(c.get_offsets()) for c in fig.axes[0].collections
                if c.get_gid() in ("trials", "infeasible"))
    return frame, drawn


frame1, drawn = draw_axis_plot(round1.name, OUT / "axis_plot_round1.png")
print("wrote", OUT / "axis_plot_round1.png")
assert drawn == round1.budget                       # every trial is on the plot
assert plt.imread(OUT / "axis_plot_round1.png").shape[:2] == (480, 900)

# %% [markdown]
# ## Is the best trial near the boundary?
# "A search space is suspicious if the best point sampled from it is close to
# its boundary. We might find an even better point if we expanded the search
# range in that direction." The playbook gives no number for "close".
# `analysis.boundary_check` takes each trial's position in the log range,
# from 0 (lower boundary) to 1 (upper), and calls the best trial close when it
# is within the outer fifth on either side (`near=0.2`).
#
# The playbook also describes a second pattern: "If all trials are infeasible
# for learning rates greater than some threshold value, and if the best
# performing trials have learning rates at the edge of that region, the model
# may suffer from stability issues preventing it from accessing higher
# learning rates." The check looks for it too. The threshold is the smallest
# learning rate that diverged, provided every larger one diverged and every
# smaller one trained. "At the edge" means the best trial is in the top third
# of the feasible range (log scale, from the lower boundary up to the
# threshold). The decision is one of `ok`, `expand_low`, `expand_high` and
# `instability_limited`.

# %%
NEAR = 0.2      # "close to the boundary": the outer fifth of the log range


def print_checks(checks: dict) -> None:
    for c in checks.values():
        print(f"{c.message} [decision: {c.decision}]")


checks1 = {v[0]: c for v, c in analysis.boundary_check(frame1, "lr", near=NEAR).checks.items()}
print_checks(checks1)
# Nesterov's best trial is pressed against the top of its range: suspicious.
assert checks1["nesterov"].near_high and checks1["nesterov"].positions[0] > 1 - NEAR
assert checks1["nesterov"].decision == "expand_high"
assert checks1["nesterov"].divergence_threshold is None   # no Nesterov trial diverged
# Adam's best is well inside its range; the top of that range diverges, and the
# best trial sits just below the divergence threshold.
assert not (checks1["adam"].near_low or checks1["adam"].near_high)
assert checks1["adam"].best_at_infeasible_edge
assert checks1["adam"].decision == "instability_limited"

# %% [markdown]
# So round 1 does not answer the question fairly. Nesterov's nuisance
# hyperparameter was not optimized away, because its best learning rate may
# lie above 0.1, where no trial looked. Comparing the two optimizers now would
# compare a tuned Adam with a possibly untuned Nesterov.
#
# Adam shows the second pattern: every learning rate above a threshold
# diverged, and Adam's best trial sits close below that threshold. A wider range
# would not help Adam. The playbook's remedies for instability (learning-rate
# warmup, gradient clipping) are what a later round could try.

# %% [markdown]
# ## Round 2: a new study, with a new name
# We widen Nesterov's range upwards to [0.01, 10]. That is a *different*
# study. The store refuses to record it under round 1's name, because the
# recorded trials would not belong to it:

# %%
space2 = make_space(nesterov_lr=(1e-2, 10.0))
try:
    study.run(dataclasses.replace(round1, search_space=space2), store=WORKSPACE, workers=0)
except ValueError as err:
    print("ValueError:", str(err)[:150], "...")
    assert "different spec" in str(err) and "search_space" in str(err)
else:
    raise AssertionError("a changed spec under an existing name must be refused")

round2 = dataclasses.replace(
    round1, name="nesterov_vs_adam_round2", search_space=space2,
    description="Round 1 with Nesterov's lr range [0.001, 0.1] widened to [0.01, 10]")

# %% [markdown]
# ## Interrupted, resumed, and run once more
# Studies get interrupted by Ctrl-C, a crash, or a machine that goes away. The
# store records a trial in one transaction as soon as it finishes, and
# `study.run` runs only the trials that have no record yet.
#
# To interrupt round 2 at a known point, we pass our own executor: a
# `SerialExecutor` (what `workers=0` uses) that counts the trials it is given
# and "presses Ctrl-C" before the sixth one. (`study.run` accepts any
# `concurrent.futures.Executor`; a Dask cluster's executor works the same way.)

# %%
class CountingExecutor(study.SerialExecutor):
    """Runs trials here, like ``workers=0``, and counts them; "presses Ctrl-C" at ``ctrl_c_at``."""

    def __init__(self, ctrl_c_at: int | None = None) -> None:
        self.submitted = 0
        self.ctrl_c_at = ctrl_c_at

    def submit(self, fn, /, *args, **kwargs):
        if self.submitted == self.ctrl_c_at:
            raise KeyboardInterrupt
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


INTERRUPT_AFTER = 5
try:
    study.run(round2, store=WORKSPACE, executor=CountingExecutor(ctrl_c_at=INTERRUPT_AFTER))
except KeyboardInterrupt:
    print(f"Ctrl-C after {INTERRUPT_AFTER} trials")
else:
    raise AssertionError("the run should have been interrupted")

with study.Store(WORKSPACE, readonly=True) as store:
    interrupted = store.status(round2.name)
print("recorded after the interruption:", interrupted.recorded)
assert interrupted.recorded == list(range(INTERRUPT_AFTER))

resume = CountingExecutor()
status2 = study.run(round2, store=WORKSPACE, executor=resume)
print(f"resumed: ran {resume.submitted} trials, now {status2.done}/{round2.budget}")
assert resume.submitted == round2.budget - INTERRUPT_AFTER
assert status2.done == round2.budget and status2.recorded == list(range(round2.budget))

with study.Store(WORKSPACE, readonly=True) as store:
    before = store.records(round2.name), [t.finished_at for t in store.trials(round2.name)]
again = CountingExecutor()
status2_again = study.run(round2, store=WORKSPACE, executor=again)
with study.Store(WORKSPACE, readonly=True) as store:
    trials2 = store.trials(round2.name)
    round1_records = store.records(round1.name)
    round2_records = store.records(round2.name)
print(f"run again: ran {again.submitted} trials")
assert again.submitted == 0 and status2_again.counts == status2.counts
# The same records (records() leaves out timings), and not one trial re-recorded:
# every finished_at time stamp is the one written the first time.
assert (round2_records, [t.finished_at for t in trials2]) == before

# %% [markdown]
# Only Nesterov's range changed, and each hyperparameter has its own Halton
# coordinate, so round 2's Adam trials have the same configurations *and
# seeds* as round 1's. They were computed again, in a different study, after
# an interruption, and their records are identical, down to the last bit of
# every curve:

# %%
adam1 = [r for r in round1_records if r["config"]["optimizer"] == "adam"]
adam2 = [r for r in round2_records if r["config"]["optimizer"] == "adam"]
assert len(adam1) == NUM_TRIALS // 2 and adam1 == adam2
print(f"{len(adam1)} Adam trials recorded identically in both rounds")

# %% [markdown]
# ## Round 2 through the same checks

# %%
print_trials(trials2)
frame2, drawn = draw_axis_plot(round2.name, OUT / "axis_plot_round2.png")
print("wrote", OUT / "axis_plot_round2.png")
assert drawn == round2.budget

checks2 = {v[0]: c for v, c in analysis.boundary_check(frame2, "lr", near=NEAR).checks.items()}
print_checks(checks2)
# Nesterov's best is no longer at a boundary of the search space; it sits just
# below the learning rates that diverge, like Adam's.
assert not (checks2["nesterov"].near_low or checks2["nesterov"].near_high)
assert checks2["nesterov"].decision == "instability_limited"
assert any(t.status == "infeasible" and t.config["optimizer"] == "nesterov" for t in trials2)
# Widening the range found a better Nesterov trial than round 1 could.
best1, best2 = analysis.best(frame1), analysis.best(frame2)
assert best2[("nesterov",)].objective < best1[("nesterov",)].objective
print(f"Nesterov's best error: round 1 {best1[('nesterov',)].objective:.3f}, "
      f"round 2 {best2[('nesterov',)].objective:.3f}; "
      f"Adam's best: {best2[('adam',)].objective:.3f}")

# %% [markdown]
# ## The report: the whole checklist in one command
# `refplay study report NAME` (or `report.write_report`) writes all of the
# above, and more, to one page: the best trial per optimizer with its binomial
# standard error on the 500 validation examples, the boundary table, the
# infeasible fraction, the fixed hyperparameters the answer depends on, the
# curve diagnostics of the best trials, and the playbook's plots
# (`report.md`, a self-contained `report.html`, and the PNGs).

# %%
with study.Store(WORKSPACE, readonly=True) as store:
    written = report.write_report(store, round2.name, OUT / "report_round2")
print("wrote", written.html)
print(written.numbers["answer"])
# The report's table is the analysis: the same best trials, the same decisions.
assert {lab: r["best"] for lab, r in written.numbers["best"].items()} == {
    frame2.label(v): b for v, b in best2.items()}
assert written.numbers["boundary"]["lr"].checks[("nesterov",)].decision == "instability_limited"
assert "axis_lr" in written.images and written.html.stat().st_size > 10_000

# %% [markdown]
# Is one optimizer better? Not from this study alone. Each best error above
# is one trial with one seed, and the playbook warns about **trial variance**,
# "the variation we see between training runs that use the same
# hyperparameters, but different random seeds": "consider running the best
# trial N times to characterize the run-to-run trial variance". In refplay
# that is the next study: `repeats=3` runs each configuration with three trial
# seeds (for example an explicit list of the configurations near each
# optimizer's best learning rate, `sampler="explicit"`). The comparison also
# carries the caveat of the fixed hyperparameters: γ = β₁ = 0.9.
#
# ## The spreadsheet, with both studies
# `refplay study list` prints the tracking table of a workspace, one row per
# study, then each study's notes, config link and reproduction command:

# %%
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = refplay_main(["study", "list", "--workspace", str(WORKSPACE)])
table = out.getvalue()
print(table)
assert code == 0
lines = table.split("\n\n")[0].splitlines()         # the table, before the notes per study
assert len(lines) == 3                                    # header + one row per study
assert lines[1].startswith(round1.name) and lines[2].startswith(round2.name)
assert f"{round2.budget}/{round2.budget}" in lines[2]
assert f"{status2.study.best_value:.4g} (trial {status2.study.best_trial})" in lines[2]

# %% [markdown]
# ## Export to CSV and read it back
# `export_csv` writes one row per trial, with every hyperparameter as a
# `config/...` column (empty where a conditional one is inactive), and the
# curves in long form next to it. Floats are written with `repr`, so they
# read back exactly.

# %%
with study.Store(WORKSPACE, readonly=True) as store:
    trials_csv, curves_csv = study.export_csv(store, round2.name, OUT / "round2.csv")
    n_measurements = len(store.measurements(round2.name))
print("wrote", trials_csv)
print("wrote", curves_csv)

with open(trials_csv, newline="") as f:
    rows = list(csv.DictReader(f))
print("columns:", ", ".join(rows[0]))
assert [int(r["trial"]) for r in rows] == [t.trial for t in trials2]
for r, t in zip(rows, trials2):
    assert r["status"] == t.status and r["reason"] == t.reason
    # An infeasible trial has no objective: an empty cell, NaN in the store.
    objective = float(r["objective"]) if r["objective"] else math.nan
    assert float(r["config/lr"]) == t.config["lr"]
    assert objective == t.objective or (math.isnan(objective) and math.isnan(t.objective))
    inactive = "config/beta1" if t.config["optimizer"] == "nesterov" else "config/gamma"
    assert r[inactive] == ""
assert sum(r["status"] == "infeasible" for r in rows) == status2.counts["infeasible"]

with open(curves_csv, newline="") as f:
    curve_rows = list(csv.DictReader(f))
assert len(curve_rows) == n_measurements
assert {(r["split"], r["metric"]) for r in curve_rows} >= {("validation", "error_rate"),
                                                            ("train", "loss")}
print(f"{len(rows)} trials and {len(curve_rows)} measurements read back")
