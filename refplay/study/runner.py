"""Run a study: submit the trials without a result to an executor, record each as it finishes.

DESIGN.md: "study runs any function ``(config, seed) -> TrialResult``". The
runner

1. records the study in the store (or checks the stored spec is the same),
2. lists the trial indices with no recorded result (all of them the first
   time; the rest after a crash or Ctrl-C),
3. submits those trials to a ``concurrent.futures.Executor`` — in-process
   serial (``workers=0``), a local process pool (the default; one BLAS/Numba
   thread per worker; workers exit if the driver is killed), or any executor
   the caller passes, e.g. a Dask cluster's
   ``distributed.Client(address).get_executor(pure=False)``,
4. records each result as it completes. The driver is the only process that
   writes the store; a trial is recorded in one transaction, so a study killed
   at any moment loses at most the trials that were running, and resuming runs
   exactly those again.

A trial function is any picklable callable
``trial_fn(config: dict, seed: int, *, trial_dir: str) -> TrialResult`` (or a
number: the study metric, NaN or infinite for a diverged trial);
``trial_dir`` is the trial's own folder, where it may keep checkpoints so that
a re-run continues where it stopped. The default trial function calls
``refplay.train.run_trial`` on the spec's workload. Whatever a trial function
does — raise, return NaN losses, run past the time limit — becomes a recorded
``failed`` or ``infeasible`` trial with its reason; it never stops the study,
with one exception: when the first trials of a run all crash with the same
error (:data:`SAME_FAILURES`), the run stops with that error (a bug, not a
result), keeping what it recorded.

Determinism: a trial's config and seed depend only on (spec, trial index), and
every trial runs with one BLAS/Numba thread, so the recorded results are
bitwise identical whether the study runs serially, on a process pool or on a
Dask cluster, and whether or not it was interrupted.

Adaptive samplers: ask, record, run, tell
-----------------------------------------
With ``sampler = "gp_ei"`` or ``"external"`` a configuration depends on the
results before it (the playbook: Bayesian optimization "after exploration
concludes"). The driver proposes the configurations in the rounds of
:meth:`StudySpec.proposal_rounds`:

1. *ask*: round ``[k, k + batch)`` (configuration indices) is proposed once
   every trial before it is recorded, by
   ``proposer(history, n=batch, seed=child(sampler_seed, k))``; ``history``
   is every recorded trial before the round, in trial order, as
   :class:`HistoryEntry` ``(trial, config, objective, feasible)``: the study
   metric (negated if ``mode="max"``: lower is always better) for a complete
   trial, ``None`` and ``feasible=False`` for an infeasible one; failed
   trials (crashes, time limits) say nothing about the hyperparameters and
   are left out;
2. *record*: the proposals are written to the store's ``proposals`` table
   (one transaction) before any of them is submitted;
3. *run* the trials, and *tell*: each result is recorded as it finishes, and
   the next round sees it.

Because a round waits for all earlier trials, its history does not depend on
which trial finished first, and the rounds are fixed by ``batch``, not by the
number of workers: serial and parallel runs of the same spec are bitwise
equal, whatever the number of workers or the executor (the proposer runs in
the driver, on one thread). A resumed study runs a trial that has a recorded
proposal with that configuration and never proposes it again, so a
killed-and-resumed study equals an uninterrupted one. The price: after the
initial trials, at most ``batch * repeats`` trials are in flight.

``sampler = "gp_ei"`` uses the built-in proposer :class:`GpEiProposer`
(:func:`refplay.search.gp_ei`). ``sampler = "external"`` lets any optimizer
drive the study: pass ``study.run(spec, ..., proposer=fn)`` with
``fn(history, n, seed) -> list of n configs`` (each is validated against the
search space and the workload before it is recorded). We chose this callback
over a public ``ask()``/``tell()`` pair on the store because the driver must
stay the only writer and the one that decides *when* a round may be
proposed: with a callback, an external optimizer gets the rounds, the
recording before running, the crash safety and the exact resume for free,
and a tool that has its own ask/tell interface (Vizier's suggest/complete,
Optuna's ``ask``/``tell``) fits in a few lines — *tell* it the history
entries it has not seen, *ask* it for ``n`` configurations; refplay ships
that adapter for Optuna, :class:`refplay.study.proposers.OptunaProposer`. A
proposer need not be deterministic: its proposals are recorded, and resume
replays them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import shlex
import socket
import sys
import types
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NamedTuple

from tqdm.auto import tqdm

from refplay import _validate, rng, search, threads, train
from refplay.study import executors
from refplay.study.executors import (SerialExecutor, TrialTimeout, _failed, _Outcome, _run_task,
                                     stop_pool, _Task)
from refplay.study.spec import StudySpec, Trial
from refplay.study.store import Store, StudyStatus
from refplay.train.result import TrialResult, TrialStatus
from refplay.train.settings import TrialSettings

__all__ = ["run", "SerialExecutor", "WorkloadTrial", "StudyError", "TrialTimeout",
           "DEFAULT_TRIAL_FUNCTION", "HistoryEntry", "GpEiProposer", "Proposer"]

TrialFunction = Callable[..., TrialResult]

# The name recorded for studies run by the default trial function.
DEFAULT_TRIAL_FUNCTION = "refplay.train.run_trial"


class StudyError(RuntimeError):
    """The run stopped: a trial could not run at all, or its first trials share one crash.

    ``str(error)`` is the whole story (it may hold a traceback); ``summary`` is
    one line of it, for a command line that points to the whole text.
    """

    def __init__(self, message: str, *, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary or message.splitlines()[0]


@dataclasses.dataclass(frozen=True)
class WorkloadTrial:
    """The default trial function: ``train.run_trial`` on a named workload.

    ``train.run_trial(train.get_workload(workload, **workload_options), config,
    seed=seed, settings=settings, checkpoint_dir=trial_dir/checkpoints)``,
    with the study's :class:`~refplay.train.TrialSettings` (``spec.settings``).
    """

    workload: str
    workload_options: dict
    settings: TrialSettings

    @classmethod
    def from_spec(cls, spec: StudySpec) -> "WorkloadTrial":
        """The trial function of ``spec``: its workload, options and trial settings."""
        return cls(spec.workload, dict(spec.workload_options), spec.settings)

    def _workload(self):
        return _cached_workload(self.workload, json.dumps(self.workload_options, sort_keys=True))

    def check_configs(self, configs: list[dict]) -> None:
        """Refuse, before any trial runs, a configuration no trial could train.

        Invalid keys, a batch larger than the training set, a selection metric
        the trial would not report: a mistake fails now, once, not as N failed
        trials.
        """
        workload = self._workload()
        for i, config in enumerate(configs):
            try:
                train.check_trial(workload, config, self.settings)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"configuration {i} of the study ({config}) is not a valid "
                                f"trial config for workload {self.workload!r}: {exc}") from None

    def __call__(self, config: dict, seed: int, *, trial_dir: str) -> TrialResult:
        """``train.run_trial`` on the workload, its checkpoints in ``trial_dir``."""
        return train.run_trial(self._workload(), config, seed=seed, settings=self.settings,
                               checkpoint_dir=Path(trial_dir) / "checkpoints")


class HistoryEntry(NamedTuple):
    """One finished trial as a proposer sees it (lower objective is better).

    The first three fields after ``trial`` are the ``(config, objective,
    feasible)`` triple of :func:`refplay.search.gp_ei`.
    """

    trial: int
    config: dict
    objective: float | None     # None for an infeasible trial
    feasible: bool


#: ``proposer(history, n, seed) -> [config, ...]``: the next ``n`` configurations.
Proposer = Callable[[list[HistoryEntry], int, int], Sequence[dict]]


@dataclasses.dataclass(frozen=True)
class GpEiProposer:
    """The proposer of ``sampler = "gp_ei"``: :func:`refplay.search.gp_ei` on the study's space.

    ``gp_ei`` needs two feasible trials to fit its GP; until the history has
    them, a round continues quasi-random search instead,
    ``search.halton(space, n, seed)``, and the store records its proposer as
    :data:`GpEiProposer.NOT_ENOUGH_FEASIBLE`.
    """

    space: Any
    NAME = "gp_ei"
    NOT_ENOUGH_FEASIBLE = "halton (fewer than 2 feasible trials)"

    def name_for(self, history: Sequence[HistoryEntry]) -> str:
        """Who proposes the round that sees ``history``."""
        feasible = sum(1 for entry in history if entry.feasible)
        return self.NAME if feasible >= 2 else self.NOT_ENOUGH_FEASIBLE

    def __call__(self, history: Sequence[HistoryEntry], n: int, seed: int) -> list[dict]:
        if self.name_for(history) != self.NAME:
            return search.halton(self.space, n, seed)
        return search.gp_ei(self.space, [(e.config, e.objective, e.feasible) for e in history],
                            n=n, seed=seed)


@functools.lru_cache(maxsize=4)
def _cached_workload(name: str, options_json: str):
    # Building a workload can mean generating its dataset; a worker process runs
    # many trials of one workload, so build it once per process (it is immutable).
    return train.get_workload(name, **json.loads(options_json))


# ----------------------------------------------------------------- the worker side
# ----------------------------------------------------------------- the driver side
def run(spec: StudySpec, *, store: Store | str | os.PathLike,
        executor: Executor | None = None, workers: int | None = None,
        trial_fn: TrialFunction | None = None, time_limit: float | None = None,
        progress: bool | str | None = None, command: str | None = None,
        retry_failed: bool = False, proposer: Proposer | None = None) -> StudyStatus:
    """Run (or resume) study ``spec``: every trial without a recorded result.

    Parameters
    ----------
    spec:
        The study. If a study of that name is already in the store, its stored
        spec must be the same (notes aside); only missing trials run.
    store:
        A ``Store`` or a workspace directory (opened and closed here).
    executor:
        Any ``concurrent.futures.Executor``, left open for the caller; for a
        Dask cluster ``distributed.Client(address).get_executor(pure=False)``
        (trial folders must then be on a filesystem the workers share).
    workers:
        Without ``executor``: ``0`` runs trials here, one after another;
        ``N >= 1`` a local pool of N processes (default: the usable CPUs),
        each with one BLAS/Numba thread.
    trial_fn:
        ``trial_fn(config, seed, *, trial_dir) -> TrialResult`` for studies
        with ``spec.workload=None``; by default ``train.run_trial`` on
        ``spec.workload``.
    time_limit:
        Seconds per trial; a trial that runs past it is recorded as failed.
    progress:
        ``True``: a progress bar; ``"lines"``: one line per finished trial on
        stdout (for a log file or a notebook); ``False``: nothing. By default
        a bar when stderr is a terminal, else lines.
    command:
        The command line that reproduces the study (the CLI passes its argv).
    retry_failed:
        Run the ``failed`` trials again; their old records are kept
        (``Store.retired``). A retried adaptive trial reruns its proposal.
    proposer:
        Required with ``sampler = "external"`` (refused otherwise):
        ``proposer(history, n, seed) -> list of n configs`` over
        :class:`HistoryEntry` s (module docstring, "Adaptive samplers").

    Returns the study's status. Ctrl-C stops the run cleanly: finished trials are
    kept, running ones re-run on resume, and ``KeyboardInterrupt`` is re-raised.
    """
    trial_fn, fn_name = _resolve_trial_fn(spec, trial_fn)
    time_limit, workers = _checked_run_options(executor, workers, time_limit, retry_failed)
    show = _show_progress(progress)
    proposer, proposer_name = _resolve_proposer(spec, proposer)
    own_store = not isinstance(store, Store)
    store = Store(store) if own_store else store
    try:
        with _study_lock(store, spec.name):
            _begin(spec, store, fn_name, command, retry_failed)
            _run_missing(spec, store, trial_fn, (proposer, proposer_name),
                         (executor, workers, time_limit, show))
        return store.status(spec.name)
    finally:
        if own_store:
            store.close()


def _run_missing(spec: StudySpec, store: Store, trial_fn, proposer: tuple, how: tuple) -> None:
    """Run the trials of ``spec`` without a record; ``how`` = (executor, workers, limit, show)."""
    done = store.recorded_indices(spec.name)
    todo = [i for i in range(spec.budget) if i not in done]
    if not todo:
        return
    if spec.adaptive:
        check = trial_fn.check_configs if isinstance(trial_fn, WorkloadTrial) else None
        source = _ProposedTrials(spec, store, todo, *proposer, check)
    else:
        source = _FixedTrials(spec.trial(i) for i in todo)
    executor, workers, time_limit, show = how
    _run_trials(spec, store, source, len(todo), trial_fn, executor, workers, time_limit, show)


def _begin(spec: StudySpec, store: Store, fn_name: str, command: str | None,
           retry_failed: bool) -> None:
    """Record the study (or check the stored one), and retire its failed trials if asked."""
    spec_text = None
    if spec.source is not None and Path(spec.source).is_file():
        spec_text = Path(spec.source).read_text()
    store.begin_study(spec, trial_function=fn_name, spec_text=spec_text,
                      command=command or _default_command(spec, store, fn_name, spec_text))
    if retry_failed:
        store.retire_failed(spec.name)


def _checked_run_options(executor, workers, time_limit, retry_failed):
    """Validate ``run``'s options; returns the checked ``(time_limit, workers)``."""
    if time_limit is not None:
        time_limit = _validate.real("time_limit", time_limit, low=0.0, low_open=True)
    if executor is not None and workers is not None:
        raise ValueError("pass either executor or workers, not both")
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(f"executor must be a concurrent.futures.Executor, "
                        f"got {type(executor).__name__}")
    if workers is not None:
        workers = _validate.integer("workers", workers, low=0)
    if not isinstance(retry_failed, bool):
        raise TypeError(f"retry_failed must be True or False, got {retry_failed!r}")
    return time_limit, workers


