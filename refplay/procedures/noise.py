"""Gradient noise costs steps: dropout and small batches slow the fit (D21).

The playbook ("Determining the number of steps for each training run"):
"the number of steps [needed] [...] depends on [...] the amount of noise in
the gradient: smaller batch sizes, data augmentation, and regularizers such
as dropout all add noise, and a noisier gradient needs more steps", and in
"Choosing the batch size": increasing the batch size reduces the number of
steps needed "up to a point".

With the learning rate fixed (tuned once, on the least noisy setting), the
procedure measures the steps until the training loss — measured in eval mode
on a fixed stratified sample of the training split (``train_eval/loss``, no
dropout) — first reaches ``target``, for every (batch size, dropout) pair.
The claim (CL20): steps increase as dropout rises at a fixed batch size, and
as the batch shrinks at a fixed dropout.
"""

from __future__ import annotations

import math
import os

from refplay import _validate
from refplay.plots import noise as noise_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.step_budget import first_step_reaching
from refplay.procedures.studies import run_configs
from refplay.train.settings import TrialSettings

__all__ = ["gradient_noise_steps", "monotone_in"]

METRIC = "train_eval/loss"


def monotone_in(values) -> bool:
    """Non-decreasing, with ``None`` (never reached) counting as infinitely many steps."""
    v = [math.inf if x is None else x for x in values]
    return all(b >= a for a, b in zip(v, v[1:]))


GRADIENT_NOISE_STEPS_QUESTION = ("Does more gradient noise (dropout, smaller batches) cost more "
                                 "training steps at a fixed learning rate?")


def gradient_noise_steps(workload: str = "mnist1d_mlp", *, config: dict | None = None,
                         dropouts=(0.0, 0.2, 0.5), batch_sizes=(100, 25), target: float = 0.6,
                         max_steps: int = 4_000, eval_every: int = 25, eval_train: int = 1000,
                         seed: int = 0, quick: bool = False, workers: int | None = 0,
                         workspace: str | os.PathLike | None = None) -> ProcedureResult:
    """Steps to a training-loss target against dropout and batch size, learning rate fixed.

    ``batch_sizes`` go from the least to the most noisy (large to small).
    ``quick=True``: ``dropouts=(0, 0.5)``, 2,000 steps.
    """
    if quick:
        dropouts, max_steps = (0.0, 0.5), 2_000
    config = dict(config or {"optimizer": "adam", "lr": 3e-3})
    if "dropout" in config or "batch_size" in config:
        raise ValueError("config must not set dropout or batch_size: the procedure varies them")
    target = _validate.real("target", target, low=0.0, low_open=True)
    settings = TrialSettings(max_train_steps=max_steps, eval_every=eval_every, keep_best=0,
                             eval_train=eval_train)
    grid = [(b, d) for b in batch_sizes for d in dropouts]
    configs = [{**config, "batch_size": int(b), "dropout": float(d)} for b, d in grid]
    results = run_configs("gradient_noise", workload, configs, settings, seed=seed,
                          workers=workers, workspace=workspace)
    steps = {(b, d): first_step_reaching(r, target, METRIC) for (b, d), r in zip(grid, results)}
    by_dropout = {b: [steps[(b, d)] for d in dropouts] for b in batch_sizes}
    by_batch = {d: [steps[(b, d)] for b in batch_sizes] for d in dropouts}
    up_dropout = all(monotone_in(v) for v in by_dropout.values())
    up_batch = all(monotone_in(v) for v in by_batch.values())
    numbers = {"workload": workload, "config": config, "target_train_loss": target,
               "dropouts": list(dropouts), "batch_sizes": list(batch_sizes),
               "steps": {f"B={b}": by_dropout[b] for b in batch_sizes},
               "steps_increase_with_dropout": up_dropout,
               "steps_increase_as_batch_shrinks": up_batch, "max_steps": max_steps}
    costs = "costs" if up_dropout and up_batch else "does not always cost"
    decision = (f"more gradient noise {costs} steps here: dropout "
                f"{'always' if up_dropout else 'not always'} adds steps, a "
                f"smaller batch {'always' if up_batch else 'not always'} adds steps; budget "
                f"max_train_steps for the noisiest setting you will use")
    fig = noise_plots.noise_plot(numbers)
    return ProcedureResult(
        question=GRADIENT_NOISE_STEPS_QUESTION,
        decision=decision, numbers=numbers, figures={"gradient_noise": fig}, trials=results,
        caveats=["Augmentation is not yet a trial config key, so the augmentation "
                 "arm of the playbook's claim is not measured.",
                 f"The training loss is measured in eval mode on {eval_train} "
                 f"training examples every {eval_every} steps."])
