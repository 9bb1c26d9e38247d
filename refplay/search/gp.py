r"""Bayesian optimization after exploration: a numpy GP, EI, and infeasible trials.

The playbook, "After exploration concludes": "Bayesian optimization tools
should be used to automatically find the best hyperparameter configuration
... If the search space contains a non-trivial volume of divergent points
... it is important to use black box optimization tools that properly handle
trials that diverge (see Bayesian Optimization with Unknown Constraints [Gelbart
et al. 2014] for an excellent way to deal with this issue)."
:func:`gp_ei` is that tool in one screenful of numpy:

* **History.** A list of ``(config, objective, feasible)`` triples, one per
  finished trial: ``config`` a trial config of ``space``, ``feasible`` a bool,
  ``objective`` a finite number for a feasible trial (*lower is better*:
  negate a metric you maximize) and ``None`` for an infeasible one. Infeasible
  trials are never given a made-up bad value; they train the feasibility
  classifier instead. Failed trials (crashes) say nothing about the
  hyperparameters: leave them out.
* **Inputs.** A config becomes a point of the unit cube through
  :meth:`SearchSpace.to_unit_cube` (so a log-scaled ``lr`` is modelled in
  :math:`\log lr`); a :class:`Choice` becomes one 0/1 column per value
  (one-hot), since its values have no order. Conditional parameters (``when``)
  are not supported: fix the scientific choice first, as the playbook does
  once exploration concludes.
* **Objective model.** A Gaussian process with a Matérn-5/2 kernel and one
  length scale per input column (ARD),

  .. math::
      k(x, x') = \sigma_f^2 \left(1 + \sqrt5 r + \tfrac53 r^2\right) e^{-\sqrt5 r},
      \qquad r^2 = \sum_j \frac{(x_j - x'_j)^2}{\ell_j^2},

  plus noise :math:`\sigma_n^2 I`, on standardized objectives
  (:math:`(y - \bar y)/\mathrm{std}(y)`). Hyperparameters maximize the log
  marginal likelihood

  .. math::
      \log p(y) = -\tfrac12 y^\top K^{-1} y - \tfrac12 \log|K| - \tfrac n2 \log 2\pi,
      \qquad K = \sigma_f^2 (R_\ell + g I),

  with :math:`\sigma_f^2 = y^\top (R_\ell + g I)^{-1} y / n` in closed form for
  each :math:`(\ell, g)`, over fixed grids: first one :math:`\ell` for every
  column and the noise ratio :math:`g = \sigma_n^2/\sigma_f^2`, then two
  sweeps of coordinate ascent over each :math:`\ell_j` on the same grid, then
  :math:`g` again. Deterministic, numpy only, no gradients to get wrong.
* **Feasibility model.** GP regression on labels :math:`z = +1` (feasible) and
  :math:`-1` (infeasible), zero prior mean, fitted the same way — "least-squares
  classification" (Rasmussen & Williams, *Gaussian Processes for Machine
  Learning*, 2006, §6.5) — but with one length scale for all columns and
  noise ratios of at most 1e-2: a trial's feasibility is a property of its
  config, so the labels are nearly interpolated, and with the few trials of a
  study per-column length scales overfit (one column ignored, the other given
  a tiny scale). The probability that a new trial is feasible is the
  probability that its predicted label is positive,
  :math:`P(\text{feasible}) = \Phi\big(\mu_z / \sqrt{\sigma_z^2 + \sigma_{n,z}^2}\big)`:
  near 0 next to observed infeasible trials, 1/2 far from every trial. It was
  chosen over a Laplace GP classifier because it is one linear solve with the
  same code as the objective model, with no inner Newton loop; with no
  infeasible trial in the history, :math:`P(\text{feasible}) = 1` everywhere.
* **Acquisition.** Expected improvement over the best feasible objective
  :math:`y^*` (standardized), weighted by the probability of feasibility
  (Gelbart et al. 2014, eq. 4; Schonlau et al. 1998):

  .. math::
      a(x) = P(\text{feasible} \mid x)\,\Big[(y^* - \mu)\,\Phi(u) + \sigma\,\varphi(u)\Big],
      \qquad u = \frac{y^* - \mu}{\sigma},

  maximized over the candidates with :math:`P(\text{feasible}) \ge 1/2`
  (:data:`MIN_FEASIBILITY`; the others only if none is left). The gate is
  Gelbart et al.'s probabilistic constraint :math:`P(\text{feasible}) \ge 1 - \delta`
  with :math:`\delta = 1/2`, applied to proposals: never propose a trial the
  classifier thinks more likely to diverge than not. Without it, once EI has
  found the feasible minima, EI × P(feasible) keeps drifting into an observed
  infeasible region whose untried minimum looks promising. The pool:
  ``num_candidates`` scrambled Halton points
  (block ``len(history)`` of the sequence of ``seed``, so each round sees new
  points) plus Gaussian steps around the 5 best feasible trials (draws from
  child ``len(history)`` of ``SeedSequence(seed)``), each mapped to a config
  with :meth:`SearchSpace.from_unit_cube` and modelled as that config.
* **Batches.** ``n > 1`` proposals use the constant liar (Ginsbourger, Le
  Riche & Carraro, "Kriging is well-suited to parallelize optimization",
  2010): after each pick, pretend it returned the *worst* feasible objective
  seen so far (CL-max, which pushes the next picks away from the pending ones)
  and recompute the posterior with the same hyperparameters.

Same ``(space, history, n, seed)`` → the same proposals, bit for bit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from refplay import _validate
from refplay.search.halton_sequence import halton_points
from refplay.search.space import Choice, Discrete, Fixed, Float, Int, SearchSpace

__all__ = ["gp_ei", "check_space", "fit_gp", "gp_posterior", "GPFit", "matern52",
           "expected_improvement", "feasibility_probability"]

Config = dict[str, Any]

#: Length scales tried, in unit-cube units (a column spans 1).
LENGTHSCALE_GRID = np.geomspace(0.03, 10.0, 16)
#: Noise ratios g = σ_n² / σ_f² tried; the smallest also keeps the Cholesky factor stable.
NOISE_GRID = np.array([1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1])
#: The feasibility labels are a property of the config, not noisy measurements: nearly
#: interpolate them, so P(feasible) falls steeply next to an observed infeasible trial.
CLASSIFIER_NOISE_GRID = np.array([1e-6, 1e-4, 1e-3, 1e-2])
#: Candidates the classifier thinks more likely infeasible than feasible are proposed
#: only if no other candidate is left (see gp_ei).
MIN_FEASIBILITY = 0.5
#: Gaussian steps (unit-cube standard deviations) around the best trials, per best trial.
_LOCAL_SCALES = (0.02, 0.1)
_LOCAL_STEPS = 32
_NUM_BEST = 5


# --------------------------------------------------------------------------
# The Gaussian process
# --------------------------------------------------------------------------


def matern52(x1: np.ndarray, x2: np.ndarray, lengthscales: np.ndarray) -> np.ndarray:
    r"""Matérn-5/2 correlation :math:`(1 + \sqrt5 r + \frac53 r^2) e^{-\sqrt5 r}`, (n1, n2)."""
    a = np.asarray(x1, np.float64) / lengthscales
    b = np.asarray(x2, np.float64) / lengthscales
    r2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
    s = np.sqrt(5.0 * r2)
    return (1.0 + s + s * s / 3.0) * np.exp(-s)


class GPFit(NamedTuple):
    """A Gaussian process conditioned on data: hyperparameters and the factors predictions need.

    ``y_mean``, ``y_scale`` undo the standardization; ``amplitude`` (σ_f²) and
    ``noise`` (σ_n²) are in standardized units. ``chol`` is the lower Cholesky
    factor of :math:`K = \\sigma_f^2 R_\\ell + \\sigma_n^2 I`, ``alpha`` is
    :math:`K^{-1} (y - \\bar y)/s`.
    """

    x: np.ndarray
    lengthscales: np.ndarray
    amplitude: float
    noise: float
    y_mean: float
    y_scale: float
    chol: np.ndarray
    alpha: np.ndarray
    log_marginal_likelihood: float


def _profiled_lml(x: np.ndarray, y: np.ndarray, lengthscales: np.ndarray,
                  ratio: float) -> tuple[float, float]:
    """Log marginal likelihood with σ_f² at its maximum for (ℓ, g); returns (lml, σ_f²)."""
    n = len(y)
    r = matern52(x, x, lengthscales)
    r[np.diag_indices(n)] += ratio
    try:
        chol = np.linalg.cholesky(r)
    except np.linalg.LinAlgError:
        return -math.inf, math.nan
    v = np.linalg.solve(chol, y)
    amplitude = max(float(v @ v) / n, 1e-12)
    lml = (-0.5 * n * math.log(amplitude) - float(np.log(np.diag(chol)).sum())
           - 0.5 * n * (1.0 + math.log(2.0 * math.pi)))
    return lml, amplitude


def _fit_hyperparameters(x: np.ndarray, y: np.ndarray, noise_grid: np.ndarray,
                         ard: bool) -> tuple[np.ndarray, float, float]:
    """Grid + coordinate ascent on the profiled log marginal likelihood (module docstring)."""
    dim = x.shape[1]
    best = (-math.inf, None, None, None)  # (lml, lengthscales, ratio, amplitude)

    def consider(ls: np.ndarray, g: float) -> None:
        nonlocal best
        lml, amp = _profiled_lml(x, y, ls, g)
        if lml > best[0]:  # strict: ties keep the earlier (deterministic) candidate
            best = (lml, ls.copy(), g, amp)

    for ell in LENGTHSCALE_GRID:
        for g in noise_grid:
            consider(np.full(dim, ell), g)
    for _ in range(2 if ard else 0):
        for j in range(dim):
            for ell in LENGTHSCALE_GRID:
                ls = best[1].copy()
                ls[j] = ell
                consider(ls, best[2])
    for g in noise_grid:
        consider(best[1], g)
    if best[1] is None:
        raise ValueError("could not fit the Gaussian process: every kernel matrix was singular "
                         "(are there many duplicate configs with different objectives?)")
    _, ls, g, amp = best
    return ls, amp, g * amp


def fit_gp(x: np.ndarray, y: np.ndarray, *, lengthscales: np.ndarray | None = None,
           amplitude: float | None = None, noise: float | None = None,
           standardize: bool = True, noise_grid: np.ndarray = NOISE_GRID,
           ard: bool = True) -> GPFit:
    """Condition a Matérn-5/2 GP on ``(x, y)``; fit any hyperparameter not given.

    Args:
        x: inputs, shape (n, D), in the unit cube.
        y: targets, shape (n,).
        lengthscales, amplitude, noise: ℓ (shape (D,) or a scalar), σ_f², σ_n²
            in standardized units. Give all three to fix them (e.g. to compare
            with another GP library) or none to maximize the marginal likelihood.
        standardize: model :math:`(y - \\bar y)/\\mathrm{std}(y)` (population std;
            1 if every y is equal); otherwise ``y`` itself with zero prior mean.
        noise_grid: the noise ratios :math:`g = \\sigma_n^2/\\sigma_f^2` the fit may choose.
        ard: fit one length scale per column (coordinate ascent); ``False``: one for all.
    """
    x = np.atleast_2d(np.asarray(x, np.float64))
    y = np.asarray(y, np.float64)
    if y.ndim != 1 or len(y) != len(x) or len(y) == 0:
        raise ValueError(f"fit_gp needs x of shape (n, D) and y of shape (n,) with n >= 1, "
                         f"got x {x.shape} and y {y.shape}")
    given = [v is not None for v in (lengthscales, amplitude, noise)]
    if any(given) and not all(given):
        raise ValueError("fit_gp: give all of lengthscales, amplitude and noise, or none")
    y_mean, y_scale = (float(y.mean()), float(y.std())) if standardize else (0.0, 1.0)
    y_scale = y_scale if y_scale > 0 else 1.0
    z = (y - y_mean) / y_scale
    if all(given):
        lengthscales = np.broadcast_to(np.asarray(lengthscales, np.float64), (x.shape[1],)).copy()
        amplitude = _validate.real("amplitude", amplitude, low=0, low_open=True)
        noise = _validate.real("noise", noise, low=0)
    else:
        lengthscales, amplitude, noise = _fit_hyperparameters(x, z, noise_grid, ard)
    k = amplitude * matern52(x, x, lengthscales)
    k[np.diag_indices(len(z))] += noise
    chol = np.linalg.cholesky(k)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
    lml = (-0.5 * float(z @ alpha) - float(np.log(np.diag(chol)).sum())
           - 0.5 * len(z) * math.log(2.0 * math.pi))
    return GPFit(x=x, lengthscales=lengthscales, amplitude=float(amplitude), noise=float(noise),
                 y_mean=y_mean, y_scale=y_scale, chol=chol, alpha=alpha,
                 log_marginal_likelihood=lml)


def gp_posterior(fit: GPFit, x_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Posterior mean and variance of the latent function at ``x_new``, in the units of ``y``.

    .. math::
        \mu = \bar y + s\, k_*^\top K^{-1} z, \qquad
        \sigma^2 = s^2 \left(\sigma_f^2 - k_*^\top K^{-1} k_*\right)

    (noise-free: the variance of f, not of a new observation).
    """
    x_new = np.atleast_2d(np.asarray(x_new, np.float64))
    k_star = fit.amplitude * matern52(fit.x, x_new, fit.lengthscales)  # (n, m)
    mean = k_star.T @ fit.alpha
    v = np.linalg.solve(fit.chol, k_star)
    var = np.maximum(fit.amplitude - (v * v).sum(0), 0.0)
    return fit.y_mean + fit.y_scale * mean, fit.y_scale**2 * var


