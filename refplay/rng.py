"""Seed children: every random draw in refplay comes from here (DESIGN.md principle 3).

One rule, used by every layer: a purpose gets its own child of a
``numpy.random.SeedSequence``, and child ``i`` is computed directly as
``SeedSequence(entropy, spawn_key=(*parent.spawn_key, i))`` — exactly the
``i``-th sequence ``parent.spawn(n)`` returns for any ``n > i``, without
spawning the others. So a draw depends only on (seed, purpose, index), never
on what ran before, and a resumed computation draws what an uninterrupted one
draws: trial ``t`` of a study (:func:`refplay.study.trial_seed`), epoch ``e``'s
shuffle (:func:`refplay.data.batching.epoch_order`), training step ``s``'s
dropout masks (:func:`refplay.train.seeds.step_generator`).

No global RNG state exists anywhere in the package.
"""

from __future__ import annotations

import numpy as np

from refplay import _validate

__all__ = ["sequence", "child", "children", "generator", "seed_int"]


def sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    """``seed`` as a SeedSequence (a non-negative int, or a SeedSequence as is)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(_validate.integer("seed", seed, low=0))


def child(parent: int | np.random.SeedSequence, index: int) -> np.random.SeedSequence:
    """Child ``index`` of ``parent``: equal to ``parent.spawn(index + 1)[index]``."""
    parent = sequence(parent)
    return np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, int(index)),
                                  pool_size=parent.pool_size)


def children(parent: int | np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The first ``n`` children of ``parent`` (``[child(parent, i) for i in range(n)]``)."""
    return [child(parent, i) for i in range(n)]


def generator(seq: int | np.random.SeedSequence) -> np.random.Generator:
    """A fresh PCG64 generator drawing from ``seq`` (the same draws on every call)."""
    seq = sequence(seq)
    # A SeedSequence remembers how many children it spawned: copy it, so that
    # making a generator never changes the caller's sequence.
    copy = np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key, pool_size=seq.pool_size)
    return np.random.Generator(np.random.PCG64(copy))


def seed_int(seq: np.random.SeedSequence) -> int:
    """A 32-bit integer seed drawn from ``seq`` (its first generated word)."""
    return int(seq.generate_state(1, dtype=np.uint32)[0])
