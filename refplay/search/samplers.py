"""Samplers: a search space in, a list of plain trial configs out.

* :func:`halton` — quasi-random search, the playbook's default for the
  exploration phase ("Why use quasi-random search instead of more sophisticated
  black box optimization algorithms during the exploration phase of tuning?").
* :func:`random` — uniform random search, for comparison ("it is possible to
  substitute pseudo random uniform search instead, although this is likely to
  be slightly less efficient").
* :func:`grid` — "In 1-2 dimensions, grid search is also acceptable, although
  not in higher dimensions" (Bergstra & Bengio, 2012).
* :func:`explicit` — a hand-written list of configs, validated.

Every config is a dict of Python scalars keyed by config key and holding
exactly the active parameters; the configs of :func:`halton` and :func:`random`
are a pure function of ``(seed, index)``, so ``skip`` continues a study where
it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from refplay import _validate
from refplay.search.halton_sequence import check_counts, halton_points
from refplay.search.space import Fixed, Float, Int, SearchSpace

__all__ = ["halton", "random", "grid", "explicit", "sample", "SAMPLERS"]

Config = dict[str, Any]


def _check_space(space: Any) -> SearchSpace:
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space must be a search.SearchSpace, got {type(space).__name__}")
    return space


def halton(space: SearchSpace, n: int, seed: int, skip: int = 0) -> list[Config]:
    """Configs ``skip, ..., skip + n - 1`` of a randomized Halton sequence over ``space``.

    Coordinate j of :func:`~refplay.search.halton_points` (base: the j-th prime)
    drives parameter ``space.dimensions[j]``. ``halton(space, 37, s)`` followed
    by ``halton(space, 63, s, skip=37)`` equals ``halton(space, 100, s)``.
    """
    space = _check_space(space)
    return space.from_unit_cube(halton_points(n, space.num_dimensions, seed, skip))


def random(space: SearchSpace, n: int, seed: int, skip: int = 0) -> list[Config]:
    """``n`` configs drawn uniformly (on each parameter's scale); configs ``skip..``.

    Point i is row i of ``default_rng(SeedSequence(seed)).random((skip + n, d))``.
    """
    space = _check_space(space)
    n, d, seed, skip = check_counts(n, space.num_dimensions, seed, skip)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    # PCG64 spends one 64-bit output per double, so advancing skip*d outputs
    # skips exactly the first `skip` rows (a test checks this).
    rng.bit_generator.advance(skip * d)
    return space.from_unit_cube(rng.random((n, d)))


def grid(space: SearchSpace, points_per_dim: int | Mapping[str, int]) -> list[Config]:
    """All combinations of grid values, for spaces with at most 2 searched dimensions.

    Float and Int parameters get ``points_per_dim`` values evenly spaced on
    their scale, ends included (one point: the middle); give a dict
    ``{name: count}`` to set it per parameter. Discrete and Choice parameters
    take all their values. Conditional parameters multiply only the branch
    where they are active, and at most 2 searched parameters may be active in
    one config.
    """
    space = _check_space(space)
    counts = _grid_counts(space, points_per_dim)
    order = space._order
    configs: list[Config] = []

    def expand(position: int, values: dict[str, Any], searched: list[str]) -> None:
        if position == len(order):
            configs.append(space._to_config(values))
            return
        name = order[position]
        param = space[name]
        if not space._is_active(name, values):
            expand(position + 1, values, searched)
            return
        if isinstance(param, Fixed):
            expand(position + 1, {**values, name: param.value}, searched)
            return
        if len(searched) == 2:
            raise ValueError(
                f"grid search over {searched + [name]} has more than 2 dimensions; the playbook "
                f"allows grid search 'in 1-2 dimensions ... not in higher dimensions' (use "
                f"search.halton)")
        for value in param._grid(counts.get(name, 1)):
            expand(position + 1, {**values, name: value}, searched + [name])

    expand(0, {}, [])
    return configs


def _grid_counts(space: SearchSpace, points_per_dim: int | Mapping[str, int]) -> dict[str, int]:
    continuous = [n for n in space.dimensions if isinstance(space[n], (Float, Int))]
    if isinstance(points_per_dim, Mapping):
        for name in points_per_dim:
            if name not in continuous:
                raise ValueError(f"points_per_dim names {name!r}, which is not a Float or Int "
                                 f"parameter of the space; those are {continuous}")
        missing = [n for n in continuous if n not in points_per_dim]
        if missing:
            raise ValueError(f"points_per_dim has no count for {missing}")
        return {n: _validate.integer(f"points_per_dim[{n!r}]", c, low=1)
                for n, c in points_per_dim.items()}
    count = _validate.integer("points_per_dim", points_per_dim, low=1)
    return {n: count for n in continuous}


def explicit(space: SearchSpace, configs: Sequence[Mapping[str, Any]]) -> list[Config]:
    """Validate a hand-written list of configs against ``space`` (see ``validate_config``)."""
    space = _check_space(space)
    if isinstance(configs, Mapping) or not isinstance(configs, Sequence):
        raise TypeError(f"configs must be a list of dicts, got {type(configs).__name__}")
    out = []
    for i, config in enumerate(configs):
        try:
            out.append(space.validate_config(config))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"configs[{i}]: {exc}") from None
    return out


SAMPLERS = {"halton": halton, "random": random}


def sample(space: SearchSpace, n: int, seed: int, *, sampler: str = "halton",
           skip: int = 0) -> list[Config]:
    """Configs ``skip .. skip+n-1`` from the sampler named ``sampler`` ("halton" or "random")."""
    _validate.one_of("sampler", sampler, SAMPLERS)
    return SAMPLERS[sampler](space, n, seed, skip=skip)
