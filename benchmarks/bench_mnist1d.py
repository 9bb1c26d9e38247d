"""MNIST-1D generation: refplay's vectorized generator vs the reference package.

Side by side, in one process, single-threaded::

    python benchmarks/bench_mnist1d.py            # prints both times and the ratio
    python -m pytest benchmarks/bench_mnist1d.py  # pytest-benchmark suite

The reference is ``mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())``
(a per-example Python loop calling SciPy); refplay replays the same random
draws on a private RandomState and does the arithmetic for all examples at once.
"""

from __future__ import annotations

from refplay.threads import set_thread_env

set_thread_env(1)   # before numpy is imported

import argparse  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from refplay import data  # noqa: E402
from refplay.threads import pin_threads  # noqa: E402


def _reference():
    import mnist1d.data
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    finally:                     # the reference reseeds the global generators; put them back
        np.random.set_state(np_state)
        random.setstate(py_state)


def test_refplay_mnist1d(benchmark):
    pin_threads(1)
    out = benchmark(data.mnist1d)
    assert out["x"].shape == (4000, 40)


def test_reference_mnist1d(benchmark):
    from tests.helpers import optional_import
    optional_import("mnist1d")       # skips locally, fails under CI when missing
    pin_threads(1)
    out = benchmark.pedantic(_reference, rounds=3, iterations=1)
    assert out["x"].shape == (4000, 40)


def _best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (best is kept)")
    args = parser.parse_args()
    pin_threads(1)
    ours, ref = data.mnist1d(), _reference()
    diff = max(float(np.max(np.abs(ours[k] - ref[k]))) for k in ("x", "x_test", "y", "y_test", "t"))
    t_ours = _best_time(data.mnist1d, args.repeats)
    t_ref = _best_time(_reference, max(1, args.repeats // 2))
    print(f"max abs difference refplay vs reference (x, x_test, y, y_test, t): {diff:.3e}")
    print(f"reference mnist1d.data.make_dataset: {t_ref * 1e3:9.1f} ms")
    print(f"refplay.data.mnist1d               : {t_ours * 1e3:9.1f} ms")
    print(f"speed-up (reference / refplay)     : {t_ref / t_ours:9.1f}x")


if __name__ == "__main__":
    main()