@contextlib.contextmanager
def _study_lock(store: Store, name: str) -> Iterator[None]:
    """Hold ``WORKSPACE/NAME/.lock`` while a driver runs the study: one driver per study.

    Two drivers would run the same missing trials. The lock is an ``flock``,
    released by the operating system when the driver exits or is killed, so a
    crash never leaves a stale lock. (Without ``fcntl``, e.g. on Windows, no
    lock is taken.)
    """
    try:
        import fcntl  # lazy: POSIX only (on Windows the run takes no lock)
    except ImportError:
        yield
        return
    path = store.study_dir(name) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "pid unknown"
            raise StudyError(f"study {name!r} is being run by another process ({holder}); "
                             f"one driver per study") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _resolve_trial_fn(spec: StudySpec, trial_fn) -> tuple[TrialFunction, str]:
    """The trial function of ``spec`` and its recorded name; a workload's configs checked.

    A configuration no trial could train is refused here, before the study is recorded.
    """
    if not isinstance(spec, StudySpec):
        raise TypeError(f"spec must be a StudySpec, got {type(spec).__name__}")
    trial_fn, name = _trial_fn_of(spec, trial_fn)
    if isinstance(trial_fn, WorkloadTrial):
        trial_fn.check_configs(spec.sampled_configs)
    return trial_fn, name


