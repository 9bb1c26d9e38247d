"""Two 1-D signal operations, vectorized over rows, in plain numpy.

MNIST-1D is built from two classic operations that its reference package takes
from SciPy: linear interpolation (``scipy.interpolate.interp1d``, which for
1-D float64 data calls ``numpy.interp``) and a Gaussian filter
(``scipy.ndimage.gaussian_filter``). Both are written out here so that
refplay needs no SciPy, and so that they apply to a whole ``(n, length)``
array at once instead of one row at a time. Each reproduces its reference's
floating-point operations in the same order, so the results agree to the last
bit or nearly so (the tests compare against ``numpy.interp`` and SciPy).
"""

from __future__ import annotations

import numpy as np

from refplay import _validate

__all__ = ["interpolate_rows", "gaussian_kernel1d", "gaussian_filter_rows"]


def interpolate_rows(rows: np.ndarray, n_out: int) -> np.ndarray:
    r"""Resample every row of ``rows`` from its length to ``n_out`` points, linearly.

    Old and new sample positions are both ``linspace(0, 1, ·)``. For a new
    position :math:`s` with :math:`p_j \le s < p_{j+1}`, exactly as
    ``numpy.interp`` computes it::

        slope_j = (x[j+1] - x[j]) / (p[j+1] - p[j])
        out(s)  = slope_j * (s - p[j]) + x[j]          (out = x[j] when s == p[j])

    ``rows`` has shape ``(..., n_in)`` with ``n_in >= 2``; the result has shape
    ``(..., n_out)``.
    """
    rows = np.asarray(rows, dtype=np.float64)
    n_in = rows.shape[-1]
    if n_in < 2:
        raise ValueError(f"rows must have at least 2 points along the last axis, "
                         f"got shape {rows.shape}")
    n_out = _validate.integer("n_out", n_out, low=1)
    p = np.linspace(0, 1, n_in)          # old positions
    s = np.linspace(0, 1, n_out)         # new positions
    # j such that p[j] <= s < p[j+1] (j = n_in - 1 when s == p[-1] == 1)
    j = np.searchsorted(p, s, side="right") - 1
    on_a_node = (j == n_in - 1) | (p[j] == s)
    j1 = np.minimum(j + 1, n_in - 1)
    with np.errstate(invalid="ignore", divide="ignore"):   # j1 == j only where on_a_node
        slope = (rows[..., j1] - rows[..., j]) / (p[j1] - p[j])
        between = slope * (s - p[j]) + rows[..., j]
    return np.where(on_a_node, rows[..., j], between)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    r"""The normalized Gaussian kernel that ``scipy.ndimage.gaussian_filter`` uses.

    Radius :math:`r = \lfloor \text{truncate}\cdot\sigma + 0.5 \rfloor` and, for
    :math:`k = -r, \dots, r`,

    .. math::  w_k = \frac{\exp(-k^2 / 2\sigma^2)}{\sum_{k'=-r}^{r} \exp(-k'^2 / 2\sigma^2)}
    """
    sigma = _validate.real("sigma", sigma, low=0, low_open=True)
    truncate = _validate.real("truncate", truncate, low=0)
    radius = int(truncate * sigma + 0.5)
    k = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * k ** 2)
    return phi / phi.sum()


def gaussian_filter_rows(rows: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    r"""Smooth every row with a Gaussian, ``mode="reflect"``, like SciPy's ``gaussian_filter``.

    .. math::  y_i = \sum_{k=-r}^{r} w_k\, x_{i+k}

    where indices beyond an end are mirrored about the edge, repeating the edge
    sample (``d c b a | a b c d | d c b a``). The sum is accumulated in SciPy's
    order for symmetric kernels -- :math:`w_0 x_i` first, then
    :math:`w_k (x_{i-k} + x_{i+k})` for :math:`k = r, r-1, \dots, 1` -- so the
    result matches SciPy to rounding. ``rows`` is ``(..., length)``.
    """
    rows = np.asarray(rows, dtype=np.float64)
    w = gaussian_kernel1d(sigma, truncate)
    r = len(w) // 2
    n = rows.shape[-1]
    if n == 0:
        return rows.copy()
    # Reflect-pad by r on each side; np.pad's "symmetric" mode is SciPy's "reflect".
    # Rows shorter than r need repeated reflection, which np.pad also does.
    padded = np.pad(rows, [(0, 0)] * (rows.ndim - 1) + [(r, r)], mode="symmetric")
    out = w[r] * padded[..., r:r + n]
    for k in range(r, 0, -1):
        out += (padded[..., r - k:r - k + n] + padded[..., r + k:r + k + n]) * w[r + k]
    return out
