# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 2 — Quasi-random search, made concrete
#
# The playbook's FAQ "Why use quasi-random search instead of more
# sophisticated black box optimization algorithms during the exploration
# phase of tuning?" calls quasi-random search "jittered, shuffled grid
# search", because "it uniformly, but randomly, explores a given search space
# and spreads out the search points more than random search". This tutorial
# builds a search space with scientific, nuisance and fixed hyperparameters,
# samples it with `refplay.search.halton`, and checks each of those words:
# *uniform* (exact stratification), *spread out* (discrepancy, a figure),
# *non-adaptive* (extensible, order-free, reproducible by seed). It ends with
# the FAQ "How many trials are needed to get good results with quasi-random
# search?", replayed by bootstrapping a toy study.
#
# Run it as a script (`python tutorials/02_quasi_random_search.py`) or open
# it as a notebook with jupytext. It writes two PNG files, never into the
# repository: under `runs/02_quasi_random_search/` in the current directory (set
# `REFPLAY_OUT=DIR` to write under `DIR/02_quasi_random_search/` instead).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

from refplay import analysis, io, plots, search
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

OUT = io.output_dir("02_quasi_random_search")      # runs/02_quasi_random_search/ by default

# %% [markdown]
# ## A search space with roles and conditional hyperparameters
# The question of this (imaginary) round of experiments: *is Adam better than
# Nesterov momentum on our workload?* So `optimizer` is the **scientific**
# hyperparameter. To compare the two fairly, each optimizer's own
# hyperparameters are **nuisance** hyperparameters we tune, and
# `weight_decay` is **fixed** for this round.
#
# The playbook warns: "we should not assume two conditional hyperparameters
# are the same just because they have the same name! ... the conditional
# hyperparameter called `learning_rate` is a *different* hyperparameter for
# `optimizer="Nesterov_momentum"` versus `optimizer="Adam"`." refplay gives
# them different *names* (`"nesterov/lr"`, `"adam/lr"`) and different ranges;
# both write the *config key* `"lr"`, the plain name `train.run_trial` reads.

# %%
space = search.SearchSpace({
    "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
    "nesterov/lr": search.Float(1e-3, 1.0, scale="log", when={"optimizer": "nesterov"}),
    "adam/lr": search.Float(1e-4, 1e-1, scale="log", when={"optimizer": "adam"}),
    "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
    "beta1": search.Float(0.8, 0.99, when={"optimizer": "adam"}),
    "weight_decay": search.Fixed(0.0),
})
print("roles:     ", space.roles())
print("dimensions:", space.dimensions)
assert space.scientific() == ("optimizer",)
assert space.fixed() == ("weight_decay",)
# The scientific parameter gets the first Halton coordinate (base 2, the best
# stratified); every parameter of every branch gets its own coordinate.
assert space.dimensions[0] == "optimizer" and space.num_dimensions == 5

# %% [markdown]
# ## 32 trials
# A config is a plain dict holding exactly the *active* parameters.
# `space.active_parameters(config)` maps it back to parameter names, which is
# how analysis tells an Adam `lr` from a Nesterov `lr`.

# %%
SEED = 0
configs = search.halton(space, n=32, seed=SEED)
for config in configs[:4]:
    print(config)
    print("    active:", space.active_parameters(config))

for config in configs:
    active = space.active_parameters(config)
    name = f"{config['optimizer']}/lr"
    lo, hi = space[name].low, space[name].high
    assert active[name] == config["lr"] and lo <= config["lr"] <= hi
    # Only the chosen optimizer's hyperparameters are present.
    expected = {"optimizer", "lr", "weight_decay",
                "gamma" if config["optimizer"] == "nesterov" else "beta1"}
    assert set(config) == expected, config
    assert config["weight_decay"] == 0.0
    assert space.validate_config(config) == config

# %% [markdown]
# A config with a parameter of the other branch is an error, never silently
# accepted:

# %%
try:
    space.validate_config({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "gamma": 0.9,
                           "weight_decay": 0.0})
except ValueError as err:
    print("ValueError:", err)
else:
    raise AssertionError("an Adam config with gamma must be rejected")

