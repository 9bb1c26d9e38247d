r"""Compute-bound training in two rounds, and the schedule-transfer pitfall (D12).

The playbook ("Deciding how long to train when training is compute-bound"):

* Round 1: "Shorter runs to find good model and optimizer hyperparameters."
* Round 2: "Run the best hyperparameter configuration from Round 1." and
  "**(Speculation)** 🤖 Use the extra steps to extend the period of training
  at a high learning rate. E.g. if linear schedule then keep the length of
  the decay fixed from Round 1 and extend the period of constant lr in the
  beginning. For cosine decay, just keep the base lr from Round 1 and extend
  `max_train_steps`." — refplay marks this as the playbook's speculation
  and measures it against a control (the Round-1 schedule simply rescaled to
  the new length).
* On what transfers: "Learning rate schedule: unlikely to transfer
  perfectly [...] Tuning sqrt decay on small # of training steps then
  extending to large # will result in the majority of training occurring at
  overly small steps."

**The pitfall, exactly.** Round 1 runs :math:`N_1` steps of
:math:`\eta_s = \eta\sqrt{k/(s + k)}` (``schedules.rsqrt``), ending at
:math:`\eta_{N_1 - 1}`. Extended to :math:`N_2` steps, every step
:math:`s \ge N_1` has a strictly smaller rate, so the fraction of Round-2
steps below Round 1's final rate is

.. math:: \frac{N_2 - N_1}{N_2} = 1 - \frac{N_1}{N_2}

(90 % at :math:`N_2 = 10 N_1`). :func:`schedule_pitfall` counts it for any
pair of schedules.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from refplay import _validate, analysis, schedules, search
from refplay.analysis.objective import trial_objective
from refplay.plots import rounds as rounds_plots
from refplay.procedures.result import ProcedureResult
from refplay.procedures.studies import run_configs
from refplay.train.settings import TrialSettings

__all__ = ["schedule_pitfall", "rsqrt_pitfall", "two_rounds", "EXTENSIONS", "RoundsMeasured",
           "RoundsDecision", "measure_rounds", "decide_rounds"]

EXTENSIONS = ("linear", "cosine")


def schedule_pitfall(round1, n1: int, round2, n2: int) -> float:
    """Fraction of the ``n2`` Round-2 steps whose rate is below Round 1's final rate.

    Round 1's final rate is ``round1(n1 - 1)``, the rate of its last update.
    """
    n1 = _validate.integer("n1", n1, low=1)
    n2 = _validate.integer("n2", n2, low=1)
    final1 = float(round1(n1 - 1))
    lrs = np.asarray(round2(np.arange(n2)), dtype=np.float64)
    return float(np.mean(lrs < final1))


def rsqrt_pitfall(n1: int, n2: int, *, base_lr: float = 1.0, shift: int = 1) -> float:
    """:func:`schedule_pitfall` for an rsqrt decay tuned for ``n1`` steps, run for ``n2``."""
    s = schedules.rsqrt(base_lr, shift)
    return schedule_pitfall(s, n1, s, n2)


def _round2_config(config: dict, extension: str, n1: int, n2: int) -> dict:
    """Round 2 by the playbook's speculation (``schedules.extend_linear/extend_cosine``)."""
    if extension == "linear":
        ext = schedules.extend_linear(schedules.linear_decay(config["lr"], n1), n2)
        return {**config, "schedule": "linear", "decay_steps": ext.decay_steps,
                "constant_steps": ext.constant_steps}
    ext = schedules.extend_cosine(schedules.cosine_decay(config["lr"], n1), n2)
    return {**config, "schedule": "cosine", "decay_steps": ext.decay_steps}


class RoundsMeasured(NamedTuple):
    """Round 1's top configs and their objectives in Round 1, Round 2 and the control."""

    workload: str
    extension: str
    round1_steps: int
    round2_steps: int
    top_configs: list                # best Round-1 config first
    round1_objectives: list
    round2_objectives: list
    control_objectives: list | None  # the decay rescaled to Round 2 (linear only)


class RoundsDecision(NamedTuple):
    """Does the ranking transfer, and does the extension beat the rescaled control?"""

    spearman_rho: float
    best_transfers: bool             # Round 1's best is still best in Round 2
    gain_over_control: float | None  # mean control - Round 2 objective (> 0: extension better)
    text: str


