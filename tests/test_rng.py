"""``refplay.rng``: child i is spawn(n)[i], without spawning, and nothing is shared."""

from __future__ import annotations

import numpy as np
import pytest

from refplay import rng


def test_child_is_the_spawned_child_for_any_n():
    parent = np.random.SeedSequence(42)
    spawned = parent.spawn(7)
    for i in (0, 3, 6):
        assert (rng.child(42, i).generate_state(4) == spawned[i].generate_state(4)).all()
    grandchild = spawned[2].spawn(5)[4]
    assert (rng.child(rng.child(42, 2), 4).generate_state(4)
            == grandchild.generate_state(4)).all()


def test_generator_does_not_change_the_callers_sequence():
    seq = rng.child(1, 0)
    a = rng.generator(seq).random(5)
    b = rng.generator(seq).random(5)
    assert (a == b).all() and seq.n_children_spawned == 0


def test_seed_int_and_validation():
    assert rng.seed_int(rng.child(3, 9)) == int(
        np.random.SeedSequence(3, spawn_key=(9,)).generate_state(1, dtype=np.uint32)[0])
    with pytest.raises(ValueError, match="seed=-1"):
        rng.sequence(-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        rng.sequence(1.5)
