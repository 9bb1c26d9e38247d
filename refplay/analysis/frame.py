"""``TrialsFrame``: one row per trial of a study, read from a store (or built in memory).

The playbook ("Extracting insight from experimental results") reads a study
through its trials: *"we plot the validation objective value versus one of the
hyperparameters [...] Each point on the plot corresponds to a single trial.
The validation objective value for each trial should usually be the best value
it achieved over the course of training."* A frame is that table, with no
pandas: a frozen tuple of :class:`TrialRow` named tuples plus the study's spec
(roles, ranges, metric, ``max_train_steps``)::

    with study.Store("ws", readonly=True) as store:
        frame = analysis.load(store, "nesterov_vs_adam")
    frame.scientific                   # ("optimizer",)
    frame.complete().objectives()      # float64, NaN where the trial is not complete
    frame.values("lr")                 # each trial's "lr" (NaN where inactive)
    frame.curve(7, "validation/error_rate")   # (steps, values), read on first use
    frame.result(7).train_losses       # the full TrialResult, read from the trial folder

The **scientific value** of a trial is the tuple of its scientific
hyperparameters' values, e.g. ``("adam",)``; ``()`` when the study has no
scientific hyperparameter. ``objective`` is NaN for infeasible, failed and
pruned trials (and for a complete trial whose metric was not finite), so NaN
never ranks as "best". A row's ``status`` is a :class:`~refplay.train.result.TrialStatus`.

Curves and arrays are read lazily through a *source*: the store's workspace
(each access opens it read-only, so a frame outlives the ``with`` block), or
the ``TrialResult`` objects a frame was built from (:func:`from_results`).
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from refplay import _validate, train
from refplay.search.space import SearchSpace
from refplay.study.spec import StudySpec
from refplay.study.store import Store
from refplay.train.result import TrialResult, TrialStatus

__all__ = ["TrialRow", "TrialsFrame", "load", "from_results", "value_label", "QUASI_RANDOM"]

#: Samplers whose trials are exchangeable draws from the search space: the
#: best-of-N bootstrap and the isolation plots' "best per slice" assume them.
QUASI_RANDOM = ("halton", "sobol", "random", "grid")


class TrialRow(NamedTuple):
    """One trial: where it sits in the study, what it ran, and how it ended."""

    trial: int
    config_index: int
    repeat: int
    seed: int
    status: TrialStatus
    reason: str
    config: dict                 # the trial config, keyed by config key ("lr")
    active: dict                 # {parameter name: value} of its active parameters ("adam/lr")
    scientific_value: tuple      # values of the scientific parameters, in spec order
    objective: float             # study metric at the best checkpoint; NaN unless complete
    best_step: int | None
    steps_done: int
    best_metrics: dict


def value_label(names: tuple[str, ...], value: tuple) -> str:
    """``("optimizer",), ("adam",)`` -> ``"optimizer=adam"``; ``()`` -> ``"all trials"``."""
    if not names:
        return "all trials"
    return ", ".join(f"{n.rsplit('/', 1)[-1]}={_fmt_value(v)}" for n, v in zip(names, value))


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


class _StoreSource:
    """Curves and results of a stored study, read on demand from the workspace."""

    def __init__(self, workspace, name: str) -> None:
        self.workspace, self.name = workspace, name

    def curves(self) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
        with Store(self.workspace, readonly=True) as store:
            points = store.measurements(self.name)
        raw: dict[int, dict[str, tuple[list, list]]] = {}
        for m in points:
            key = f"{m.split}/{m.metric}" if m.split else m.metric
            steps, values = raw.setdefault(m.trial, {}).setdefault(key, ([], []))
            steps.append(m.step)
            values.append(m.value)
        return {t: {k: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
                    for k, (s, v) in c.items()} for t, c in raw.items()}

    def result(self, trial: int) -> TrialResult:
        with Store(self.workspace, readonly=True) as store:
            return store.load_result(self.name, trial)


class _MemorySource:
    """Curves and results held in memory (frames built by :func:`from_results`)."""

    def __init__(self, results: dict[int, TrialResult]) -> None:
        self.results = results

    def curves(self) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
        out = {}
        for t, r in self.results.items():
            steps = np.asarray(r.eval_steps, dtype=np.int64)
            out[t] = {k: (steps, np.asarray(v, dtype=np.float64)) for k, v in r.curves.items()}
        return out

    def result(self, trial: int) -> TrialResult:
        return self.results[trial]


@dataclass(frozen=True)
class TrialsFrame:
    """The trials of one study: rows plus what the spec says about them.

    ``rows`` are ordered by trial index. ``space`` carries the roles and
    ranges; ``metric``/``mode`` say what "best" means; ``n_validation`` is
    the size of the validation set (for the binomial standard error of an
    error rate), ``None`` when unknown; ``sampler`` is what chose the
    configurations (``"halton"``, ``"gp_ei"``, ``"TPESampler"``, ...; ``None``
    when unknown), which decides whether the trials are exchangeable draws
    (:attr:`quasi_random`); ``source`` says where an imported study came from.
    """

    name: str
    rows: tuple[TrialRow, ...]
    space: SearchSpace | None
    metric: str
    mode: str
    max_train_steps: int
    repeats: int = 1
    n_validation: int | None = None
    spec: StudySpec | None = field(default=None, repr=False, compare=False)
    sampler: str | None = None
    source: str | None = None
    _source: Any = field(default=None, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------- roles
    @property
    def scientific(self) -> tuple[str, ...]:
        """Names of the scientific hyperparameters (spec order)."""
        return () if self.space is None else self.space.scientific()

    @property
    def quasi_random(self) -> bool:
        """True when the trials are exchangeable draws (Halton, Sobol, random or grid search)."""
        return self.sampler in QUASI_RANDOM

    @property
    def nuisance(self) -> tuple[str, ...]:
        """Names of the nuisance hyperparameters (spec order)."""
        return () if self.space is None else self.space.nuisance()

    @property
    def fixed(self) -> tuple[str, ...]:
        """Names of the fixed hyperparameters (spec order)."""
        return () if self.space is None else self.space.fixed()

    def searched(self) -> tuple[str, ...]:
        """Searched (non-fixed) parameter names: scientific first, then nuisance."""
        return () if self.space is None else self.space.dimensions

    def label(self, value: tuple) -> str:
        """``"optimizer=adam"`` for the scientific value ``("adam",)``."""
        return value_label(self.scientific, value)

    # -------------------------------------------------------------- rows
    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def _with_rows(self, rows) -> "TrialsFrame":
        return dataclasses.replace(self, rows=tuple(rows))

    def with_n_validation(self, n_validation: int | None) -> "TrialsFrame":
        """The same frame with the validation set size behind its error rates set."""
        if n_validation is not None:
            _validate.integer("n_validation", n_validation, low=1)
        return dataclasses.replace(self, n_validation=n_validation)

    def where(self, predicate) -> "TrialsFrame":
        """The rows for which ``predicate(row)`` is true (curves stay shared)."""
        return self._with_rows(r for r in self.rows if predicate(r))

    def complete(self) -> "TrialsFrame":
        """Complete trials only (infeasible, failed and pruned ones dropped)."""
        return self.where(lambda r: r.status == TrialStatus.COMPLETE)

    def count(self, status: TrialStatus) -> int:
        """The number of trials with ``status``."""
        return sum(r.status == status for r in self.rows)

    def counts(self) -> dict[str, int]:
        """``{"complete": n, "infeasible": n, "failed": n, "pruned": n}`` (zeros included)."""
        return {s.value: self.count(s) for s in TrialStatus}

    def row(self, trial: int) -> TrialRow:
        """The row of trial number ``trial`` (a ``ValueError`` listing the trials if absent)."""
        for r in self.rows:
            if r.trial == trial:
                return r
        raise ValueError(f"study {self.name!r} has no trial {trial}; "
                         f"trials are {[r.trial for r in self.rows]}")

    def scientific_values(self) -> list[tuple]:
        """The distinct scientific values, in the order they first appear in the space."""
        seen: list[tuple] = []
        for r in self.rows:
            if r.scientific_value not in seen:
                seen.append(r.scientific_value)
        return sorted(seen, key=self._value_order)

    def _value_order(self, value: tuple):
        keys = []
        for name, v in zip(self.scientific, value):
            p = self.space[name]
            values = getattr(p, "values", None)
            if values is not None and v in values:
                keys.append((0, values.index(v), ""))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append((1, float(v), ""))
            else:
                keys.append((2, 0.0, str(v)))
        return tuple(keys)

    def groups(self, by: str | None = "scientific") -> dict[tuple, "TrialsFrame"]:
        """``{scientific value: sub-frame}`` (``by="scientific"``) or ``{(): self}`` (``None``).

        ``by`` may also name one parameter (or config key): the groups are
        then its values, as 1-tuples.
        """
        if by is None:
            return {(): self}
        if by == "scientific":
            return {v: self.where(lambda r, v=v: r.scientific_value == v)
                    for v in self.scientific_values()}
        values = self.values(by, numeric=False)
        keys: list[tuple] = []
        for v in values:
            if (v,) not in keys:
                keys.append((v,))
        return {k: self._with_rows(r for r, v in zip(self.rows, values) if (v,) == k)
                for k in keys}

    def objectives(self) -> np.ndarray:
        """Objective of each row (float64; NaN unless complete with a finite metric)."""
        return np.array([r.objective for r in self.rows], dtype=np.float64)

    def statuses(self) -> list[TrialStatus]:
        """Each row's status."""
        return [r.status for r in self.rows]

    def parameter_of(self, row: TrialRow, param: str) -> str | None:
        """The name of the parameter active in ``row`` that ``param`` refers to.

        ``param`` is a parameter name (``"adam/lr"``) or a config key
        (``"lr"``, which is ``"adam/lr"`` in an Adam trial and
        ``"nesterov/lr"`` in a Nesterov one). ``None`` if inactive.
        """
        if param in row.active:
            return param
        for name in row.active:
            if name.rsplit("/", 1)[-1] == param:
                return name
        return None

    def values(self, param: str, *, numeric: bool = True) -> list | np.ndarray:
        """Each row's value of ``param`` (name or config key).

        ``numeric=True``: a float64 array with NaN where the parameter is
        inactive; ``numeric=False``: a list with ``None`` there.
        """
        known = set(self.space or ()) | {n.rsplit("/", 1)[-1] for n in (self.space or ())}
        if self.space is not None and param not in known:
            raise ValueError(f"param={param!r} is not a parameter of study {self.name!r}; "
                             f"parameters are {list(self.space.names)}")
        out = []
        for r in self.rows:
            name = self.parameter_of(r, param)
            out.append(None if name is None else r.active[name])
        if not numeric:
            return out
        return np.array([math.nan if v is None else float(v) for v in out], dtype=np.float64)

    # --------------------------------------------------------- lazy data
    def _curves(self) -> dict:
        if "curves" not in self._cache:
            if self._source is None:
                raise ValueError(f"frame {self.name!r} has no curves (built without a source)")
            self._cache["curves"] = self._source.curves()
        return self._cache["curves"]

    def curves(self, trial: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{curve name: (steps, values)}`` of one trial (read on first use)."""
        return self._curves().get(trial, {})

    def curve(self, trial: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of curve ``name`` (e.g. ``"validation/error_rate"``)."""
        curves = self.curves(trial)
        if name not in curves:
            raise ValueError(f"trial {trial} of study {self.name!r} has no curve {name!r}; "
                             f"curves are {sorted(curves)}")
        return curves[name]

    def result(self, trial: int) -> TrialResult:
        """The full ``TrialResult`` of a trial (gradient norms, per-step losses, curves)."""
        key = ("result", trial)
        if key not in self._cache:
            if self._source is None:
                raise ValueError(f"frame {self.name!r} has no trial results (built without a "
                                 f"source)")
            self._cache[key] = self._source.result(trial)
        return self._cache[key]

    def grad_norms(self, trial: int) -> np.ndarray:
        """The per-step gradient norms of a trial (empty when it recorded none)."""
        return np.asarray(self.result(trial).grad_norms, dtype=np.float64)

    def train_losses(self, trial: int) -> np.ndarray:
        """The per-step training losses of a trial (empty when it recorded none)."""
        return np.asarray(getattr(self.result(trial), "train_losses", np.zeros(0)),
                          dtype=np.float64)


# ---------------------------------------------------------------- building
def _row(space: SearchSpace | None, trial: int, config_index: int, repeat: int, seed: int,
         status: TrialStatus, reason: str, config: dict, objective: float | None, best_step,
         steps_done: int, best_metrics: dict) -> TrialRow:
    active = dict(config) if space is None else space.active_parameters(config)
    scientific = () if space is None else tuple(active.get(n) for n in space.scientific())
    objective = math.nan if objective is None else float(objective)
    if status != TrialStatus.COMPLETE or not math.isfinite(objective):
        objective = math.nan        # only complete trials with a finite metric can be "best"
    return TrialRow(int(trial), int(config_index), int(repeat), int(seed), TrialStatus(status),
                    str(reason), dict(config), active, scientific, objective,
                    None if best_step is None else int(best_step), int(steps_done),
                    dict(best_metrics))


def _validation_size(spec: StudySpec) -> int | None:
    """Size of the workload's validation split (None for a custom trial function)."""
    if spec.workload is None:
        return None
    return len(train.get_workload(spec.workload, **spec.workload_options).validation)


def load(store: Store, name: str, *, n_validation: int | None = None) -> TrialsFrame:
    """Read study ``name`` from ``store`` into a :class:`TrialsFrame` (milliseconds).

    ``n_validation`` (the validation set size behind an error rate): this
    argument, else the study's recorded setting (``Store.meta``), else the
    workload's validation split; ``None`` for a custom trial function
    without the setting. The sampler is the recorded one of an imported
    study (``"TPESampler"``), else the spec's.
    """
    spec = store.get_spec(name)
    meta = store.meta(name)
    rows = tuple(_row(spec.search_space, t.trial, t.config_index, t.repeat, t.seed, t.status,
                      t.reason, t.config, t.objective, t.best_step, t.steps_done, t.best_metrics)
                 for t in store.trials(name))
    if n_validation is not None:
        _validate.integer("n_validation", n_validation, low=1)
    else:
        n_validation = meta.get("n_validation") or _validation_size(spec)
    source = meta.get("source")
    return TrialsFrame(name, rows, spec.search_space, spec.metric, spec.mode,
                       spec.max_train_steps, spec.repeats, n_validation, spec,
                       sampler=meta.get("sampler", spec.sampler),
                       source=None if source is None else describe_source(source),
                       _source=_StoreSource(store.workspace, name))


def describe_source(source: dict) -> str:
    """One line for the recorded source of an imported study (``Store.meta(name)["source"]``)."""
    parts = [f"{k}={v}" for k, v in source.items() if k != "kind" and v not in (None, "")]
    return f"{source.get('kind', 'import')}: " + ", ".join(parts)


def from_results(results, *, space: SearchSpace | None = None, metric: str =
                 "validation/error_rate", mode: str = "min", max_train_steps: int | None = None,
                 n_validation: int | None = None, repeats: int = 1, name: str = "in_memory",
                 trials=None, sampler: str | None = None,
                 source: str | None = None) -> TrialsFrame:
    """A frame from ``TrialResult`` objects, without a store.

    Trial ``i`` is ``results[i]`` unless ``trials`` gives each result's own
    trial number (an imported study keeps its numbers). The objective is
    ``result.best_metrics[metric]``. ``sampler`` names what chose the
    configurations (``None``: unknown). Useful for procedures that run trials
    directly, for imported studies, and for tests on fabricated results.
    """
    _validate.one_of("mode", mode, ("min", "max"))
    if n_validation is not None:
        _validate.integer("n_validation", n_validation, low=1)
    results = list(results)
    numbers = list(range(len(results))) if trials is None else [int(t) for t in trials]
    if len(numbers) != len(results) or len(set(numbers)) != len(numbers):
        raise ValueError(f"trials must give one distinct number per result; got {len(numbers)} "
                         f"numbers ({len(set(numbers))} distinct) for {len(results)} results")
    rows = []
    for i, (t, r) in enumerate(zip(numbers, results)):
        if not isinstance(r, TrialResult):
            raise TypeError(f"results[{i}] must be a TrialResult, got {type(r).__name__}")
        rows.append(_row(space, t, i // repeats, i % repeats, r.seed, r.status, r.reason,
                         r.config, r.best_metrics.get(metric), r.best_step, r.steps_done,
                         r.best_metrics))
    if max_train_steps is None:
        done = [r.steps_done for r in results if r.status == TrialStatus.COMPLETE]
        max_train_steps = max(done) if done else max([r.steps_done for r in results] or [1])
    rows.sort(key=lambda row: row.trial)
    return TrialsFrame(name, tuple(rows), space, metric, mode, max(1, int(max_train_steps)),
                       repeats, n_validation, None, sampler=sampler, source=source,
                       _source=_MemorySource(dict(zip(numbers, results))))