def measure_rounds(workload: str = "mnist1d_cnn", *, n_configs: int = 16,
                   round1_steps: int = 500, round2_steps: int = 4_000, top_k: int = 3,
                   extension: str = "linear", optimizer: str = "adam", lr_range=(3e-4, 3e-2),
                   eval_every: int = 50, seed: int = 0, workers: int | None = 0,
                   workspace: str | os.PathLike | None = None) -> tuple[RoundsMeasured, list]:
    """Run (or re-read) Round 1, Round 2 of the top configs, the control: ``(measured, trials)``."""
    _validate.one_of("extension", extension, EXTENSIONS)
    top_k = _validate.integer("top_k", top_k, low=2)
    if top_k > n_configs:
        raise ValueError(f"top_k={top_k} is larger than n_configs={n_configs}")
    if round2_steps <= round1_steps:
        raise ValueError(f"round2_steps={round2_steps} must exceed round1_steps={round1_steps}")
    space = search.SearchSpace(lr=search.Float(*lr_range, scale="log"))
    configs = [{"optimizer": optimizer, "schedule": extension, **p}
               for p in search.halton(space, n_configs, seed)]
    run = dict(seed=seed, workers=workers, workspace=workspace)
    s1 = TrialSettings(max_train_steps=round1_steps, eval_every=eval_every, keep_best=0)
    r1 = run_configs("round1", workload, configs, s1, **run)
    obj1 = np.array([trial_objective(r) for r in r1])
    order = [i for i in np.argsort(obj1, kind="stable") if math.isfinite(obj1[i])][:top_k]
    s2 = s1.replace(max_train_steps=round2_steps)
    extended = [_round2_config(configs[i], extension, round1_steps, round2_steps) for i in order]
    r2 = run_configs("round2", workload, extended, s2, **run)
    trials, control = [*r1, *r2], None
    if extension == "linear":
        # The control: the Round-1 schedule rescaled, decaying over all of Round 2.
        rescaled = [{**configs[i], "schedule": "linear"} for i in order]
        rc = run_configs("round2_control", workload, rescaled, s2, **run)
        control = [trial_objective(r) for r in rc]
        trials += rc
    return RoundsMeasured(workload=workload, extension=extension, round1_steps=round1_steps,
                          round2_steps=round2_steps, top_configs=[configs[i] for i in order],
                          round1_objectives=[float(obj1[i]) for i in order],
                          round2_objectives=[trial_objective(r) for r in r2],
                          control_objectives=control), trials


def decide_rounds(m: RoundsMeasured) -> RoundsDecision:
    """Spearman ρ of the two rounds' objectives; the extension against the control."""
    obj1, obj2 = np.array(m.round1_objectives), np.array(m.round2_objectives)
    rho = analysis.spearman(obj1, obj2) if len(obj1) >= 2 else math.nan
    best_transfers = bool(np.nanargmin(obj2) == 0)
    gain = (None if m.control_objectives is None
            else float(np.nanmean(np.array(m.control_objectives) - obj2)))
    text = (f"Round 1's ranking {'carries' if rho > 0.5 else 'does not carry'} over to "
            f"{m.round2_steps} steps (Spearman ρ = {rho:.2f} over the top {len(obj1)}); the "
            f"best Round-1 config is {'still' if best_transfers else 'no longer'} best")
    if gain is not None:
        text += (f"; the playbook's (Speculation) linear extension "
                 f"{'beats' if gain > 0 else 'does not beat'} simply rescaling the decay "
                 f"(mean gain {gain:+.4f})")
    return RoundsDecision(
        spearman_rho=rho, best_transfers=best_transfers, gain_over_control=gain, text=text)


TWO_ROUNDS_QUESTION = ("Do the best hyperparameters of short Round-1 runs stay best when trained "
                       "longer in Round 2?")


def two_rounds(workload: str = "mnist1d_cnn", *, quick: bool = False,
               **options) -> ProcedureResult:
    """Round 1 short, Round 2 long for the top configs; does the ranking transfer?

    Round 1: a Halton search over lr (``schedule=extension``, decaying over
    ``round1_steps``). Round 2: the ``top_k`` configs for ``round2_steps``
    with the playbook's extension, and (for linear) a control that decays
    over the whole new length. Reports Spearman ρ between the Round-1 and
    Round-2 objectives of the top configs, whether the best transfers, the
    mean gain of the extension over the control, and the rsqrt pitfall
    fraction for ``round1_steps → round2_steps``.
    ``options`` are :func:`measure_rounds`'s. ``quick=True``: ``mnist1d_mlp``, 6 configs, 300 →
    1,500 steps.
    """
    if quick:
        workload = "mnist1d_mlp"
        options.update(n_configs=6, round1_steps=300, round2_steps=1_500, eval_every=50)
    m, trials = measure_rounds(workload, **options)
    d = decide_rounds(m)
    numbers = {"workload": m.workload, "extension": m.extension,
               "round1_steps": m.round1_steps, "round2_steps": m.round2_steps,
               "top_configs": m.top_configs, "round1_objectives": m.round1_objectives,
               "round2_objectives": m.round2_objectives, "spearman_rho": d.spearman_rho,
               "best_transfers": d.best_transfers}
    if m.control_objectives is not None:
        numbers.update(control_objectives=m.control_objectives,
                       extension_gain_over_control=d.gain_over_control)
    numbers["rsqrt_pitfall_fraction"] = rsqrt_pitfall(m.round1_steps, m.round2_steps)
    caveats = ["The Round-2 extension is the playbook's own '(Speculation)': measured here, "
               "not assumed.",
               f"With top_k={len(m.top_configs)} the rank correlation is coarse.",
               f"An rsqrt decay tuned for {m.round1_steps} and run for {m.round2_steps} steps "
               f"spends {numbers['rsqrt_pitfall_fraction']:.0%} of them below Round 1's final "
               f"rate (exactly 1 - N1/N2)."]
    return ProcedureResult(
        question=TWO_ROUNDS_QUESTION,
        decision=d.text, numbers=numbers, figures={"two_rounds": rounds_plots.rounds_plot(numbers)},
        trials=trials, caveats=caveats)