# --------------------------------------------------------------------------
# Acquisition
# --------------------------------------------------------------------------

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _normal_cdf(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(u, np.float64) / math.sqrt(2.0)))


def expected_improvement(mean: np.ndarray, var: np.ndarray, best: float) -> np.ndarray:
    r"""EI for minimization: :math:`E[\max(y^* - f, 0)]` with :math:`f \sim N(\mu, \sigma^2)`."""
    mean, std = np.asarray(mean, np.float64), np.sqrt(np.asarray(var, np.float64))
    gain = best - mean
    safe = np.where(std > 0, std, 1.0)
    u = gain / safe
    ei = gain * _normal_cdf(u) + safe * np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
    return np.where(std > 0, np.maximum(ei, 0.0), np.maximum(gain, 0.0))


def feasibility_probability(fit: GPFit, x_new: np.ndarray) -> np.ndarray:
    r""":math:`\Phi(\mu_z / \sqrt{\sigma_z^2 + \sigma_{n,z}^2})` from a GP fitted to ±1 labels."""
    mean, var = gp_posterior(fit, x_new)
    return _normal_cdf(mean / np.sqrt(var + fit.noise * fit.y_scale**2))


# --------------------------------------------------------------------------
# From configs to GP inputs
# --------------------------------------------------------------------------


