"""The playbook's trial: one configuration, trained for a fixed number of steps.

::

    from refplay import train

    workload = train.get_workload("mnist1d_mlp")
    settings = train.TrialSettings(max_train_steps=2_000, eval_every=100, keep_best=3)
    result = train.run_trial(workload, {"optimizer": "adam", "lr": 1e-2, "batch_size": 100},
                             seed=0, settings=settings, checkpoint_dir="runs/trial_0")
    result.status, result.best_step, result.best_metrics

Modules: :mod:`~refplay.train.settings` (``TrialSettings``: how every trial
of a study runs, and which curves it reports),
:mod:`~refplay.train.workloads` (what is trained),
:mod:`~refplay.train.config` (trial configs, validated),
:mod:`~refplay.train.loop` (``run_trial``), :mod:`~refplay.train.evaluation`
(when and what is evaluated), :mod:`~refplay.train.checkpoints` (N best +
latest, resume), :mod:`~refplay.train.seeds` (one seed, three streams),
:mod:`~refplay.train.result` (``TrialResult``).
"""

from refplay.train.config import TrialConfig, parse_config
from refplay.train.evaluation import eval_steps, evaluate
from refplay.train.loop import check_trial, divergence_reason, run_trial
from refplay.train.result import TrialResult, TrialStatus
from refplay.train.settings import TrialSettings, curve_names
from refplay.train.workloads import WORKLOADS, Model, Workload, get_workload

__all__ = [
    "run_trial", "check_trial", "TrialSettings", "curve_names", "get_workload", "WORKLOADS",
    "Workload", "Model", "TrialResult", "TrialStatus", "TrialConfig", "parse_config",
    "eval_steps", "evaluate", "divergence_reason",
]
