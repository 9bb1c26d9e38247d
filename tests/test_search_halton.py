"""The randomized Halton sequence: exact values, kernel == twin, stratification,
reproducibility, discrepancy against scipy and uniform random, regression guards."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from refplay.search import halton_sequence as H
from refplay.search import halton_points
from tests.helpers import optional_import

SEEDS = range(16)


def _scipy_halton(qmc, d: int, n: int, seed: int) -> np.ndarray:
    """scipy's scrambled Halton; scipy < 1.15 names the seed ``seed``, later ones ``rng``."""
    try:
        sampler = qmc.Halton(d=d, scramble=True, rng=seed)
    except TypeError:
        sampler = qmc.Halton(d=d, scramble=True, seed=seed)
    return sampler.random(n)


def _rotated(x: np.ndarray, seed: int) -> np.ndarray:
    """The Cranley-Patterson rotation (x + s) mod 1 that refplay does NOT use (see
    the module docstring): the negative control of the stratification and
    discrepancy tests."""
    return (x + np.random.default_rng([seed, 1]).random(x.shape[1])) % 1.0


def _cells(u: np.ndarray, m: int) -> np.ndarray:
    return np.floor(u * m).astype(np.int64)


def _every_window_stratified(x: np.ndarray, m: int) -> bool:
    """Every run of m consecutive values of x has exactly one value in each [c/m, (c+1)/m)."""
    windows = np.lib.stride_tricks.sliding_window_view(_cells(x, m), m)
    return bool(np.array_equal(np.sort(windows, axis=1),
                               np.broadcast_to(np.arange(m), windows.shape)))


def _primes_by_trial_division(count: int) -> list[int]:
    out, c = [], 2
    while len(out) < count:
        if all(c % p for p in range(2, int(c**0.5) + 1)):
            out.append(c)
        c += 1
    return out


def test_first_primes():
    assert H.first_primes(10).tolist() == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert H.first_primes(H.MAX_DIMENSIONS).tolist() == _primes_by_trial_division(H.MAX_DIMENSIONS)
    assert H.first_primes(0).tolist() == []


@pytest.mark.parametrize("base, expected", [
    (2, [Fraction(0), Fraction(1, 2), Fraction(1, 4), Fraction(3, 4), Fraction(1, 8),
         Fraction(5, 8), Fraction(3, 8), Fraction(7, 8)]),
    (3, [Fraction(0), Fraction(1, 3), Fraction(2, 3), Fraction(1, 9), Fraction(4, 9),
         Fraction(7, 9), Fraction(2, 9), Fraction(5, 9)]),
])
def test_unscrambled_radical_inverse_exact_values(base, expected):
    """Identity permutations, no shift: the classical van der Corput values, correctly rounded."""
    want = [float(f) for f in expected]
    identity = np.tile(np.arange(base), (H._num_digits(base), 1))
    assert H._radical_inverse_reference(np.arange(8), base, identity).tolist() == want
    k = [2, 3].index(base)
    assert H._points(8, 0, H._unscrambled(2))[:, k].tolist() == want


def test_num_digits_use_float64_resolution():
    for b in H.first_primes(H.MAX_DIMENSIONS).tolist():
        k = H._num_digits(b)
        assert b**k <= 2**53 < b ** (k + 1)


@pytest.mark.parametrize("d, skip, n", [(1, 0, 50), (12, 0, 3000), (12, 12345, 500),
                                        (30, 2**31 + 17, 200), (H.MAX_DIMENSIONS, 7, 64)])
def test_kernel_matches_numpy_twin_bitwise(d, skip, n):
    for seed in (0, 3):
        r = H._draw_randomization(d, seed)
        got = H._points(n, skip, r)
        for k in range(d):
            want = H._radical_inverse_reference(np.arange(skip, skip + n), r.bases[k],
                                                r.permutations[k], r.starts[k])
            np.testing.assert_array_equal(got[:, k], want)


