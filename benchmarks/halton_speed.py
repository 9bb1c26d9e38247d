"""Generate 100,000 points in 8 dimensions: refplay vs scipy, side by side.

Run: ``python benchmarks/halton_speed.py [--repeats 15]``. Both generators draw
a fresh randomization and the points in each repetition (what a user calls);
the median time of each is printed with the ratio scipy / refplay (> 1 means
refplay is faster). One thread (DESIGN.md principle 4).
"""

from __future__ import annotations

import argparse
import statistics
import time

from refplay import threads

threads.set_thread_env(1)

from scipy.stats import qmc  # noqa: E402

from refplay import search  # noqa: E402


def scipy_halton(d: int, seed: int) -> "qmc.Halton":
    """scipy's scrambled Halton; scipy < 1.15 names the seed ``seed``, later ones ``rng``."""
    try:
        return qmc.Halton(d=d, scramble=True, rng=seed)
    except TypeError:
        return qmc.Halton(d=d, scramble=True, seed=seed)


def _seconds(fn, seed: int) -> float:
    t0 = time.perf_counter()
    fn(seed)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    threads.pin_threads(1)

    t0 = time.perf_counter()
    search.halton_points(10, args.d, 0)
    first_call = time.perf_counter() - t0

    def ours(seed):
        return search.halton_points(args.n, args.d, seed)

    def scipy(seed):
        return scipy_halton(args.d, seed).random(args.n)

    # Interleave the two so that a busy machine slows both alike.
    t_ours, t_scipy = [], []
    for seed in range(args.repeats):
        t_ours.append(_seconds(ours, seed))
        t_scipy.append(_seconds(scipy, seed))
    a, b = statistics.median(t_ours), statistics.median(t_scipy)
    print(f"{args.n:,} points x {args.d} dimensions, median of {args.repeats} "
          f"(first call incl. compile/cache load: {first_call * 1e3:.0f} ms)")
    print(f"  refplay.search.halton_points        {a * 1e3:8.2f} ms")
    print(f"  scipy.stats.qmc.Halton(scramble)    {b * 1e3:8.2f} ms")
    print(f"  ratio scipy / refplay               {b / a:8.2f}x")


if __name__ == "__main__":
    main()