def _trial_fn_of(spec: StudySpec, trial_fn) -> tuple[TrialFunction, str]:
    if trial_fn is None:
        if spec.workload is None:
            raise ValueError(f"study {spec.name!r} has no workload; pass trial_fn=... "
                             f"(a function (config, seed, *, trial_dir) -> TrialResult)")
        return WorkloadTrial.from_spec(spec), DEFAULT_TRIAL_FUNCTION
    if spec.workload is not None:
        raise ValueError(f"study {spec.name!r} names workload {spec.workload!r}, which is run by "
                         f"{DEFAULT_TRIAL_FUNCTION}; a custom trial_fn needs workload=None")
    if not callable(trial_fn):
        raise TypeError(f"trial_fn must be callable, got {trial_fn!r}")
    return trial_fn, _callable_name(trial_fn)


def _resolve_proposer(spec: StudySpec, proposer) -> tuple[Proposer | None, str | None]:
    """The proposer of an adaptive study and the name recorded with its proposals."""
    if spec.sampler == "external":
        if proposer is None:
            raise ValueError(f"study {spec.name!r} has sampler='external'; pass "
                             f"proposer=fn, a function (history, n, seed) -> list of n configs")
        if not callable(proposer):
            raise TypeError(f"proposer must be callable, got {proposer!r}")
        # module.qualname only: a proposer's fields are its state (what it has seen), not a name.
        cls = proposer if isinstance(proposer, (types.FunctionType, type)) else type(proposer)
        return proposer, f"{cls.__module__}.{cls.__qualname__}"
    if proposer is not None:
        hint = (" (gp_ei has its own proposer; use sampler='external' to bring one)"
                if spec.sampler == "gp_ei" else "")
        raise ValueError(f"proposer= is only for sampler='external', not "
                         f"sampler={spec.sampler!r}{hint}")
    if spec.sampler == "gp_ei":
        proposer = GpEiProposer(spec.search_space)
        return proposer, proposer.NAME
    return None, None


