"""Studies made elsewhere, in: Optuna studies, CSV exports (Optuna, W&B, Ray Tune), records.

refplay's analysis, plots and report read a :class:`~refplay.analysis.TrialsFrame`;
this module turns a study that already exists into one, keeping the external
trial numbers. Two ways in:

* in memory, for a notebook: ``analysis.from_optuna(study, scientific=["optimizer"])``,
  ``analysis.from_csv(path, ...)``, ``analysis.from_records(rows, ...)``
  (:mod:`refplay.analysis.imports`, thin wrappers over the readers here);
* into a workspace, as an ordinary refplay study (``refplay study
  list / status / report / export`` and every procedure that reads a stored
  study work on it; the source is recorded): :func:`import_study`, behind
  ``refplay study import {optuna,csv} SOURCE --name NAME``.

How statuses are read (DESIGN.md's convention: ``infeasible`` = diverged or
NaN, ``failed`` = crashed, ``pruned`` = stopped early on purpose)::

    Optuna COMPLETE, W&B finished, Ray TERMINATED, "complete"  -> complete
        (an objective that is NaN or infinite -> infeasible)
    Optuna PRUNED, W&B killed, "pruned", "early_stopped"       -> pruned
    Optuna FAIL, W&B failed / crashed, Ray ERROR, "failed"      -> failed
    "infeasible", "diverged"                                    -> infeasible
    RUNNING, WAITING, PENDING, running                          -> not a result: left out, with
                                                                   a warning

and any trial whose reported metric curve holds a NaN or infinite value
diverged: it is ``infeasible`` whatever stopped it. Optuna stores no reason
for a FAIL, so a trial that returned NaN (Optuna records it as FAIL) is
told apart from a crash by its reports: report the metric each evaluation
(``trial.report(value, step)``, which a pruner needs anyway), or set
``trial.set_user_attr("refplay_status", "infeasible")``. A FAIL with
neither is counted as crashed, and the report says so.

The search space: Optuna's distributions give ranges and log scales; a CSV
gives values, from which each numeric column becomes a ``Float`` (``Int``
for integers) over the observed range, log-scaled when positive and spanning
at least two decades, and each text or boolean column a ``Choice``; pass
``space=`` to give the ranges instead. A parameter missing from some trials
is conditional: its condition (``when``) is inferred from the choice it
always goes with, or given (``when={"gamma": {"optimizer": ["sgd"]}}``). A
trial outside a given range is kept, with a warning, and the range widened
to hold it (never silently dropped).

Optuna and pandas are the ``[interop]`` extra; only the readers that need
them import them, when called.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from refplay import _validate, search
from refplay.search.space import Choice, Discrete, Fixed, Float, Int, SearchSpace
from refplay.study.spec import StudySpec, Trial
from refplay.study.store import Store
from refplay.train.result import TrialResult, TrialStatus

__all__ = ["ImportedTrial", "ImportedStudy", "StudyImportWarning", "ImportSummary",
           "read_records", "read_dataframe", "read_csv", "read_optuna", "import_study",
           "parse_status", "KINDS", "DEFAULT_METRIC"]

#: The sources ``import_study`` reads.
KINDS = ("optuna", "csv")
#: The metric name of an external objective that has none (refplay names splits).
DEFAULT_METRIC = "validation/objective"

_STATUS_WORDS = {
    TrialStatus.COMPLETE: ("complete", "completed", "finished", "terminated", "success"),
    TrialStatus.PRUNED: ("pruned", "killed", "early_stopped", "stopped"),
    TrialStatus.FAILED: ("failed", "fail", "crashed", "error", "errored"),
    TrialStatus.INFEASIBLE: ("infeasible", "diverged"),
}
_UNFINISHED = ("running", "waiting", "pending", "paused", "queued")
_PREFIXES = ("params_", "config.", "config/")
_TRIAL_COLUMNS = ("number", "trial", "trial_id", "run_id", "id", "Name", "name")
_STATE_COLUMNS = ("state", "State", "status", "Status")
_STEP_COLUMNS = ("step", "_step", "training_iteration", "epoch")


class StudyImportWarning(UserWarning):
    """Something in an imported study was kept but needs a look (a range widened, ...)."""


class ImportedTrial(NamedTuple):
    """One external trial as refplay reads it."""

    trial: int                  # the external trial number (its position when there is none)
    status: TrialStatus
    objective: float | None     # the external objective (None when it reported none)
    config: dict
    curves: dict                # {metric: (steps, values)}
    reason: str
    external_id: str | None     # a run name / id that is not a number (W&B, Ray)


@dataclass(frozen=True)
class ImportedStudy:
    """An external study read into refplay's terms (``read_*`` return it)."""

    trials: tuple[ImportedTrial, ...]
    space: SearchSpace
    metric: str
    mode: str
    max_train_steps: int
    n_validation: int | None
    sampler: str | None
    source: dict
    warnings: tuple[str, ...]

    def results(self) -> list[TrialResult]:
        """One ``TrialResult`` per trial, in trial order (objective = ``best_metrics[metric]``)."""
        return [_result(t, self.metric, self.mode, self.max_train_steps) for t in self.trials]


