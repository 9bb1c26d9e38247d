r"""Check your own optimizer step against a playbook rule.

``compare(step_fn, rule, ...)`` runs your step function and refplay's rule
side by side on a deterministic problem. ``step_fn(params, grads, lr)``
takes the current parameters, the gradient :math:`\nabla l` at *those*
parameters and :math:`\eta_t`, and returns the new parameters; it keeps
whatever optimizer state it needs itself (a closure, an object, a framework
optimizer)::

    import torch
    from refplay import oracle

    def make_torch_step(params0):
        ps = {k: torch.tensor(v) for k, v in params0.items()}
        opt = torch.optim.SGD(ps.values(), lr=0.0, momentum=0.9)
        def step(params, grads, lr):
            for k, p in ps.items():
                p.grad = torch.from_numpy(grads[k])
            opt.param_groups[0]["lr"] = lr
            opt.step()
            return {k: p.detach().numpy().copy() for k, p in ps.items()}
        return step

    prob = oracle.problems.get("mlp")
    report = oracle.compare(make_torch_step(prob.init_params()), "momentum", {"gamma": 0.9},
                            problem=prob)
    print(report)            # max |Δθ| per step, first step over tolerance

The reference side always runs in float64. Your side runs in ``dtype``: in
float64 a correct implementation agrees to about 1e-15 (the default tolerance
is 1e-12); in float32 the measured differences from the float64 reference
are 1e-7 to 1e-5 over 60 steps (the default tolerance is 1e-4; numbers in
``docs/oracle.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.oracle import problems as problems_lib
from refplay.oracle.trajectory import lr_values, standard_schedule, trajectory

StepFn = Callable[[Tree, Tree, float], Mapping[str, np.ndarray]]

__all__ = ["Comparison", "compare", "DEFAULT_TOL"]

#: Default tolerance on max |Δθ| per dtype of the run being checked.
DEFAULT_TOL = {"float64": 1e-12, "float32": 1e-4}


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare`.

    ``max_abs_diff[t]`` is :math:`\\max_i |\\theta^{\\text{yours}}_{t+1,i} -
    \\theta^{\\text{ref}}_{t+1,i}|` after update ``t`` (``t = 0 .. steps-1``);
    ``first_bad_step`` is the first ``t`` where it exceeds ``tol`` (or is not
    finite), ``None`` if none does.
    """

    rule: str
    hparams: dict
    problem: str
    dtype: str
    tol: float
    lrs: np.ndarray
    max_abs_diff: np.ndarray
    first_bad_step: int | None

    @property
    def max(self) -> float:
        """Largest difference over all steps (``inf`` if any step was not finite)."""
        return float(np.max(self.max_abs_diff)) if self.max_abs_diff.size else 0.0

    @property
    def ok(self) -> bool:
        return self.first_bad_step is None

    def __str__(self) -> str:
        verdict = ("agrees" if self.ok else
                   f"first exceeds tol at update t={self.first_bad_step} "
                   f"(|Δθ| = {self.max_abs_diff[self.first_bad_step]:.3e})")
        return (f"{self.rule} {self.hparams} on {self.problem} ({self.dtype}, "
                f"{self.max_abs_diff.size} steps): max |Δθ| = {self.max:.3e}, tol {self.tol:g}: "
                f"{verdict}")


def compare(step_fn: StepFn, rule: str, hparams: Mapping | None = None, *, lr_schedule=None,
            problem: str | problems_lib.Problem = "least_squares", steps: int = 60,
            dtype=np.float64, tol: float | None = None) -> Comparison:
    """Run ``step_fn`` and the playbook rule on the same problem; report the differences.

    Both sides start from the problem's :math:`\\theta_0`; at each step each
    side gets the gradient at its own current parameters (so a wrong rule
    drifts away and stays away) and the same :math:`\\eta_t`. ``step_fn`` gets
    copies it may modify. ``lr_schedule=None`` uses
    :func:`~refplay.oracle.trajectory.standard_schedule` (warmup then cosine)
    at the problem's base learning rate for ``rule``. ``tol`` defaults to
    ``DEFAULT_TOL[dtype]``.
    """
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable (params, grads, lr) -> params, got {step_fn!r}")
    prob = problems_lib.get(problem)
    dt = problems_lib._float_dtype(dtype)
    steps = _validate.integer("steps", steps, low=1)
    tol = DEFAULT_TOL[dt.name] if tol is None else _validate.real("tol", tol, low=0.0)
    if lr_schedule is None:
        if rule not in prob.base_lr:
            raise ValueError(f"rule={rule!r} is not a playbook rule; choose one of "
                             f"{sorted(prob.base_lr)}")
        lr_schedule = standard_schedule(prob.base_lr[rule], max(steps, 2))
    lrs = lr_values(lr_schedule, steps)
    ref = trajectory(rule, hparams, lrs, prob, steps, np.float64)

    params = prob.init_params(dt)
    diffs = np.empty(steps)
    for t in range(steps):
        grads = prob.grad(params)
        out = step_fn({k: v.copy() for k, v in params.items()}, grads, float(lrs[t]))
        params = _as_params(out, params, t)
        diffs[t] = max(_max_abs(params[k], ref.params[k][t + 1]) for k in params)
    bad = np.flatnonzero(~(diffs <= tol))          # NaN counts as bad
    return Comparison(rule=ref.rule, hparams=ref.hparams, problem=prob.name, dtype=dt.name,
                      tol=tol, lrs=lrs, max_abs_diff=diffs,
                      first_bad_step=int(bad[0]) if bad.size else None)


def _as_params(out, like: Tree, t: int) -> Tree:
    """``step_fn``'s result as numpy leaves in ``like``'s order and dtype.

    Key order may differ (jax sorts dict keys); the key set may not.
    """
    if not isinstance(out, Mapping) or set(out) != set(like):
        keys = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise TypeError(f"step_fn must return a dict with keys {list(like)} at update t={t}, "
                        f"got {keys}")
    new = {}
    for k in like:
        a = np.asarray(out[k])
        if a.shape != like[k].shape:
            raise ValueError(f"step_fn returned shape {a.shape} for {k!r} at update t={t}; "
                             f"expected {like[k].shape}")
        new[k] = a.astype(like[k].dtype, copy=True)
    return new


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(np.max(d)) if np.all(np.isfinite(d)) else float("inf")