def _callable_name(fn) -> str:
    """A stable name for a trial function: module.qualname, plus its fields if a dataclass."""
    if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)):
        return f"{fn.__module__}.{fn.__qualname__}"
    cls = type(fn)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if dataclasses.is_dataclass(fn):
        # A field that is a function is named, not repr'd: its repr holds an address.
        params = ", ".join(f"{f.name}={_field_text(getattr(fn, f.name))}"
                           for f in dataclasses.fields(fn))
        name += f"({params})"
    return name


def _field_text(value) -> str:
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def _default_command(spec: StudySpec, store: Store, fn_name: str, spec_text: str | None) -> str:
    copy = str(store.spec_copy_path(spec, spec_text).resolve())
    workspace = str(store.workspace.resolve())
    if fn_name == DEFAULT_TRIAL_FUNCTION:
        return shlex.join(["refplay", "study", "run", copy, "--workspace", workspace])
    return (f"python -c \"from refplay import study; study.run(study.StudySpec.load({copy!r}), "
            f"store={workspace!r}, trial_fn={fn_name})\"")


def _show_progress(progress: bool | str | None) -> str | None:
    """How to report progress: ``"bar"``, ``"lines"`` or ``None`` (silent).

    The default is ``$REFPLAY_PROGRESS`` when set to ``lines`` (several
    processes sharing one terminal: bars would overwrite each other), else a
    bar on a terminal and lines elsewhere.
    """
    if progress is None:
        if os.environ.get("REFPLAY_PROGRESS") == "lines":
            return "lines"
        return "bar" if getattr(sys.stderr, "isatty", lambda: False)() else "lines"
    if progress == "lines":
        return "lines"
    if not isinstance(progress, bool):
        raise ValueError(f"progress={progress!r} is not allowed; use True, False, 'lines' or None")
    return "bar" if progress else None


