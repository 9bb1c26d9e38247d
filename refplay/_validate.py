"""Boundary checks shared by the package: each error names the field, the value
and what is allowed (DESIGN.md: "Fail loudly at the boundary")."""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np


def real(name: str, value, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number within the bounds.

    ``low_open``/``high_open`` exclude the bound itself, e.g. ``[0, 1)`` is
    ``real(name, v, low=0, high=1, high_open=True)``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    allowed = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}; allowed range {allowed}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name}={value!r} is out of range; allowed range {allowed}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name}={value!r} is out of range; allowed range {allowed}")
    return v


def integer(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer (not a bool) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(
            f"{name}={v} is out of range; allowed [{'-inf' if low is None else low}, "
            f"{'inf' if high is None else high}]")
    return v


def one_of(name: str, value, allowed) -> object:
    """Return ``value`` if it is one of ``allowed``; never fall back silently."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; "
                         f"choose one of {sorted(map(str, allowed))}")
    return value


def float_dtype(name: str, value) -> np.dtype:
    """Return ``np.dtype(value)`` if it is float32 or float64, the dtypes refplay computes in."""
    dt = np.dtype(value)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{name}={dt} is not allowed; choose float32 or float64")
    return dt


def known_hparams(kind: str, name: str, factory, hparams, also_allowed=()) -> None:
    """Raise ``ValueError`` if ``hparams`` has a key that ``factory`` does not take.

    Used by the by-name builders (``optim.get``, ``schedules.get``): a typo in a
    hyperparameter name is an error, never silently ignored.
    """
    allowed = [*inspect.signature(factory).parameters, *also_allowed]
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for {kind} {name!r}; "
                         f"allowed {allowed}")
