"""Calibrate the Transformer workload's instability: Post-LN vs Pre-LN x warmup x lr x seeds.

Playbook, "How can optimization failures be debugged and mitigated?":

    *Any workload will become unstable if the learning rate is too large.
    Instability is only an issue when it forces us to use a learning rate
    that's too small.*

and, on warmup, *"the goal of warmup is to find the shortest number of
warmup steps that allows us to access peak learning rates that are much
higher than unstable_base_learning_rate"*. Post-LN Transformers trained with
Adam are the textbook case (Xiong et al. 2020; Liu et al. 2020; the playbook's
Figure 8): without warmup they fail at learning rates that Pre-LN, or Post-LN
with warmup, train at.

Every trial is ``refplay.train.run_trial`` on ``mnist1d_transformer`` (a ViT
on MNIST-1D: 10 patches of 4 samples and a CLS token) with Adam, a constant
learning rate after a linear warmup of 0 / 5 % / 10 % of ``max_train_steps``
(carved out of the budget), and the training loop's own divergence rule
(``refplay.train.settings``: NaN/Inf, or 10 of the last 50 steps above 10 x
the step-0 loss, makes a trial *infeasible*). Each arm (norm placement,
depth, beta2) runs a factor-2 learning-rate grid for each seed. Per arm,
warmup and seed the script prints:

* the largest feasible lr and the first infeasible one;
* lr*, the lr with the lowest best validation error over the evaluations
  (every 10 % of the run; 500 validation examples, so +-2 % noise);
* whether the run *collapsed*: a Transformer that fails at a large
  learning rate here does not diverge but collapses to chance, the loss
  stuck at ~ln 10 = 2.30 (below the step-0 loss of ~2.9, so the divergence
  rule never calls it infeasible). A run counts as collapsed when the mean
  training loss of its last 10 % of steps is above ``COLLAPSED`` = 0.9 ln 10;
  the table gives the first *failing* lr (infeasible or collapsed) beside
  the largest feasible one;
* spikes in the per-step training loss (``refplay.analysis.detect_instability``),
  early (first 10 % of the steps) or mid-run.

Trials run in parallel in ``--procs`` processes (each pinned to one thread by
``run_trial``), niced. Raw rows go to ``--out`` as JSON, so the table can be
re-printed (``--table FILE``) without training again.

Run (the table in ``docs/instability.md``)::

    nice -n 10 python benchmarks/calibrate_transformer.py --arms post_d6 pre_d6 \\
        --steps 500 --seeds 0 1 --out runs/calibrate_transformer.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

import numpy as np

from refplay.analysis.instability import detect_instability
from refplay.train import run_trial
from refplay.train.settings import TrialSettings

WORKLOAD = "mnist1d_transformer"
COLLAPSED = 0.9 * math.log(10)    # final training loss above this: collapsed to chance
ADAM = {"optimizer": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
LRS = tuple(round(1e-3 * 2 ** k, 6) for k in range(-1, 6))     # 5e-4 ... 0.032
WARMUP_FRACTIONS = (0.0, 0.05, 0.1)

#: arm name -> (workload hyperparameters, optimizer overrides)
ARMS = {
    "post_d4": ({"norm_placement": "post", "depth": 4}, {}),
    "pre_d4": ({"norm_placement": "pre", "depth": 4}, {}),
    "post_d6": ({"norm_placement": "post", "depth": 6}, {}),
    "pre_d6": ({"norm_placement": "pre", "depth": 6}, {}),
    "post_d8": ({"norm_placement": "post", "depth": 8}, {}),
    "pre_d8": ({"norm_placement": "pre", "depth": 8}, {}),
    "post_d6_b98": ({"norm_placement": "post", "depth": 6}, {"beta2": 0.98}),
    "pre_d6_b98": ({"norm_placement": "pre", "depth": 6}, {"beta2": 0.98}),
}


class Row(NamedTuple):
    """One trial of the calibration."""

    arm: str
    warmup_fraction: float
    lr: float
    seed: int
    status: str                # the TrialStatus value
    best_error: float          # NaN when infeasible
    final_loss: float          # mean training loss of the last 10 % of the steps run
    steps_done: int
    early_spike: float         # height of the largest early spike event (0: none)
    mid_spike: float           # height of the largest mid-run spike event (0: none)
    ms_per_step: float


def config_of(arm: str, lr: float, warmup_fraction: float, steps: int,
              schedule: str = "constant") -> dict:
    """The trial config of ``arm`` at ``lr`` with a warmup of ``warmup_fraction`` x ``steps``,
    then ``schedule`` ("constant", or "cosine": decay to 0 over the rest of the budget)."""
    hparams, opt = ARMS[arm]
    extra = {"schedule": "cosine"} if schedule == "cosine" else {}
    return {**ADAM, **opt, **hparams, "lr": lr,
            "warmup_steps": int(round(warmup_fraction * steps)), **extra}


def run_one(job: tuple) -> Row:
    """Run one trial; ``job`` = (arm, warmup_fraction, lr, seed, steps, schedule)."""
    arm, frac, lr, seed, steps, schedule = job
    settings = TrialSettings(max_train_steps=steps, eval_every=max(1, steps // 10), keep_best=0)
    r = run_trial(WORKLOAD, config_of(arm, lr, frac, steps, schedule), seed=seed, settings=settings)
    losses = np.asarray(r.train_losses)
    tail = losses[-max(1, len(losses) // 10):]
    events = detect_instability(losses) if len(losses) > 1 else ()
    height = {kind: max([e.height for e in events if e.kind == kind], default=0.0)
              for kind in ("early", "mid")}
    best = r.best_metrics.get("validation/error_rate", float("nan")) if r.feasible else math.nan
    return Row(arm=arm, warmup_fraction=frac, lr=lr, seed=seed, status=str(r.status),
               best_error=float(best), final_loss=float(np.mean(tail)) if len(tail) else math.nan,
               steps_done=int(r.steps_done), early_spike=float(height["early"]),
               mid_spike=float(height["mid"]), ms_per_step=1e3 * float(r.seconds_per_step))


def _nice() -> None:
    os.nice(10)


def run_all(jobs: list, procs: int) -> list[Row]:
    """Every job, ``procs`` at a time (niced workers), in job order."""
    rows = []
    with ProcessPoolExecutor(max_workers=max(1, procs), initializer=_nice) as pool:
        for i, r in enumerate(pool.map(run_one, jobs, chunksize=1), start=1):
            rows.append(r)
            print(f"  [{i}/{len(jobs)}] {r.arm} warmup {r.warmup_fraction:.0%} lr {r.lr:g} "
                  f"seed {r.seed}: {r.status}, best error {r.best_error:.3f}, final loss "
                  f"{r.final_loss:.2f}", flush=True)
    return rows


# ------------------------------------------------------------------ the table
class ArmSummary(NamedTuple):
    """Per arm, warmup and seed: what the lr sweep shows."""

    max_feasible_lr: float     # NaN when none is feasible
    first_infeasible_lr: float  # NaN when all are feasible
    first_failing_lr: float    # smallest lr that was infeasible or collapsed (NaN: none)
    best_lr: float
    best_error: float
    spikes: str                # "lr:early/mid" for the lrs with a spike event


def summarize(rows: list[Row]) -> ArmSummary:
    """:class:`ArmSummary` of one sweep (rows of one arm, warmup and seed)."""
    rows = sorted(rows, key=lambda r: r.lr)
    feasible = [r for r in rows if r.status == "complete"]
    infeasible = [r.lr for r in rows if r.status != "complete"]
    failing = [r.lr for r in rows if r.status != "complete" or not r.final_loss <= COLLAPSED]
    best = min(feasible, key=lambda r: r.best_error) if feasible else None
    spikes = " ".join(f"{r.lr:g}:{'E' if r.early_spike else ''}{'M' if r.mid_spike else ''}"
                      for r in rows if r.early_spike or r.mid_spike)
    return ArmSummary(
        max_feasible_lr=max((r.lr for r in feasible), default=math.nan),
        first_infeasible_lr=min(infeasible, default=math.nan),
        first_failing_lr=min(failing, default=math.nan),
        best_lr=best.lr if best else math.nan, best_error=best.best_error if best else math.nan,
        spikes=spikes)


def _lr(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:g}"


def _cell(r: Row) -> str:
    if r.status != "complete":
        return "x"
    return f"{r.best_error:.2f}" + ("c" if r.final_loss > COLLAPSED else "")


def print_table(rows: list[Row]) -> None:
    """The calibration table (Markdown): one line per arm, warmup and seed, then the grids."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r.arm, r.warmup_fraction, r.seed)].append(r)
    print("| arm | warmup | seed | largest feasible lr | first infeasible | first failing lr "
          "(infeasible or collapsed) | lr* | best error | spikes (E early, M mid) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (arm, frac, seed), g in sorted(groups.items()):
        s = summarize(g)
        print(f"| {arm} | {frac:.0%} | {seed} | {_lr(s.max_feasible_lr)} "
              f"| {_lr(s.first_infeasible_lr)} | {_lr(s.first_failing_lr)} | {_lr(s.best_lr)} "
              f"| {s.best_error:.3f} "
              f"| {s.spikes or '-'} |")
    print("\nBest validation error by lr (x: infeasible, c: collapsed to chance):")
    for (arm, frac, seed), g in sorted(groups.items()):
        cells = " ".join(f"{r.lr:g}:{_cell(r)}" for r in sorted(g, key=lambda r: r.lr))
        print(f"  {arm:12s} warmup {frac:4.0%} seed {seed}: {cells}")
    ms = [r.ms_per_step for r in rows if math.isfinite(r.ms_per_step)]
    print(f"\nms per step (median over trials): {np.median(ms):.1f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["post_d6", "pre_d6"])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--lrs", type=float, nargs="+", default=list(LRS))
    p.add_argument("--warmups", type=float, nargs="+", default=list(WARMUP_FRACTIONS))
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="after the warmup: constant, or cosine decay to 0 at the last step")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--out", default=None, help="write the raw rows here (JSON)")
    p.add_argument("--table", default=None, help="print the table of a saved --out file and exit")
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print_table([Row(**d) for d in json.load(f)["rows"]])
        return
    jobs = [(arm, frac, lr, seed, args.steps, args.schedule) for arm in args.arms for frac in args.warmups
            for seed in args.seeds for lr in args.lrs]
    t0 = time.perf_counter()
    rows = run_all(jobs, args.procs)
    wall = time.perf_counter() - t0
    print(f"{len(jobs)} trials of {args.steps} steps in {wall / 60:.1f} min "
          f"({args.procs} processes)\n")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "wall_seconds": wall,
                       "rows": [r._asdict() for r in rows]}, f, indent=1)
    print_table(rows)


if __name__ == "__main__":
    main()