# ------------------------------------------------------------ where trials come from
class _FixedTrials:
    """The trials of a non-adaptive study: all known up front, in index order."""

    def __init__(self, trials) -> None:
        self._queue = deque(trials)

    def next_trial(self) -> Trial | None:
        return self._queue.popleft() if self._queue else None

    @property
    def exhausted(self) -> bool:
        return not self._queue


class _ProposedTrials:
    """The trials of an adaptive study: recorded proposals first, then new rounds.

    ``next_trial`` returns the next trial to run, or ``None`` while its
    round cannot be proposed yet (an earlier trial has no record). A round is
    proposed, checked and recorded in the store before its first trial is
    returned (module docstring, "Adaptive samplers").
    """

    def __init__(self, spec: StudySpec, store: Store, todo: list[int], proposer: Proposer,
                 proposer_name: str, check: Callable[[list[dict]], None] | None) -> None:
        self.spec, self.store = spec, store
        self.proposer, self.proposer_name, self.check = proposer, proposer_name, check
        self._todo = deque(sorted(todo))
        self._proposed = {p.trial: p.config for p in store.proposals(spec.name)}
        self._round_of = {c: r for r in spec.proposal_rounds() for c in r}

    @property
    def exhausted(self) -> bool:
        return not self._todo

    def next_trial(self) -> Trial | None:
        if not self._todo:
            return None
        index = self._todo[0]
        if index not in self._proposed and not self._propose_round_of(index):
            return None
        self._todo.popleft()
        return self.spec.trial(index, config=self._proposed[index])

    def _propose_round_of(self, index: int) -> bool:
        spec, repeats = self.spec, self.spec.repeats
        configs_round = self._round_of[index // repeats]
        first = configs_round.start * repeats          # the round's first trial
        recorded = self.store.recorded_indices(spec.name)
        if any(i not in recorded for i in range(first)):
            return False
        n = len(configs_round)
        if configs_round.start == 0 and spec.initial_trials:
            configs, who, seed, size = spec.sampled_configs, "halton", spec.sampler_seed, 0
        else:
            history = self._history(first)
            seed = rng.seed_int(rng.child(spec.sampler_seed, configs_round.start))
            who = (self.proposer.name_for(history) if isinstance(self.proposer, GpEiProposer)
                   else self.proposer_name)
            configs = self._ask(history, n, seed, who, configs_round.start)
            size = len(history)
        trials = [spec.trial(c * repeats + r, config=configs[c - configs_round.start])
                  for c in configs_round for r in range(repeats)]
        self.store.record_proposals(spec.name, trials, proposer=who, seed=seed, history_size=size)
        self._proposed.update({t.index: t.config for t in trials})
        return True

    def _history(self, first: int) -> list[HistoryEntry]:
        """The recorded trials before trial ``first``, failed ones left out, lower is better."""
        sign = 1.0 if self.spec.mode == "min" else -1.0
        history = []
        for t in self.store.trials(self.spec.name):
            if t.trial >= first or t.status == TrialStatus.FAILED:
                continue
            if t.status == TrialStatus.COMPLETE and math.isfinite(t.objective):
                history.append(HistoryEntry(t.trial, t.config, sign * t.objective, True))
            elif t.status == TrialStatus.INFEASIBLE:
                history.append(HistoryEntry(t.trial, t.config, None, False))
        return history

    def _ask(self, history: list[HistoryEntry], n: int, seed: int, who: str,
             start: int) -> list[dict]:
        """Call the proposer on one thread (equal proposals serially and in parallel)."""
        where = f"proposer {who!r} (configurations {start}..{start + n - 1} of study " \
                f"{self.spec.name!r})"
        try:
            with threads.single_threaded():
                configs = self.proposer(list(history), n, seed)
        except Exception as exc:
            raise StudyError(f"{where} failed: {type(exc).__name__}: {exc}. Trials recorded so "
                             f"far are kept; resume the study to go on.") from exc
        if isinstance(configs, (str, bytes, dict)) or not isinstance(configs, Sequence) \
                or len(configs) != n:
            raise ValueError(f"{where} must return a list of {n} configs, got {configs!r}")
        try:
            configs = search.explicit(self.spec.search_space, list(configs))
            if self.check is not None:
                self.check(configs)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{where} proposed an invalid config: {exc}") from None
        return configs


# ------------------------------------------------------------------- running them
def _run_trials(spec, store, source, num_todo, trial_fn, executor, workers, time_limit, show):
    owned = executor is None
    if owned:
        workers = executors.available_cpus() if workers is None else workers
        if workers == 0:
            executor = SerialExecutor()
        else:
            executor = executors.process_pool(min(workers, num_todo))
    serial = isinstance(executor, SerialExecutor)

    def make_task(t: Trial) -> _Task:
        return _Task(t.index, t.config, t.seed, str(store.trial_dir(spec.name, t.index)),
                     time_limit, pin_threads=not owned)

    context = threads.single_threaded() if serial else contextlib.nullcontext()
    try:
        with context:
            _drive(spec, store, executor, trial_fn, source, make_task, show,
                   window=1 if serial else num_todo)
    except BaseException:
        if owned and not serial:
            stop_pool(executor)
        raise
    if owned:
        executor.shutdown(wait=True)


def _drive(spec, store, executor, trial_fn, source, make_task, show, window):
    """Submit trials (at most ``window`` in flight) and record outcomes as they complete.

    ``source.next_trial()`` gives the next trial, or ``None`` when none can
    start yet (an adaptive study's next round waits for the records of the
    trials in flight).
    """
    status = store.status(spec.name)
    counts = dict(status.counts)
    best = status.study.best_value
    bar = tqdm(total=spec.budget, initial=status.done, desc=spec.name, unit="trial",
               disable=show != "bar", dynamic_ncols=True, file=sys.stderr)
    done = status.done
    _set_postfix(bar, counts, best)
    pending: dict[Future, tuple[Trial, _Task]] = {}
    watch = _FailureWatch(spec.name)

    def submit_more() -> None:
        while len(pending) < window:
            trial = source.next_trial()
            if trial is None:
                return
            task = make_task(trial)
            pending[executor.submit(_run_task, trial_fn, task)] = (trial, task)

    try:
        submit_more()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: pending[f][1].index):
                trial, task = pending.pop(future)
                outcome = _outcome_or_raise(future, task)
                result = _record(spec, store, trial, task, outcome)
                watch.see(task.index, result, more=bool(pending) or not source.exhausted)
                counts[result.status] += 1
                best = store.get_study(spec.name).best_value
                done += 1
                bar.update(1)
                _set_postfix(bar, counts, best)
                if show == "lines":
                    print(_trial_line(spec, task.index, result, outcome, done, best), flush=True)
            submit_more()
        if not source.exhausted:   # cannot happen: a round waits only for trials in flight
            raise StudyError(f"study {spec.name!r}: no trial in flight, yet trials remain that "
                             f"cannot start")
    except BaseException:
        for future in pending:
            future.cancel()
        raise
    finally:
        bar.close()


