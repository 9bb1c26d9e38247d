"""Calibrate, once, a laptop workload that is unstable the way the playbook's are.

Playbook, "How can optimization failures be debugged and mitigated?":

    *Any workload will become unstable if the learning rate is too large.
    Instability is only an issue when it forces us to use a learning rate
    that's too small.*

For each candidate (a model family with a "stable" and an "unstable"
variant) this script runs short learning-rate sweeps with and without a
linear warmup and prints, per variant:

* ms per training step (one thread);
* the best learning rate lr* (lowest best-so-far validation error over the
  evaluations) with and without warmup, and their ratio (claim CL22, Figure 8);
* the feasible range: the largest learning rate that is not infeasible
  (claim CL24, Figure 4: is 3 x lr*(no warmup) feasible with 10 % warmup?);
* the early-spike height at 2 x lr* (claim CL23, Figure 5): the largest
  ``loss_t / min_{s<t} loss_s`` in the first 10 % of the steps, and whether
  the loss later recovers below the pre-spike minimum;
* the gradient norms of the unstable run (Figure 9): early median vs late
  median, and whether clipping at the 90th percentile of a stable reference
  run makes the unstable config feasible;
* at 5 x and 10 x lr*, a rise after a steady decline (Figure 7b; reported,
  not asserted).

"Infeasible" is the rule the training loop uses: a NaN/Inf loss or gradient
norm, or a training loss above ``FACTOR`` x the step-0 loss for ``WINDOW``
consecutive steps. A transient spike that recovers is *not* infeasible.

The training loop here is a small twin of ``refplay.train.run_trial`` (same
config parsing, seed streams and batch order) that keeps every step's
minibatch loss, which is what the instability figures need.

Run (about 5-8 CPU-minutes for everything; ``--candidates`` picks a subset)::

    nice -n 10 python benchmarks/calibrate_instability.py
    nice -n 10 python benchmarks/calibrate_instability.py --candidates resmlp_post --steps 500
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from refplay import threads

threads.set_thread_env(1)     # before NumPy loads its BLAS: one thread per run

import numpy as np  # noqa: E402

from refplay import clipping  # noqa: E402
from refplay import tree as tree_lib  # noqa: E402
from refplay.data.batching import TrainBatches  # noqa: E402
from refplay.train import get_workload, seeds  # noqa: E402
from refplay.train.config import parse_config  # noqa: E402
from refplay.train.evaluation import evaluate  # noqa: E402

FACTOR = 10.0      # loss above FACTOR x the step-0 loss ...
WINDOW = 50        # ... for WINDOW consecutive steps is infeasible
SEED = 0


class Trace(NamedTuple):
    """One training run with every step's minibatch loss."""

    lr: float
    warmup_steps: int
    status: str                 # "complete" or "infeasible"
    losses: np.ndarray          # (steps_done,) minibatch training loss per step
    grad_norms: np.ndarray      # (steps_done,) unclipped global gradient norm per step
    eval_steps: list
    val_error: list
    best_val_error: float       # min over evaluations (retrospective selection); NaN if infeasible
    ms_per_step: float