def test_kernel_matches_twin_across_the_wrap_around():
    """Start just below b^K: the index wraps to 0 inside the block."""
    r = H._draw_randomization(4, 11)
    near_end = tuple(b ** p.shape[0] - 5 for b, p in zip(r.bases, r.permutations))
    r = r._replace(starts=near_end)
    got = H._points(40, 0, r)
    for k in range(4):
        want = H._radical_inverse_reference(np.arange(40), r.bases[k], r.permutations[k],
                                            r.starts[k])
        np.testing.assert_array_equal(got[:, k], want)
        # b^K is a multiple of every b^r, so windows across the wrap stay stratified.
        assert _every_window_stratified(got[:, k], r.bases[k])


def test_randomization_shapes_and_permutations():
    r = H._draw_randomization(6, 1)
    assert r.bases == (2, 3, 5, 7, 11, 13)
    for b, perm, start in zip(r.bases, r.permutations, r.starts):
        assert perm.shape == (H._num_digits(b), b)
        assert (np.sort(perm, axis=1) == np.arange(b)).all()  # every row a permutation
        assert 0 <= start < b ** perm.shape[0]
    # digit positions get different permutations (else the scrambling is one permutation)
    assert len({tuple(row) for row in r.permutations[2]}) > 1


def test_values_in_unit_interval_even_in_the_extreme_case():
    x = np.concatenate([halton_points(4096, 10, s) for s in range(4)])
    assert x.dtype == np.float64 and x.shape == (4 * 4096, 10)
    assert (x >= 0).all() and (x < 1).all()
    # Every digit mapped to b-1: the largest possible value, (b^K - 1) / b^K, is still < 1.
    r = H._unscrambled(5)
    reversed_perms = tuple(p[:, ::-1].copy() for p in r.permutations)
    top = H._points(1, 0, r._replace(permutations=reversed_perms))
    assert (top < 1).all() and (top > 1 - 1e-15).all()


def test_extensible_and_reproducible():
    full = halton_points(100, 6, seed=7)
    head = halton_points(37, 6, seed=7)
    tail = halton_points(63, 6, seed=7, skip=37)
    np.testing.assert_array_equal(np.vstack([head, tail]), full)
    np.testing.assert_array_equal(halton_points(100, 6, seed=7), full)
    assert not np.array_equal(halton_points(100, 6, seed=8), full)


def test_dimension_randomization_depends_only_on_seed_and_dimension():
    np.testing.assert_array_equal(halton_points(50, 7, 3)[:, :4], halton_points(50, 4, 3))


def test_different_seeds_give_independent_uniform_randomizations():
    """Point 0 over 400 seeds: each coordinate uniform (chi-square), coordinates uncorrelated."""
    first = np.array([halton_points(1, 3, s)[0] for s in range(400)])
    for k in range(3):
        counts = np.bincount((first[:, k] * 10).astype(int), minlength=10)
        chi2 = ((counts - 40.0) ** 2 / 40.0).sum()
        assert chi2 < 27.9  # 99.9% quantile of chi-square with 9 degrees of freedom
    corr = np.corrcoef(first.T)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.2  # |r| < 0.2: ~4 sigma at n=400
    # Two seeds share no coordinate values at all (no prime-only randomization).
    a, b = halton_points(64, 4, 0), halton_points(64, 4, 1)
    assert not np.isin(a, b).any()


@pytest.mark.parametrize("skip", [0, 5, 1000, 123457])
def test_one_dimensional_stratification(skip):
    """ANY b^r consecutive points (every window, not only aligned blocks): exactly one
    point in each interval of width 1/b^r, with the random start in place."""
    bases = H.first_primes(6).tolist()
    for seed in (0, 1):
        x = halton_points(1200, 6, seed, skip=skip)
        for k, b in enumerate(bases):
            for r in range(1, int(np.floor(np.log(600) / np.log(b))) + 1):
                assert _every_window_stratified(x[:, k], b**r), (seed, b, r)