class ImportSummary(NamedTuple):
    """What :func:`import_study` wrote."""

    name: str
    workspace: str
    counts: dict                # status -> number of trials
    warnings: tuple[str, ...]
    source: dict


# ------------------------------------------------------------------ statuses
def parse_status(text: Any) -> TrialStatus | None:
    """A status word of Optuna, W&B, Ray Tune or refplay as a ``TrialStatus``; None: unfinished."""
    word = str(getattr(text, "name", text)).strip().lower().rsplit(".", 1)[-1]
    for status, words in _STATUS_WORDS.items():
        if word in words:
            return status
    if word in _UNFINISHED:
        return None
    raise ValueError(f"status {text!r} is not one refplay reads; use one of "
                     f"{sorted(w for ws in _STATUS_WORDS.values() for w in ws)} (or an "
                     f"unfinished one, left out: {list(_UNFINISHED)})")


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _settle(number: int, status: TrialStatus, objective, curves: dict, metric: str,
            reason: str) -> tuple[TrialStatus, str]:
    """The status refplay records: a non-finite metric anywhere means the trial diverged."""
    steps, values = curves.get(metric, ((), ()))
    bad = [(s, v) for s, v in zip(steps, values) if not _finite(v)]
    if bad and status != TrialStatus.INFEASIBLE:
        return TrialStatus.INFEASIBLE, f"{metric} is {bad[0][1]} at step {bad[0][0]} (imported)"
    if status == TrialStatus.COMPLETE and not _finite(objective):
        return TrialStatus.INFEASIBLE, f"the objective is {objective} (imported)"
    if status == TrialStatus.FAILED and not reason:
        reason = ("failed in the source, which records no reason (a crash, or a NaN return "
                  "that reported no NaN): imported as crashed")
    return status, reason


# ------------------------------------------------------------------ records
def _curves_of(raw, where: str) -> dict:
    """``{metric: {step: value}}`` or ``{metric: (steps, values)}`` -> ``{metric: (steps, values)}``."""
    out = {}
    for name, c in (raw or {}).items():
        if isinstance(c, Mapping):
            pairs = sorted((int(s), float(v)) for s, v in c.items())
        elif isinstance(c, Sequence) and len(c) == 2:
            pairs = sorted((int(s), float(v)) for s, v in zip(*c))
        else:
            raise TypeError(f"{where}: curve {name!r} must be {{step: value}} or (steps, "
                            f"values), got {type(c).__name__}")
        out[str(name)] = ([s for s, _ in pairs], [v for _, v in pairs])
    return out


def _trial_numbers(rows: list[Mapping]) -> tuple[list[int], list[str | None]]:
    """External trial numbers when they are distinct non-negative integers, else positions."""
    raw = [r.get("trial") for r in rows]
    try:
        numbers = [int(x) for x in raw]
        ok = all(float(x) == n for x, n in zip(raw, numbers)) and min(numbers, default=0) >= 0
    except (TypeError, ValueError):
        ok = False
    if ok and len(set(numbers)) == len(numbers):
        return numbers, [None] * len(rows)
    return list(range(len(rows))), [None if x is None else str(x) for x in raw]