def train_trace(workload, config: Mapping, *, steps: int, seed: int = SEED,
                eval_every: int = 100, grad_clip: float | None = None) -> Trace:
    """Train ``config`` for ``steps`` steps; stop early only when infeasible."""
    config = dict(config)
    if grad_clip is not None:
        config["grad_clip"] = grad_clip
    tc = parse_config(config, model_hparams=workload.hparams, max_train_steps=steps,
                      default_batch_size=workload.batch_size)
    model = workload.model(**tc.model_hparams)
    streams = seeds.trial_streams(seed)
    params, state = model.init_params(seeds.generator(streams.init), dtype=workload.dtype)
    opt_state = tc.optimizer.init(params)
    batches = TrainBatches(workload.train, tc.batch_size, seed=streams.data)
    losses, norms, eval_at, val_error = [], [], [], []
    status, above, train_seconds = "complete", 0, 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for step in range(steps + 1):
            if step % eval_every == 0 or step == steps:
                m = evaluate(model, params, state, workload.validation, 1024)
                eval_at.append(step)
                val_error.append(m["error_rate"] if math.isfinite(m["loss"]) else float("nan"))
            if step == steps:
                break
            t0 = time.perf_counter()
            loss, grads, state, _ = model.loss_and_grads(
                params, state, batches.next(), seeds.step_generator(streams.dropout, step))
            loss, norm = float(loss), tree_lib.global_norm(grads)
            losses.append(loss)
            norms.append(norm)
            if not (math.isfinite(loss) and math.isfinite(norm)):
                status = "infeasible"
                break
            above = above + 1 if loss > FACTOR * losses[0] else 0
            if above >= WINDOW:
                status = "infeasible"
                break
            if tc.grad_clip is not None:
                grads, _ = clipping.clip_by_global_norm(grads, tc.grad_clip)
            params, opt_state = tc.optimizer.update(params, grads, opt_state,
                                                    float(tc.schedule(step)))
            train_seconds += time.perf_counter() - t0
    best = float(np.nanmin(val_error)) if status == "complete" else float("nan")
    return Trace(lr=float(config["lr"]), warmup_steps=int(config.get("warmup_steps", 0)),
                 status=status, losses=np.asarray(losses), grad_norms=np.asarray(norms),
                 eval_steps=eval_at, val_error=val_error, best_val_error=best,
                 ms_per_step=1e3 * train_seconds / max(1, len(losses)))


