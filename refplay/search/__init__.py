"""refplay.search: search spaces and the samplers that turn them into trial configs.

Build a validated space with the playbook's roles and conditional
hyperparameters, then sample plain configs for ``train.run_trial``::

    from refplay import search

    space = search.SearchSpace(
        optimizer=search.Choice(["nesterov", "adam"], role="scientific"),
        lr=search.Float(1e-4, 1e-1, scale="log"),                         # nuisance by default
        gamma=search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),     # conditional
        weight_decay=search.Fixed(0.0),
    )
    configs = search.halton(space, n=32, seed=0)     # [{"optimizer": "adam", "lr": ...}, ...]
    more = search.halton(space, n=32, seed=0, skip=32)

Modules: :mod:`~refplay.search.space` (parameter kinds, ``SearchSpace``),
:mod:`~refplay.search.halton_sequence` (the randomized Halton sequence and its Numba
kernel), :mod:`~refplay.search.samplers` (halton, random, grid, explicit),
:mod:`~refplay.search.adam` (Adam's search space by budget, the playbook's rule of
thumb), :mod:`~refplay.search.gp` (Bayesian optimization for the end of tuning:
a Gaussian process, expected improvement weighted by the probability that a
trial is feasible, batches by constant liar)::

    space = search.adam_space(num_trials=16)           # lr and beta1 searched
    history = [(config, objective_or_None, feasible), ...]
    next_configs = search.gp_ei(space, history, n=8, seed=0)
"""

from refplay.search.adam import ADAM_DEFAULTS, SUBSTANTIALLY_MORE_THAN_25, adam_space
from refplay.search.gp import GPFit, fit_gp, gp_ei, gp_posterior
from refplay.search.halton_sequence import MAX_DIMENSIONS, first_primes, halton_points
from refplay.search.samplers import SAMPLERS, explicit, grid, halton, random, sample
from refplay.search.space import (
    ROLES, SCALES, Choice, Discrete, Fixed, Float, Int, SearchSpace,
)

__all__ = [
    "SearchSpace", "Float", "Int", "Discrete", "Choice", "Fixed", "ROLES", "SCALES",
    "halton", "random", "grid", "explicit", "sample", "SAMPLERS",
    "halton_points", "first_primes", "MAX_DIMENSIONS",
    "adam_space", "ADAM_DEFAULTS", "SUBSTANTIALLY_MORE_THAN_25",
    "gp_ei", "fit_gp", "gp_posterior", "GPFit",
]