def read_records(rows, *, space: SearchSpace, metric: str = DEFAULT_METRIC, mode: str = "min",
                 max_train_steps: int | None = None, n_validation: int | None = None,
                 sampler: str | None = None, source: dict | None = None) -> ImportedStudy:
    """Read rows ``{trial, status, objective, config, curves?, reason?}`` (see the module doc).

    ``curves`` maps a metric name to ``{step: value}`` or ``(steps, values)``.
    Unfinished rows are left out with a warning; configs outside ``space``'s
    ranges are kept and the ranges widened, with a warning.
    """
    metric = _metric_name(metric)
    if n_validation is not None:
        n_validation = _validate.integer("n_validation", n_validation, low=1)
    if mode not in ("min", "max"):
        raise ValueError(f"mode={mode!r} is not allowed; use 'min' or 'max'")
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space must be a refplay.search.SearchSpace, got {type(space).__name__}")
    notes, kept = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "config" not in row or "status" not in row:
            raise ValueError(f"record {i} must be a dict with 'trial', 'status', 'objective', "
                             f"'config' (and optionally 'curves'), got {row!r}")
        status = parse_status(row["status"])
        if status is None:
            notes.append(f"trial {row.get('trial', i)} is {row['status']!r} (unfinished): left out")
            continue
        kept.append(dict(row, status=status))
    numbers, ids = _trial_numbers(kept)
    space, widened = _widened(space, [r["config"] for r in kept], numbers)
    trials = []
    for n, external, row in zip(numbers, ids, kept):
        curves = _curves_of(row.get("curves"), f"trial {n}")
        objective = row.get("objective")
        objective = None if objective is None else float(objective)
        status, reason = _settle(n, row["status"], objective, curves, metric,
                                 str(row.get("reason") or ""))
        config = space.validate_config(_plain_config(row["config"]))
        trials.append(ImportedTrial(trial=n, status=status, objective=objective, config=config,
                                    curves=curves, reason=reason, external_id=external))
    trials.sort(key=lambda t: t.trial)
    steps = max_train_steps or _longest(trials)
    imported = ImportedStudy(tuple(trials), space, metric, mode, int(steps), n_validation,
                             sampler, dict(source or {"kind": "records"}),
                             tuple(notes + widened))
    for note in imported.warnings:
        warnings.warn(note, StudyImportWarning, stacklevel=2)
    return imported


def _metric_name(metric: str) -> str:
    """``"accuracy"`` -> ``"validation/accuracy"``: refplay's metric names carry their split."""
    if not isinstance(metric, str) or not metric:
        raise TypeError(f"metric must be a non-empty string, got {metric!r}")
    return metric if "/" in metric else f"validation/{metric}"


def _plain_config(config: Mapping) -> dict:
    """Drop inactive (None / NaN) entries and turn NumPy scalars into Python ones."""
    out = {}
    for k, v in dict(config).items():
        v = v.item() if hasattr(v, "item") else v
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[str(k)] = v
    return out


def _longest(trials) -> int:
    """max_train_steps when not given: the last step a complete trial reported (at least 1)."""
    ends = [max(t.curves[k][0]) for t in trials if t.status == TrialStatus.COMPLETE
            for k in t.curves if t.curves[k][0]]
    return max([1, *ends])


def _widened(space: SearchSpace, configs: list, numbers: list[int]) -> tuple[SearchSpace, list]:
    """``space`` with each Float/Int range widened to hold every config, and the warnings."""
    params, notes = {}, []
    for name in space:
        p, key = space[name], space.config_key(name)
        values = [(n, c[key]) for n, c in zip(numbers, configs)
                  if isinstance(c.get(key), (int, float)) and not isinstance(c.get(key), bool)]
        if isinstance(p, (Float, Int)) and values:
            lo = min([p.low] + [v for _, v in values])
            hi = max([p.high] + [v for _, v in values])
            if (lo, hi) != (p.low, p.high):
                outside = [f"trial {n}: {key}={v:g}" for n, v in values if not p.low <= v <= p.high]
                notes.append(f"{len(outside)} trial(s) lie outside the range [{p.low:g}, "
                             f"{p.high:g}] of {name!r} ({', '.join(outside[:3])}"
                             f"{', ...' if len(outside) > 3 else ''}): kept, and the range "
                             f"widened to [{lo:g}, {hi:g}]")
                p = type(p)(lo, hi, p.scale, role=p.role, when=p.when)
        elif isinstance(p, (Choice, Discrete)):
            seen = [c[key] for c in configs if key in c]
            new = [v for v in dict.fromkeys(seen) if v not in p.values]
            if new:
                notes.append(f"{name!r} takes values {new} that are not among its values "
                             f"{list(p.values)}: kept, and the values added")
                p = type(p)(list(p.values) + new, role=p.role, when=p.when)
        params[name] = p
    return SearchSpace(params), notes


