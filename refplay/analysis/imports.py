"""External studies as frames: ``from_optuna``, ``from_csv``, ``from_dataframe``, ``from_records``.

One call turns a study made elsewhere into a :class:`~refplay.analysis.TrialsFrame`
that every analysis function, plot and the report read::

    frame = analysis.from_optuna(study, scientific=["optimizer"])     # or a storage URL
    analysis.best(frame); analysis.boundary_check(frame, "lr")
    report.write(frame, "report/")

The readers (statuses, ranges, conditions, warnings) are in
:mod:`refplay.study.imports`; this module only builds the frame, keeping the
external trial numbers. ``import_study`` there writes the same trials into a
workspace instead.
"""

from __future__ import annotations

from refplay.analysis.frame import TrialsFrame, describe_source, from_results
from refplay.study import imports
from refplay.study.imports import ImportedStudy

__all__ = ["from_records", "from_dataframe", "from_csv", "from_optuna", "frame_of"]


def frame_of(imported: ImportedStudy, name: str = "imported") -> TrialsFrame:
    """The frame of an :class:`~refplay.study.imports.ImportedStudy` (external numbers kept)."""
    return from_results(imported.results(), space=imported.space, metric=imported.metric,
                        mode=imported.mode, max_train_steps=imported.max_train_steps,
                        n_validation=imported.n_validation, name=name,
                        trials=[t.trial for t in imported.trials], sampler=imported.sampler,
                        source=describe_source(imported.source))


def from_records(rows, *, space, metric: str = imports.DEFAULT_METRIC, mode: str = "min",
                 max_train_steps: int | None = None, n_validation: int | None = None,
                 sampler: str | None = None, name: str = "imported") -> TrialsFrame:
    """A frame from rows ``{trial, status, objective, config, curves?}`` and a search space.

    See :func:`refplay.study.imports.read_records` for the statuses it reads.
    """
    return frame_of(imports.read_records(rows, space=space, metric=metric, mode=mode,
                                         max_train_steps=max_train_steps,
                                         n_validation=n_validation, sampler=sampler), name)


def from_dataframe(df, *, name: str = "imported", **options) -> TrialsFrame:
    """A frame from a pandas table (Optuna's ``trials_dataframe()``, a W&B / Ray Tune export).

    ``options``: those of :func:`refplay.study.imports.read_dataframe`
    (``scientific``, ``metric``, ``mode``, ``space``, ``when``, ``curves``, ...).
    """
    return frame_of(imports.read_dataframe(df, **options), name)


def from_csv(path, *, name: str = "imported", **options) -> TrialsFrame:
    """A frame from a CSV file of trials (and ``curves=`` a CSV of per-step values)."""
    return frame_of(imports.read_csv(path, **options), name)


def from_optuna(study_or_storage, *, name: str | None = None, **options) -> TrialsFrame:
    """A frame from an Optuna study, a storage URL or a SQLite ``.db`` file.

    ``options``: ``study_name``, ``scientific``, ``when``, ``metric``,
    ``n_validation``, ``max_train_steps``, ``sampler`` (see
    :func:`refplay.study.imports.read_optuna`).
    """
    imported = imports.read_optuna(study_or_storage, **options)
    return frame_of(imported, name or _safe_name(imported.source.get("study_name")))


def _safe_name(text: str | None) -> str:
    """An Optuna study name as a frame name (the report's title)."""
    return text or "imported"
