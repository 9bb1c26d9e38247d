"""Where a trial's time goes: forward + backward, the update, and everything else.

The goal: a trial spends at least 90 % of its wall time in forward +
backward + update on the workloads ``refplay reproduce`` trains. For each of
them, one trial runs with that figure's step budget, evaluation interval and
checkpoint policy (a checkpoint folder, as a study gives every trial), and
its wall time is split into

* ``fwd+bwd``  — ``model.loss_and_grads`` (forward, loss, backward),
* ``update``   — ``Optimizer.update`` and ``clip_by_global_norm``; from a
  session's second step on, the packed update (``loop._Packed``: the gradient
  copied into its buffer, one ``Optimizer.update`` of the buffers, the result
  copied into the parameters and slots),
* ``step``     — the rest of a training step: the logged gradient norm, the
  step's dropout generator (models with dropout only), the learning rate,
  the divergence check, EMA (the step time ``run_trial`` measures, minus the
  parts above and ``data``),
* ``data``     — ``TrainBatches.next`` (gathering a minibatch),
* ``eval``     — ``evaluate`` on every evaluated split,
* ``ckpt``     — ``CheckpointStore.save`` (building and writing the files),
* ``other``    — the rest: setup, bookkeeping, the result.

``outside`` = step + data + eval + ckpt + other, the share to keep at or below
10 %. Each part is timed by wrapping the public function the loop calls
(so the numbers hold for the loop as it is, and cost two ``perf_counter``
calls per call); ``upd us`` is the update's microseconds per step. Each
trial runs ``--repeats`` times in a fresh checkpoint folder; the table shows
medians::

    python benchmarks/trial_overhead.py            # the reproduce budgets (~3 min)
    python benchmarks/trial_overhead.py --quick    # a quarter of the steps
    python benchmarks/trial_overhead.py --only ViT # the workloads whose label has "ViT"

The workloads: the figures 1-3 trials, the ResNet and residual MLP tried first
for the instability figures, and the 6-block Post-LN Transformer (Adam) that
figures 4-8 now train (:data:`refplay.train.unstable.TRANSFORMER_WARMUP`).

Timings are wall-clock on a possibly shared machine: the shares (ratios
measured within one trial) are steadier than the milliseconds.
"""

from __future__ import annotations

from refplay import threads

threads.set_thread_env(1)   # before NumPy loads: one BLAS thread, as inside a study worker

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import NamedTuple  # noqa: E402

from refplay import clipping  # noqa: E402
from refplay.data.batching import TrainBatches  # noqa: E402
from refplay.optim import Optimizer  # noqa: E402
from refplay.train import TrialSettings, get_workload, loop, run_trial, unstable  # noqa: E402
from refplay.train.checkpoints import CheckpointStore  # noqa: E402

PARTS = ("fwd+bwd", "update", "step", "data", "eval", "ckpt", "other")
OUTSIDE = ("step", "data", "eval", "ckpt", "other")


class Case(NamedTuple):
    """One workload as a figure of ``refplay reproduce`` trains it."""

    label: str
    workload: str
    workload_options: dict
    config: dict
    settings: TrialSettings


def cases() -> list[Case]:
    """The trials behind the figures, at their full (not ``--quick``) sizes."""
    warm, clip, vit = unstable.WARMUP, unstable.CLIPPING, unstable.TRANSFORMER_WARMUP
    return [
        Case("fig1  CNN, Adam", "mnist1d_cnn", {},
             {"optimizer": "adam", "lr": 0.03, "schedule": "cosine", "warmup_steps": 50},
             TrialSettings(max_train_steps=1000, eval_every=50, keep_best=1)),
        Case("fig2  MLP, Nesterov", "mnist1d_mlp", {},
             {"optimizer": "nesterov", "gamma": 0.9, "schedule": "cosine", "lr": 0.1,
              "weight_decay": 1e-4},
             TrialSettings(max_train_steps=2000, eval_every=100, keep_best=1)),
        Case("fig3  CNN, 1000 val", "mnist1d_cnn", {"n_validation": 1000},
             {"optimizer": "adam", "lr": 0.01},
             TrialSettings(max_train_steps=2000, eval_every=100, keep_best=1)),
        Case("ResNet post-LN (tried first)", warm.workload, dict(warm.workload_options),
             warm.config("unstable", warm.measured["lr_star"]),
             TrialSettings(max_train_steps=warm.max_train_steps, eval_every=50, keep_best=0)),
        Case("fig9  residual MLP", clip.workload, dict(clip.workload_options),
             clip.config("stable", 0.04),
             TrialSettings(max_train_steps=clip.max_train_steps, eval_every=50, keep_best=0)),
        Case("figs4-8 ViT post-LN", vit.workload, dict(vit.workload_options),
             vit.config("unstable", vit.measured["lr_star"][0]),
             TrialSettings(max_train_steps=vit.max_train_steps, eval_every=50, keep_best=0)),
    ]