def _result(t: ImportedTrial, metric: str, mode: str, max_train_steps: int) -> TrialResult:
    """The ``TrialResult`` of an imported trial: its curves, objective and best step."""
    steps_all = sorted({s for steps, _ in t.curves.values() for s in steps})
    curves = {k: [dict(zip(*t.curves[k])).get(s, math.nan) for s in steps_all] for k in t.curves}
    best_step, best_metrics = None, {}
    if t.status == TrialStatus.COMPLETE:
        best_metrics = {metric: float(t.objective)}
        steps, values = t.curves.get(metric, ((), ()))
        # The reported step whose value is the objective (retrospective selection); unknown
        # when the source returned a value it never reported.
        best_step = next((s for s, v in zip(steps, values) if v == t.objective), None)
        if best_step is not None:
            i = steps_all.index(best_step)
            best_metrics.update({k: float(v[i]) for k, v in curves.items() if k != metric})
    done = max(steps_all, default=max_train_steps if t.status == TrialStatus.COMPLETE else 0)
    extras = {} if t.external_id is None else {"external_id": t.external_id}
    return TrialResult(config=dict(t.config), seed=0, status=t.status, reason=t.reason,
                       steps_done=int(done), eval_steps=steps_all, curves=curves,
                       best_step=best_step, best_metrics=best_metrics, extras=extras)


# ------------------------------------------------------------------ inferring a space
def _when_of(name: str, present: list[bool], columns: dict[str, list]) -> dict | None:
    """The choice that decides when ``name`` is active: ``{parent: [values]}``, or None."""
    for parent, values in columns.items():
        if parent == name or not all(isinstance(v, (str, bool)) for v in values if v is not None):
            continue
        on = {v for v, p in zip(values, present) if p and v is not None}
        off = {v for v, p in zip(values, present) if not p and v is not None}
        if on and not on & off and all(v is not None for v, p in zip(values, present) if p):
            return {parent: sorted(on, key=str)}
    return None


def _numeric_param(values: list, role: str, when, low=None, high=None, log=None):
    """Float or Int over ``[low, high]`` (the observed range unless given)."""
    xs = [v for v in values if v is not None]
    low = min(xs) if low is None else low
    high = max(xs) if high is None else high
    if low == high:
        return Fixed(xs[0], role="fixed", when=when)
    integer = all(float(v).is_integer() and not isinstance(v, bool) for v in xs + [low, high])
    if log is None:
        log = low > 0 and high / low >= 100
    if integer and (low >= 1 or not log):
        return Int(int(low), int(high), "log" if log else "linear", role=role, when=when)
    return Float(float(low), float(high), "log" if log else "linear", role=role, when=when)


def _infer_space(columns: dict[str, list], scientific: Sequence[str], when: Mapping | None,
                 ranges: Mapping | None = None) -> SearchSpace:
    """A search space over ``columns`` (``{name: value per trial, None where inactive}``).

    ``ranges`` (from Optuna's distributions) gives ``{name: (low, high, log)}`` or
    ``{name: [choices]}``; otherwise the observed values decide.
    """
    unknown = sorted(set(scientific) - set(columns))
    if unknown:
        raise ValueError(f"scientific names {unknown} are not parameters of the study; its "
                         f"parameters are {sorted(columns)}")
    when, ranges, params = dict(when or {}), dict(ranges or {}), {}
    for name, values in columns.items():
        present = [v is not None for v in values]
        cond = when.get(name)
        if cond is None and not all(present):
            cond = _when_of(name, present, columns)
            if cond is None:
                raise ValueError(f"parameter {name!r} is missing from some trials and no "
                                 f"choice decides when it is active; pass when={{{name!r}: "
                                 f"{{PARENT: [VALUES]}}}}")
        role = "scientific" if name in scientific else "nuisance"
        given = ranges.get(name)
        xs = [v for v in values if v is not None]
        if isinstance(given, list) or any(isinstance(v, (str, bool)) for v in xs):
            choices = given if isinstance(given, list) else list(dict.fromkeys(xs))
            params[name] = (Choice(choices, role=role, when=cond) if len(choices) > 1 else
                            Fixed(choices[0], when=cond))
        else:
            params[name] = _numeric_param(xs, role, cond, *(given or (None, None, None)))
    return SearchSpace(params)