# ------------------------------------------------------------------ measures
def early_spike(losses: np.ndarray, early_fraction: float = 0.1,
                total_steps: int | None = None) -> tuple[float, int, bool]:
    """``(peak_ratio, peak_step, recovered)`` for the early part of a loss trace.

    ``peak_ratio = max_t loss_t / min_{s<t} loss_s`` over ``1 <= t < early_fraction x steps``;
    ``recovered`` when the mean of the last 10 % of the losses is below the
    pre-spike running minimum (the loss came back and kept going down).
    """
    n = len(losses) if total_steps is None else total_steps
    end = max(2, int(early_fraction * n))
    x = np.asarray(losses[:end], dtype=np.float64)
    if len(x) < 2 or not np.all(np.isfinite(x)):
        return float("inf"), -1, False
    run_min = np.minimum.accumulate(x)
    ratio = x[1:] / run_min[:-1]
    t = int(np.argmax(ratio)) + 1
    tail = np.asarray(losses[-max(1, len(losses) // 10):])
    recovered = (len(losses) == n and bool(np.all(np.isfinite(tail)))
                 and float(np.mean(tail)) <= run_min[t - 1])
    return float(ratio[t - 1]), t, recovered


def coarse_is_monotone(losses: np.ndarray, every: int = 100) -> bool:
    """Does the every-``every``-steps running-mean view of the loss only go down?"""
    k = len(losses) // every
    means = [float(np.mean(losses[i * every:(i + 1) * every])) for i in range(k)]
    return all(b <= a for a, b in zip(means, means[1:]))


def late_rise(losses: np.ndarray, smooth: int = 25) -> float:
    """Largest rise of the smoothed loss above its running minimum after the first 20 % (x)."""
    if len(losses) < 4 * smooth or not np.all(np.isfinite(losses)):
        return float("nan")
    s = np.convolve(losses, np.ones(smooth) / smooth, mode="valid")
    start = len(s) // 5
    run_min = np.minimum.accumulate(s)
    return float(np.max(s[start:] / run_min[start:]))


# ------------------------------------------------------------------ candidates
@dataclass(frozen=True)
class Candidate:
    """A model family with a stable and an unstable variant, and its optimizer."""

    name: str
    workload: str
    workload_options: dict
    stable: dict
    unstable: dict
    base: dict
    lrs: tuple
    notes: str = ""
    extra: dict = field(default_factory=dict)


NESTEROV = {"optimizer": "nesterov", "gamma": 0.9}
ADAM = {"optimizer": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
SGD_LRS = tuple(0.01 * 2.0 ** k for k in range(0, 11))       # 0.01 ... 10.24
ADAM_LRS = tuple(1e-4 * 2.0 ** k for k in range(0, 12))      # 1e-4 ... 0.2

CANDIDATES = {
    "resnet_post_vs_bn": Candidate(
        "resnet_post_vs_bn", "mnist1d_resnet", {"channels": [8, 16, 32]},
        stable={"norm": "batch", "norm_placement": "branch"},
        unstable={"norm": "layer", "norm_placement": "post"}, base=NESTEROV,
        lrs=tuple(round(0.02 * 2 ** (k / 2), 6) for k in range(11)),
        notes="the chosen setup (refplay.train.unstable.WARMUP / EARLY_SPIKE)"),
    "resnet_strides": Candidate(
        "resnet_strides", "mnist1d_resnet", {"channels": [8, 16, 32]},
        stable={"strides": [1, 2, 2]}, unstable={"strides": [1, 1, 2]}, base=NESTEROV,
        lrs=SGD_LRS, notes="Figure 4: BatchNorm 'branch' placement, strides changed"),
    "resnet_ln_placement": Candidate(
        "resnet_ln_placement", "mnist1d_resnet",
        {"channels": [8, 16, 32], "norm": "layer"},
        stable={"norm_placement": "pre"}, unstable={"norm_placement": "post"}, base=NESTEROV,
        lrs=SGD_LRS, notes="Figure 8: LayerNorm pre vs post"),
}


def register_resmlp() -> None:
    """Candidates of the deep residual MLP (only when the workload exists)."""
    from refplay.train.workloads import WORKLOADS
    if "mnist1d_resmlp" not in WORKLOADS:
        return
    CANDIDATES.update({
        "resmlp_placement": Candidate(
            "resmlp_placement", "mnist1d_resmlp", {},
            stable={"norm_placement": "pre"}, unstable={"norm_placement": "post"},
            base=NESTEROV, lrs=SGD_LRS, notes="Figure 8: pre vs post LayerNorm, deep MLP"),
        "resmlp_init": Candidate(
            "resmlp_init", "mnist1d_resmlp", {"norm": None, "norm_placement": "none"},
            stable={"init_gain": 0.5}, unstable={"init_gain": 0.7},
            base=NESTEROV, lrs=tuple(0.01 * 2 ** (k / 2) for k in range(11)),
            notes="Figure 9: init scale (refplay.train.unstable.CLIPPING)"),
        "resmlp_placement_adam": Candidate(
            "resmlp_placement_adam", "mnist1d_resmlp", {},
            stable={"norm_placement": "pre"}, unstable={"norm_placement": "post"},
            base=ADAM, lrs=ADAM_LRS, notes="Figure 8 with Adam"),
    })


# ------------------------------------------------------------------ the sweep
class SweepSummary(NamedTuple):
    variant: str
    warmup_steps: int
    ms_per_step: float
    best_lr: float
    best_error: float
    max_feasible_lr: float
    infeasible_lrs: list
    errors: dict


def sweep(wl, cand: Candidate, variant: dict, name: str, warmup: int, steps: int,
          lrs=None) -> tuple[SweepSummary, dict]:
    traces = {}
    for lr in (lrs or cand.lrs):
        cfg = {**cand.base, **variant, "lr": lr, "warmup_steps": warmup}
        traces[lr] = train_trace(wl, cfg, steps=steps)
    feasible = {lr: t for lr, t in traces.items() if t.status == "complete"}
    errors = {lr: t.best_val_error for lr, t in traces.items()}
    best_lr = min(feasible, key=lambda lr: feasible[lr].best_val_error) if feasible else float("nan")
    ms = float(np.median([t.ms_per_step for t in traces.values()]))
    return SweepSummary(
        variant=name, warmup_steps=warmup, ms_per_step=ms, best_lr=best_lr,
        best_error=errors.get(best_lr, float("nan")),
        max_feasible_lr=max(feasible) if feasible else float("nan"),
        infeasible_lrs=sorted(set(traces) - set(feasible)), errors=errors), traces


def fmt_errors(errors: dict) -> str:
    return " ".join(f"{lr:.3g}:{'x' if math.isnan(e) else f'{e:.3f}'}"
                    for lr, e in sorted(errors.items()))


def calibrate(cand: Candidate, steps: int) -> None:
    print(f"\n=== {cand.name}: {cand.workload} {cand.workload_options}  ({cand.notes})")
    print(f"    base {cand.base}, {steps} steps, seed {SEED}")
    wl = get_workload(cand.workload, **cand.workload_options)
    warm = steps // 10
    results = {}
    for vname, variant in (("stable", cand.stable), ("unstable", cand.unstable)):
        for w in (0, warm):
            s, traces = sweep(wl, cand, variant, vname, w, steps)
            results[(vname, w)] = (s, traces)
            print(f"  {vname:8s} {variant} warmup={w:4d}  {s.ms_per_step:5.2f} ms/step  "
                  f"lr*={s.best_lr:.3g} (err {s.best_error:.3f})  max feasible {s.max_feasible_lr:.3g}"
                  f"  infeasible {[round(x, 3) for x in s.infeasible_lrs]}")
            print(f"      best val error by lr: {fmt_errors(s.errors)}")
        s0, s1 = results[(vname, 0)][0], results[(vname, warm)][0]
        print(f"  {vname}: lr*(warmup)/lr*(none) = {s1.best_lr / s0.best_lr:.2f};  "
              f"max feasible with warmup / lr*(none) = {s1.max_feasible_lr / s0.best_lr:.2f}")
    # Early spikes and mid-run rises at 2, 5, 10 x lr*(no warmup) of each variant.
    for vname, variant in (("stable", cand.stable), ("unstable", cand.unstable)):
        lr_star = results[(vname, 0)][0].best_lr
        if math.isnan(lr_star):
            print(f"  {vname:8s}: infeasible at every learning rate; no lr* to scale")
            continue
        for mult in (2.0, 5.0, 10.0):
            lr = mult * lr_star
            t = train_trace(wl, {**cand.base, **variant, "lr": lr},
                            steps=steps if mult == 2 else 2 * steps)
            ratio, at, rec = early_spike(t.losses, total_steps=2 * steps if mult != 2 else steps)
            gn = t.grad_norms
            early = float(np.median(gn[: max(1, len(gn) // 20)]))
            late = float(np.median(gn[len(gn) // 2:])) if len(gn) > 2 else float("nan")
            print(f"  {vname:8s} {mult:g}x lr*={lr:.3g}: {t.status}, early spike {ratio:.2f}x at "
                  f"step {at} recovered={rec}, coarse monotone={coarse_is_monotone(t.losses)}, "
                  f"late rise {late_rise(t.losses):.2f}x, max loss {np.max(t.losses):.3g} at step "
                  f"{int(np.argmax(t.losses))} (step 0: {t.losses[0]:.3g}), grad norm early/late "
                  f"median {early:.3g}/{late:.3g}")
    # Clipping at the 90th percentile of a stable reference run: the stable variant at its lr*.
    s_ref = results[("stable", 0)][0]
    if math.isnan(s_ref.best_lr):
        return
    ref = results[("stable", 0)][1][s_ref.best_lr]
    lam = clipping.threshold_from_norms(ref.grad_norms, 90.0)
    for mult in (1.0, 2.0, 4.0, 8.0):
        lr = mult * s_ref.best_lr
        cfg = {**cand.base, **cand.unstable, "lr": lr}
        plain = train_trace(wl, cfg, steps=steps)
        t = train_trace(wl, cfg, steps=steps, grad_clip=lam)
        gn = t.grad_norms
        print(f"  unstable at {mult:g} x stable lr* = {lr:.3g}: unclipped {plain.status} "
              f"(err {plain.best_val_error:.3f}); clipped at p90 = {lam:.3g}: {t.status}, "
              f"err {t.best_val_error:.3f}, clipped {np.mean(gn > lam):.2f} of steps, grad norm "
              f"median steps<20 {np.median(gn[:20]):.3g} / second half {np.median(gn[len(gn) // 2:]):.3g}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", nargs="*", default=None)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args(argv)
    threads.pin_threads(1)
    register_resmlp()
    names = args.candidates or list(CANDIDATES)
    for name in names:
        calibrate(CANDIDATES[name], args.steps)


if __name__ == "__main__":
    main()
