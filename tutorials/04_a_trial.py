# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 4 — A trial: curves, the best checkpoint, gradient norms, resume, seeds
#
# The playbook's unit of work is the **trial**: one configuration of
# hyperparameters, trained for a fixed number of steps. `refplay.train.run_trial`
# runs one on a workload and returns a `TrialResult`. This tutorial trains the
# MNIST-1D paper's CNN and checks, one claim at a time, the rules of the
# playbook's "Additional guidance for the training pipeline" and its FAQ "How
# can optimization failures be debugged and mitigated?":
#
# * **periodic evaluations** at regular step intervals;
# * the **training curves**, and **retrospective optimal checkpoint
#   selection** from the N best checkpoints kept on disk;
# * the **unclipped gradient norm** logged every step, its plot and histogram,
#   and a clipping threshold at their 90th percentile;
# * an **infeasible** trial, recorded with its reason instead of crashing;
# * **resuming** from a checkpoint, bitwise identical to an uninterrupted run;
# * **seeds**: one trial seed, separate streams for initialization and data order.
#
# Run it as a script (`python tutorials/04_a_trial.py`) or open it as a
# notebook with jupytext. With `REFPLAY_TUTORIAL_QUICK=1` it trains 500 steps
# instead of 1,500. It writes two PNG files and two checkpoint directories
# under `runs/04_a_trial/` in the current directory (set
# `REFPLAY_OUT=DIR` to write under `DIR/04_a_trial/` instead).

# %%
import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from refplay import clipping, data, io, train
from refplay import tree as tree_lib
from refplay.train import checkpoints, seeds
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

QUICK = os.environ.get("REFPLAY_TUTORIAL_QUICK") == "1"
MAX_TRAIN_STEPS = 500 if QUICK else 1_500
EVAL_EVERY = 20 if QUICK else 25
KEEP_BEST = 3
OUT = io.output_dir("04_a_trial")                  # runs/04_a_trial/ by default
TRIAL_DIR = OUT / "trial_cnn"                      # the trial's checkpoints
PREEMPTED_DIR = OUT / "trial_cnn_preempted"        # a copy "killed" mid-run, then resumed
# Start from empty checkpoint directories, so the script can be run again.
for directory in (TRIAL_DIR, PREEMPTED_DIR):
    shutil.rmtree(directory, ignore_errors=True)

# %% [markdown]
# ## The workload and the trial config
# A **workload** is a model family on fixed data: here the MNIST-1D CNN of
# Greydanus & Kobak (three 1-D convolutions, 25 channels, and a linear
# layer) on 3,500 training and 500 validation signals (tutorial 3). A **trial
# config** is a plain dict of hyperparameters with the playbook's names;
# anything it leaves out takes a default, and `result.extras["resolved_config"]`
# records every value the trial actually used.
#
# Adam at a *constant* learning rate of 0.01 is deliberately a bit hot: the
# validation error will fluctuate late in training, which is what makes
# retrospective checkpoint selection worth having.

# %%
workload = train.get_workload("mnist1d_cnn")
print(workload.description)
print("model hyperparameters and defaults:", dict(workload.hparams))
config = {"optimizer": "adam", "lr": 1e-2, "batch_size": 100}

result = train.run_trial(workload, config, seed=0, max_train_steps=MAX_TRAIN_STEPS,
                         eval_every=EVAL_EVERY, checkpoint_dir=TRIAL_DIR, keep_best=KEEP_BEST)
print(f"status {result.status!r}, {result.steps_done} steps, "
      f"{1e3 * result.seconds_per_step:.2f} ms per step")
resolved = result.extras["resolved_config"]
print("resolved config:", resolved)
assert result.status == "complete" and result.feasible and result.reason == ""
assert result.steps_done == MAX_TRAIN_STEPS
assert resolved["schedule"] == "constant" and resolved["warmup_steps"] == 0
assert resolved["beta1"] == 0.9 and resolved["grad_clip"] is None

# %% [markdown]
# ## Periodic evaluation by steps
# "Periodic evaluations should be done at regular step intervals, not time
# intervals." Step $s$ means "after $s$ updates": step 0 evaluates the
# initialization, and the last step is always evaluated, even when
# `eval_every` does not divide `max_train_steps`. At each evaluation the trial
# records `train/loss` (the mean training-batch loss since the previous
# evaluation — there is none yet at step 0, hence NaN), the learning rate,
# and the validation loss and error rate. The evaluation batch size defaults
# to max(batch size, 1024): it "should be *at least* as large as the batch
# size used for training".