# ------------------------------------------------------------------ dataframes and CSV
def _pick(df, given: str | None, candidates: Sequence[str], what: str) -> str | None:
    if given is not None:
        if given not in df.columns:
            raise ValueError(f"{what} column {given!r} is not in the table; columns are "
                             f"{list(df.columns)}")
        return given
    return next((c for c in candidates if c in df.columns), None)


def _cell(v):
    """A table cell as a plain value; NaN / NA (an inactive parameter) as None."""
    v = v.item() if hasattr(v, "item") else v
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("nan", "<NA>"):
        return None
    return v


def _long_curves(curves, trial_col: str, metric: str, value_col: str) -> dict:
    """``{trial id: {metric: {step: value}}}`` from a long table of per-step values."""
    step_col = _pick(curves, None, _STEP_COLUMNS, "step")
    if step_col is None or trial_col not in curves.columns:
        raise ValueError(f"the curves table needs a {trial_col!r} column and a step column "
                         f"(one of {list(_STEP_COLUMNS)}); it has {list(curves.columns)}")
    long = {"metric", "value"} <= set(curves.columns)
    names = ["value"] if long else [c for c in curves.columns if c not in (trial_col, step_col)]
    out: dict = {}
    for row in curves.to_dict("records"):
        for col in names:
            name = str(row["metric"]) if long else col
            name = metric if name in (value_col, metric, metric.rsplit("/", 1)[-1]) else name
            value = _cell(row[col])
            out.setdefault(str(_cell(row[trial_col])), {}).setdefault(
                _metric_name(name), {})[int(row[step_col])] = math.nan if value is None \
                else float(value)
    return out


def read_dataframe(df, *, scientific: Sequence[str] = (), metric: str | None = None,
                   mode: str = "min", space: SearchSpace | None = None, when=None,
                   trial: str | None = None, state: str | None = None, value: str | None = None,
                   curves=None, max_train_steps: int | None = None,
                   n_validation: int | None = None, sampler: str | None = None,
                   source: dict | None = None) -> ImportedStudy:
    """Read a pandas table of trials: Optuna's ``trials_dataframe()``, a W&B or Ray Tune export.

    Parameter columns are ``params_*``, ``config.*`` or ``config/*``; the trial
    column the first of ``number, trial, trial_id, run_id, id, Name``; the state
    column ``state`` / ``State`` / ``status`` (every trial complete without
    one); the value column ``value``, else the metric's name. ``curves`` is an
    optional long table of per-step values (a trial column, ``step`` /
    ``_step`` / ``training_iteration``, and ``metric``/``value`` columns or
    one column per metric).
    """
    trial_col = _pick(df, trial, _TRIAL_COLUMNS, "trial")
    state_col = _pick(df, state, _STATE_COLUMNS, "state")
    metric = _metric_name(metric or DEFAULT_METRIC)
    short = metric.rsplit("/", 1)[-1]
    value_col = _pick(df, value, ("value", metric, short, f"summary.{short}", f"val_{short}"),
                      "value")
    if value_col is None:
        raise ValueError(f"no objective column: pass value=COLUMN (--value COLUMN; columns are "
                         f"{list(df.columns)})")
    names = {c: c[len(p):] for c in df.columns for p in _PREFIXES if c.startswith(p)}
    if not names:
        raise ValueError(f"no parameter columns ({', '.join(p + '*' for p in _PREFIXES)}) in "
                         f"the table; columns are {list(df.columns)}")
    records = df.to_dict("records")
    columns = {n: [_cell(r[c]) for r in records] for c, n in names.items()}
    if space is None:
        space = _infer_space(columns, scientific, when)
    by_trial = {} if curves is None else _long_curves(curves, trial_col or "trial", metric,
                                                       value_col)
    rows = []
    for i, r in enumerate(records):
        number = _cell(r[trial_col]) if trial_col else i
        rows.append({"trial": number, "status": r[state_col] if state_col else TrialStatus.COMPLETE,
                     "objective": _cell(r[value_col]),
                     "config": {n: columns[n][i] for n in names.values()},
                     "curves": by_trial.get(str(number), {})})
    return read_records(rows, space=space, metric=metric, mode=mode,
                        max_train_steps=max_train_steps, n_validation=n_validation,
                        sampler=sampler, source=source or {"kind": "dataframe"})