# %% [markdown]
# ## Uniform, exactly: the scientific parameter is stratified
# Coordinate 0 uses base 2: any two consecutive Halton points fall in
# different halves of [0, 1), so the trials *alternate* between the two
# optimizers. Every prefix of the study — wherever it is stopped — is balanced
# to within one trial. Random search gives 16/16 only by luck.

# %%
optimizers = [c["optimizer"] for c in configs]
print("".join(o[0] for o in optimizers), "(n = nesterov, a = adam)")
counts = {o: optimizers.count(o) for o in ("nesterov", "adam")}
print("Halton:", counts)
assert counts == {"nesterov": 16, "adam": 16}
for k in range(1, len(optimizers) + 1):
    assert abs(optimizers[:k].count("nesterov") - optimizers[:k].count("adam")) <= 1

random_counts = np.array([sum(c["optimizer"] == "nesterov" for c in search.random(space, 32, seed=s))
                          for s in range(200)])
balanced = np.mean(random_counts == 16)
print(f"random search, 200 seeds: Nesterov got {random_counts.min()}..{random_counts.max()} "
      f"of 32 trials; exactly 16 in {balanced:.0%} of the seeds")
assert balanced < 0.5 and random_counts.max() - random_counts.min() >= 6

# %% [markdown]
# **What "randomly shifted" means here.** The playbook speaks of "randomly
# shifted low-discrepancy sequences". Adding one random number `s` to a
# coordinate modulo 1 (a Cranley-Patterson rotation) would move the strata off
# the grid, and windows of consecutive trials would stop being balanced.
# refplay shifts *along* the sequence instead: each coordinate starts at a
# random index (random-start Halton, Wang & Hickernell 2000), which randomizes
# just as much and keeps every window balanced. Count the seeds where some 4
# consecutive trials split the two optimizers 1 + 3:

# %%
def some_window_unbalanced(u: np.ndarray) -> bool:
    halves = np.floor(2 * u).astype(int)
    return any(halves[i:i + 4].sum() != 2 for i in range(len(u) - 3))


seeds = range(64)
start_bad = sum(some_window_unbalanced(search.halton_points(32, 1, s)[:, 0]) for s in seeds)
rotation_bad = sum(some_window_unbalanced(
    (search.halton_points(32, 1, s)[:, 0] + np.random.default_rng([s, 1]).random()) % 1.0)
    for s in seeds)
print(f"seeds with an unbalanced window of 4 trials: random start {start_bad}/64, "
      f"rotation modulo 1 {rotation_bad}/64")
assert start_bad == 0 and rotation_bad > 16

# %% [markdown]
# The nuisance parameters are stratified *jointly* with the scientific one.
# Coordinates 0 and 1 (bases 2 and 3) put any 2·3 = 6 consecutive points one
# in each (half, third) box, so every 6 trials hold 3 Nesterov trials with one
# learning rate in each third of Nesterov's (log) range. Likewise bases 2 and
# 5: every 10 trials hold 5 Adam trials, one in each fifth of Adam's range.
# Over the first 30 trials:

# %%
def log_bin(name: str, lr: float, k: int) -> int:
    """Which of k equal slices of parameter `name`'s log range holds `lr`."""
    p = space[name]
    return math.floor(k * math.log(lr / p.low) / math.log(p.high / p.low))


nesterov_bins = np.bincount([log_bin("nesterov/lr", c["lr"], 3)
                             for c in configs[:30] if c["optimizer"] == "nesterov"], minlength=3)
adam_bins = np.bincount([log_bin("adam/lr", c["lr"], 5)
                         for c in configs[:30] if c["optimizer"] == "adam"], minlength=5)
print("Nesterov lr per third of its range:", nesterov_bins)
print("Adam lr per fifth of its range:    ", adam_bins)
assert nesterov_bins.tolist() == [5, 5, 5] and adam_bins.tolist() == [3, 3, 3, 3, 3]
for start in range(len(configs) - 6 + 1):      # every window, not just the first 30 trials
    window = configs[start:start + 6]
    assert sorted(log_bin("nesterov/lr", c["lr"], 3)
                  for c in window if c["optimizer"] == "nesterov") == [0, 1, 2]
