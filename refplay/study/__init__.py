"""refplay.study: quasi-random studies, run in parallel, tracked in SQLite, resumable.

The playbook's unit of experimentation above the trial is the *study*: a
search space with scientific, nuisance and fixed hyperparameters, a trial
budget and a fixed ``max_train_steps``, sampled quasi-randomly, run, and
tracked — "untracked experiments might as well not exist"::

    from refplay import study

    spec = study.StudySpec.load("examples/mnist1d_nesterov_vs_adam.toml")
    status = study.run(spec, store="workspace", workers=2)     # resumable
    status.counts, status.study.best_value

    with study.Store("workspace", readonly=True) as store:
        store.trials(spec.name)                                 # TrialRecord list
        study.export_csv(store, spec.name, "trials.csv")

On the command line: ``refplay study run|resume|status|list|report|export|import``
(:mod:`refplay.cli.study`).

Your own objective, in a few lines, is :func:`refplay.tuning.optimize` (it
sits above this package and :mod:`refplay.analysis`, whose frame it returns).

Studies made elsewhere (Optuna, CSV exports of Optuna, W&B, Ray Tune) become
ordinary studies of a workspace with :func:`~refplay.study.imports.import_study`
(``refplay study import``), or frames with ``analysis.from_optuna`` /
``from_csv`` (:mod:`~refplay.study.imports`).

After exploration, Bayesian optimization runs as a study too: ``[sampler]
name = "gp_ei"`` (Halton trials first, then rounds of GP-EI proposals), or
``"external"`` with ``study.run(spec, ..., proposer=fn)`` for any other
optimizer (:class:`~refplay.study.proposers.OptunaProposer`: any Optuna sampler). Proposals are recorded before they run (``Store.proposals``), so
such a study resumes exactly and runs the same serially or in parallel (see
:mod:`~refplay.study.runner`).

Modules: :mod:`~refplay.study.spec` (``StudySpec``: trial ``t`` is a pure
function of (spec, t)), :mod:`~refplay.study.runner` (``run`` over any
``concurrent.futures.Executor``: what a study does),
:mod:`~refplay.study.executors` (how processes run: the local pool, one
thread per worker, time limits), :mod:`~refplay.study.store` (the SQLite
"spreadsheet"), :mod:`~refplay.study.export` (CSV),
:mod:`~refplay.study.synthetic` (a fast example trial function),
:mod:`~refplay.study.proposers` (Optuna as a proposer),
:mod:`~refplay.study.imports` (external studies in).
"""

from __future__ import annotations

import importlib

# Public names and their modules. Imported on first use, so that the ``refplay``
# command (which imports refplay.cli.study) starts without loading the trainer.
_EXPORTS = {
    "StudySpec": "spec", "Trial": "spec", "check_study_name": "spec", "trial_seed": "spec",
    "SAMPLERS": "spec", "ADAPTIVE_SAMPLERS": "spec",
    "run": "runner", "HistoryEntry": "runner", "GpEiProposer": "runner", "Proposer": "runner",
    "SerialExecutor": "executors", "WorkloadTrial": "runner",
    "StudyError": "runner", "TrialTimeout": "executors", "DEFAULT_TRIAL_FUNCTION": "runner",
    "Store": "store", "StoreError": "store", "StudyStatus": "store", "StudyRow": "store",
    "TrialRecord": "store", "Measurement": "store", "BaselineRow": "store",
    "Proposal": "store", "DB_NAME": "store",
    "SCHEMA_VERSION": "store",
    "export_csv": "export", "SAME_FAILURES": "runner",
    "OptunaProposer": "proposers",
    "import_study": "imports", "ImportSummary": "imports", "StudyImportWarning": "imports",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"refplay.study.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'refplay.study' has no attribute {name!r}")