#: A run whose first this many trials all crash with the same error stops (when more remain).
SAME_FAILURES = 3


class _FailureWatch:
    """Stop a run whose first :data:`SAME_FAILURES` trials all crashed with the same error.

    Such a run has a bug, not unlucky hyperparameters: recording a failure for
    each of the remaining trials would hide it. The failed trials stay
    recorded; ``retry_failed=True`` (``--retry-failed``) runs them again.
    """

    def __init__(self, name: str) -> None:
        self.name, self.first = name, []

    def see(self, index: int, result: TrialResult, *, more: bool) -> None:
        """Note one recorded trial; raise ``StudyError`` when the run should stop."""
        if len(self.first) >= SAME_FAILURES:
            return
        self.first.append((index, result))
        if len(self.first) < SAME_FAILURES or not more:
            return
        lasts = {(r.reason.strip().splitlines() or [""])[-1] for _, r in self.first}
        if all(r.status == TrialStatus.FAILED for _, r in self.first) and len(lasts) == 1:
            indices = [i for i, _ in self.first]
            last = lasts.pop() or "(no message)"
            raise StudyError(
                f"the first {SAME_FAILURES} trials of study {self.name!r} (trials {indices}) all "
                f"failed with the same error, so the study stopped rather than record a failure "
                f"for every trial:\n{self.first[0][1].reason.rstrip()}\nFix it, then run them "
                f"again: `refplay study resume {self.name} --retry-failed` (or study.run(..., "
                f"retry_failed=True)).",
                summary=f"the first {SAME_FAILURES} trials of study {self.name!r} (trials "
                        f"{indices}) all failed with the same error: {last.strip()}")