def check_space(space: Any) -> SearchSpace:
    """Return ``space`` if :func:`gp_ei` can search it, else raise naming the parameter.

    A study with ``sampler="gp_ei"`` calls this when its spec is built, so an
    unsupported space fails before the first trial, not after the quasi-random ones.
    """
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space must be a search.SearchSpace, got {type(space).__name__}")
    for name in space:
        param = space[name]
        if param.when is not None:
            raise ValueError(f"gp_ei does not support conditional parameters; {name!r} has "
                             f"when={param.when!r}. Fix the parent's value (Fixed) and drop the "
                             f"condition, or search with search.halton")
        if not isinstance(param, (Float, Int, Discrete, Choice, Fixed)):
            raise TypeError(f"gp_ei: parameter {name!r} is a {type(param).__name__}")
    if space.num_dimensions == 0:
        raise ValueError("gp_ei: the space has no searched parameter (every one is Fixed)")
    return space


def _features(space: SearchSpace, u: np.ndarray) -> np.ndarray:
    """GP inputs from unit-cube points (rows of ``to_unit_cube``): Choice columns become one-hot."""
    columns = []
    for j, name in enumerate(space.dimensions):
        param = space[name]
        if isinstance(param, Choice):
            k = len(param.values)
            index = np.minimum(np.floor(u[:, j] * k).astype(np.int64), k - 1)
            columns.append(np.eye(k)[index])
        else:
            columns.append(u[:, j:j + 1])
    return np.hstack(columns)


