"""The playbook's procedures as functions: each runs (or reads) trials and returns a decision.

A procedure is **measure → decide → draw**: it measures (runs or re-reads
its trials and returns a frozen ``NamedTuple`` of numbers), decides (a pure
function of those numbers, tested without training) and draws (a function of
:mod:`refplay.plots`). Every procedure returns a :class:`~refplay.procedures.result.ProcedureResult`
(question, decision, numbers, figures, trials, caveats), runs its trials as
studies in a workspace (:mod:`refplay.procedures.studies`: resumable and
parallel over ``workers``), and is also a ``refplay procedure NAME`` command
(:mod:`refplay.cli.procedure`).

==============================  ==================================================
``search_space_boundaries``     is the best trial near a boundary of its range? (Figure 1)
``isolation_study``             the best value of a scientific parameter, lr tuned away (Fig. 2)
``trials_needed``               the best of N trials: how many are enough? (Figure 3)
``initial_max_train_steps``     the fastest trial of a constant-LR sweep fits the training set
``refine_max_train_steps``      best-step fractions: too long / train longer / ok
``batch_throughput``            examples/s against batch size; the largest useful batch
``steps_to_result``             steps to a target against batch size (Shallue et al.)
``batch_size_fair_comparison``  fixed vs retuned learning rate across batch sizes
``retrain_variance``            trial variance, one seed stream at a time
``split_variance``              variance across random validation splits
``study_variance``              variance of the best trial across sampler seeds
``adopt``                       adopt a candidate? effect, interval, Welch or McNemar
``two_rounds``                  compute-bound Round 1 / Round 2, ranking transfer
``schedule_pitfall``            steps of Round 2 below Round 1's final learning rate
``schedule_family``             constant vs decaying schedules, lr tuned per family
``gradient_noise_steps``        dropout and small batches cost steps
``model_change_study``         a change unstable at high rates, fixed by warmup (Figure 4)
``frequent_evals``              every-step early evaluation, two models (Figure 5)
``early_instability_check``     every-step vs sparse view of one run at 2 × lr*
``warmup_study``                the shortest warmup that unlocks a high rate (Figure 6)
``stability_scan``              is the learning rate limited by instability? (Figures 7a, 7b)
``warmup_effect``               lr sweeps with and without warmup, per model (Figure 8)
``clipping_study``              clipping thresholds from a stable run's norms (Figure 9)
``clipping_identity``           aggressive clipping is a per-step learning-rate cut, exactly
==============================  ==================================================
"""

from __future__ import annotations

import importlib

# Public names and their modules, imported on first use: ``import refplay.procedures``
# must not load the trainer or matplotlib.
_EXPORTS = {
    "ProcedureResult": "result", "explicit_spec": "studies", "run_configs": "studies",
    "run_spec": "studies", "named_spec": "studies", "halton_spec": "studies",
    "load_frame": "studies", "run_keyed": "studies",
    "search_space_boundaries": "boundaries", "isolation_study": "isolation",
    "trials_needed": "trial_budget",
    "initial_max_train_steps": "step_budget", "refine_max_train_steps": "step_budget",
    "first_step_reaching": "step_budget", "fastest_fit": "step_budget",
    "batch_throughput": "batch_size", "throughput_decision": "batch_size",
    "steps_to_result": "batch_size", "scaling_decision": "batch_size",
    "batch_size_fair_comparison": "batch_size",
    "retrain_variance": "variance", "split_variance": "variance", "study_variance": "variance",
    "adopt": "variance", "Adoption": "variance",
    "two_rounds": "rounds", "schedule_pitfall": "rounds", "rsqrt_pitfall": "rounds",
    "schedule_family": "schedules_family", "gradient_noise_steps": "noise",
    "stability_scan": "instability", "early_instability_check": "instability",
    "model_change_study": "model_change", "frequent_evals": "frequent_evals",
    "warmup_effect": "warmup_effect",
    "warmup_study": "warmup", "clipping_study": "clipping", "clipping_identity": "clipping",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"refplay.procedures.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'refplay.procedures' has no attribute {name!r}")