# %%
print("evaluated at steps", result.eval_steps[:4], "...", result.eval_steps[-2:])
print("curves:", sorted(result.curves))
assert result.eval_steps == list(range(0, MAX_TRAIN_STEPS + 1, EVAL_EVERY))
assert result.eval_steps == train.eval_steps(MAX_TRAIN_STEPS, EVAL_EVERY)
assert train.eval_steps(1_000, 300) == [0, 300, 600, 900, 1_000]   # the last step always
assert sorted(result.curves) == ["lr", "train/loss", "validation/error_rate", "validation/loss"]
assert all(len(v) == len(result.eval_steps) for v in result.curves.values())
assert np.isnan(result.curves["train/loss"][0])
assert np.all(np.isfinite(result.curves["train/loss"][1:]))
assert result.curves["lr"] == [1e-2] * len(result.eval_steps)
assert resolved["eval_batch_size"] == 1024 >= resolved["batch_size"]

# %% [markdown]
# ## The training curves, and the best step chosen in retrospect
# "For every study, we always look at the **training curves** (training error
# and validation error plotted versus training step over the duration of
# training) of at least the best few trials."
#
# And the section "Saving checkpoints and retrospectively selecting the best
# checkpoint": "The best checkpoint is often not the last checkpoint,
# particularly when the validation set performance does not continue to
# increase over time but rather fluctuates about a particular value." The
# trial ranks its evaluations by the selection metric, the validation error
# rate (lower is better; a tie goes to the earlier step). `result.best_step`
# is therefore the argmin of the recorded curve — `np.argmin` also returns
# the first of equal minima.

# %%
steps = np.array(result.eval_steps)
val_error = np.array(result.curves["validation/error_rate"])
i_best = int(np.argmin(val_error))
print(f"selection metric: {result.extras['selection_metric']}")
print(f"best step {result.best_step}: validation error {val_error[i_best]:.3f} "
      f"({round(val_error[i_best] * len(workload.validation))} of "
      f"{len(workload.validation)} wrong); last step {steps[-1]}: {val_error[-1]:.3f}")
assert result.extras["selection_metric"] == "validation/error_rate"
assert result.best_step == steps[i_best]
assert result.best_metrics == {name: values[i_best] for name, values in result.curves.items()}
# Here the best checkpoint is not the last one: the last is worse by several examples.
assert result.best_step < MAX_TRAIN_STEPS
assert val_error[-1] > val_error[i_best]

fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
ax_loss.plot(steps[1:], result.curves["train/loss"][1:], label="train/loss (mean since last eval)")
ax_loss.plot(steps, result.curves["validation/loss"], label="validation/loss")
ax_loss.set_yscale("log")
ax_loss.set_ylabel("cross-entropy (nats, log scale)")
ax_err.plot(steps, val_error, color="C1", label="validation/error_rate")
ax_err.set_ylabel("error rate (fraction wrong)")
for ax in (ax_loss, ax_err):
    ax.axvline(result.best_step, color="k", ls=":", lw=1, label=f"best step {result.best_step}")
    ax.set_xlabel("step")
    ax.legend()
ax_err.plot([result.best_step], [val_error[i_best]], "k*", ms=12)
fig.suptitle(f"Which checkpoint to keep? mnist1d_cnn, Adam, constant lr={config['lr']:g} "
             f"(★ the best evaluation)")
fig.tight_layout()
fig.savefig(OUT / "training_curves.png", dpi=100)
plt.close(fig)
print("wrote", OUT / "training_curves.png")

# %% [markdown]
# ## N best checkpoints on disk
# "Set up the pipeline to keep track of the N best checkpoints seen so far
# during training. At the end of training, model selection is then a matter of
# choosing the best checkpoint seen during training. We call this
# **retrospective optimal checkpoint selection**." With `keep_best=3` the
# directory holds N + 1 = 4 files: the three best evaluations so far, and
# `latest.npz`, the full training state of the most recent evaluation, to
# resume from. The trial evaluated far more often than three times; better
# checkpoints replaced worse ones as training went.
#
# The three best steps, worked out independently of refplay from the curve
# (sort by error, then by step):