for start in range(len(configs) - 10 + 1):
    window = configs[start:start + 10]
    assert sorted(log_bin("adam/lr", c["lr"], 5)
                  for c in window if c["optimizer"] == "adam") == [0, 1, 2, 3, 4]

# %% [markdown]
# ## Spread out: discrepancy, Halton vs random
# The centred L2 discrepancy measures how far a point set is from uniform
# (lower is more even). `scipy.stats.qmc` computes it (scipy is an optional
# test extra, so this cell skips itself without it). 64 points in 2-D, 20
# seeds each; scipy's own scrambled Halton is shown for reference.

# %%
try:
    from scipy.stats import qmc
except ImportError:
    qmc = None
    print("scipy is not installed: skipping the discrepancy comparison "
          "(pip install scipy to run it)")

if qmc is not None:
    seeds = range(20)
    cd_halton = np.mean([qmc.discrepancy(search.halton_points(64, 2, s)) for s in seeds])
    cd_random = np.mean([qmc.discrepancy(np.random.default_rng(s).random((64, 2))) for s in seeds])
    cd_scipy = np.mean([qmc.discrepancy(qmc.Halton(d=2, seed=s).random(64)) for s in seeds])
    print(f"mean centred L2 discrepancy, n=64, d=2: refplay Halton {cd_halton:.2e}, "
          f"scipy Halton {cd_scipy:.2e}, random {cd_random:.2e}")
    assert cd_halton < cd_random / 5
    assert cd_halton < 1.2 * cd_scipy

# %% [markdown]
# ## Jittered, shuffled grid search: a picture
# A 2-D slice of a search space (Adam's learning rate and β₁), 64 trials of
# random and of quasi-random search. The grid splits the log learning rate
# into quarters and β₁ into thirds: any 4·3 = 12 consecutive Halton trials put
# exactly one point in each of the 12 boxes — a grid, jittered inside each
# box and shuffled in order. Random search crowds some boxes and starves
# others.

# %%
space2 = search.SearchSpace(lr=search.Float(1e-4, 1e-1, scale="log"),
                            beta1=search.Float(0.8, 0.99))
samples = {"random search": search.random(space2, 64, seed=SEED),
           "quasi-random (Halton)": search.halton(space2, 64, seed=SEED)}


def box_counts(cfgs: list[dict]) -> np.ndarray:
    """Trials per (quarter of log lr, third of beta1) box, shape (4, 3)."""
    counts = np.zeros((4, 3), dtype=int)
    for c in cfgs:
        i = math.floor(4 * math.log(c["lr"] / 1e-4) / math.log(1e-1 / 1e-4))
        j = math.floor(3 * (c["beta1"] - 0.8) / (0.99 - 0.8))
        counts[i, j] += 1
    return counts


fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
for ax, (title, cfgs) in zip(axes, samples.items()):
    counts = box_counts(cfgs)
    ax.scatter([c["lr"] for c in cfgs], [c["beta1"] for c in cfgs], s=14)
    ax.set_xscale("log")
    for x in np.geomspace(1e-4, 1e-1, 5)[1:-1]:
        ax.axvline(x, color="0.8", lw=0.8, zorder=0)
    for y in np.linspace(0.8, 0.99, 4)[1:-1]:
        ax.axhline(y, color="0.8", lw=0.8, zorder=0)
    ax.set_title(f"{title}\npoints per box: {counts.min()}..{counts.max()}")
    ax.set_xlabel("learning rate (log scale)")
axes[0].set_ylabel(r"$\beta_1$ (Adam's first-moment decay)")
fig.suptitle("Which search spreads 64 trials more evenly? (grey lines: 4 x 3 boxes)")
fig.tight_layout()
fig.savefig(OUT / "quasi_random_vs_random.png", dpi=100)
plt.close(fig)
print("wrote", OUT / "quasi_random_vs_random.png")

halton2 = samples["quasi-random (Halton)"]
for start in range(0, 64 - 12 + 1):
    assert np.all(box_counts(halton2[start:start + 12]) == 1)
assert set(box_counts(halton2).ravel()) <= {5, 6}      # 64 = 5*12 + 4
print("random boxes:", box_counts(samples["random search"]).ravel())
assert box_counts(samples["random search"]).max() - box_counts(samples["random search"]).min() > 1

