"""A fast synthetic trial function: linear regression trained by a playbook optimizer.

DESIGN.md: "study runs any function ``(config, seed) -> TrialResult``". This
is the smallest honest one — a few milliseconds of NumPy per trial, with real
curves, real gradient norms, real divergence at large learning rates — for
tests, benchmarks and for showing how to plug your own training code into a
study::

    from refplay import search, study
    spec = study.StudySpec(name="toy", workload=None, num_trials=16,
                           max_train_steps=200, eval_every=20, metric="validation/loss",
                           search_space=search.SearchSpace(
                               optimizer=search.Choice(["nesterov", "adam"], role="scientific"),
                               lr=search.Float(1e-3, 3.0, scale="log")))
    study.run(spec, store="ws", trial_fn=LinearRegressionTrial(200, 20))

The data are fixed (the "workload"): ``y = X w* + 0.1 ε`` with ``X``, ``w*``
and ``ε`` standard normal from ``data_seed``; 80 % train, 20 % validation.
The trial seed derives two streams (``SeedSequence(seed).spawn(2)``): the
initialization and the minibatch order. Each step, on a minibatch ``B``::

    r      = X_B w + b - y_B
    loss   = ½ mean(r²)
    ∇w     = X_Bᵀ r / |B|,   ∇b = mean(r)
    w, b   = optimizer.update(..., lr=config["lr"])

A non-finite loss or gradient norm, or a loss above 1e6 × the initial one,
ends the trial as infeasible.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from refplay import optim, tree
from refplay.train.result import TrialResult, TrialStatus

__all__ = ["LinearRegressionTrial"]

_OPTIMIZER_KEYS = ("gamma", "rho", "beta1", "beta2", "eps", "weight_decay", "weight_decay_mode")


@dataclasses.dataclass(frozen=True)
class LinearRegressionTrial:
    """``trial_fn(config, seed, *, trial_dir=None) -> TrialResult`` on synthetic least squares.

    ``config`` holds ``optimizer`` and ``lr`` plus the optimizer's own
    hyperparameters (``gamma``, ``beta1``, ...); other keys are ignored.
    ``sleep_seconds`` adds a pause to each trial (to imitate longer trials in
    tests and benchmarks).
    """

    max_train_steps: int = 100
    eval_every: int = 10
    num_examples: int = 320
    dim: int = 8
    batch_size: int = 32
    data_seed: int = 0
    sleep_seconds: float = 0.0

    def _data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.data_seed)
        x = rng.standard_normal((self.num_examples, self.dim))
        w_star = rng.standard_normal(self.dim)
        y = x @ w_star + 0.1 * rng.standard_normal(self.num_examples)
        n_train = int(0.8 * self.num_examples)
        return x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    def __call__(self, config: dict, seed: int, *, trial_dir=None) -> TrialResult:
        start = time.perf_counter()
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        x_train, y_train, x_val, y_val = self._data()
        init_seq, order_seq = np.random.SeedSequence(seed).spawn(2)
        init_rng, order_rng = np.random.default_rng(init_seq), np.random.default_rng(order_seq)
        params = {"w": 0.1 * init_rng.standard_normal(self.dim), "b": np.zeros(1)}
        opt = optim.get(config["optimizer"],
                        **{k: v for k, v in config.items() if k in _OPTIMIZER_KEYS})
        state = opt.init(params)
        lr = float(config["lr"])

        def loss_and_grads(p, x, y):
            r = x @ p["w"] + p["b"][0] - y
            return 0.5 * float(np.mean(r * r)), {"w": x.T @ r / len(y), "b": np.array([r.mean()])}

        eval_steps, curves = [], {"train/loss": [], "validation/loss": []}
        grad_norms = np.zeros(self.max_train_steps)
        since_eval: list[float] = []
        order = np.zeros(0, dtype=np.int64)
        initial_loss = None
        status, reason, steps_done = TrialStatus.COMPLETE, "", self.max_train_steps

        for step in range(self.max_train_steps + 1):
            if step % self.eval_every == 0 or step == self.max_train_steps:
                eval_steps.append(step)
                curves["train/loss"].append(float(np.mean(since_eval)) if since_eval else math.nan)
                curves["validation/loss"].append(loss_and_grads(params, x_val, y_val)[0])
                since_eval = []
            if step == self.max_train_steps:
                break
            if len(order) < self.batch_size:       # a fresh shuffle per epoch
                order = order_rng.permutation(len(y_train))
            idx, order = order[:self.batch_size], order[self.batch_size:]
            loss, grads = loss_and_grads(params, x_train[idx], y_train[idx])
            grad_norms[step] = tree.global_norm(grads)
            initial_loss = loss if initial_loss is None else initial_loss
            if not (math.isfinite(loss) and math.isfinite(grad_norms[step])) \
                    or loss > 1e6 * initial_loss:
                status, reason = TrialStatus.INFEASIBLE, f"training loss is {loss:.6g} at step {step}"
                grad_norms, steps_done = grad_norms[:step + 1], step
                break
            since_eval.append(loss)
            params, state = opt.update(params, grads, state, lr)

        best_step, best_metrics = None, {}
        if status == TrialStatus.COMPLETE:
            val = curves["validation/loss"]
            best = int(np.argmin(val))            # retrospective selection: first minimum
            best_step = eval_steps[best]
            best_metrics = {k: v[best] for k, v in curves.items()}
        return TrialResult(config=dict(config), seed=seed, status=status, reason=reason,
                           steps_done=steps_done, eval_steps=eval_steps, curves=curves,
                           grad_norms=grad_norms, best_step=best_step, best_metrics=best_metrics,
                           wall_seconds=time.perf_counter() - start)
