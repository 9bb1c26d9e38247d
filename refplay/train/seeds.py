"""One trial seed, three independent random streams.

DESIGN.md principle 3: every draw comes from a ``numpy.random.Generator``
derived from an explicit seed, one ``SeedSequence`` child per purpose. A
trial spawns three children of its seed::

    init, data, dropout = np.random.SeedSequence(seed).spawn(3)

* ``init`` draws the initial parameters,
* ``data`` orders the training examples (``data.TrainBatches``),
* ``dropout`` draws the dropout masks; step ``t`` uses its own child
  ``(dropout, t)``, so no generator state has to be saved in a checkpoint
  and a resumed run draws exactly the masks an uninterrupted run draws.
  A model that draws nothing in training (no dropout) gets no generator:
  building one costs ~30 µs, a few per cent of a small model's step
  (:func:`draws_in_training`).

The playbook's multi-host advice — "It is critical to have RNG seeds that are
the same across hosts (for model initialization), and seeds that are
different across hosts (for data shuffling/preprocessing)" ("Considerations
for multi-host pipelines") — becomes one line of trial config: ``init_seed``
or ``data_seed`` (or ``dropout_seed``) replace the seed of one stream only. ``init_seed=s`` draws
the same initialization as a trial with ``seed=s``, whatever the trial seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refplay import _validate, rng
from refplay.nn.layers import Dropout, Layer
from refplay.nn.models import Model

# Position of each stream among the children of a seed. Fixed forever: changing
# it would change every result ever computed with refplay.
_INIT, _DATA, _DROPOUT = 0, 1, 2
_NUM_STREAMS = 3


class TrialStreams(NamedTuple):
    """The three seed sequences of a trial (see the module docstring)."""

    init: np.random.SeedSequence
    data: np.random.SeedSequence
    dropout: np.random.SeedSequence


def _children(seed: int) -> list[np.random.SeedSequence]:
    return rng.children(seed, _NUM_STREAMS)


def trial_streams(seed: int, *, init_seed: int | None = None, data_seed: int | None = None,
                  dropout_seed: int | None = None) -> TrialStreams:
    """Derive the init / data-order / dropout streams of a trial.

    ``init_seed`` (``data_seed``, ``dropout_seed``) replaces the trial seed for
    the initialization (data-order, dropout) stream only; ``None`` keeps the
    trial seed. Varying one of them at a time measures the retrain variance
    that each source of randomness causes.
    """
    seed = _validate.integer("seed", seed, low=0)
    own = _children(seed)

    def stream(override, name, position):
        if override is None:
            return own[position]
        return _children(_validate.integer(name, override, low=0))[position]

    return TrialStreams(init=stream(init_seed, "init_seed", _INIT),
                        data=stream(data_seed, "data_seed", _DATA),
                        dropout=stream(dropout_seed, "dropout_seed", _DROPOUT))


def generator(stream: np.random.SeedSequence) -> np.random.Generator:
    """A fresh generator drawing from ``stream`` (the same draws every call)."""
    return rng.generator(stream)


def step_generator(stream: np.random.SeedSequence, step: int) -> np.random.Generator:
    """The generator of training step ``step``: child number ``step`` of ``stream``.

    Equal to ``stream.spawn(step + 1)[step]`` without spawning the others, and
    independent of every call made before — which is what makes resuming
    from a checkpoint bitwise exact without saving any generator state.
    """
    return np.random.Generator(np.random.PCG64(rng.child(stream, step)))


def draws_in_training(model) -> bool:
    """Whether a training step of ``model`` may draw from its ``rng`` (needs a generator).

    A model can say so itself with a boolean attribute ``draws_in_training``.
    Otherwise a refplay :class:`~refplay.nn.models.Model` draws when one of its
    layers is a :class:`~refplay.nn.layers.Dropout` with a rate above 0 (the
    only refplay layer that draws in ``forward``) or a layer that refplay does
    not define, which might; any other model is assumed to draw.
    """
    declared = getattr(model, "draws_in_training", None)
    if declared is not None:
        return bool(declared)
    if not isinstance(model, Model):
        return True
    return any(_layer_draws(layer) for layer in _layers(model.net))


def _layers(layer: Layer, seen: set | None = None):
    """``layer`` and every layer inside it (in attributes, lists or tuples), depth first,
    each once (a layer shared by two blocks, or a back reference, is not walked again)."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield layer
    for value in vars(layer).values():
        children = value if isinstance(value, (list, tuple)) else (value,)
        for child in children:
            if isinstance(child, Layer):
                yield from _layers(child, seen)


def _layer_draws(layer: Layer) -> bool:
    if isinstance(layer, Dropout):
        return layer.rate > 0
    return not type(layer).__module__.startswith("refplay.nn.")
