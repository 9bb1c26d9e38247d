"""The numpy interpolation and Gaussian filter behind MNIST-1D, against numpy.interp and SciPy."""

from __future__ import annotations

import numpy as np
import pytest

from refplay.data.signal import gaussian_filter_rows, gaussian_kernel1d, interpolate_rows
from tests.helpers import optional_import


@pytest.mark.parametrize("n_in, n_out",
                         [(72, 40), (48, 72), (12, 72), (2, 5), (40, 40), (7, 3), (5, 1)])
def test_interpolate_rows_matches_numpy_interp(rng, n_in, n_out):
    rows = rng.standard_normal((25, n_in))
    p, s = np.linspace(0, 1, n_in), np.linspace(0, 1, n_out)
    expected = np.stack([np.interp(s, p, r) for r in rows])
    np.testing.assert_allclose(interpolate_rows(rows, n_out), expected, rtol=0, atol=1e-14)


def test_interpolate_rows_is_exact_on_linear_signals_and_keeps_leading_axes(rng):
    slope, offset = rng.standard_normal((2, 3, 4, 1))
    rows = slope * np.linspace(0, 1, 9) + offset          # (3, 4, 9), a line per row
    out = interpolate_rows(rows, 17)
    assert out.shape == (3, 4, 17)
    np.testing.assert_allclose(out, slope * np.linspace(0, 1, 17) + offset, atol=1e-14)


def test_interpolate_rows_rejects_single_points():
    with pytest.raises(ValueError, match="at least 2"):
        interpolate_rows(np.ones((3, 1)), 4)


def test_gaussian_kernel_radius_and_normalization():
    w = gaussian_kernel1d(2.0)
    assert len(w) == 17                        # radius int(4.0 * 2 + 0.5) = 8
    assert abs(w.sum() - 1.0) < 1e-15
    np.testing.assert_array_equal(w, w[::-1])
    k = np.arange(-8, 9)
    np.testing.assert_allclose(w / w[8], np.exp(-k ** 2 / 8.0), rtol=1e-15)
    assert len(gaussian_kernel1d(1.3, truncate=2.0)) == 2 * int(2.6 + 0.5) + 1


def test_gaussian_filter_keeps_constants_and_spreads_a_delta_into_the_kernel():
    np.testing.assert_allclose(gaussian_filter_rows(np.full((2, 30), 3.5), 2), 3.5, rtol=1e-15)
    delta = np.zeros(41)
    delta[20] = 1.0
    np.testing.assert_allclose(gaussian_filter_rows(delta, 2)[12:29], gaussian_kernel1d(2),
                               atol=1e-17)


@pytest.mark.parametrize("length", [72, 20, 9, 3, 1])
@pytest.mark.parametrize("sigma", [2, 0.7])
def test_gaussian_filter_matches_scipy_reflect_mode(rng, length, sigma):
    ndimage = optional_import("scipy.ndimage")
    rows = rng.standard_normal((20, length))
    expected = np.stack([ndimage.gaussian_filter(r, sigma, mode="reflect", truncate=4.0)
                         for r in rows])
    np.testing.assert_allclose(gaussian_filter_rows(rows, sigma), expected, rtol=0, atol=1e-14)
