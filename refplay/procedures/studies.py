"""Procedures run their trials as studies: resumable, parallel, tracked.

A procedure (an LR sweep, a batch-size scan, a warmup study) is a handful of
explicit configurations. Running them as a :class:`~refplay.study.StudySpec`
with ``sampler="explicit"`` in a workspace gives every procedure, for free,
what the study runner guarantees: trials in parallel over ``workers``,
bitwise-identical results serially or in parallel, and resume after a crash
(an interrupted ``refplay reproduce`` picks up where it stopped).

A study's name is the procedure's name plus a short hash of what it computes,
so calling a procedure again with the same arguments resumes (or simply
re-reads) its study, and with other arguments starts a new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from refplay import analysis, study
from refplay.train.result import TrialResult
from refplay.train.settings import TrialSettings

__all__ = ["explicit_spec", "run_spec", "run_configs", "run_keyed", "named_spec",
           "halton_spec", "load_frame", "DEFAULT_WORKSPACE"]

DEFAULT_WORKSPACE = Path("runs") / "procedures"


def explicit_spec(name: str, workload: str, configs: list[dict], settings: TrialSettings, *,
                  workload_options: dict | None = None, seed: int = 0, repeats: int = 1,
                  metric: str | None = None, description: str = "",
                  goal: str = "") -> study.StudySpec:
    """A study of exactly ``configs`` (trial ``i`` runs ``configs[i // repeats]``).

    ``settings`` gives every trial setting; its ``selection_metric`` (or
    ``metric``) becomes the study's metric. The name gets a hash suffix of
    everything that decides the computation.
    """
    metric = metric or settings.selection_metric or "validation/error_rate"
    fields = dict(workload=workload, workload_options=dict(workload_options or {}),
                  sampler="explicit", configs=[dict(c) for c in configs], repeats=repeats,
                  seed=seed, metric=metric)
    spec = study.StudySpec(name=name, description=description, goal=goal,
                           settings=settings.replace(selection_metric=metric), **fields)
    # The hash reads the settings in the spec file's flat form, as it always has, so a
    # workspace written by an earlier refplay resumes under the same study names.
    flat = spec.to_dict()
    digest = hashlib.sha256(json.dumps(
        {**fields, **{k: flat[k] for k in ("max_train_steps", "eval_every", "keep_best")},
         "trial_settings": flat.get("trial", {})}, sort_keys=True, default=str).encode())
    return dataclasses.replace(spec, name=f"{name}-{digest.hexdigest()[:10]}")


def run_spec(spec: study.StudySpec, *, workspace: str | os.PathLike | None = None,
             workers: int | None = 0, progress: bool | str | None = None) -> list[TrialResult]:
    """Run (or resume, or just read) ``spec`` in ``workspace``; its results in trial order.

    ``progress`` as in :func:`refplay.study.run`: by default a bar when stderr is a
    terminal, else one line per finished trial on stdout (a log, ``tee`` or a
    notebook sees the run move); ``False``: nothing. Trials already recorded
    are read, not shown.
    """
    workspace = Path(workspace) if workspace is not None else DEFAULT_WORKSPACE
    study.run(spec, store=workspace, workers=workers, progress=progress)
    with study.Store(workspace, readonly=True) as store:
        return [store.load_result(spec.name, i) for i in range(spec.budget)]


def run_configs(name: str, workload: str, configs: list[dict], settings: TrialSettings, *,
                workspace: str | os.PathLike | None = None, workers: int | None = 0,
                progress: bool | str | None = None, **spec_options) -> list[TrialResult]:
    """``run_spec(explicit_spec(...))``: the results of ``configs``, in order."""
    spec = explicit_spec(name, workload, configs, settings, **spec_options)
    return run_spec(spec, workspace=workspace, workers=workers, progress=progress)


def run_keyed(name: str, workload: str, configs: dict, settings: TrialSettings, *,
              workspace: str | os.PathLike | None = None, workers: int | None = 0,
              progress: bool | str | None = None, **spec_options) -> dict:
    """:func:`run_configs` of ``configs`` (key -> config) as one study: key -> result.

    One study for every trial of an experiment keeps all ``workers`` busy to
    the end, where one study per sweep would wait for each sweep's slowest trial.
    """
    keys = list(configs)
    results = run_configs(name, workload, [configs[k] for k in keys], settings,
                          workspace=workspace, workers=workers, progress=progress,
                          **spec_options)
    return dict(zip(keys, results))


def halton_spec(prefix: str, **fields) -> study.StudySpec:
    """A Halton ``StudySpec`` named ``prefix-<hash>`` (see :func:`named_spec`)."""
    return named_spec(prefix, sampler="halton", **fields)


def named_spec(prefix: str, **fields) -> study.StudySpec:
    """A ``StudySpec`` named ``prefix-<hash of what it computes>``.

    The hash makes the quick and full sizes (and any later change of the
    design) separate studies in one workspace, so each resumes on its own and
    none is refused for a changed identity.
    """
    spec = study.StudySpec(name=prefix, **fields)
    digest = hashlib.sha256(json.dumps(spec.identity(), sort_keys=True).encode()).hexdigest()
    return dataclasses.replace(spec, name=f"{prefix}-{digest[:10]}")


def load_frame(spec: study.StudySpec, workspace: str | os.PathLike | None = None):
    """The :class:`~refplay.analysis.TrialsFrame` of a study that has run in ``workspace``."""
    workspace = Path(workspace) if workspace is not None else DEFAULT_WORKSPACE
    with study.Store(workspace, readonly=True) as store:
        return analysis.load(store, spec.name)
