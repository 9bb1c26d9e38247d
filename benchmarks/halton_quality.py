"""Discrepancy table: refplay's randomized Halton vs scipy's scrambled Halton vs random.

Run: ``python benchmarks/halton_quality.py [--seeds 16]``. Each cell is the mean
centred L2 discrepancy (``scipy.stats.qmc.discrepancy``, lower is better) over
the seeds, for d dimensions and n points. Columns:

* ``refplay``  — ``search.halton_points(n, d, seed)`` (scrambled + random start);
* ``scipy``    — ``qmc.Halton(d, scramble=True, rng=seed).random(n)``;
* ``random``   — ``default_rng(seed).random((n, d))``;
* ``rotated``  — refplay's points shifted by a uniform ``s`` modulo 1
  (Cranley-Patterson), the alternative reading of "shifted" that refplay does not
  use: it breaks the stratification and raises the discrepancy;
* ratios ``refplay/scipy`` (issue 7 target <= 1.2) and ``refplay/random``.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import qmc

from refplay import search


def scipy_halton(d: int, seed: int) -> "qmc.Halton":
    """scipy's scrambled Halton; scipy < 1.15 names the seed ``seed``, later ones ``rng``."""
    try:
        return qmc.Halton(d=d, scramble=True, rng=seed)
    except TypeError:
        return qmc.Halton(d=d, scramble=True, seed=seed)


def mean_cd(make, seeds) -> float:
    return float(np.mean([qmc.discrepancy(make(s)) for s in seeds]))


def rotated(n: int, d: int, seed: int) -> np.ndarray:
    x = search.halton_points(n, d, seed)
    s = np.random.default_rng([seed, 1]).random(d)
    return (x + s) % 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--points", type=int, nargs="+", default=[16, 64, 256])
    args = parser.parse_args()
    seeds = range(args.seeds)
    print(f"mean centred L2 discrepancy over {args.seeds} seeds")
    header = (f"{'d':>3} {'n':>5} | {'refplay':>10} {'scipy':>10} {'random':>10} {'rotated':>10}"
              f" | {'ref/scipy':>9} {'ref/random':>10} {'rot/scipy':>9}")
    print(header)
    print("-" * len(header))
    for d in args.dims:
        for n in args.points:
            ours = mean_cd(lambda s: search.halton_points(n, d, s), seeds)
            sci = mean_cd(lambda s: scipy_halton(d, s).random(n), seeds)
            rnd = mean_cd(lambda s: np.random.default_rng(s).random((n, d)), seeds)
            rot = mean_cd(lambda s: rotated(n, d, s), seeds)
            print(f"{d:>3} {n:>5} | {ours:10.3e} {sci:10.3e} {rnd:10.3e} {rot:10.3e}"
                  f" | {ours / sci:9.3f} {ours / rnd:10.3f} {rot / sci:9.3f}")


if __name__ == "__main__":
    main()
