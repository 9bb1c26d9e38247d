"""Pin BLAS and Numba to one thread (DESIGN.md principle 4).

Inside a trial, BLAS and Numba run single-threaded: tiny models get slower,
not faster, with threads, and a different thread count changes summation
order and so the bits of the result. Throughput comes from running trials in
parallel processes instead.

threadpoolctl is a core dependency, not an option: the thread-count
environment variables only reach libraries loaded after they are set, and a
worker that imported numpy first (or a notebook) would otherwise run its BLAS
on every core -- slower for tiny models and a different summation order, so
different bits for the same seed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

from threadpoolctl import threadpool_limits

_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "BLIS_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def set_thread_env(n: int = 1) -> None:
    """Set the thread-count environment variables (effective only before numpy/numba load).

    Use this at the top of a worker process or a benchmark script.
    ``NUMBA_NUM_THREADS`` is left alone once Numba is imported: Numba re-reads
    it at every compilation and refuses a value that differs from the thread
    pool it already launched; :func:`pin_threads` limits Numba at run time.
    """
    for var in _ENV_VARS:
        if var == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue
        os.environ[var] = str(int(n))


def _load_numba_blas() -> None:
    """Load the BLAS that Numba's ``np.dot`` calls (SciPy's own OpenBLAS).

    It loads lazily, at the first kernel compilation; a library loaded after a
    thread limit is set escapes the limit, so load it first.
    """
    try:   # lazy: SciPy is optional, loaded here only so that its BLAS gets pinned
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:  # no SciPy: Numba has no BLAS to call, nothing to pin
        pass


def pin_threads(n: int = 1) -> None:
    """Limit every BLAS loaded in this process (threadpoolctl) and Numba to ``n`` threads now."""
    _load_numba_blas()
    threadpool_limits(limits=int(n))
    try:
        import numba  # lazy: Numba's import costs ~0.2 s, paid only by processes that train
        numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    except Exception:  # noqa: BLE001 - numba threading layer may be unavailable; nothing to pin
        pass


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    A training step allocates and frees the same large arrays every step
    (im2col columns, activations, gradients: ~20 MB for the 2-D CNN of
    ``benchmarks/compare_torch.py`` at batch 32). By default glibc serves
    large blocks (above a threshold that starts at 128 KB) with fresh ``mmap``
    pages and unmaps them on free, so every step pays thousands of page faults
    -- measured at ~40% of a small CNN's step (torch's own allocator caches its
    blocks instead). Raising the mmap and trim thresholds to 32 MB / 64 MB
    makes freed blocks reusable; the process's resident memory then stays at
    its peak. Call it once at the start of a worker or benchmark process.
    Returns False (and changes nothing) where glibc's ``mallopt`` is unavailable.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3           # from glibc's <malloc.h>
    mmap_max = 32 * 1024 * 1024                           # glibc's upper limit on 64-bit
    ok_mmap = bool(mallopt(m_mmap_threshold, mmap_max))
    ok_trim = bool(mallopt(m_trim_threshold, 2 * mmap_max))
    return ok_mmap and ok_trim


@contextlib.contextmanager
def limited_threads(n: int = 1):
    """Context manager form of :func:`pin_threads` for BLAS (restores on exit)."""
    _load_numba_blas()
    with threadpool_limits(limits=int(n)):
        yield


@contextlib.contextmanager
def single_threaded():
    """BLAS and Numba on one thread inside the block; the caller's counts come back after.

    Used around every trial: by ``train.run_trial`` and by the study runner's
    serial executor. One thread fixes the summation order, so a trial's bits do
    not depend on the machine's core count, and restoring the counts means a
    trial run from a notebook does not leave NumPy single-threaded.
    """
    import numba  # lazy: Numba's import costs ~0.2 s, paid only by processes that train
    try:
        numba_threads = numba.get_num_threads()
    except Exception:  # noqa: BLE001 - no Numba threading layer: nothing to pin or restore
        numba_threads = None
    # limited_threads loads the BLAS Numba calls first, which would otherwise
    # load after the limit and escape it.
    with limited_threads(1):             # restores the BLAS thread counts on exit
        pin_threads(1)
        try:
            yield
        finally:
            if numba_threads is not None:
                numba.set_num_threads(numba_threads)