def _trial_line(spec: StudySpec, index: int, result: TrialResult, outcome: _Outcome, done: int,
                best: float | None) -> str:
    """``nesterov_vs_adam [3/16] trial 2: complete validation/error_rate=0.0780 (12.3 s)``."""
    objective = result.best_metrics.get(spec.metric) if result.feasible else None
    value = f" {spec.metric}={objective:.4g}" if objective is not None else ""
    why = f" ({result.reason.splitlines()[-1][:80]})" if result.reason else ""
    best_text = "-" if best is None else f"{best:.4g}"
    return (f"{spec.name} [{done}/{spec.budget}] trial {index}: {result.status}{value}{why} "
            f"in {outcome.trial_seconds:.1f} s; best so far {best_text}")


def _set_postfix(bar, counts: dict, best: float | None) -> None:
    best_text = "-" if best is None else f"{best:.4g}"
    bar.set_postfix_str(f"infeasible={counts[TrialStatus.INFEASIBLE]} "
                        f"failed={counts[TrialStatus.FAILED]} "
                        f"best={best_text}", refresh=False)


def _outcome_or_raise(future: Future, task: _Task) -> _Outcome:
    try:
        return future.result()
    except Exception as exc:
        # _run_task turns every error of the trial into a result, so this is the
        # executor failing (a worker process died, the function could not be
        # pickled, ...). Stop loudly; the recorded trials are safe.
        hint = ""
        if isinstance(exc, BrokenProcessPool):
            hint = (" (A worker process died: out of memory, a crash, or a script that calls "
                    "study.run outside `if __name__ == \"__main__\":`, which worker processes "
                    "re-import.)")
        raise StudyError(
            f"the executor could not run trial {task.index}: {type(exc).__name__}: {exc}{hint} "
            f"Trials recorded so far are kept; resume the study to run the rest.") from exc