def _check_history(space: SearchSpace, history: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``[(config, objective, feasible), ...]``; return (unit points, y, feasible)."""
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, Sequence):
        raise TypeError(f"history must be a list of (config, objective, feasible) triples, got "
                        f"{type(history).__name__}")
    points, objectives, feasible = [], [], []
    for i, entry in enumerate(history):
        if isinstance(entry, (str, bytes, Mapping)) or not isinstance(entry, Sequence) \
                or len(entry) != 3:
            raise TypeError(f"history[{i}] must be a (config, objective, feasible) triple, "
                            f"got {entry!r}")
        config, objective, ok = entry
        if not isinstance(ok, (bool, np.bool_)):
            raise TypeError(f"history[{i}]: feasible must be True or False, got {ok!r}")
        if ok:
            if isinstance(objective, bool) or not isinstance(objective, numbers.Real) \
                    or not math.isfinite(objective):
                raise ValueError(f"history[{i}]: a feasible trial's objective must be a finite "
                                 f"number, got {objective!r}")
        elif objective is not None:
            raise ValueError(f"history[{i}]: an infeasible trial's objective must be None (it "
                             f"is not given a made-up value), got {objective!r}")
        try:
            points.append(space.to_unit_cube(config))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"history[{i}]: {exc}") from None
        objectives.append(float(objective) if ok else math.nan)
        feasible.append(bool(ok))
    u = np.array(points, np.float64).reshape(len(points), space.num_dimensions)
    return u, np.array(objectives), np.array(feasible, dtype=bool)


def _candidates(space: SearchSpace, u_best: np.ndarray, num_candidates: int, seed: int,
                round_index: int) -> tuple[list[Config], np.ndarray]:
    """The pool: a fresh Halton block plus Gaussian steps around the best trials."""
    d = space.num_dimensions
    pool = [halton_points(num_candidates, d, seed, skip=num_candidates * round_index)]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(round_index,)))
    for scale in _LOCAL_SCALES:
        for point in u_best:
            pool.append(point + scale * rng.standard_normal((_LOCAL_STEPS, d)))
    u = np.clip(np.vstack(pool), 0.0, np.nextafter(1.0, 0.0))
    configs = space.from_unit_cube(u)
    # Model each candidate as the config it becomes (an Int's cell centre, ...).
    u_snapped = np.array([space.to_unit_cube(c) for c in configs])
    return configs, _features(space, u_snapped)


def gp_ei(space: SearchSpace, history: Sequence, n: int, seed: int, *,
          feasibility: bool = True, num_candidates: int = 1024) -> list[Config]:
    """Propose ``n`` trial configs by expected improvement × P(feasible) (module docstring).

    Args:
        space: a search space of Float, Int, Discrete, Choice and Fixed
            parameters without conditions.
        history: ``[(config, objective, feasible), ...]`` of the finished
            trials; objectives are minimized; an infeasible trial's objective
            is ``None``. At least 2 feasible trials (start with quasi-random
            search, as the playbook does while exploring).
        n: how many configs to propose at once: 1 for sequential
            optimization, q > 1 for a batch of q trials run in parallel
            (constant liar).
        seed: the seed of the candidate pool.
        feasibility: weight EI by P(feasible) fitted to the infeasible trials
            (Gelbart et al. 2014); ``False`` ignores infeasible trials.
        num_candidates: Halton points in the pool (plus 320 steps around the
            best trials).

    Returns:
        ``n`` configs (plain dicts, like the other samplers), distinct
        candidates of the pool, in the order picked.
    """
    space = check_space(space)
    n = _validate.integer("n", n, low=1)
    seed = _validate.integer("seed", seed, low=0)
    num_candidates = _validate.integer("num_candidates", num_candidates, low=1)
    if not isinstance(feasibility, bool):
        raise TypeError(f"feasibility must be True or False, got {feasibility!r}")
    u, y, ok = _check_history(space, history)
    if ok.sum() < 2:
        raise ValueError(f"gp_ei needs at least 2 feasible trials in history, got {int(ok.sum())} "
                         f"of {len(ok)}; run quasi-random search (search.halton) first")
    x = _features(space, u)
    x_obj, y_obj = x[ok], y[ok]
    best_order = np.argsort(y_obj, kind="stable")[:_NUM_BEST]
    configs, x_cand = _candidates(space, u[ok][best_order], num_candidates, seed, len(history))

    fit = fit_gp(x_obj, y_obj)
    p_feasible = (_feasibility(x, ok, x_cand) if feasibility and not ok.all()
                  else np.ones(len(x_cand)))
    picked = _pick(fit, x_obj, y_obj, x_cand, p_feasible, n)
    return [configs[i] for i in picked]


def _feasibility(x: np.ndarray, ok: np.ndarray, x_cand: np.ndarray) -> np.ndarray:
    """P(feasible) of each candidate from a GP classifier fitted to ±1 labels of the trials."""
    labels = np.where(ok, 1.0, -1.0)
    classifier = fit_gp(x, labels, standardize=False, noise_grid=CLASSIFIER_NOISE_GRID,
                        ard=False)
    return feasibility_probability(classifier, x_cand)


def _pick(fit: GPFit, x_obj: np.ndarray, y_obj: np.ndarray, x_cand: np.ndarray,
          p_feasible: np.ndarray, n: int) -> list[int]:
    """Indices of ``n`` distinct candidates, each maximizing EI × P(feasible) given the picks
    before it (constant liar)."""
    best, liar = float(y_obj.min()), float(y_obj.max())
    picked: list[int] = []
    for _ in range(n):
        cur = _with_lies(fit, x_obj, y_obj, x_cand[picked], liar) if picked else fit
        mean, var = gp_posterior(cur, x_cand)
        score = expected_improvement(mean, var, best) * p_feasible
        score[p_feasible < MIN_FEASIBILITY] = -1.0  # below every admissible score (>= 0)
        score[picked] = -np.inf
        picked.append(int(np.argmax(score)))
    return picked


def _with_lies(fit: GPFit, x_obj: np.ndarray, y_obj: np.ndarray, x_pending: np.ndarray,
               liar: float) -> GPFit:
    """``fit`` conditioned as if the pending picks "returned" ``liar``, the worst value seen."""
    x_lie = np.vstack([x_obj, x_pending])
    y_lie = np.concatenate([y_obj, np.full(len(x_pending), liar)])
    # The same hyperparameters and standardization as the real fit.
    z = (y_lie - fit.y_mean) / fit.y_scale
    cur = fit_gp(x_lie, z, lengthscales=fit.lengthscales, amplitude=fit.amplitude,
                 noise=fit.noise, standardize=False)
    return cur._replace(y_mean=fit.y_mean, y_scale=fit.y_scale)