def test_the_shift_is_a_random_start_along_the_sequence():
    """The issue's "once the shift is undone": the shift is undone by subtracting m_k from
    the index. Point i of the shifted sequence is point i + m_k of the scrambled,
    unshifted one, so windows of consecutive points stay windows of consecutive points
    and the stratification above needs no undoing at all."""
    r = H._draw_randomization(3, 4)
    unshifted = r._replace(starts=(0, 0, 0))
    x = H._points(20, 10, r)
    for k in range(3):
        m = r.starts[k]
        assert m > 10**6  # a real shift, not a start near 0 by luck
        want = H._radical_inverse_reference(np.arange(10, 30) + m, r.bases[k],
                                            unshifted.permutations[k])
        np.testing.assert_array_equal(x[:, k], want)
        np.testing.assert_array_equal(H._points(20, 10 + m, unshifted)[:, k], want)


def test_a_rotation_modulo_1_would_break_the_stratification():
    """Negative control: the check above fails for the Cranley-Patterson rotation, so it
    has the power to catch a shift that moves the strata off the grid."""
    broken = [seed for seed in SEEDS
              if not _every_window_stratified(_rotated(halton_points(64, 1, seed), seed)[:, 0], 16)]
    assert len(broken) >= 8, broken  # 13 of the 16 seeds
    # Two-valued parameter, 4 trials from an odd index: 1 + 3 for some seeds.
    splits = {tuple(np.bincount(_cells(_rotated(halton_points(4, 1, seed, skip=1), seed)[:, 0], 2),
                                minlength=2)) for seed in range(64)}
    assert (1, 3) in splits or (3, 1) in splits
    for seed in range(64):  # never with the random start
        counts = np.bincount(_cells(halton_points(4, 1, seed, skip=1)[:, 0], 2), minlength=2)
        assert counts.tolist() == [2, 2]


@pytest.mark.parametrize("r1, r2", [(1, 1), (2, 1), (1, 2), (3, 2), (2, 3), (4, 2)])
def test_two_dimensional_elementary_boxes_bases_2_and_3(r1, r2):
    """Any 2^r1 3^r2 consecutive points (every window): one point in each box of size
    2^-r1 x 3^-r2. Dimensions 0 and 1 have different random starts; the Chinese
    remainder theorem still pairs every binary residue with every ternary one."""
    m = 2**r1 * 3**r2
    for seed in (0, 5):
        for start in (0, 7, 999):
            x = halton_points(3 * m, 2, seed, skip=start)
            boxes = _cells(x[:, 0], 2**r1) * 3**r2 + _cells(x[:, 1], 3**r2)
            windows = np.lib.stride_tricks.sliding_window_view(boxes, m)
            assert (np.sort(windows, axis=1) == np.arange(m)).all(), (seed, start)
    # Negative control: the check can fail; the rotation breaks the boxes for some seeds.
    rotated_ok = [np.array_equal(np.sort(_cells(y[:, 0], 2**r1) * 3**r2 + _cells(y[:, 1], 3**r2)),
                                 np.arange(m))
                  for y in (_rotated(halton_points(m, 2, s, skip=1), s) for s in SEEDS)]
    assert not all(rotated_ok)


# --------------------------------------------------------------------------
# Discrepancy (centred L2) against scipy and uniform random, mean over 16 seeds.
# --------------------------------------------------------------------------


def _mean_cd(qmc, make) -> float:
    return float(np.mean([qmc.discrepancy(make(s)) for s in SEEDS]))


@pytest.fixture(scope="module")
def discrepancy_table():
    qmc = optional_import("scipy.stats.qmc")
    table = {}
    for d in (2, 5, 10):
        for n in (16, 64, 256):
            table[d, n] = {
                "refplay": _mean_cd(qmc, lambda s: halton_points(n, d, s)),
                "scipy": _mean_cd(qmc, lambda s: _scipy_halton(qmc, d, n, s)),
                "random": _mean_cd(qmc, lambda s: np.random.default_rng(s).random((n, d))),
                "rotated": _mean_cd(qmc, lambda s: _rotated(halton_points(n, d, s), s)),
            }
    return table


def test_discrepancy_within_1_2x_of_scipy_scrambled_halton(discrepancy_table):
    for (d, n), row in discrepancy_table.items():
        assert row["refplay"] <= 1.2 * row["scipy"], (d, n, row)