def _record(spec: StudySpec, store: Store, trial: Trial, task: _Task,
            outcome: _Outcome) -> TrialResult:
    """Check a result, save its arrays in the trial folder, then record it in the store.

    A trial function that returned a number reported the study metric at
    ``max_train_steps`` (NaN or infinite: infeasible).
    """
    result = outcome.result
    if not isinstance(result, TrialResult):
        result = TrialResult.from_value(trial.config, trial.seed, result, spec.metric,
                                        spec.max_train_steps)
    result = _checked_result(result, spec.metric)
    trial_dir = Path(task.trial_dir)
    try:
        result.save(trial_dir)
    except (TypeError, ValueError) as exc:   # e.g. extras that are not JSON
        result = _failed(task, f"the trial's result could not be saved: "
                               f"{type(exc).__name__}: {exc}")
        result.save(trial_dir)
    # A diverged or failed trial has no objective (NULL), whatever it measured before.
    objective = result.best_metrics.get(spec.metric) if result.feasible else None
    store.record_trial(spec.name, trial, result, objective=objective,
                       trial_seconds=outcome.trial_seconds, worker=outcome.worker)
    return result


def _checked_result(result: TrialResult, metric: str) -> TrialResult:
    """A trial reported ``complete`` must report a finite study metric.

    Catches trial functions that return NaN losses without calling the trial
    infeasible. (Other curves may hold NaN by design: ``train/loss`` at step 0.)
    """
    if result.status != TrialStatus.COMPLETE:
        return result
    for step, value in zip(result.eval_steps, result.curves.get(metric, [])):
        if not math.isfinite(value):
            return dataclasses.replace(
                result, status=TrialStatus.INFEASIBLE,
                reason=f"{metric} is {value} at step {step} (found by the study runner in a "
                       f"trial reported complete)")
    if metric not in result.best_metrics:
        return dataclasses.replace(
            result, status=TrialStatus.FAILED,
            reason=f"the trial reported no best_metrics[{metric!r}] (it reported "
                   f"{sorted(result.best_metrics)}); is the study's metric right?")
    value = result.best_metrics[metric]
    if not math.isfinite(value):
        return dataclasses.replace(result, status=TrialStatus.INFEASIBLE,
                                   reason=f"best {metric} is {value} (found by the study runner)")
    return result


