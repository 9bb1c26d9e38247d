"""The playbook's procedures as functions: each runs (or reads) trials and returns a decision.

Every procedure returns a :class:`~refplay.procedures.result.ProcedureResult`
(question, decision, numbers, figures, trials, caveats), runs its trials as
studies in a workspace (:mod:`refplay.procedures.studies`: resumable and
parallel over ``workers``), and is also a ``refplay procedure NAME`` command
(:mod:`refplay.procedures.cli`).

==============================  ==================================================
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
==============================  ==================================================
"""

from refplay.procedures.batch_size import (batch_size_fair_comparison, batch_throughput,
                                           scaling_decision, steps_to_result,
                                           throughput_decision)
from refplay.procedures.noise import gradient_noise_steps
from refplay.procedures.result import ProcedureResult
from refplay.procedures.rounds import rsqrt_pitfall, schedule_pitfall, two_rounds
from refplay.procedures.schedules_family import schedule_family
from refplay.procedures.step_budget import (fastest_fit, first_step_reaching,
                                            initial_max_train_steps, refine_max_train_steps)
from refplay.procedures.studies import explicit_spec, run_configs, run_spec
from refplay.procedures.variance import (Adoption, adopt, retrain_variance, split_variance,
                                         study_variance)

__all__ = [
    "ProcedureResult", "explicit_spec", "run_configs", "run_spec",
    "initial_max_train_steps", "refine_max_train_steps", "first_step_reaching", "fastest_fit",
    "batch_throughput", "throughput_decision", "steps_to_result", "scaling_decision",
    "batch_size_fair_comparison",
    "retrain_variance", "split_variance", "study_variance", "adopt", "Adoption",
    "two_rounds", "schedule_pitfall", "rsqrt_pitfall",
    "schedule_family", "gradient_noise_steps",
]
