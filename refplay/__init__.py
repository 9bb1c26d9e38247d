"""refplay: a runnable, checkable companion to the Deep Learning Tuning Playbook.

Subpackages are imported lazily so that ``import refplay`` stays cheap and
never compiles a Numba kernel::

    import refplay
    refplay.optim.adam(beta1=0.9, beta2=0.999, eps=1e-8)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "analysis", "cli", "clipping", "data", "demo", "io", "latex", "nn", "optim", "oracle", "plots",
    "procedures", "report", "reproduce", "rng", "schedules", "search", "study", "threads",
    "train", "tree", "tuning", "tutorials",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    """``refplay.NAME`` imports the subpackage ``NAME`` on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f"refplay.{name}")
    raise AttributeError(f"module 'refplay' has no attribute {name!r}")