def read_csv(path: str | os.PathLike, *, curves: str | os.PathLike | None = None,
             **options) -> ImportedStudy:
    """:func:`read_dataframe` on a CSV file (and an optional CSV of per-step curves)."""
    import pandas  # lazy: the optional [interop] extra
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file {str(path)!r}")
    table = pandas.read_csv(path)
    curve_table = None if curves is None else pandas.read_csv(curves)
    source = {"kind": "csv", "path": str(path.resolve()),
              "curves": None if curves is None else str(Path(curves).resolve())}
    return read_dataframe(table, curves=curve_table, source=source, **options)


# ------------------------------------------------------------------ Optuna
_QUASI_RANDOM_SAMPLERS = {"RandomSampler": "random", "GridSampler": "grid"}


def _sampler_name(sampler) -> str:
    """Optuna's sampler as refplay names it: quasi-random ones by kind, others by class."""
    cls = type(sampler).__name__
    if cls == "QMCSampler":
        return "halton" if getattr(sampler, "_qmc_type", "") == "halton" else "sobol"
    return _QUASI_RANDOM_SAMPLERS.get(cls, cls)


def _load_optuna(study_or_storage, study_name: str | None):
    """``(study, storage description, sampler name or None)`` from a Study or a storage URL."""
    import optuna  # lazy: the optional [interop] extra
    if isinstance(study_or_storage, optuna.Study):
        return study_or_storage, "in memory", _sampler_name(study_or_storage.sampler)
    url = str(study_or_storage)
    if "://" not in url:
        if not Path(url).is_file():
            raise FileNotFoundError(f"no Optuna storage {url!r} (give a storage URL such as "
                                    f"sqlite:///optuna.db, or a .db file)")
        url = f"sqlite:///{Path(url).resolve()}"
    if study_name is None:
        names = optuna.get_all_study_names(url)
        if len(names) != 1:
            raise ValueError(f"the storage {url} holds studies {names}; pass study_name= "
                             f"(--study-name)")
        study_name = names[0]
    # The sampler is not stored: a loaded study's own one is a default, not the one used.
    return optuna.load_study(study_name=study_name, storage=url), url, None


def _distribution_ranges(trials) -> dict:
    """``{name: (low, high, log)}`` or ``{name: [choices]}``: the union over the trials."""
    ranges: dict = {}
    for t in trials:
        for name, d in t.distributions.items():
            if hasattr(d, "choices"):
                old = ranges.get(name, [])
                ranges[name] = old + [c for c in d.choices if c not in old]
                continue
            low, high = d.low, d.high
            if name in ranges:
                low, high = min(low, ranges[name][0]), max(high, ranges[name][1])
            ranges[name] = (low, high, bool(d.log))
    return ranges


def _optuna_status(t) -> str:
    """The status word of an Optuna trial: its ``refplay_status`` user attribute, else its state."""
    return str(t.user_attrs.get("refplay_status", t.state.name))


