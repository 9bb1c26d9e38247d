"""How trials run: executors, worker processes, time limits, one thread per trial.

The study logic (which trials to run, what to record) is in
:mod:`refplay.study.runner`; this module is the process plumbing under it:

* :class:`SerialExecutor` runs trials in this process (``workers=0``);
* :func:`process_pool` starts a local pool of forkserver workers, each with one
  BLAS/Numba thread (:func:`_init_worker`), that exit when the driver dies
  (:func:`_exit_with_the_driver`), and :func:`stop_pool` stops one at once;
* :func:`_run_task` runs one trial in a worker, under a time limit
  (:func:`_time_limit`), turning every exception into a ``failed`` result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import select
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from refplay import threads
from refplay.train.result import TrialResult, TrialStatus

__all__ = ["SerialExecutor", "TrialTimeout", "process_pool", "stop_pool", "available_cpus"]

TrialFunction = Callable[..., TrialResult]


class TrialTimeout(BaseException):
    """Raised inside a trial that ran past its time limit.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that a trial
    function's own ``except Exception`` cannot swallow it.
    """


class SerialExecutor(Executor):
    """Runs each submitted call at once, in this process (``workers=0``).

    The easiest executor to debug: breakpoints and prints work, and Ctrl-C
    interrupts the running trial directly.
    """

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` now; its result or exception is in the returned future."""
        future: Future = Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - delivered through the future, as executors do
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future


@dataclasses.dataclass(frozen=True)
class _Task:
    """What a worker needs to run one trial (small and picklable)."""

    index: int
    config: dict
    seed: int
    trial_dir: str
    time_limit: float | None
    pin_threads: bool


@dataclasses.dataclass(frozen=True)
class _Outcome:
    index: int
    result: TrialResult | float   # a number is the study metric (the driver converts it)
    trial_seconds: float      # time inside the trial function
    worker: str


def _init_worker(driver_pid: int | None = None) -> None:
    """Process-pool initializer: one BLAS/Numba thread; Ctrl-C is the driver's to handle.

    With ``driver_pid``, the worker also exits as soon as the driver process
    is gone (see :func:`_exit_with_the_driver`).
    """
    # The terminal sends SIGINT to the whole process group; the driver decides
    # what happens (it stops the pool), so workers ignore it -- first thing, so
    # that a Ctrl-C during a slow start-up cannot interrupt the set-up below.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM waits until its handler is in place, and the threads started here
    # inherit the block, so the kernel delivers it to the main thread: the one
    # whose blocking calls it interrupts and that runs the handler.
    with _blocked(signal.SIGTERM):
        threads.set_thread_env(1)
        threads.pin_threads(1)
        threads.keep_freed_memory()   # a worker reuses its step buffers: no page faults per step
        signal.signal(signal.SIGTERM, _on_sigterm)
        if driver_pid is not None:
            threading.Thread(target=_exit_with_the_driver, args=(driver_pid,), daemon=True,
                             name="refplay-driver-watch").start()


@contextlib.contextmanager
def _blocked(signum: int) -> Iterator[None]:
    """Block ``signum`` in this thread (and threads it starts) inside the block; it is
    delivered, if it came, when the block ends. (No-op where signals cannot be masked.)"""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})