def test_a_rotation_modulo_1_would_miss_the_1_2x_target(discrepancy_table):
    """Why refplay shifts by a random start and not by (u + s) mod 1 (module docstring)."""
    for d in (2, 5):
        for n in (64, 256):
            row = discrepancy_table[d, n]
            assert row["rotated"] > 1.25 * row["scipy"], (d, n, row)


def test_discrepancy_far_below_uniform_random(discrepancy_table):
    assert discrepancy_table[5, 64]["refplay"] < 0.25 * discrepancy_table[5, 64]["random"]
    assert discrepancy_table[2, 256]["refplay"] < 0.05 * discrepancy_table[2, 256]["random"]
    for row in discrepancy_table.values():
        assert row["refplay"] < row["random"]


# --------------------------------------------------------------------------
# Regression guards for the failures of earlier quasi-random designers.
# --------------------------------------------------------------------------


def _largest_primes_halton(n: int, d: int, seed: int) -> np.ndarray:
    """The weak design: the largest primes below 1000, one permutation per prime
    (used for every digit), the first 100 points skipped."""
    rng = np.random.default_rng(seed)
    primes = [p for p in range(2, 1000) if all(p % q for q in range(2, int(p**0.5) + 1))][-d:]
    out = np.empty((n, d))
    for k, b in enumerate(primes):
        perm = rng.permutation(b)
        q, u, f = np.arange(100, 100 + n), np.zeros(n), 1.0 / b
        for _ in range(6):
            u += perm[q % b] * f
            q //= b
            f /= b
        out[:, k] = u
    return out


def _confined(x: np.ndarray, bins: int = 8) -> bool:
    """True if some coordinate leaves one of `bins` equal sub-intervals empty."""
    return any(np.unique(_cells(x[:, k], bins)).size < bins for k in range(x.shape[1]))


@pytest.mark.parametrize("d", [2, 3, 4])
def test_no_coordinate_confined_to_a_sub_interval(d):
    for seed in SEEDS:
        assert not _confined(halton_points(64, d, seed))
    # The guard catches the "every d-th point of one sequence" design.
    assert _confined(halton_points(64 * d, d, 0)[::d])


def test_discrepancy_far_below_random_at_64_points_where_largest_primes_fail():
    qmc = optional_import("scipy.stats.qmc")
    d, n = 5, 64
    ours = _mean_cd(qmc, lambda s: halton_points(n, d, s))
    weak = _mean_cd(qmc, lambda s: _largest_primes_halton(n, d, s))
    rand = _mean_cd(qmc, lambda s: np.random.default_rng(s).random((n, d)))
    assert ours < 0.25 * rand
    assert weak > 0.5 * rand  # the guard above would reject the weak design
    for seed in SEEDS:  # not only on average: every seed
        assert qmc.discrepancy(halton_points(n, d, seed)) < 0.5 * rand


# --------------------------------------------------------------------------
# Boundary checks and import cost
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n=-1, d=2, seed=0), ValueError, "n=-1"),
    (dict(n=2.5, d=2, seed=0), TypeError, "n must be an integer"),
    (dict(n=2, d=H.MAX_DIMENSIONS + 1, seed=0), ValueError, "d="),
    (dict(n=2, d=2, seed=-3), ValueError, "seed=-3"),
    (dict(n=2, d=2, seed=True), TypeError, "seed"),
    (dict(n=2, d=2, seed=0, skip=-1), ValueError, "skip=-1"),
    (dict(n=10, d=2, seed=0, skip=H.MAX_INDEX - 5), ValueError, "MAX_INDEX"),
])
def test_bad_arguments_are_named(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        halton_points(**kwargs)


def test_empty_requests():
    assert halton_points(0, 3, 0).shape == (0, 3)
    assert halton_points(5, 0, 0).shape == (5, 0)


def test_import_does_not_compile_the_kernel():
    code = ("import refplay.search as s, refplay.search.halton_sequence as h;"
            "assert h._halton_kernel.signatures == [], h._halton_kernel.signatures;"
            "s.halton_points(3, 2, 0); assert len(h._halton_kernel.signatures) == 1")
    subprocess.run([sys.executable, "-c", code], check=True)