# %%
ranked = [int(s) for _, s in sorted(zip(val_error, steps))]
expected_files = sorted([checkpoints.best_filename(s) for s in ranked[:KEEP_BEST]]
                        + ["latest.npz"])
on_disk = sorted(p.name for p in TRIAL_DIR.iterdir())
print("files:", on_disk)
print("result.checkpoint_paths (best first, then latest):", result.checkpoint_paths)
assert on_disk == expected_files and len(on_disk) == KEEP_BEST + 1 < len(steps)
expected_paths = [TRIAL_DIR / checkpoints.best_filename(s) for s in ranked[:KEEP_BEST]]
assert result.checkpoint_paths == [str(p) for p in [*expected_paths, TRIAL_DIR / "latest.npz"]]

# %% [markdown]
# A checkpoint is a plain `.npz` (read without pickle). Selecting the model
# means loading the best one: its parameters, evaluated again on the whole
# validation split, reproduce the error the trial recorded at that step.

# %%
best = io.load_npz(result.checkpoint_paths[0])
params = {k.removeprefix("params/"): v for k, v in best.items() if k.startswith("params/")}
model_state = {k.removeprefix("model_state/"): v for k, v in best.items()
               if k.startswith("model_state/")}
print(f"{Path(result.checkpoint_paths[0]).name}: step {int(best['step'])}, "
      f"{tree_lib.num_params(params)} parameters in {len(params)} arrays")
again = train.evaluate(workload.model(), params, model_state, workload.validation,
                       batch_size=resolved["eval_batch_size"])
print("re-evaluated:", again)
assert int(best["step"]) == result.best_step
assert again["error_rate"] == result.best_metrics["validation/error_rate"]
assert again["loss"] == result.best_metrics["validation/loss"]
assert int(io.load_npz(TRIAL_DIR / "latest.npz")["step"]) == MAX_TRAIN_STEPS

# %% [markdown]
# ## Gradient norms: log them unclipped, plot them, pick a threshold
# The playbook's "Gradient clipping": "Log the unclipped gradient norm during
# training. By default, generate: A plot of gradient norm vs step [and] A
# histogram of gradient norms aggregated over all steps", then "Choose a
# gradient clipping threshold based on the 90th percentile of gradient
# norms." `result.grad_norms[t]` is the global L2 norm of the gradient of step
# $t$, one per step. `clipping.clip_report` takes the 90th percentile and says
# how often it would clip.

# %%
norms = result.grad_norms
report = clipping.clip_report(norms)
print(f"{len(norms)} norms; median {np.median(norms):.3f}, max {norms.max():.3f}")
print(report.advice)
assert norms.shape == (MAX_TRAIN_STEPS,) and np.all(np.isfinite(norms)) and np.all(norms > 0)
assert report.threshold == np.percentile(norms, 90)
assert report.fraction == np.mean(norms > report.threshold) <= 0.1
assert not report.aggressive

# "We would usually consider having >50% of the updates getting clipped
# somehow as 'extremely aggressive'" -- e.g. a threshold at the 30th percentile:
harsh = clipping.clip_report(norms, threshold=float(np.percentile(norms, 30)))
print(harsh.advice)
assert harsh.fraction > 0.5 and harsh.aggressive

fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(11, 4))
ax_t.plot(np.arange(len(norms)), norms, lw=0.6)
ax_t.set_xlabel("step")
ax_t.set_ylabel("unclipped gradient norm")
ax_h.hist(norms, bins=50)
ax_h.set_xlabel("unclipped gradient norm")
ax_h.set_ylabel("steps (count)")
fig.suptitle("Where to clip? The unclipped gradient norm of every step, and its histogram")
for ax, draw in ((ax_t, ax_t.axhline), (ax_h, ax_h.axvline)):
    draw(report.threshold, color="C3", ls="--", label=f"90th percentile {report.threshold:.2f}")
    ax.legend()
fig.tight_layout()
fig.savefig(OUT / "grad_norms.png", dpi=100)
plt.close(fig)
print("wrote", OUT / "grad_norms.png")