# A worker's state as its SIGTERM handler sees it. Plain flags, not a
# threading.Event: a handler that takes a lock deadlocks when a second SIGTERM
# (the pool sends one when another worker dies) runs it again while it holds it.
_stopping = False   # SIGTERM came: the pool is being stopped, start no more trials
_in_trial = False   # the trial function is running: SIGTERM may interrupt it


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (how :func:`stop_pool` stops a worker): end the running trial, start no more.

    The default action kills the process at once, before multiprocessing's
    finalizers run; the semaphores the worker registered (Numba's threading
    layer makes one) then stay with the resource tracker, which warns "There
    appear to be 2 leaked semaphore objects" when the driver exits. Instead,
    inside a trial the handler raises ``SystemExit`` (no ``except Exception``
    catches it), which the pool returns as the trial's outcome; the worker
    refuses the trials already queued to it (:func:`_run_task`), takes the
    pool's stop sentinel and exits, running its finalizers.

    Outside a trial it raises nothing: there the worker is inside the pool's
    queues, and an exception between reading a message's length and its body
    (or writing them) would leave the pipe mid-message, so that the reader at
    the other end waits forever -- the driver could then never exit.
    """
    global _stopping
    _stopping = True
    if _in_trial:
        raise SystemExit(128 + signum)


def _exit_with_the_driver(driver_pid: int) -> None:
    """Watch the driver from a worker; end the worker when the driver is gone.

    A process-pool worker does not notice that its driver was SIGKILLed (or
    killed by the out-of-memory killer): it finishes its trial, writing
    checkpoints into the trial folder that the resumed study is using for
    the same trial, then waits forever for more work. So each worker watches
    the driver and exits with it; the trial it was running has no record and
    is run again on resume, from its latest checkpoint.

    Linux's ``pidfd_open`` wakes the watcher the moment the driver exits;
    elsewhere the driver's pid is polled once a second.
    """
    try:
        pidfd = os.pidfd_open(driver_pid)
    except (AttributeError, OSError):      # not Linux >= 5.3, or the driver is already gone
        pidfd = None
    if pidfd is not None:
        select.select([pidfd], [], [])     # readable once the driver has exited
    else:
        while _process_exists(driver_pid):
            time.sleep(1.0)
    os._exit(1)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)                    # signal 0: only checks that the pid exists
    except ProcessLookupError:
        return False
    except PermissionError:                # exists, owned by someone else
        return True
    return True


def _run_task(trial_fn: TrialFunction, task: _Task) -> _Outcome:
    """Run one trial in a worker; every exception becomes a ``failed`` result."""
    if _stopping:
        raise SystemExit(f"the pool is stopping: trial {task.index} not started")
    if task.pin_threads:     # an executor we did not start (e.g. a Dask worker)
        threads.set_thread_env(1)
        threads.pin_threads(1)
    start = time.perf_counter()
    try:
        with _time_limit(task.time_limit) as enforced:
            result = _call_trial(trial_fn, task)
        elapsed = time.perf_counter() - start
        if not isinstance(result, TrialResult) and not _is_number(result):
            result = _failed(task, f"the trial function returned {type(result).__name__}, "
                                   f"not a TrialResult or a number")
        elif not enforced and task.time_limit is not None and elapsed > task.time_limit:
            result = _failed(task, _timeout_reason(task.time_limit) + " (checked when it "
                             "returned: this executor runs trials in threads, which cannot "
                             "be interrupted)")
    except TrialTimeout:
        elapsed = time.perf_counter() - start
        result = _failed(task, _timeout_reason(task.time_limit))
    except Exception:  # noqa: BLE001 - a failing trial is data, recorded with its traceback
        elapsed = time.perf_counter() - start
        result = _failed(task, traceback.format_exc())
    if _stopping:
        # SIGTERM came during the trial. What it left is not the trial's outcome: the
        # handler's SystemExit, raised inside Numba's compiler, surfaces as a SystemError
        # or RuntimeError that the trial (or the except above) turns into 'failed'.
        # Unrecorded, the trial runs again on resume.
        raise SystemExit(f"the pool stopped during trial {task.index}: not recorded")
    return _Outcome(task.index, result, elapsed, f"{socket.gethostname()}:{os.getpid()}")


def _call_trial(trial_fn: TrialFunction, task: _Task):
    """Call the trial function, marked as interruptible by SIGTERM (:func:`_on_sigterm`).

    (Executors that run trials in threads, e.g. Dask's, never install the
    handler, so the flag shared by their threads is not read there.)
    """
    global _in_trial
    try:
        _in_trial = True
        if _stopping:          # SIGTERM came after _run_task's check, before the flag was set
            raise SystemExit(f"the pool is stopping: trial {task.index} not started")
        return trial_fn(dict(task.config), task.seed, trial_dir=task.trial_dir)
    finally:
        _in_trial = False


def _is_number(value) -> bool:
    """A plain objective value (the driver turns it into a result: ``TrialResult.from_value``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _failed(task: _Task, reason: str) -> TrialResult:
    return TrialResult(config=dict(task.config), seed=task.seed, status=TrialStatus.FAILED,
                       reason=reason)


def _timeout_reason(limit: float) -> str:
    return f"the trial ran past its time limit of {limit:g} s"


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[bool]:
    """Raise ``TrialTimeout`` in the trial after ``seconds`` (SIGALRM, main thread only).

    Yields whether the limit is enforced; in a non-main thread (Dask workers
    run tasks in threads) signals cannot reach the trial, and the caller
    checks the elapsed time when the trial returns instead.
    """
    if (seconds is None or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield False
        return

    def on_alarm(signum, frame):
        raise TrialTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _forkserver_context():
    """Workers forked from a clean server process, with the runner already imported.

    Not ``fork``: workers would inherit the driver's threads (tqdm's monitor,
    a Dask client), its open database connection and thread settings. The
    server imports this module (and so NumPy and the trainer) once, so each
    worker starts in milliseconds instead of re-importing. (The preload list
    only takes effect when this process starts its forkserver.)
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "refplay.study.runner", "refplay.study.executors"])
    return context


#: Seconds the workers of a stopped pool have to exit after SIGTERM before SIGKILL.
_STOP_GRACE_SECONDS = 10.0


def stop_pool(executor: ProcessPoolExecutor) -> None:
    """Stop a process pool now: cancel queued trials and terminate running ones.

    The abandoned trials have no record, so resuming runs them again (from
    their latest checkpoints, if the trial function keeps any).

    Python >= 3.14 has a public way to do this,
    ``ProcessPoolExecutor.terminate_workers()``, used when present. Before
    3.14, ``shutdown(cancel_futures=True)`` cancels only trials that have not
    started and leaves running ones to finish, so we terminate the worker
    processes listed in the pool's private ``_processes`` table (a dict
    ``pid -> multiprocessing.Process`` in CPython 3.8-3.13). The access is
    guarded: should that table be missing, the pool is only shut down, and
    the running trials finish (unrecorded) before the driver exits -- slower
    to stop, but nothing is lost or recorded twice. A worker still running
    :data:`_STOP_GRACE_SECONDS` after SIGTERM is killed (SIGKILL): the
    driver's exit waits for every worker, so one stuck worker would hang it.
    """
    terminate_workers = getattr(executor, "terminate_workers", None)
    if callable(terminate_workers):
        terminate_workers()
        return
    table = getattr(executor, "_processes", None)
    processes = list(table.values()) if isinstance(table, dict) else []
    executor.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        with contextlib.suppress(Exception):
            p.terminate()
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in processes:
        # Still running: stuck where SIGTERM cannot reach it (a long native call).
        # Killed, so that it cannot hold the driver's exit, which joins every worker.
        with contextlib.suppress(Exception):
            if p.is_alive():
                p.kill()
                p.join(timeout=_STOP_GRACE_SECONDS)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A local pool of ``workers`` forkserver processes, one BLAS/Numba thread each,
    that exit when this (driver) process dies."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                               initargs=(os.getpid(),), mp_context=_forkserver_context())


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    return _available_cpus()
