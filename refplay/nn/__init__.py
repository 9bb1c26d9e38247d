"""refplay.nn: small networks with hand-written forward and backward passes.

* :mod:`refplay.nn.layers` -- Dense, Conv1D/Conv2D, pooling, activations, Dropout
* :mod:`refplay.nn.norms` -- BatchNorm (ghost batches, simulated devices, EMAs), LayerNorm
* :mod:`refplay.nn.residual` -- Sequential and Residual (norm placement, ReZero)
* :mod:`refplay.nn.attention` -- multi-head self-attention (optional causal mask)
* :mod:`refplay.nn.transformer` -- token LayerNorm, patch embedding, Post-LN / Pre-LN blocks
* :mod:`refplay.nn.losses` -- softmax cross-entropy, mean squared error, L2 penalty
* :mod:`refplay.nn.init` -- He/LeCun/Glorot initializers from an explicit Generator
* :mod:`refplay.nn.models` -- :class:`Model` and the constructors (``mlp``, ``cnn1d``, ...)
* :mod:`refplay.nn.kernels` / :mod:`refplay.nn.reference` -- Numba kernels and their numpy twins

Importing this package compiles nothing: kernels compile on first use and are
cached on disk (``@njit(cache=True)``).
"""

from refplay.nn import attention, init, layers, losses, models, norms, residual, transformer
from refplay.nn.models import Model

__all__ = ["Model", "attention", "init", "layers", "losses", "models", "norms", "residual",
           "transformer"]