# %% [markdown]
# ## Training with `grad_clip`: the logged norm is still the unclipped one
# With `"grad_clip": λ` every gradient with $|g| > \lambda$ becomes
# $g' = \lambda g / |g|$ before the update. What the trial logs stays $|g|$,
# the norm *before* clipping — a log of clipped norms would never exceed λ
# and would hide exactly the spikes we want to see. The same seed gives the
# same run up to and including the first clipped step; from the next step on
# the parameters, and so the norms, differ. `train/clipped_fraction` counts
# the clipped updates between evaluations.

# %%
threshold = report.threshold
clipped = train.run_trial(workload, {**config, "grad_clip": threshold}, seed=0,
                          max_train_steps=MAX_TRAIN_STEPS, eval_every=EVAL_EVERY)
logged = clipped.grad_norms
first = int(np.argmax(norms > threshold))           # the first step the threshold clips
print(f"first clipped step {first}; logged norms above λ={threshold:.3f}: "
      f"{np.sum(logged > threshold)} of {len(logged)} (max {logged.max():.3f})")
print(f"validation error at the best step: {clipped.best_metrics['validation/error_rate']:.3f} "
      f"with clipping, {result.best_metrics['validation/error_rate']:.3f} without")
assert clipped.status == "complete" and logged.shape == (MAX_TRAIN_STEPS,)
assert logged.max() > threshold                     # not the clipped norm: that is <= λ
assert np.array_equal(logged[:first + 1], norms[:first + 1])
assert logged[first + 1] != norms[first + 1]
# clipped_fraction x steps per interval, summed, counts the steps with |g| > λ.
fraction = np.array(clipped.curves["train/clipped_fraction"])
assert np.isnan(fraction[0])                          # no update before step 0
assert round(np.sum(fraction[1:] * np.diff(clipped.eval_steps))) == np.sum(logged > threshold)

# %% [markdown]
# ## An infeasible trial is a result, not a crash
# Figure 7a of the playbook: "An 'infeasible' trial is defined as one that
# either produces NaNs or uncharacteristically high values of the loss." A
# study runs many trials; one that blows up must be recorded — with its
# reason, so it can be plotted as infeasible — and the study must go on.
# `run_trial` never raises once training has started. By default a trial is
# infeasible when its training loss is NaN or Inf, or when it is above
# 10 × the loss of step 0 on 10 of the last 50 steps; a shorter excursion is
# recorded as a *loss spike* (`result.extras["loss_spikes"]`) and training
# goes on, because the playbook's Figures 4 and 5 show losses that shoot up
# and recover. `divergence_steps=1` is the strict "one bad batch" rule, and
# with `divergence_factor=None` only a NaN or Inf counts. SGD at a learning
# rate of 100 fails every way.
#
# Early instability can hide between evaluations: "Common evaluation
# schedules can miss these issues by not evaluating frequently enough! To
# check for this, we can train for an abbreviated run of just ~500 steps
# using `lr = 2 * current best`, but evaluate every step."
# `dense_eval_steps=k` adds an evaluation at every step 0 ... k; the first
# run uses it, so its curves show the validation loss after the one update
# that blew it up.

# %%
huge = {"optimizer": "sgd", "lr": 100.0, "batch_size": 100}
blown_up = train.run_trial(workload, huge, seed=0, max_train_steps=200, eval_every=20,
                           dense_eval_steps=20, divergence_steps=1)
print("validation loss at steps", blown_up.eval_steps, ":", blown_up.curves["validation/loss"])
nan_run = train.run_trial(workload, huge, seed=0, max_train_steps=200, eval_every=20,
                          divergence_factor=None)
for r in (blown_up, nan_run):
    step = r.extras["divergence_step"]
    print(f"{r.status}: {r.reason!r} (steps done {r.steps_done}; norms {r.grad_norms})")
    assert r.status == "infeasible" and not r.feasible
    assert r.steps_done == step and r.reason.endswith(f"at step {step}")
    assert len(r.grad_norms) == step + 1              # the diverged step's norm is logged too
    assert np.all(np.isfinite(r.grad_norms[:-1]))
    assert r.eval_steps[-1] <= step                  # no evaluation after the divergence
