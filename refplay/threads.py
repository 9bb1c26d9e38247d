"""Pin BLAS and Numba to one thread (DESIGN.md principle 4).

Inside a trial, BLAS and Numba run single-threaded: tiny models get slower,
not faster, with threads, and a different thread count changes summation
order and so the bits of the result. Throughput comes from running trials in
parallel processes instead.
"""

from __future__ import annotations

import contextlib
import os

_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "BLIS_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def set_thread_env(n: int = 1) -> None:
    """Set the thread-count environment variables (effective only before numpy/numba load).

    Use this at the top of a worker process or a benchmark script.
    """
    for var in _ENV_VARS:
        os.environ[var] = str(int(n))


def pin_threads(n: int = 1) -> None:
    """Limit BLAS (via threadpoolctl, when installed) and Numba to ``n`` threads now."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl is optional; env vars still apply to new processes
        threadpool_limits = None
    if threadpool_limits is not None:
        threadpool_limits(limits=int(n))
    try:
        import numba
        numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    except Exception:  # noqa: BLE001 - numba threading layer may be unavailable; nothing to pin
        pass


@contextlib.contextmanager
def limited_threads(n: int = 1):
    """Context manager form of :func:`pin_threads` for BLAS (restores on exit)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=int(n)):
        yield