# %% [markdown]
# ## Non-adaptive: extensible, order-free, reproducible
# The configs never depend on results, and trial *i*'s config is a pure
# function of `(seed, i)`. Consequences the FAQ lists:
#
# * *Extensible*: 32 more trials later (`skip=32`) are exactly trials 32..63
#   of a 64-trial study, and the study stays balanced.
# * "Running different numbers of trials in parallel versus sequentially will
#   not produce statistically different results" — here they produce the
#   *same* trials: four workers each taking 16 indices get the 64 configs of
#   one sequential run.
# * "It should be possible to reproduce a study from six months ago": the same
#   seed gives the same configs, bit for bit. A different seed is a different
#   study (the playbook's "two different seeds for quasi-random search", a
#   source of study variance) with the same guarantees.

# %%
more = search.halton(space, n=32, seed=SEED, skip=32)
all64 = search.halton(space, n=64, seed=SEED)
assert configs + more == all64
assert sum(c["optimizer"] == "adam" for c in all64) == 32

workers = [search.halton(space, n=16, seed=SEED, skip=16 * w) for w in range(4)]
assert [c for chunk in workers for c in chunk] == all64

assert search.halton(space, n=32, seed=SEED) == configs
other = search.halton(space, n=32, seed=SEED + 1)
assert other != configs
assert sum(c["optimizer"] == "adam" for c in other) == 16
print("extension, parallel chunks and reseeding all behave as claimed")

# %% [markdown]
# ## How many trials? Bootstrapping a toy study
# The playbook's Figure 3 tunes a ResNet-50 with 100 trials and bootstraps
# studies of smaller budgets: "Notice how large the interquartile ranges are
# when 6 trials were sampled, versus when 20 trials were sampled." We replay
# that with a cheap stand-in for training: a made-up validation error over
# the 2-D space above (best near lr = 3e-3, β₁ = 0.93), plus seeded noise for
# retrain variance.

# %%
RETRAIN_NOISE = 0.002
noise_rng = np.random.default_rng(np.random.SeedSequence(SEED))
trials = search.halton(space2, 100, seed=SEED)
val_error = np.array([0.23 + 0.02 * (math.log10(c["lr"]) - math.log10(3e-3)) ** 2
                      + 2.0 * (c["beta1"] - 0.93) ** 2 for c in trials])
val_error += RETRAIN_NOISE * noise_rng.standard_normal(len(trials))

budgets = (2, 6, 10, 20, 50)
# analysis.best_of_n: the best of N trials drawn with replacement, exactly from order
# statistics and by a seeded bootstrap of 2,000 studies per budget.
bon = analysis.best_of_n(val_error, budgets, n_boot=2000, seed=SEED)
boot = {q.n: q for q in bon.bootstrap}
iqr = {k: boot[k].iqr for k in budgets}
for k in budgets:
    print(f"{k:3d} trials: median best error {boot[k].median:.4f}, IQR {iqr[k]:.4f} "
          f"(exact: {bon.exact[budgets.index(k)].iqr:.4f})")

fig = plots.best_of_n_plot(bon, title="How many trials are needed?\n"
                                      "best error of 2,000 bootstrapped studies per budget")
fig.savefig(OUT / "how_many_trials.png", dpi=100)
print("wrote", OUT / "how_many_trials.png")

assert iqr[20] < iqr[6] < iqr[2]
assert boot[20].median < boot[6].median

# %% [markdown]
# The spread of the best result shrinks with the budget, but does not vanish:
# "Even with 20 trials, it is likely that the difference between especially
# lucky and unlucky studies will be larger than the typical variation between
# re-trains of this model on different random seeds". In this toy study:

# %%
lucky, unlucky = boot[20].min, boot[20].max
print(f"best-of-20, luckiest..unluckiest of 2,000 studies: {lucky:.4f}..{unlucky:.4f} "
      f"(spread {unlucky - lucky:.4f}); retrain variation +/- {RETRAIN_NOISE} "
      f"(width {2 * RETRAIN_NOISE})")
assert unlucky - lucky > 2 * RETRAIN_NOISE
