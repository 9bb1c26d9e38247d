"""Plain-numpy twins of every kernel in :mod:`refplay.nn.kernels`.

Obviously-correct, loop-light numpy; the same names and signatures as the
kernels. Tests assert kernel == twin (≤ 1e-12 relative in float64).
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------
# Convolution, pooling (layers.py)
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Normalization statistics and fused losses (norms.py, losses.py)
# --------------------------------------------------------------------------
