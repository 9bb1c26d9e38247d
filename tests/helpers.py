"""Test helpers importable as ``from tests.helpers import optional_import``.

``optional_import(name)`` imports an optional package. Locally a missing
package skips the test; under CI (``REFPLAY_REQUIRE_OPTIONAL=1``) it *fails*,
so no test is silently skipped where the package is supposed to be installed.
"""

from __future__ import annotations

import importlib
import os

import pytest


def optional_import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("REFPLAY_REQUIRE_OPTIONAL") == "1":
            pytest.fail(f"optional package {name!r} is required under CI but missing: {exc}")
        pytest.skip(f"optional package {name!r} not installed")


def numeric_grad(f, x, h: float = 1e-6):
    """Centered finite differences of the scalar ``f(x)`` with respect to ``x`` (float64).

    ``x`` is perturbed in place, one coordinate at a time, and restored.
    """
    import numpy as np
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f(x)
        x[i] = old - h
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def rel_error(a, b) -> float:
    """``‖a − b‖ / max(‖a‖, ‖b‖)``: the relative error of a gradient check."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def playbook_search_space():
    """The playbook's optimizer example as a search space: a learning rate per optimizer
    (namespaced names), conditional momentum / beta1, a discrete and a fixed parameter."""
    from refplay.search import Choice, Discrete, Fixed, Float, SearchSpace
    return SearchSpace({
        "optimizer": Choice(["nesterov", "adam"], role="scientific"),
        "nesterov/lr": Float(1e-2, 10.0, scale="log", when={"optimizer": "nesterov"}),
        "momentum": Float(0.8, 0.99, when={"optimizer": "nesterov"}),
        "adam/lr": Float(1e-4, 1e-1, scale="log", when={"optimizer": "adam"}),
        "beta1": Float(0.8, 0.99, when={"optimizer": "adam"}),
        "batch_size": Discrete([256, 64, 128]),     # unsorted on purpose: Discrete sorts
        "weight_decay": Fixed(0.0),
    })
