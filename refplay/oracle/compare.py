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
    print(report)            # where it departs, on which leaf, and the likely cause

When the comparison fails, :mod:`refplay.oracle.diagnose` replays the rule's
neighbour forms and common mistakes on the gradients your step received and
names the one your step computes ("It equals Adam with ε added after the bias
correction — the torch/optax form ..."). ``assert_matches`` is the same check
for a pytest test: it raises ``AssertionError`` with that message.

The reference side always runs in float64. Your side runs in ``dtype``: in
float64 a correct implementation agrees to about 1e-15 (the default tolerance
is 1e-12); in float32 the measured differences from the float64 reference
are 1e-7 to 1e-5 over 60 steps (the default tolerance is 1e-4; numbers in
``docs/oracle.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.oracle import neighbours
from refplay.oracle import problems as problems_lib
from refplay.oracle.diagnose import Diagnosis, diagnose as diagnose_fn
from refplay.oracle.trajectory import lr_values, standard_schedule, trajectory

StepFn = Callable[[Tree, Tree, float], Mapping[str, np.ndarray]]

__all__ = ["Comparison", "compare", "compare_trajectories", "assert_matches", "DEFAULT_TOL"]

#: Default tolerance on max |Δθ| per dtype of the run being checked.
DEFAULT_TOL = {"float64": 1e-12, "float32": 1e-4}


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare` (or :func:`compare_trajectories`).

    ``max_abs_diff[t]`` is :math:`\\max_i |\\theta^{\\text{yours}}_{t+1,i} -
    \\theta^{\\text{ref}}_{t+1,i}|` after update ``t`` (``t = 0 .. steps-1``)
    and ``leaf_diffs[k][t]`` the same on leaf ``k``; ``first_bad_step`` is the
    first ``t`` where it exceeds ``tol`` (or is not finite), ``None`` if none
    does. At that step: ``first_bad_leaf`` is the leaf with the largest
    difference, ``bad_elements`` its ``(elements beyond tol, elements)``,
    ``step_ratio`` is :math:`\\lVert\\Delta\\theta^{\\text{yours}}\\rVert /
    \\lVert\\Delta\\theta^{\\text{ref}}\\rVert` over all leaves
    (:math:`\\Delta\\theta = \\theta_{t+1} - \\theta_t`, each side's own) and
    ``step_cosine`` the cosine between the two steps. ``first_step_with_lr`` is
    the first ``t`` with :math:`\\eta_t > 0`. ``diagnosis`` names the known
    form your step computes (:mod:`refplay.oracle.diagnose`), when it was run.
    """

    rule: str
    hparams: dict
    problem: str
    dtype: str
    tol: float
    lrs: np.ndarray
    max_abs_diff: np.ndarray
    first_bad_step: int | None
    form: str = neighbours.PLAYBOOK
    leaf_diffs: dict = field(default_factory=dict)
    first_bad_leaf: str | None = None
    bad_elements: tuple | None = None
    first_step_with_lr: int | None = None
    step_ratio: float | None = None
    step_cosine: float | None = None
    diagnosis: Diagnosis | None = None

    @property
    def max(self) -> float:
        """Largest difference over all steps (``inf`` if any step was not finite)."""
        return float(np.max(self.max_abs_diff)) if self.max_abs_diff.size else 0.0

    @property
    def leaf_max(self) -> dict[str, float]:
        """Largest difference over all steps, per leaf."""
        return {k: float(np.max(v)) for k, v in self.leaf_diffs.items()}

    @property
    def ok(self) -> bool:
        """True when no step went past the tolerance."""
        return self.first_bad_step is None

    @property
    def reference(self) -> str:
        """What the run was compared with, e.g. "the playbook's Adam"."""
        return neighbours.get_form(self.rule, self.form).says

    def __str__(self) -> str:
        run = (f"{self.rule} {self.hparams} on {self.problem} ({self.dtype}, "
               f"{self.max_abs_diff.size} steps): max |Δθ| = {self.max:.3e}, tol {self.tol:g}")
        if self.ok:
            caveat = (" (float32 rounding, ~1e-6, hides smaller differences such as where ε "
                      "sits at ε = 1e-8: check in float64 too)" if self.dtype == "float32" else "")
            return f"{run}: agrees with {self.reference}{caveat}"
        leaves = ", ".join(f"{k} {v:.1e}" for k, v in self.leaf_max.items())
        return f"{self.headline()}\n  run: {run}\n  max |Δθ| per leaf: {leaves}"

    def headline(self) -> str:
        """One paragraph: where the step departs, how, and the likely cause."""
        if self.ok:
            return str(self)
        t = self.first_bad_step
        n_bad, n = self.bad_elements
        worst = float(self.leaf_diffs[self.first_bad_leaf][t])
        n_leaves = sum(1 for v in self.leaf_diffs.values() if not v[t] <= self.tol)
        text = (f"{self.rule}: step differs from {self.reference} at update t={t} "
                f"{self._when()} on leaf '{self.first_bad_leaf}' (max |Δ| "
                f"{f'{worst:.1e}' if np.isfinite(worst) else 'not finite'}, "
                f"{n_bad} of {n} elements beyond tol {self.tol:g}"
                + (f"; {n_leaves} of {len(self.leaf_diffs)} leaves differ at that update"
                   if len(self.leaf_diffs) > 1 else "") + f"); {self._size()}.")
        if self.diagnosis is not None:
            text += f" {self.diagnosis}"
        return text

    def _when(self) -> str:
        t, first = self.first_bad_step, self.first_step_with_lr
        if first is None or self.lrs[t] == 0:
            return "(η_t = 0 there)"
        return "(the first with η > 0)" if t == first else f"(η > 0 from t={first})"

    def _size(self) -> str:
        r, cos = self.step_ratio, self.step_cosine
        if r is None or not np.isfinite(r):
            return "your step is not finite" if r is None else \
                "‖Δθ_ref‖ = 0 there, but your step moves θ"
        ratio = ("1.000" if abs(r - 1) < 1e-12 else
                 f"1 {'+' if r >= 1 else '−'} {abs(r - 1):.1e}" if abs(r - 1) < 1e-3
                 else f"{r:.3g}")
        if cos is not None and cos < -0.9:
            how = f"your step points the opposite way, cos = {cos:.2f}"
        else:
            how = ("your step is too large" if r > 1 else "your step is too small")
            if cos is not None and cos < 0.999:
                how += f" and turned, cos = {cos:.3f}"
        return f"‖Δθ_yours‖/‖Δθ_ref‖ = {ratio} ({how})"


def compare(step_fn: StepFn, rule: str, hparams: Mapping | None = None, *, lr_schedule=None,
            problem: str | problems_lib.Problem = "least_squares", steps: int = 60,
            dtype=np.float64, tol: float | None = None, form: str | None = None,
            diagnose: bool = True) -> Comparison:
    """Run ``step_fn`` and the playbook rule on the same problem; report the differences.

    Both sides start from the problem's :math:`\\theta_0`; at each step each
    side gets the gradient at its own current parameters (so a wrong rule
    drifts away and stays away) and the same :math:`\\eta_t`. ``step_fn`` gets
    copies it may modify. ``lr_schedule=None`` uses
    :func:`~refplay.oracle.trajectory.standard_schedule` (warmup then cosine)
    at the problem's base learning rate for ``rule``. ``tol`` defaults to
    ``DEFAULT_TOL[dtype]``. ``form`` compares with a neighbour form instead of
    the playbook's (``"torch"``: Adam as ``torch.optim.Adam`` computes it; see
    :mod:`refplay.oracle.neighbours`). ``diagnose`` names the known form a
    failing step computes (it replays a few dozen candidates: milliseconds).
    """
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable (params, grads, lr) -> params, got {step_fn!r}")
    prob = problems_lib.get(problem)
    dt = _validate.float_dtype("dtype", dtype)
    steps = _validate.integer("steps", steps, low=1)
    tol = DEFAULT_TOL[dt.name] if tol is None else _validate.real("tol", tol, low=0.0)
    if lr_schedule is None:
        if rule not in prob.base_lr:
            raise ValueError(f"rule={rule!r} is not a playbook rule; choose one of "
                             f"{sorted(prob.base_lr)}")
        lr_schedule = standard_schedule(prob.base_lr[rule], max(steps, 2))
    lrs = lr_values(lr_schedule, steps)
    ref = trajectory(rule, hparams, lrs, prob, steps, np.float64, form=form)

    params = prob.init_params(dt)
    hist = {k: [v.copy()] for k, v in params.items()}
    grads_hist: dict[str, list] = {k: [] for k in params}
    for t in range(steps):
        grads = prob.grad(params)
        out = step_fn({k: v.copy() for k, v in params.items()}, grads, float(lrs[t]))
        params = _as_params(out, params, t)
        for k in params:
            hist[k].append(params[k])
            grads_hist[k].append(grads[k])
    return compare_trajectories(
        rule, ref.hparams, lrs, ref.params, {k: np.stack(v) for k, v in hist.items()},
        {k: np.stack(v) for k, v in grads_hist.items()}, tol=tol, problem=prob.name,
        dtype=dt.name, form=form, diagnose=diagnose)


def compare_trajectories(rule: str, hparams: Mapping, lrs, reference: Mapping[str, np.ndarray],
                         yours: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], *,
                         tol: float, problem: str = "", dtype: str = "float64",
                         form: str | None = None, diagnose: bool = True) -> Comparison:
    """Compare two recorded trajectories θ₀ … θ_T (per leaf, shape ``[T+1, ...]``).

    ``grads[k][t]`` and ``lrs[t]`` are what *your* update ``t`` received (for
    :func:`compare`, the gradient at your own iterate; for golden files, the
    recorded reference gradient). This is :func:`compare` without running
    anything, and what ``refplay oracle verify`` uses for trajectories written
    by code in any language.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    steps = lrs.size
    for name, tree in (("yours", yours), ("grads", grads)):
        if set(tree) != set(reference):
            raise ValueError(f"{name} has leaves {sorted(tree)}; the reference has "
                             f"{sorted(reference)}")
    leaf_diffs = {k: _step_diffs(yours[k], reference[k], steps) for k in reference}
    diffs = np.max(np.stack(list(leaf_diffs.values())), axis=0)
    bad = np.flatnonzero(~(diffs <= tol))          # NaN counts as bad
    moving = np.flatnonzero(lrs > 0)
    fields = dict(rule=rule, hparams=dict(hparams), problem=problem, dtype=dtype, tol=tol,
                  lrs=lrs, max_abs_diff=diffs, first_bad_step=int(bad[0]) if bad.size else None,
                  form=neighbours.get_form(rule, form).name, leaf_diffs=leaf_diffs,
                  first_step_with_lr=int(moving[0]) if moving.size else None)
    if not bad.size:
        return Comparison(**fields)
    t = int(bad[0])
    leaf = max(leaf_diffs, key=lambda k: (not np.isfinite(leaf_diffs[k][t]), leaf_diffs[k][t]))
    delta = np.abs(np.asarray(yours[leaf][t + 1], np.float64) - reference[leaf][t + 1])
    ratio, cosine = _step_geometry(yours, reference, t)
    diag = (diagnose_fn(rule, hparams, yours, grads, lrs, tol=tol, form=form)
            if diagnose else None)
    return Comparison(**fields, first_bad_leaf=leaf,
                      bad_elements=(int(np.sum(~(delta <= tol))), int(delta.size)),
                      step_ratio=ratio, step_cosine=cosine, diagnosis=diag)


def assert_matches(step_fn: StepFn, rule: str, hparams: Mapping | None = None,
                   **kwargs) -> Comparison:
    """:func:`compare`, raising ``AssertionError`` with the full message if it fails.

    For pytest: ``oracle.assert_matches(make_step(p0), "adam", {"eps": 1e-8},
    problem="mlp")``; returns the :class:`Comparison` when it passes.
    """
    report = compare(step_fn, rule, hparams, **kwargs)
    if not report.ok:
        raise AssertionError(str(report))
    return report


def _step_diffs(yours: np.ndarray, ref: np.ndarray, steps: int) -> np.ndarray:
    """max |Δθ| on one leaf after each update ``t = 0 .. steps-1`` (``inf`` if not finite)."""
    a = np.asarray(yours, np.float64)[1:steps + 1].reshape(steps, -1)
    b = np.asarray(ref, np.float64)[1:steps + 1].reshape(steps, -1)
    d = np.abs(a - b)
    return np.where(np.all(np.isfinite(d), axis=1), np.max(d, axis=1, initial=0.0), np.inf)


def _step_geometry(yours, reference, t: int) -> tuple[float | None, float | None]:
    """‖Δθ_yours‖/‖Δθ_ref‖ and their cosine at update ``t`` (``None`` if not finite)."""
    dy = np.concatenate([(np.asarray(yours[k][t + 1], np.float64) - yours[k][t]).ravel()
                         for k in reference])
    dr = np.concatenate([(np.asarray(reference[k][t + 1], np.float64) - reference[k][t]).ravel()
                         for k in reference])
    if not np.all(np.isfinite(dy)):
        return None, None
    ny, nr = float(np.linalg.norm(dy)), float(np.linalg.norm(dr))
    if nr == 0.0:
        return (float("inf") if ny > 0 else 1.0), None
    cosine = float(dy @ dr) / (ny * nr) if ny > 0 else None
    return ny / nr, cosine


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
