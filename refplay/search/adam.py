"""Adam's search space by budget: the playbook's rule of thumb as a function.

The playbook's FAQ "How should Adam's hyperparameters be tuned?":

    "Note that not all the hyperparameters in Adam are equally important. The
    following rules of thumb correspond to different "budgets" for the number
    of trials in a study.

    - If < 10 trials in a study, only tune the (base) learning rate.
    - If 10-25 trials, tune learning rate and β1.
    - If 25+ trials, tune the learning rate, β1 and ε.
    - If one can run substantially more than 25 trials, additionally tune β2."

:func:`adam_space` reads the ranges as half-open, so every budget gets one
answer (25 is "25+", not "10-25"), and reads "substantially more than 25" as
at least :data:`SUBSTANTIALLY_MORE_THAN_25` = 50 trials, twice the threshold::

    num_trials    searched                   fixed (Adam's defaults)
    1 ..  9       lr                         β1 = 0.9, β2 = 0.999, ε = 1e-8
    10 .. 24      lr, β1                     β2, ε
    25 .. 49      lr, β1, ε                  β2
    50 ..         lr, β1, ε, β2              —

Scales: ``lr`` and ``eps`` are log-uniform; ``beta1`` and ``beta2`` use the
``"log1m"`` scale, uniform in :math:`\\log(1 - \\beta)`, because an
exponential average with decay β remembers about :math:`1/(1 - \\beta)` steps:
0.9, 0.99 and 0.999 are equally far apart on that scale. The searched
parameters are nuisance hyperparameters in the order of the rule (lr, β1, ε,
β2), so the first, best-stratified Halton coordinates go to the ones the
playbook ranks first.
"""

from __future__ import annotations

from collections.abc import Sequence

from refplay import _validate
from refplay.search.space import Fixed, Float, SearchSpace

__all__ = ["adam_space", "SUBSTANTIALLY_MORE_THAN_25", "ADAM_DEFAULTS"]

#: The budget from which β2 is tuned too: our reading of "substantially more than 25 trials".
SUBSTANTIALLY_MORE_THAN_25 = 50

#: The values of Adam's hyperparameters that a small budget leaves fixed (Kingma & Ba's defaults).
ADAM_DEFAULTS = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def _range(name: str, value: Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a (low, high) pair, got {value!r}")
    return value[0], value[1]


def adam_space(num_trials: int, *, lr: Sequence[float] = (1e-5, 1e-1),
               beta1: Sequence[float] = (0.0, 0.99), eps: Sequence[float] = (1e-10, 1e-2),
               beta2: Sequence[float] = (0.9, 0.9999)) -> SearchSpace:
    """The Adam search space the playbook recommends for a study of ``num_trials`` trials.

    Args:
        num_trials: the study's budget, at least 1.
        lr: (low, high) of the base learning rate, log scale.
        beta1: (low, high) of β1, ``"log1m"`` scale (default: 1 - β1 from 1 down to 0.01).
        eps: (low, high) of ε, log scale.
        beta2: (low, high) of β2, ``"log1m"`` scale.

    Returns:
        A :class:`SearchSpace` with ``optimizer = Fixed("adam")``, ``lr`` searched,
        and ``beta1``, ``eps``, ``beta2`` searched or fixed at :data:`ADAM_DEFAULTS`
        by the budget rule in the module docstring. Every config it samples is a
        valid ``train.run_trial`` config.
    """
    num_trials = _validate.integer("num_trials", num_trials, low=1)
    searched = {
        "lr": Float(*_range("lr", lr), scale="log"),
        "beta1": Float(*_range("beta1", beta1), scale="log1m"),
        "eps": Float(*_range("eps", eps), scale="log"),
        "beta2": Float(*_range("beta2", beta2), scale="log1m"),
    }
    # How many of (lr, beta1, eps, beta2), in that order, the budget tunes.
    if num_trials < 10:
        tuned = 1
    elif num_trials < 25:
        tuned = 2
    elif num_trials < SUBSTANTIALLY_MORE_THAN_25:
        tuned = 3
    else:
        tuned = 4
    params: dict = {"optimizer": Fixed("adam")}
    for i, (name, param) in enumerate(searched.items()):
        params[name] = param if i < tuned else Fixed(ADAM_DEFAULTS[name])
    return SearchSpace(params)
