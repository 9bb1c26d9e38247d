"""Which learning-rate schedule family? Tune the base rate of each, then compare (D20).

The playbook (FAQ "What learning rate decay schedule family should I use?"):
"It's generally a good idea to use *some kind* of non-constant schedule
[...] the best schedule family is problem-dependent [...] we prefer linear
decay or cosine decay." And from "Identifying scientific, nuisance, and
fixed hyperparameters": when comparing schedules, the learning rate is a
nuisance hyperparameter to be re-tuned for every family.

The procedure is an isolation study: ``schedule`` is the scientific
hyperparameter, ``lr`` the nuisance, tuned over the same Halton points for
every family; the best configuration of each family is retrained with
``seeds`` seeds, and a decaying family beats ``constant`` when

.. math:: \\bar e_\\text{constant} - \\bar e_\\text{decay} > 2\\sqrt{\\mathrm{SE}_c^2 + \\mathrm{SE}_d^2}.
"""

from __future__ import annotations

import math
import os

import numpy as np

from refplay import _validate, search
from refplay.analysis.objective import trial_objective
from refplay.analysis.uncertainty import standard_error
from refplay.plots import rounds as rounds_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_configs
from refplay.train.settings import TrialSettings

__all__ = ["FAMILIES", "schedule_family"]

FAMILIES = ("constant", "linear", "cosine", "rsqrt")


def _family_config(family: str, lr: float, optimizer: str, max_train_steps: int) -> dict:
    config = {"optimizer": optimizer, "lr": float(lr), "schedule": family}
    if family == "rsqrt":
        # eta * sqrt(k / (s + k)) with k = 5 % of training: halves by 20 % of the run.
        config["shift"] = max(1, max_train_steps // 20)
    return config


SCHEDULE_FAMILY_QUESTION = ("With the learning rate tuned for each, does some decaying schedule "
                            "beat a constant learning rate?")


def schedule_family(workload: str = "mnist1d_cnn", *, families=FAMILIES, n_lrs: int = 8,
                    lr_range=(3e-4, 3e-2), max_train_steps: int = 2_000, seeds: int = 3,
                    optimizer: str = "adam", eval_every: int = 50, seed: int = 0,
                    quick: bool = False, workers: int | None = 0,
                    workspace: str | os.PathLike | None = None) -> ProcedureResult:
    """Best validation error per schedule family, learning rate tuned per family.

    ``quick=True``: ``mnist1d_mlp``, 3 learning rates, 800 steps, 2 seeds.
    """
    if quick:
        workload, n_lrs, max_train_steps, seeds = "mnist1d_mlp", 3, 800, 2
    families = [_validate.one_of("families[i]", f, FAMILIES) for f in families]
    if "constant" not in families or len(families) < 2:
        raise ValueError(f"families={families} must include 'constant' and at least one decay")
    seeds = _validate.integer("seeds", seeds, low=2)
    lrs = [p["lr"] for p in search.halton(
        search.SearchSpace(lr=search.Float(*lr_range, scale="log")), n_lrs, seed)]
    settings = TrialSettings(max_train_steps=max_train_steps, eval_every=eval_every, keep_best=0)
    run = dict(seed=seed, workers=workers, workspace=workspace)
    configs = [_family_config(f, lr, optimizer, max_train_steps) for f in families for lr in lrs]
    tuned = run_configs("schedule_family", workload, configs, settings, **run)
    objs = np.array([trial_objective(r) for r in tuned]).reshape(len(families), len(lrs))
    best_cfg = {f: configs[i * len(lrs) + int(np.nanargmin(objs[i]))]
                for i, f in enumerate(families)}
    retrains = run_configs("schedule_family_retrain", workload, list(best_cfg.values()), settings,
                           repeats=seeds, **{**run, "seed": seed + 1})
    rv = np.array([trial_objective(r) for r in retrains]).reshape(len(families), seeds)
    mean = {f: float(np.nanmean(rv[i])) for i, f in enumerate(families)}
    se = {f: standard_error(rv[i]) for i, f in enumerate(families)}
    decays = [f for f in families if f != "constant"]
    best_decay = min(decays, key=mean.get)
    margin = mean["constant"] - mean[best_decay]
    se_diff = math.sqrt(se["constant"] ** 2 + se[best_decay] ** 2)
    beats = margin > 2 * se_diff
    numbers = {"workload": workload, "max_train_steps": max_train_steps, "lrs": lrs,
               "objectives_by_family": {f: objs[i].tolist() for i, f in enumerate(families)},
               "best_lr": {f: best_cfg[f]["lr"] for f in families},
               "retrain_mean": mean, "retrain_se": se, "best_decay_family": best_decay,
               "constant_minus_best_decay": margin, "se_of_difference": se_diff,
               "decay_beats_constant_by_2se": beats}
    if beats:
        decision = (f"use a decaying schedule: {best_decay} beats constant by {margin:.4f} "
                    f"(> 2 SE = {2 * se_diff:.4f}) with the learning rate tuned for each")
    else:
        decision = (f"no decaying family beats constant by more than 2 SE here (best {best_decay}, "
                    f"margin {margin:+.4f}, 2 SE = {2 * se_diff:.4f}); the playbook still "
                    f"prefers linear or cosine decay")
    fig = rounds_plots.schedule_family_plot(lrs, numbers["objectives_by_family"], mean, se)
    return ProcedureResult(
        question=SCHEDULE_FAMILY_QUESTION,
        decision=decision, numbers=numbers, figures={"schedule_family": fig},
        trials=[*tuned, *retrains],
        caveats=[f"{len(lrs)} learning rates per family: the base rate is tuned "
                 f"coarsely; {seeds} retrains per family set the SE.",
                 "rsqrt uses shift = max_train_steps / 20."])
