"""Run *your* step function through every oracle problem: ``refplay oracle check MOD:FN``.

``make_step`` is a factory, as the framework configurations are: called with
the problem's :math:`\\theta_0` it returns a fresh step function
``(params, grads, lr) -> params`` (the signature :func:`refplay.oracle.compare`
takes), so every problem starts from fresh optimizer state. If the factory has
a parameter named ``hparams`` it also gets the hyperparameters being checked,
and one named ``dtype`` the numpy dtype of the run::

    def make_step(params0, hparams):
        state = MyAdam(beta2=hparams["beta2"], eps=hparams["eps"])
        return lambda params, grads, lr: state.step(params, grads, lr)
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from refplay import _validate
from refplay.oracle import neighbours
from refplay.oracle import problems as problems_lib
from refplay.oracle.compare import Comparison, compare

__all__ = ["load_target", "check_step", "format_results"]


def load_target(target: str) -> Callable:
    """``"package.module:function"`` → the function (the current directory is importable)."""
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"target={target!r} must be MODULE:FUNCTION, e.g. mypkg.optim:make_step")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())          # as `python -m` would: the user's own files
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"cannot import {module!r} for target {target!r}: {exc}") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ValueError(f"{module!r} has no callable {name!r} (target {target!r})")
    return fn


def _build(make_step: Callable, params0, hparams: dict, dtype: np.dtype):
    try:
        names = inspect.signature(make_step).parameters
    except (TypeError, ValueError):               # builtins without a signature
        names = {}
    kwargs = {}
    if "hparams" in names:
        kwargs["hparams"] = dict(hparams)
    if "dtype" in names:
        kwargs["dtype"] = dtype
    return make_step(params0, **kwargs)


def check_step(make_step: Callable, rule: str, hparams: Mapping | None = None, *,
               problems: Sequence[str] = tuple(problems_lib.PROBLEMS), steps: int = 60,
               dtype=np.float64, form: str | None = None) -> list[Comparison]:
    """:func:`~refplay.oracle.compare` a fresh ``make_step(θ₀)`` on each problem."""
    hp = dict(neighbours.build(rule, hparams, form).hparams)
    dt = _validate.float_dtype("dtype", dtype)
    steps = _validate.integer("steps", steps, low=2)
    out = []
    for name in problems:
        prob = problems_lib.get(name)
        step = _build(make_step, prob.init_params(dt), hp, dt)
        out.append(compare(step, rule, hp, problem=prob, steps=steps, dtype=dt, form=form))
    return out


def format_results(target: str, results: Sequence[Comparison]) -> str:
    """The framework table's layout for one step function: verdict, max|Δθ| per problem, why."""
    first = results[0]
    ok = all(r.ok for r in results)
    lines = [f"yours · {first.rule}: {'MATCHES' if ok else 'DIFFERS'}",
             f"  config   {target} vs {first.reference}, {first.hparams}",
             "           max|Δθ| " + "  ".join(f"{r.problem}: {r.max:.1e}" for r in results)]
    bad = [r for r in results if not r.ok]
    if bad:
        lines.append(f"  why      ({bad[0].problem}) {bad[0].headline()}")
    lines.append(f"\n{len(results) - len(bad)}/{len(results)} problems agree within tol "
                 f"{first.tol:g}")
    return "\n".join(lines)
