"""Numba kernels used by :mod:`refplay.nn.layers` (``@njit(cache=True)``).

Each kernel has a plain-numpy twin of the same name in
:mod:`refplay.nn.reference`; tests assert they agree. Kernels compile lazily
on first call (nothing compiles at import) and are cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --------------------------------------------------------------------------
# Convolution, pooling (layers.py)
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Normalization statistics and fused losses (norms.py, losses.py)
# --------------------------------------------------------------------------