class Timers:
    """Seconds spent in wrapped callables, per part; a timed call inside another one
    (``Optimizer.update`` inside the packed update) counts for the outer one only."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.running = False

    def timed(self, part: str, function):
        def wrapper(*args, **kwargs):
            if self.running:
                return function(*args, **kwargs)
            self.running = True
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start
                self.running = False
        return wrapper

    @contextlib.contextmanager
    def patched(self, owner, name: str, part: str):
        original = getattr(owner, name)
        setattr(owner, name, self.timed(part, original))
        try:
            yield
        finally:
            setattr(owner, name, original)


def _timed_model(model, timers: Timers):
    """The workload's model with ``loss_and_grads`` timed (an instance attribute, so the
    model stays what it is: the loop still sees whether it has dropout)."""
    model.loss_and_grads = timers.timed("fwd+bwd", model.loss_and_grads)
    return model


def measure(case: Case, max_train_steps: int) -> dict[str, float]:
    """One trial of ``case``: seconds per part, the wall time and the step time."""
    timers = Timers()
    workload = get_workload(case.workload, **case.workload_options)
    build = workload.build_model
    workload = dataclasses.replace(workload,
                                   build_model=lambda **h: _timed_model(build(**h), timers))
    settings = case.settings.replace(max_train_steps=max_train_steps)
    with contextlib.ExitStack() as stack:
        stack.enter_context(timers.patched(Optimizer, "update", "update"))
        stack.enter_context(timers.patched(clipping, "clip_by_global_norm", "update"))
        stack.enter_context(timers.patched(loop._Packed, "pack_grads", "update"))
        stack.enter_context(timers.patched(loop._Packed, "update", "update"))
        stack.enter_context(timers.patched(TrainBatches, "next", "data"))
        stack.enter_context(timers.patched(loop, "evaluate", "eval"))
        stack.enter_context(timers.patched(CheckpointStore, "save", "ckpt"))
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="refplay-overhead-"))
        start = time.perf_counter()
        result = run_trial(workload, case.config, seed=0, settings=settings,
                           checkpoint_dir=folder)
        wall = time.perf_counter() - start
    if not result.feasible:
        raise RuntimeError(f"{case.label}: the trial ended {result.status}: {result.reason}")
    steps = len(result.grad_norms)
    train_seconds = result.seconds_per_step * steps
    s = timers.seconds
    s["step"] = train_seconds - s["fwd+bwd"] - s["update"] - s["data"]
    s["other"] = wall - sum(s[p] for p in PARTS if p != "other")
    return {**s, "wall": wall, "ms_per_step": 1e3 * train_seconds / steps}


def report(case: Case, runs: list[dict[str, float]], steps: int) -> float:
    """Print one row of medians; return the median ``outside`` share."""
    shares = {p: statistics.median(r[p] / r["wall"] for r in runs) for p in PARTS}
    outside = statistics.median(sum(r[p] for p in OUTSIDE) / r["wall"] for r in runs)
    wall = statistics.median(r["wall"] for r in runs)
    ms = statistics.median(r["ms_per_step"] for r in runs)
    update_us = statistics.median(1e6 * r["update"] / steps for r in runs)
    cells = "".join(f"{100 * shares[p]:8.1f}" for p in PARTS)
    print(f"{case.label:22s}{steps:6d}{case.settings.eval_every:6d}{wall:8.2f}{ms:8.2f}"
          f"{update_us:8.0f}{cells}{100 * outside:9.1f}", flush=True)
    return outside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of each step budget")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="",
                        help="run only the workloads whose label contains this text, e.g. ViT")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"medians of {args.repeats} trial(s); shares in % of the trial's wall time")
    header = "".join(f"{p:>8s}" for p in PARTS)
    print(f"{'workload':22s}{'steps':>6s}{'eval':>6s}{'wall s':>8s}{'ms/step':>8s}"
          f"{'upd us':>8s}{header}{'outside':>9s}")
    worst = 0.0
    for case in [c for c in cases() if args.only in c.label]:
        steps = case.settings.max_train_steps // (4 if args.quick else 1)
        measure(case, max_train_steps=2)      # compile the Numba kernels, build the data
        runs = [measure(case, steps) for _ in range(args.repeats)]
        worst = max(worst, report(case, runs, steps))
    print(f"largest share outside fwd+bwd+update: {100 * worst:.1f} % (goal: at most 10 %)")


if __name__ == "__main__":
    main()
