"""A simple hyperparameter importance: how much the bucketed best moves along each axis.

For each searched parameter, the isolation rows (exact values for a choice,
``buckets`` slices of the range otherwise) give the best objective per slice;
the importance is their range, max − min over slices with a complete trial.
A parameter whose best hardly changes along its axis matters little *within
this search space*; this is the playbook's "sense of how many points are in
the good region" turned into one number per axis, not a causal measure.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from refplay.analysis.isolation import isolation
from refplay.search.space import Choice, Discrete, Float, Int

__all__ = ["Importance", "importance"]


class Importance(NamedTuple):
    """How much the bucketed best objective moves along one parameter's axis."""

    param: str
    spread: float          # max - min of the best objective over slices
    n_slices: int          # slices with a complete trial


def importance(frame, buckets: int = 5) -> tuple[Importance, ...]:
    """Importance of each searched parameter, largest spread first."""
    out = []
    for name in frame.searched():
        p = frame.space[name]
        if isinstance(p, (Float, Int)):
            iso = isolation(frame, name, buckets=buckets)
        elif isinstance(p, (Choice, Discrete)):
            iso = isolation(frame, name)
        else:
            continue
        best = [r.objective for r in iso.rows if math.isfinite(r.objective)]
        spread = max(best) - min(best) if len(best) >= 2 else math.nan
        out.append(Importance(name, spread, len(best)))
    # Largest spread first; parameters without two comparable slices last.
    return tuple(sorted(out, key=lambda i: -i.spread if math.isfinite(i.spread) else math.inf))