def read_optuna(study_or_storage, *, study_name: str | None = None,
                scientific: Sequence[str] = (), when: Mapping | None = None,
                metric: str | None = None, n_validation: int | None = None,
                max_train_steps: int | None = None, sampler: str | None = None) -> ImportedStudy:
    """Read an Optuna study (a ``optuna.Study``, a storage URL or a SQLite ``.db`` file).

    Ranges and log scales come from the trials' distributions; the trial
    numbers are Optuna's; each trial's reported values (``trial.report``)
    are its curve of ``metric`` (default: the study's metric name, else
    ``validation/objective``). ``sampler`` overrides the sampler's name (a
    study loaded from storage does not record which sampler chose its trials).
    """
    study, where, used = _load_optuna(study_or_storage, study_name)
    if len(study.directions) != 1:
        raise ValueError(f"study {study.study_name!r} has {len(study.directions)} objectives; "
                         f"refplay reads single-objective studies")
    names = getattr(study, "metric_names", None)
    metric = _metric_name(metric or (names[0] if names else DEFAULT_METRIC))
    trials = study.get_trials(deepcopy=False)
    ranges = _distribution_ranges(trials)
    columns = {n: [t.params.get(n) for t in trials] for n in ranges}
    space = _infer_space(columns, scientific, when, ranges)
    rows = [{"trial": t.number, "status": _optuna_status(t), "objective": t.value,
             "config": dict(t.params), "curves": {metric: dict(t.intermediate_values)}}
            for t in trials]
    mode = "min" if study.direction.name == "MINIMIZE" else "max"
    source = {"kind": "optuna", "storage": where, "study_name": study.study_name}
    return read_records(rows, space=space, metric=metric, mode=mode,
                        max_train_steps=max_train_steps, n_validation=n_validation,
                        sampler=sampler or used, source=source)


# ------------------------------------------------------------------ into a workspace
def _read(kind: str, source, options: dict) -> ImportedStudy:
    if kind == "optuna":
        return read_optuna(source, **options)
    if kind == "csv":
        return read_csv(source, **options)
    raise ValueError(f"kind={kind!r} is not allowed; choose one of {list(KINDS)}")


def _eval_every(imported: ImportedStudy) -> int:
    """The smallest gap between two reported steps (1 when nothing was reported)."""
    gaps = [b - a for t in imported.trials for steps, _ in t.curves.values()
            for a, b in zip(steps, steps[1:]) if b > a]
    return min(gaps, default=1)


def _spec_of(imported: ImportedStudy, name: str, kind: str, description: str, goal: str):
    """The stored spec of an imported study: its trials as an explicit list of configs."""
    where = imported.source.get("path") or imported.source.get("storage") or kind
    return StudySpec(name=name, workload=None, sampler="explicit",
                     configs=tuple(t.config for t in imported.trials),
                     num_trials=len(imported.trials), search_space=imported.space,
                     max_train_steps=imported.max_train_steps, eval_every=_eval_every(imported),
                     metric=imported.metric, mode=imported.mode, goal=goal,
                     description=description or f"imported from {kind} ({where})")


def import_study(kind: str, source, *, workspace: str | os.PathLike, name: str,
                 description: str = "", goal: str = "", command: str | None = None,
                 **options) -> ImportSummary:
    """Write an external study into ``workspace`` as an ordinary refplay study ``name``.

    ``kind`` is ``"optuna"`` (``source``: a storage URL or ``.db`` file) or
    ``"csv"`` (a trials CSV); ``options`` go to :func:`read_optuna` /
    :func:`read_csv` (``scientific``, ``metric``, ``study_name``, ``when``,
    ``n_validation``, ...). Every trial keeps its external number and is
    recorded with its curves; the source, the sampler and ``n_validation``
    are recorded as study settings (``Store.meta``). A name already in the
    workspace is refused: an import never mixes with a study.
    """
    imported = _read(kind, source, options)
    spec = _spec_of(imported, name, kind, description, goal)
    with Store(workspace) as store:
        if store.get_study(name) is not None:
            raise ValueError(f"a study named {name!r} is already in {store.path}; import under "
                             f"another --name")
        store.begin_study(spec, trial_function=f"imported from {kind}",
                          command=command or f"refplay study import {kind} {source} --name {name}")
        for i, (t, result) in enumerate(zip(imported.trials, imported.results())):
            result.save(store.trial_dir(name, t.trial))
            objective = result.best_metrics.get(imported.metric)
            store.record_trial(name, Trial(t.trial, i, 0, t.config, 0), result,
                               objective=objective, trial_seconds=math.nan, worker=None)
        # The sampler is recorded even when unknown (None): the spec's "explicit" is not it.
        store.set_meta(name, "source", imported.source)
        store.set_meta(name, "sampler", imported.sampler)
        if imported.n_validation is not None:
            store.set_meta(name, "n_validation", imported.n_validation)
        counts = store.status(name).counts
    return ImportSummary(name=name, workspace=str(workspace), counts=counts,
                         warnings=imported.warnings, source=imported.source)