initial_loss = blown_up.curves["train/loss"][1]      # the mean over step 0 alone
assert blown_up.curves["validation/loss"][1] > 10 * blown_up.curves["validation/loss"][0]
assert blown_up.eval_steps == [0, 1] and blown_up.extras["divergence_step"] == 1
assert blown_up.reason.startswith("training loss ") and "exceeds 10 x" in blown_up.reason
assert f"the initial loss {initial_loss:.6g}" in blown_up.reason
assert nan_run.reason.startswith("training loss is nan") and np.isnan(nan_run.grad_norms[-1])
assert nan_run.extras["divergence_step"] > blown_up.extras["divergence_step"]

# %% [markdown]
# Under the default rule the same run keeps training after its first blown-up
# step, and ends as soon as the evaluation after step 4 sees a NaN validation
# loss: the loss did not come back.

# %%
default_rule = train.run_trial(workload, huge, seed=0, max_train_steps=200, eval_every=20,
                               dense_eval_steps=20)
print(f"default rule: {default_rule.status}: {default_rule.reason!r}")
print("per-step training losses:", default_rule.train_losses)
assert default_rule.status == "infeasible" and default_rule.steps_done == 4
assert default_rule.reason == "validation loss is nan at step 4"
assert np.all(default_rule.train_losses[1:] > 10 * default_rule.train_losses[0])

# %% [markdown]
# ## Resume: re-running with the same `checkpoint_dir`
# Checkpointing "allows the training job to be resilient to compute instance
# interruptions." Calling `run_trial` again with the same arguments and the
# same `checkpoint_dir` continues from `latest.npz`. Our first trial finished,
# so there is nothing left to do: the call rewrites no file and returns the
# same result. `same_computation` compares every computed number bit for bit
# (only timings and file paths are left out).

# %%
def file_times(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in Path(directory).iterdir()}


before = file_times(TRIAL_DIR)
rerun = train.run_trial(workload, config, seed=0, max_train_steps=MAX_TRAIN_STEPS,
                        eval_every=EVAL_EVERY, checkpoint_dir=TRIAL_DIR, keep_best=KEEP_BEST)
print("re-run identical:", rerun.same_computation(result))
assert rerun.same_computation(result)
assert file_times(TRIAL_DIR) == before

# %% [markdown]
# Now a real interruption. Every kept checkpoint holds the full training state
# (parameters, Adam's moments, the step, the data iterator's position, the
# evaluation history and the gradient norms so far), so we can fake a job
# killed right after the evaluation of the earliest kept checkpoint: a fresh directory
# holding what the trial's directory held at that moment — `latest.npz` is
# the checkpoint of that step, next to the kept best checkpoints taken up to
# then. The resumed trial trains the remaining steps and ends bitwise
# identical to the uninterrupted run — because every random draw is a pure
# function of (seed, step), and the data order of (seed, epoch). Its
# directory then holds the same N + 1 files.

# %%
killed_at = min(ranked[:KEEP_BEST])
PREEMPTED_DIR.mkdir()
for s in ranked[:KEEP_BEST]:
    if s <= killed_at:                 # the later ones did not exist yet
        name = checkpoints.best_filename(s)
        shutil.copyfile(TRIAL_DIR / name, PREEMPTED_DIR / name)
shutil.copyfile(TRIAL_DIR / checkpoints.best_filename(killed_at), PREEMPTED_DIR / "latest.npz")
print("before resuming:", sorted(p.name for p in PREEMPTED_DIR.iterdir()))
resumed = train.run_trial(workload, config, seed=0, max_train_steps=MAX_TRAIN_STEPS,
                          eval_every=EVAL_EVERY, checkpoint_dir=PREEMPTED_DIR,
                          keep_best=KEEP_BEST)
print(f"resumed at step {killed_at}, trained {MAX_TRAIN_STEPS - killed_at} "
      f"more steps; identical: {resumed.same_computation(result)}")
assert resumed.same_computation(result)
assert np.array_equal(resumed.grad_norms, result.grad_norms)
assert sorted(p.name for p in PREEMPTED_DIR.iterdir()) == expected_files

# A checkpoint directory belongs to one trial: another config there is an error.
try:
    train.run_trial(workload, {**config, "lr": 3e-3}, seed=0, max_train_steps=MAX_TRAIN_STEPS,
                    eval_every=EVAL_EVERY, checkpoint_dir=TRIAL_DIR, keep_best=KEEP_BEST)
