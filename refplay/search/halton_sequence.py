r"""A randomized Halton sequence: digit-scrambled and shifted.

The playbook prefers quasi-random search during exploration; its FAQ "Where can
I find an implementation of quasi-random search?" points to implementations
"intended to implement a shifted, scrambled Halton sequence as recommended in
https://arxiv.org/abs/1706.03200" (O. Bousquet, S. Gelly, K. Kurach, O. Teytaud,
D. Vincent, "Critical hyper-parameters: no random, no cry", 2017). This module
builds one over the *first* d primes, with a randomization that keeps the
sequence's low discrepancy at the budgets tuning actually uses (tens to hundreds
of trials).

Construction
------------
Coordinate k uses base :math:`b = p_k`, the k-th prime (2, 3, 5, 7, ...), and
:math:`K` base-b digits, the largest K with :math:`b^K \le 2^{53}` (so every
value below is an exact integer in float64 and every point lies in [0, 1)).
For point number ``i`` (``i = skip, skip + 1, ...``):

.. math::

    q = (i + m_k) \bmod b^K = \sum_{j=0}^{K-1} a_j\, b^j
    \qquad \text{(shift: a random start } m_k \text{ along the sequence)}

    u_{i,k} = \frac{1}{b^K} \sum_{j=0}^{K-1} \pi_{k,j}(a_j)\, b^{K-1-j}
    \qquad \text{(scrambled radical inverse)}

* **Scrambling.** :math:`\pi_{k,j}` is an independent uniformly random
  permutation of :math:`\{0, \dots, b-1\}` for every dimension k and digit
  position j: the random digit permutations of A. B. Owen, "A randomized Halton
  algorithm in R", arXiv:1706.02808, 2017, which is also the scrambling of
  ``scipy.stats.qmc.Halton(scramble=True)``. Leading zero digits are permuted
  too, so each point is uniform on the grid :math:`\{0, 1/b^K, \dots\}^d`.
* **Shift.** :math:`m_k` is uniform on :math:`\{0, \dots, b^K - 1\}`: the
  sequence of dimension k starts at a random index (the "random-start Halton
  sequence" of X. Wang and F. J. Hickernell, "Randomized Halton sequences",
  Math. Comput. Modelling 32, 2000; with scrambling, G. Ökten, "Generalized von
  Neumann-Kakutani transformation and random-start scrambled Halton sequences",
  J. Complexity 25, 2009). On the unscrambled point this *is* a random shift
  modulo 1, taken in base b: :math:`\phi_b(i + m) = \phi_b(i) \oplus \phi_b(m)`,
  where :math:`\oplus` adds digit by digit with the carry moving right (toward
  finer digits) and drops the carry out of the last digit; Wang and Hickernell
  write it as the von Neumann-Kakutani transformation started at a random point.
* **Seeds.** All of dimension k's randomness comes from
  ``numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(d)[k])``:
  first the K permutations (``Generator.permuted``, one row per digit), then
  :math:`m_k`. Dimension k's randomization depends only on ``(seed, k)``, so the
  first columns of a d-dimensional set equal the set of smaller dimension, and
  different seeds give independent randomizations (the playbook's "two
  different seeds for quasi-random search").

Why this shift (a deliberate departure from "a random shift modulo 1")
-----------------------------------------------------------------------
"A random shift modulo 1" usually means the
Cranley-Patterson rotation :math:`u \mapsto (u + s) \bmod 1` with uniform
:math:`s`. refplay shifts along the sequence instead, because:

* Permutations are bijections and a random start keeps consecutive indices
  consecutive, so the randomized sequence keeps every stratification property
  of Halton's: any :math:`b^r` consecutive points put exactly one point in each
  interval :math:`[c/b^r, (c+1)/b^r)`, and for bases (2, 3) any
  :math:`2^{r_1} 3^{r_2}` consecutive points put exactly one point in each box
  :math:`[c_1/2^{r_1}, (c_1+1)/2^{r_1}) \times [c_2/3^{r_2}, (c_2+1)/3^{r_2})`.
  (Undoing the shift is subtracting :math:`m_k` from the index; no undoing is
  needed for these properties.) A rotation moves the cells off the grid: over
  200 seeds, 4 consecutive trials starting at an odd index (a study continued
  with ``skip``) split a two-valued scientific parameter 1 + 3 instead of 2 + 2
  for a fifth to a quarter of the seeds, 16 consecutive points miss one of the 16
  sixteenths for about half of the seeds unless the block starts at a multiple
  of 16, and 6 consecutive points miss a (half, third) box for most seeds.
* It keeps the discrepancy target. Mean centred L2 discrepancy over 16 seeds,
  relative to scipy's scrambled Halton, is 1.36-1.57x with a rotation at d = 2
  and 5, n = 64 and 256 (the target is at most 1.2x; measured on refplay's points and,
  independently, on scipy's: 1.30-1.62x), and 0.99-1.08x with the random start.
  ``benchmarks/halton_quality.py`` prints both; a test guards it.
* A *digital* shift (digit-wise addition modulo b, no carry) would add nothing:
  composed with a uniformly random permutation it is again one.

Owen's scrambling already makes every point uniform, which is the one thing a
rotation would add.

What this avoids: the largest primes below 1000 (at small budgets
each coordinate is one permuted digit, no better than random), a randomization
that depends only on the prime (every call gives the same set), and taking every
d-th point of one sequence (confines coordinates to sub-intervals).

The fast path is a Numba kernel, :func:`_halton_kernel`; its plain-numpy twin is
:func:`_radical_inverse_reference` (one digit at a time, the equation above).
Tests assert they agree bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from refplay import _validate

__all__ = ["halton_points", "first_primes", "check_counts", "MAX_DIMENSIONS", "MAX_INDEX"]

#: The sequence is meant for hyperparameter search; beyond ~100 dimensions Halton
#: points stripe badly at any affordable budget and the digit tables grow large.
MAX_DIMENSIONS = 100
#: ``skip + n`` must not exceed this.
MAX_INDEX = 2**32

# The kernel looks digits up in groups of g with b^g <= this many table entries
# (10 binary digits, 6 ternary, ...), so the table of one dimension fits in L1.
_TABLE_SIZE = 1024


def first_primes(d: int) -> np.ndarray:
    """The first ``d`` primes (2, 3, 5, ...) as an int64 array."""
    d = _validate.integer("d", d, low=0)
    primes: list[int] = []
    candidate = 2
    while len(primes) < d:
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
        candidate += 1
    return np.array(primes, dtype=np.int64)


def _num_digits(base: int) -> int:
    """K: the largest number of base-b digits with b^K <= 2^53 (exact in float64)."""
    k = 0
    while base ** (k + 1) <= 2**53:
        k += 1
    return k


class _Randomization(NamedTuple):
    """The random part of a randomized Halton sequence in ``len(bases)`` dimensions.

    ``permutations[k]`` has shape (K_k, b_k); row j is :math:`\\pi_{k,j}`.
    ``starts[k]`` is the random start :math:`m_k` in :math:`\\{0, ..., b_k^{K_k} - 1\\}`.
    """

    bases: tuple[int, ...]
    permutations: tuple[np.ndarray, ...]
    starts: tuple[int, ...]


def _draw_randomization(d: int, seed: int) -> _Randomization:
    """Draw the digit permutations and random starts (see the module docstring)."""
    bases = tuple(int(b) for b in first_primes(d))
    children = np.random.SeedSequence(seed).spawn(d)
    permutations, starts = [], []
    for base, child in zip(bases, children):
        rng = np.random.default_rng(child)
        k = _num_digits(base)
        # Row j is an independent permutation of {0, ..., b-1} for digit position j.
        permutations.append(rng.permuted(np.tile(np.arange(base, dtype=np.int64), (k, 1)), axis=1))
        starts.append(int(rng.integers(0, base**k)))
    return _Randomization(bases, tuple(permutations), tuple(starts))


def _unscrambled(d: int) -> _Randomization:
    """Identity permutations and no shift: the classical Halton sequence."""
    bases = tuple(int(b) for b in first_primes(d))
    perms = tuple(np.tile(np.arange(b, dtype=np.int64), (_num_digits(b), 1)) for b in bases)
    return _Randomization(bases, perms, (0,) * d)


# --------------------------------------------------------------------------
# Plain-numpy twin: one digit at a time, the equation as written.
# --------------------------------------------------------------------------


def _radical_inverse_reference(indices, base: int, permutation: np.ndarray,
                               start: int = 0) -> np.ndarray:
    r"""Scrambled radical inverse of ``(indices + start) mod b^K`` (numpy twin).

    .. math::  u = \frac{1}{b^K} \sum_{j<K} \pi_j(a_j)\, b^{K-1-j},
               \qquad (i + m) \bmod b^K = \sum_{j<K} a_j b^j

    ``permutation[j]`` is :math:`\pi_j` and ``K = permutation.shape[0]``. With
    identity permutations and ``start=0`` this is the classical van der Corput
    radical inverse, :math:`\phi_b(i) = \sum_j a_j b^{-j-1}`.
    """
    permutation = np.asarray(permutation, dtype=np.int64)
    num_digits = permutation.shape[0]
    denominator = base**num_digits
    q = (np.array(indices, dtype=np.int64) + start) % denominator
    numerator = np.zeros_like(q)
    for j in range(num_digits):
        a_j = q % base
        numerator += permutation[j, a_j] * base ** (num_digits - 1 - j)
        q //= base
    return numerator / float(denominator)


# --------------------------------------------------------------------------
# Numba kernel: the same sum, g digits per table lookup, index advanced by +1.
# --------------------------------------------------------------------------


def _digit_table(base: int, permutation: np.ndarray) -> tuple[int, np.ndarray]:
    """Sum the scrambled digits in groups of g, for :func:`_halton_kernel`.

    With :math:`B = b^g`, ``table[h, r]`` is the contribution
    :math:`\\sum_{t<g} \\pi_{hg+t}(r_t)\\, b^{K-1-hg-t}` of index digits
    ``h*g, ..., h*g+g-1`` when they spell ``r`` in base b (``r_t`` is digit t of
    r). The numerator of :math:`u` is then :math:`\\sum_h` ``table[h, r_h]``
    where :math:`r_h` are the base-B digits of q. Returns ``(B, table)``.
    """
    num_digits = permutation.shape[0]
    group = 1
    while base ** (group + 1) <= _TABLE_SIZE:
        group += 1
    big_base = base**group
    num_groups = -(-num_digits // group)
    # contribution[j, a] = pi_j(a) * b^(K-1-j), an exact int64 (< 2^53).
    weights = np.array([base ** (num_digits - 1 - j) for j in range(num_digits)], dtype=np.int64)
    contribution = permutation.astype(np.int64) * weights[:, None]
    r = np.arange(big_base, dtype=np.int64)
    table = np.zeros((num_groups, big_base), dtype=np.int64)
    for h in range(num_groups):
        for t in range(group):
            j = h * group + t
            if j < num_digits:  # the last group may be partial; q < b^K never uses the rest
                table[h] += contribution[j, (r // base**t) % base]
    return big_base, table


@njit(cache=True)
def _halton_kernel(start, n, big_bases, denominators, shifts, tables, table_offsets,
                   num_groups, out):  # pragma: no cover - compiled; checked against the twin
    """out[i, k] = (sum_h table_k[h, r_h(q)]) / b^K with q = (start + i + m_k) mod b^K.

    The base-B digits r_h of q are computed once per dimension; moving to the
    next point adds 1 to q like an odometer, so the numerator changes only in
    the groups whose digit changed (one lookup per point on average, and no
    integer division inside the loop).
    """
    d = big_bases.shape[0]
    for k in range(d):
        big_base = big_bases[k]
        denominator = denominators[k]
        fden = float(denominator)
        t0 = table_offsets[k]
        groups = num_groups[k]
        q = (start + shifts[k]) % denominator
        digits = np.zeros(groups, dtype=np.int64)
        numerator = 0
        x = q
        for h in range(groups):
            digits[h] = x % big_base
            x //= big_base
            numerator += tables[t0 + h * big_base + digits[h]]
        for i in range(n):
            out[i, k] = numerator / fden
            q += 1
            if q == denominator:  # wrap around: q = 0, every digit zero
                q = 0
                numerator = 0
                for h in range(groups):
                    digits[h] = 0
                    numerator += tables[t0 + h * big_base]
                continue
            h = 0
            while True:  # add one with carry; q < b^K <= B^groups, so h stays in range
                numerator -= tables[t0 + h * big_base + digits[h]]
                digits[h] += 1
                if digits[h] < big_base:
                    numerator += tables[t0 + h * big_base + digits[h]]
                    break
                digits[h] = 0
                numerator += tables[t0 + h * big_base]
                h += 1
    return out


def _points(n: int, skip: int, randomization: _Randomization) -> np.ndarray:
    """Points ``skip, ..., skip+n-1`` of the sequence ``randomization`` describes, shape (n, d)."""
    d = len(randomization.bases)
    out = np.empty((n, d), dtype=np.float64)
    if n == 0 or d == 0:
        return out
    big_bases, denominators, tables, num_groups = [], [], [], []
    for base, perm in zip(randomization.bases, randomization.permutations):
        big_base, table = _digit_table(base, perm)
        big_bases.append(big_base)
        denominators.append(base ** perm.shape[0])
        tables.append(table.ravel())
        num_groups.append(table.shape[0])
    table_offsets = np.cumsum([0] + [t.size for t in tables[:-1]]).astype(np.int64)
    return _halton_kernel(np.int64(skip), np.int64(n), np.array(big_bases, dtype=np.int64),
                          np.array(denominators, dtype=np.int64),
                          np.array(randomization.starts, dtype=np.int64),
                          np.concatenate(tables), table_offsets,
                          np.array(num_groups, dtype=np.int64), out)


def check_counts(n, d, seed, skip) -> tuple[int, int, int, int]:
    """Validate ``(n, d, seed, skip)`` of a sequence request: integers ≥ 0, ``d`` at most
    :data:`MAX_DIMENSIONS` and ``skip + n`` at most :data:`MAX_INDEX`."""
    n = _validate.integer("n", n, low=0)
    d = _validate.integer("d", d, low=0, high=MAX_DIMENSIONS)
    seed = _validate.integer("seed", seed, low=0)
    skip = _validate.integer("skip", skip, low=0)
    if skip + n > MAX_INDEX:
        raise ValueError(f"skip + n = {skip + n} exceeds the supported sequence length "
                         f"MAX_INDEX = {MAX_INDEX}")
    return n, d, seed, skip


def halton_points(n: int, d: int, seed: int, skip: int = 0) -> np.ndarray:
    """Points ``skip, ..., skip + n - 1`` of a randomized Halton sequence in [0, 1)^d.

    The sequence is over the first ``d`` primes, scrambled with an independent
    random permutation per digit position and shifted by a random start, all
    drawn from ``seed`` (construction and sources in the module docstring). It
    is extensible: ``halton_points(37, d, s)`` stacked on
    ``halton_points(63, d, s, skip=37)`` equals ``halton_points(100, d, s)`` bit
    for bit. Returns a float64 array of shape ``(n, d)``.
    """
    n, d, seed, skip = check_counts(n, d, seed, skip)
    return _points(n, skip, _draw_randomization(d, seed))
