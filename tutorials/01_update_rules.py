# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tutorial 1 — The playbook's update rules, schedules and clipping
#
# The playbook's FAQ "What are the update rules for all the popular
# optimization algorithms?" writes six rules as equations. `refplay.optim`
# implements each one line for line; this tutorial checks a few of them by
# hand, shows why the *placement* of the learning rate and of ε matters, and
# builds the schedules and clipping the playbook recommends.
#
# Run it as a script (`python tutorials/01_update_rules.py`; it only prints,
# and writes no file) or open it as a notebook with jupytext.

# %%
import numpy as np

from refplay import clipping, optim, schedules
from refplay.tutorials import lesson

lesson()  # as a script: print the prose between the cells (in a notebook: nothing)

# %% [markdown]
# ## Momentum by hand
# $v_0 = 0,\quad v_{t+1} = \gamma v_t + \nabla l(\theta_t),\quad
# \theta_{t+1} = \theta_t - \eta_t v_{t+1}$.
#
# On $l(\theta) = \tfrac12\theta^2$ the gradient is $\theta$ itself, so two
# steps with $\gamma = 0.9$ and $\eta = (0.1, 0.2)$ can be written out:

# %%
theta, v, gamma = 1.0, 0.0, 0.9
for lr in (0.1, 0.2):
    v = gamma * v + theta
    theta = theta - lr * v
opt = optim.momentum(gamma=0.9)
params = {"theta": np.array([1.0])}
state = opt.init(params)
for lr in (0.1, 0.2):
    params, state = opt.update(params, {"theta": params["theta"]}, state, lr)
print(f"by hand: {theta!r}   refplay: {float(params['theta'][0])!r}")
assert params["theta"][0] == theta

# %% [markdown]
# ## RMSProp keeps the learning rate inside its momentum buffer
# $m_{t+1} = \gamma m_t + \frac{\eta_t}{\sqrt{v_{t+1}+\epsilon}}\nabla l(\theta_t)$,
# $\theta_{t+1} = \theta_t - m_{t+1}$, with $v_0 = 1$.
# When the learning rate changes (warmup, decay), the playbook's RMSProp
# responds gradually; a version with the rate outside the buffer responds at
# once. Same gradients, different parameters:

# %%
rng = np.random.default_rng(0)
grads_seq = [{"w": rng.normal(size=3)} for _ in range(5)]
lrs = [0.0, 0.0, 0.1, 0.1, 0.1]           # a step change in η_t
opt = optim.rmsprop(rho=0.9, gamma=0.9, eps=1e-10)
p = {"w": np.zeros(3)}
s = opt.init(p)
for g, lr in zip(grads_seq, lrs):
    p, s = opt.update(p, g, s, lr)
# The "learning rate outside" variant, written directly:
w, v, m = np.zeros(3), np.ones(3), np.zeros(3)
for g, lr in zip(grads_seq, lrs):
    v = 0.9 * v + 0.1 * g["w"] ** 2
    m = 0.9 * m + g["w"] / np.sqrt(v + 1e-10)
    w = w - lr * m
print("playbook RMSProp :", p["w"])
print("lr outside buffer:", w)
assert not np.allclose(p["w"], w)

# %% [markdown]
# ## Adam's ε sits before the bias correction
# $\theta_{t+1} = \theta_t - \alpha_t \frac{m_{t+1}}{\sqrt{v_{t+1}}+\epsilon} b_{t+1}$
# with $b_{t+1} = \sqrt{1-\beta_2^{t+1}}/(1-\beta_1^{t+1})$. With a large ε
# Adam becomes SGD with momentum and learning rate $\alpha_t b_t/\epsilon$
# (Choi et al., 2019): ε is a real hyperparameter, worth tuning.

# %%
print("b_1, b_2, b_100 =", [round(optim.bias_correction(0.9, 0.999, t), 4) for t in (0, 1, 99)])

# %% [markdown]
# ## Schedules: warmup is *prepended*
# The playbook: "if we originally had 10,000 `max_train_steps` and did
# `warmup_steps` for 1000 steps, the new training procedure should run for
# 11,000 steps total."

# %%
sched = schedules.warmup(schedules.cosine_decay(base_lr=0.1, decay_steps=10_000), warmup_steps=1_000)
print("total steps:", sched.total_steps)
print("lr at steps 0, 500, 1000, 6000, 11000:", sched(np.array([0, 500, 1000, 6000, 11000])))
assert sched.total_steps == 11_000 and sched(1000) == 0.1

# %% [markdown]
# ## Clipping: $g' = \lambda g/\|g\|$ when $\|g\| > \lambda$
# Start from the 90th percentile of logged gradient norms; more than 50% of
# updates clipped is "extremely aggressive" — cut the learning rate instead.

# %%
norms = np.abs(rng.standard_cauchy(1000)) + 1.0
report = clipping.clip_report(norms)
print(f"threshold {report.threshold:.3f}, fraction clipped {report.fraction:.2f}, "
      f"aggressive: {report.aggressive}")
grads, info = clipping.clip_by_global_norm({"w": np.array([3.0, 4.0])}, max_norm=1.0)
print("clipped", grads["w"], "unclipped norm", info.norm)
assert np.isclose(np.linalg.norm(grads["w"]), 1.0) and info.norm == 5.0