except ValueError as err:
    print("ValueError:", str(err).splitlines()[0])
else:
    raise AssertionError("resuming another trial's checkpoint must be refused")

# %% [markdown]
# ## Seeds: one trial seed, separate streams
# A trial's `seed` spawns three independent streams with
# `np.random.SeedSequence(seed).spawn(3)`: the **initialization**, the
# **data order**, and the **dropout** masks. The same seed gives a bitwise
# identical trial. `data_seed` (and `init_seed`) in the config replace one
# stream only — the playbook's multi-host advice asks for exactly that
# split: "RNG seeds that are the same across hosts (for model
# initialization), and seeds that are different across hosts (for data
# shuffling/preprocessing)." Short trials are enough to see it.

# %%
SEED_STEPS, SEED_EVAL = 100, 25
short = {"max_train_steps": SEED_STEPS, "eval_every": SEED_EVAL}
base = train.run_trial(workload, config, seed=0, **short)
same = train.run_trial(workload, config, seed=0, **short)
other_data = train.run_trial(workload, {**config, "data_seed": 1}, seed=0, **short)
other_seed = train.run_trial(workload, config, seed=1, **short)
for name, r in (("seed 0", base), ("seed 0 again", same), ("seed 0, data_seed 1", other_data),
                ("seed 1", other_seed)):
    print(f"{name:20s} step-0 validation loss {r.curves['validation/loss'][0]:.6f}, "
          f"first gradient norm {r.grad_norms[0]:.6f}, final error "
          f"{r.curves['validation/error_rate'][-1]:.3f}")
assert same.same_computation(base)
# data_seed keeps the initialization (the step-0 evaluation) and changes the batches.
assert other_data.curves["validation/loss"][0] == base.curves["validation/loss"][0]
assert other_data.grad_norms[0] != base.grad_norms[0]
assert other_data.curves["validation/loss"][1:] != base.curves["validation/loss"][1:]
# a new trial seed changes the initialization too.
assert other_seed.curves["validation/loss"][0] != base.curves["validation/loss"][0]

# %% [markdown]
# The streams themselves: `data_seed=1` swaps in the data-order stream of seed
# 1 and leaves the initialization and dropout streams of seed 0 alone. From
# them we can redo the trial's first step by hand — initial parameters from
# the init stream, the first batch from the data-order stream — and find the
# gradient norm each trial logged at step 0. (The trial runs BLAS on one
# thread; here the thread count may differ, hence a relative tolerance.)

# %%
def identity(stream: np.random.SeedSequence) -> tuple:
    return stream.entropy, stream.spawn_key


s0, s0_data1 = seeds.trial_streams(0), seeds.trial_streams(0, data_seed=1)
assert identity(s0_data1.init) == identity(s0.init)
assert identity(s0_data1.dropout) == identity(s0.dropout)
assert identity(s0_data1.data) == identity(seeds.trial_streams(1).data) != identity(s0.data)

model = workload.model()
for streams, r in ((s0, base), (s0_data1, other_data)):
    params, model_state = model.init_params(seeds.generator(streams.init), dtype=workload.dtype)
    batch = data.TrainBatches(workload.train, config["batch_size"], seed=streams.data).next()
    _, grads, _, _ = model.loss_and_grads(params, model_state, batch,
                                          seeds.step_generator(streams.dropout, 0), train=True)
    by_hand = tree_lib.global_norm(grads)
    print(f"step-0 gradient norm by hand {by_hand:.8f}, logged {r.grad_norms[0]:.8f}")
    assert np.isclose(by_hand, r.grad_norms[0], rtol=1e-6, atol=0)
assert not np.isclose(base.grad_norms[0], other_data.grad_norms[0], rtol=1e-3)

# %% [markdown]
# ## What to take away
# * A trial is a pure function of (workload, config, seed, `max_train_steps`,
#   `eval_every`): re-running it, or resuming it from any checkpoint, gives the
#   same bits.
# * Evaluate by steps; choose the best checkpoint in retrospect from the
#   recorded curve, and keep N of them — the best is often not the last.
# * Log the unclipped gradient norm every step; start a clipping threshold at
#   its 90th percentile, and cut the learning rate instead if more than half
#   of the updates get clipped.
# * A diverging trial is data for the study ("infeasible", with its reason),
#   never an exception.
