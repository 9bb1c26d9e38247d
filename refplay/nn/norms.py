r"""Batch normalization (with ghost batches and simulated devices) and layer normalization.

Playbook, "Batch normalization implementation details":

    *Nowadays batch norm can often be replaced with LayerNorm, but in cases
    where it cannot, there are tricky details when changing the batch size or
    number of hosts.*

This module makes those details explicit parameters so that their effect can
be measured rather than guessed.

Layout: ``x`` is ``(N, C)``, ``(N, C, W)`` or ``(N, C, H, W)``; the channel
axis is 1 (as in ``torch.nn.BatchNorm1d/2d``). Batch statistics are taken over
the examples of a group and all spatial positions. Scale :math:`\gamma` and
offset :math:`\beta` have shape ``(C,)``; parameter names
``{name}/scale``, ``{name}/bias``; state names ``{name}/mean``, ``{name}/var``.

Groups: ghost batches and devices
---------------------------------
In training mode the batch of ``N`` examples is cut into *groups* of
consecutive examples, and each group is normalized with its own mean and
variance:

1. ``num_devices = D`` simulates data parallelism: the batch is split into
   ``D`` equal shards of ``N/D`` consecutive examples (``N % D != 0`` is an
   error). With ``sync_stats=False`` (the playbook's pitfall: "these statistics
   are different on each device unless explicitly synchronized") each shard is
   normalized on its own. With ``sync_stats=True`` statistics are synchronized
   across devices (``SyncBatchNorm``), which makes the device split invisible:
   the whole batch is treated as one shard.
2. ``virtual_batch_size = V`` (ghost batch norm, Hoffer et al. 2017; the
   playbook: "calculating these normalizing statistics using only ~64 examples
   actually works better in practice") cuts every shard into groups of ``V``
   consecutive examples. A shard of at most ``V`` examples is one group (this
   is then plain batch norm). **When the shard size is not a multiple of
   ``V``**, ``remainder`` decides:

   * ``"error"`` (default, as init2winit's ``VirtualBatchNorm``): raise
     ``ValueError`` naming ``virtual_batch_size``. Nothing silent happens.
   * ``"smaller_last"``: groups of ``V`` then one final group with the
     ``n mod V`` leftover examples, normalized with its own (noisier)
     statistics -- what ``torch.split(x, V)`` gives.

A group must hold at least 2 values per channel (group size times spatial
size), as in torch; otherwise its variance is 0 by construction and
``ValueError`` is raised.

Moving averages (evaluation statistics)
---------------------------------------
Evaluation mode normalizes with exponential moving averages (EMAs)
:math:`\hat\mu, \hat\sigma^2` kept in ``state``. After every training step

.. math::  \hat\mu \leftarrow d\,\hat\mu + (1-d)\,\mu_B, \qquad
           \hat\sigma^2 \leftarrow d\,\hat\sigma^2 + (1-d)\,\tfrac{n}{n-1}\sigma^2_B,

with decay :math:`d` = ``ema_decay`` (``torch`` calls :math:`1-d` its
``momentum``; flax and init2winit call :math:`d` ``momentum``). :math:`\mu_B`
and :math:`\sigma^2_B` are the mean and (biased) variance of a device's whole
shard, :math:`n` its number of values -- not of each ghost batch, so the
evaluation statistics do not depend on ``virtual_batch_size`` (as in
init2winit). With one device and no ghost batches this is exactly
``torch.nn.functional.batch_norm(training=True, momentum=1-d)``.

With several devices, ``sync_ema=True`` uses the average of the devices'
:math:`(\mu_B, \tfrac{n}{n-1}\sigma^2_B)`. Because an EMA is linear in its
inputs this equals averaging per-device EMAs before saving them -- the
playbook's advice: "these EMAs only need to be synchronized before saving them
in checkpoints". ``sync_ema=False`` reproduces the pitfall "some common
implementations of batch norm do not synchronize these EMAs and only save the
EMA from the first device": only device 0's statistics enter the EMA.

Padding
-------
``apply(..., mask=m)`` takes a per-example mask (``m_i = 0`` for padding, e.g.
``batch.weights > 0``). Masked examples are still normalized but do not enter
any statistic, so padding changes neither the outputs of real examples, nor
the EMA, nor (through zero loss weight) the gradients. A group or shard with
no real example leaves the EMA untouched.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from refplay import _validate
from refplay.tree import Tree
from refplay.nn import kernels, reference
from refplay.nn.layers import Layer


__all__ = [
    "BatchNorm", "LayerNorm", "batchnorm_groups", "batchnorm_forward", "batchnorm_backward",
    "batchnorm_eval_forward", "batchnorm_eval_backward", "layernorm_forward", "layernorm_backward",
    "layernorm_rows_forward", "layernorm_rows_backward", "LayerNormCache", "REMAINDER_POLICIES",
]

REMAINDER_POLICIES = ("error", "smaller_last")

_IMPLS = {"numba": kernels, "numpy": reference}


# ----------------------------------------------------------------------------
# Groups
# ----------------------------------------------------------------------------

def batchnorm_groups(batch_size: int, *, virtual_batch_size: int | None = None,
                     num_devices: int = 1, sync_stats: bool = False, remainder: str = "error",
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Where the normalization groups and the device shards of a batch start and end.

    Returns ``bounds`` (G+1,) -- group ``g`` is examples ``bounds[g]:bounds[g+1]``
    -- and ``shards`` (S+1,) -- shard ``s`` is groups ``shards[s]:shards[s+1]``.
    See the module docstring for the rules.
    """
    batch_size = _validate.integer("batch size", batch_size, low=1)
    num_devices = _validate.integer("num_devices", num_devices, low=1)
    _validate.one_of("remainder", remainder, REMAINDER_POLICIES)
    if virtual_batch_size is not None:
        virtual_batch_size = _positive("virtual_batch_size", virtual_batch_size)
    if batch_size % num_devices:
        raise ValueError(f"num_devices={num_devices} must divide the batch size {batch_size} "
                         "(each simulated device gets an equal shard)")
    shard_size = batch_size if sync_stats else batch_size // num_devices
    n_shards = batch_size // shard_size
    v = shard_size if virtual_batch_size is None else min(virtual_batch_size, shard_size)
    if shard_size % v and remainder == "error":
        where = "batch size" if n_shards == 1 else "per-device batch size"
        raise ValueError(
            f"virtual_batch_size={virtual_batch_size} does not divide the {where} {shard_size}; "
            f"choose a divisor of {shard_size}, or remainder='smaller_last' to normalize the "
            f"last {shard_size % v} examples as a smaller group")
    starts = list(range(0, shard_size, v))                # within one shard
    bounds = [s * shard_size + b for s in range(n_shards) for b in starts] + [batch_size]
    groups_per_shard = len(starts)
    shards = np.arange(n_shards + 1, dtype=np.int64) * groups_per_shard
    return np.asarray(bounds, dtype=np.int64), shards


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer (or None), got {value!r}")
    return int(value)


def _as3(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N, C, S) without copying when ``x`` is contiguous."""
    return np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)


def _mask(mask, n: int) -> np.ndarray:
    if mask is None:
        return np.ones(n)
    m = np.asarray(mask)
    if m.shape != (n,):
        raise ValueError(f"mask must have shape ({n},) (one entry per example), got {m.shape}")
    return (m != 0).astype(np.float64)


# ----------------------------------------------------------------------------
# Batch norm: the equations
# ----------------------------------------------------------------------------

def batchnorm_forward(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, bounds: np.ndarray,
                      mask: np.ndarray | None = None, eps: float = 1e-5,
                      ) -> tuple[np.ndarray, tuple]:
    r"""Training-mode batch norm with per-group statistics.

    For every group :math:`G` (examples ``bounds[g]:bounds[g+1]``) and channel
    :math:`c`, with :math:`m_i` the mask and :math:`n = \sum_{i\in G} m_i \cdot S`:

    .. math::  \mu = \tfrac1n \sum_{i\in G,s} m_i x_{ics}, \quad
               \sigma^2 = \tfrac1n \sum_{i\in G,s} m_i (x_{ics} - \mu)^2, \quad
               \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad
               y = \gamma \hat x + \beta.

    Shapes: ``x`` (N, C, ...), ``scale``/``bias`` (C,). Returns ``(y, cache)``;
    ``cache[-1]`` holds the group ``(count, mean, m2)`` used for the EMAs.
    """
    x3 = _as3(x)
    m = _mask(mask, x.shape[0])
    count, mean, m2 = kernels.bn_group_stats(x3, m, bounds)
    safe = np.maximum(count, 1.0)[:, None]
    var = np.where(count[:, None] > 0, m2 / safe, 1.0)     # empty group: any finite value
    rstd = 1.0 / np.sqrt(var + eps)                          # (G, C) float64
    xhat3, y3 = kernels.bn_normalize(x3, bounds, mean, rstd, scale, bias)
    cache = (xhat3, scale, rstd, m, count, bounds, x.shape, (count, mean, m2))
    return y3.reshape(x.shape), cache


def batchnorm_backward(dy: np.ndarray, cache: tuple, need_dx: bool = True,
                       ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    r"""Backward of :func:`batchnorm_forward`.

    Per group and channel, with :math:`g_i = \gamma\, dy_i` and the sums over
    *all* examples of the group (a padded output depends on the statistics too):

    .. math::  dx_i = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\Big(dy_i
                      - \frac{m_i}{n}\sum_j dy_j - \frac{m_i}{n}\hat x_i \sum_j dy_j \hat x_j\Big),
               \quad d\gamma = \sum_i dy_i \hat x_i, \quad d\beta = \sum_i dy_i.

    Returns ``dx`` (shape of x; None unless ``need_dx``), ``dscale`` and ``dbias`` (C,).
    """
    xhat3, scale, rstd, m, count, bounds, shape, _ = cache
    dy3 = _as3(dy.reshape(shape))
    sum_dy, sum_dyx = kernels.bn_group_backward_sums(dy3, xhat3, bounds)   # (G, C) float64
    dscale = sum_dyx.sum(axis=0).astype(scale.dtype)
    dbias = sum_dy.sum(axis=0).astype(scale.dtype)
    if not need_dx:
        return None, dscale, dbias
    inv_n = np.where(count > 0, 1.0 / np.maximum(count, 1.0), 0.0)[:, None]   # 1/n, 0 if empty
    k = scale.astype(np.float64)[None, :] * rstd                               # gamma / sigma
    dx3 = kernels.bn_backward_dx(dy3, xhat3, bounds, m, k, sum_dy * inv_n, sum_dyx * inv_n)
    return dx3.reshape(shape), dscale, dbias


def batchnorm_eval_forward(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray,
                           var: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, tuple]:
    r"""Evaluation-mode batch norm with the EMAs :math:`\hat\mu, \hat\sigma^2`:

    .. math::  y = \gamma \frac{x - \hat\mu}{\sqrt{\hat\sigma^2+\epsilon}} + \beta.
    """
    x3 = _as3(x)
    rstd = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    bounds = np.array([0, x.shape[0]], dtype=np.int64)       # one group: the whole batch
    xhat3, y3 = kernels.bn_normalize(x3, bounds, mean.astype(np.float64)[None, :], rstd[None, :],
                                     scale, bias)
    return y3.reshape(x.shape), (xhat3, scale, rstd, x.shape)


def batchnorm_eval_backward(dy: np.ndarray, cache: tuple, need_dx: bool = True,
                            ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    r"""Backward of :func:`batchnorm_eval_forward` (the EMAs are constants):

    .. math::  dx = dy\,\gamma/\sqrt{\hat\sigma^2+\epsilon}, \quad
               d\gamma = \sum dy\,\hat x, \quad d\beta = \sum dy.
    """
    xhat3, scale, rstd, shape = cache
    dy3 = _as3(dy.reshape(shape))
    dscale = (dy3 * xhat3).sum(axis=(0, 2)).astype(scale.dtype)
    dbias = dy3.sum(axis=(0, 2)).astype(scale.dtype)
    k = (scale.astype(np.float64) * rstd).astype(dy3.dtype)
    dx = (dy3 * k[None, :, None]).reshape(shape) if need_dx else None
    return dx, dscale, dbias


def _shard_stats(group_stats: tuple, shards: np.ndarray) -> list[tuple]:
    """Combine group statistics into per-shard ``(n, mean, unbiased var)`` (Chan et al. 1979).

    :math:`\\mu = \\sum_g n_g\\mu_g / n`, :math:`M_2 = \\sum_g M_{2,g} + n_g(\\mu_g - \\mu)^2`,
    unbiased variance :math:`M_2/(n-1)`. Shards without real examples are left out.
    """
    count, mean, m2 = group_stats
    out = []
    for s in range(len(shards) - 1):
        g = slice(shards[s], shards[s + 1])
        n = count[g].sum()
        if n == 0:
            out.append((0.0, None, None))
            continue
        mu = (count[g][:, None] * mean[g]).sum(axis=0) / n
        M2 = (m2[g] + count[g][:, None] * (mean[g] - mu) ** 2).sum(axis=0)
        out.append((float(n), mu, M2 / (n - 1) if n > 1 else M2 / n))
    return out


# ----------------------------------------------------------------------------
# Batch norm: the layer
# ----------------------------------------------------------------------------

class BatchNorm(Layer):
    r"""Batch normalization layer with ghost batches, simulated devices and EMA statistics.

    Parameters ``{name}/scale`` (ones) and ``{name}/bias`` (zeros), shape (C,);
    state ``{name}/mean`` (zeros) and ``{name}/var`` (ones). See the module
    docstring for ``virtual_batch_size``, ``remainder``, ``num_devices``,
    ``sync_stats``, ``sync_ema`` and the EMA update.

    BatchNorm has state, so it implements the *stateful layer* protocol
    (see :mod:`refplay.nn.residual`)::

        state = bn.init_state(dtype)
        y, cache, new_state = bn.apply(params, state, x, train=True, rng=None, mask=None)
        dx, grads = bn.backward(params, dy, cache)
    """

    def __init__(self, num_features: int, *, name: str = "bn", eps: float = 1e-5,
                 ema_decay: float = 0.9, virtual_batch_size: int | None = None,
                 remainder: str = "error", num_devices: int = 1, sync_stats: bool = False,
                 sync_ema: bool = True):
        self.num_features = _positive("num_features", num_features)
        self.name = name
        self.eps = _validate.real("eps", eps, low=0.0, low_open=True)
        self.ema_decay = _validate.real("ema_decay", ema_decay, low=0.0, high=1.0)
        self.virtual_batch_size = (None if virtual_batch_size is None
                                   else _positive("virtual_batch_size", virtual_batch_size))
        self.remainder = _validate.one_of("remainder", remainder, REMAINDER_POLICIES)
        self.num_devices = _validate.integer("num_devices", num_devices, low=1)
        self.sync_stats = bool(sync_stats)
        self.sync_ema = bool(sync_ema)

    def init(self, rng: np.random.Generator | None = None, dtype=np.float32) -> Tree:
        dt = _float_dtype(dtype)
        return {f"{self.name}/scale": np.ones(self.num_features, dt),
                f"{self.name}/bias": np.zeros(self.num_features, dt)}

    def init_state(self, dtype=np.float32) -> Tree:
        dt = _float_dtype(dtype)
        return {f"{self.name}/mean": np.zeros(self.num_features, dt),
                f"{self.name}/var": np.ones(self.num_features, dt)}

    def _check(self, x, dtype) -> np.ndarray:
        x = np.asarray(x, dtype=dtype)
        if x.ndim < 2:
            raise ValueError(f"BatchNorm {self.name!r}: x must have shape (N, C, ...), "
                             f"got {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm {self.name!r}: x has {x.shape[1]} channels on axis 1 but "
                             f"num_features is {self.num_features}; input shape {x.shape}")
        return x

    def groups(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(bounds, shards)`` of :func:`batchnorm_groups` for this layer's settings."""
        return batchnorm_groups(batch_size, virtual_batch_size=self.virtual_batch_size,
                                num_devices=self.num_devices, sync_stats=self.sync_stats,
                                remainder=self.remainder)

    def apply(self, params: Tree, state: Tree, x: np.ndarray, *, train: bool = False,
              rng: np.random.Generator | None = None, mask: np.ndarray | None = None,
              ) -> tuple[np.ndarray, tuple, Tree]:
        scale, bias = params[f"{self.name}/scale"], params[f"{self.name}/bias"]
        mean_key, var_key = f"{self.name}/mean", f"{self.name}/var"
        x = self._check(x, scale.dtype)
        if not train:
            y, cache = batchnorm_eval_forward(x, scale, bias, state[mean_key], state[var_key],
                                              self.eps)
            return y, ("eval", cache), {mean_key: state[mean_key], var_key: state[var_key]}
        bounds, shards = self.groups(x.shape[0])
        spatial = int(np.prod(x.shape[2:]))
        smallest = int(np.diff(bounds).min()) * spatial
        if smallest < 2:
            what = "virtual_batch_size" if self.virtual_batch_size is not None else "batch size"
            raise ValueError(f"BatchNorm {self.name!r}: a normalization group has {smallest} value "
                             f"per channel (input shape {x.shape}); increase the {what} or "
                             "num_devices so that every group has at least 2")
        y, cache = batchnorm_forward(x, scale, bias, bounds, mask, self.eps)
        new_state = self._ema(state[mean_key], state[var_key], _shard_stats(cache[-1], shards))
        return y, ("train", cache), {mean_key: new_state[0], var_key: new_state[1]}

    def _ema(self, mean: np.ndarray, var: np.ndarray, shard_stats) -> tuple[np.ndarray, np.ndarray]:
        """The EMA update of the module docstring (device 0 only when ``sync_ema=False``)."""
        used = [s for s in (shard_stats if self.sync_ema else shard_stats[:1]) if s[0] > 0]
        if not used:
            return mean, var
        mu_b = np.mean([s[1] for s in used], axis=0)
        var_b = np.mean([s[2] for s in used], axis=0)
        d = self.ema_decay
        new_mean = d * mean.astype(np.float64) + (1.0 - d) * mu_b
        new_var = d * var.astype(np.float64) + (1.0 - d) * var_b
        return new_mean.astype(mean.dtype), new_var.astype(var.dtype)

    def forward(self, params, x, train=False, rng=None):
        raise TypeError(f"BatchNorm {self.name!r} has state (moving averages): call "
                        "apply(params, state, x, train=..., rng=..., mask=...) instead of forward")

    def backward(self, params: Tree, dout: np.ndarray, cache,
                 need_dx: bool = True) -> tuple[np.ndarray | None, Tree]:
        mode, c = cache
        if mode == "train":
            dx, dscale, dbias = batchnorm_backward(dout, c, need_dx)
        else:
            dx, dscale, dbias = batchnorm_eval_backward(dout, c, need_dx)
        return dx, {f"{self.name}/scale": dscale, f"{self.name}/bias": dbias}


# ----------------------------------------------------------------------------
# Layer norm
# ----------------------------------------------------------------------------

class LayerNormCache(NamedTuple):
    """What :func:`layernorm_backward` needs from the forward pass."""

    xhat3: np.ndarray           # (R, C, S) normalized rows
    rstd: np.ndarray            # (R,) 1 / sqrt(var + eps)
    scale: np.ndarray           # (C,)
    shape: tuple                # the input's shape
    impl: str


def layernorm_rows_forward(x3: np.ndarray, scale: np.ndarray, bias: np.ndarray,
                           eps: float = 1e-5, impl: str = "numba",
                           shape: tuple | None = None) -> tuple[np.ndarray, LayerNormCache]:
    r"""Layer norm of every row ``x3[r]`` (C, S) over its C*S values, scale and offset per channel.

    One Numba pass per row (:func:`refplay.nn.kernels.layernorm_rows`), or
    its numpy twin with ``impl="numpy"``; the two are bitwise equal. Both
    layer norms run on it: :func:`layernorm_forward` (one row per example)
    and :func:`refplay.nn.transformer.token_layernorm_forward` (one row per
    token, S = 1). The output has ``shape`` (default: that of ``x3``).
    """
    k = _IMPLS[_validate.one_of("impl", impl, tuple(_IMPLS))]
    eps = np.asarray(eps, dtype=x3.dtype)[()]        # as numpy rounds a Python float
    y, xhat3, rstd = k.layernorm_rows(x3, scale, bias, eps)
    shape = x3.shape if shape is None else shape
    return y.reshape(shape), LayerNormCache(xhat3=xhat3, rstd=rstd, scale=scale, shape=shape,
                                            impl=impl)


def layernorm_rows_backward(dy: np.ndarray, cache: LayerNormCache, need_dx: bool = True,
                            ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Backward of :func:`layernorm_rows_forward`: ``(dx, dscale, dbias)``."""
    c = cache
    dy3 = np.ascontiguousarray(dy).reshape(c.xhat3.shape)
    dx, dscale, dbias = _IMPLS[c.impl].layernorm_rows_backward(dy3, c.xhat3, c.rstd, c.scale)
    dx = dx.reshape(c.shape) if need_dx else None
    return dx, dscale.astype(c.scale.dtype, copy=False), dbias.astype(c.scale.dtype, copy=False)


def layernorm_forward(x: np.ndarray, scale: np.ndarray, bias: np.ndarray,
                      eps: float = 1e-5, impl: str = "numba") -> tuple[np.ndarray, tuple]:
    r"""Layer norm over all non-batch axes, one scale and offset per channel.

    For each example :math:`i`, over its :math:`n = C \cdot S` values:

    .. math::  \mu_i = \tfrac1n \sum_{c,s} x_{ics}, \quad
               \sigma_i^2 = \tfrac1n \sum_{c,s} (x_{ics} - \mu_i)^2, \quad
               y_{ics} = \gamma_c \frac{x_{ics} - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}} + \beta_c.

    For ``x`` (N, C) this is ``torch.nn.functional.layer_norm(x, (C,), γ, β)``;
    for (N, C, ...) it is ``torch.nn.functional.group_norm(x, 1, γ, β)``.
    No batch statistics: every example is normalized on its own, the same in
    training and evaluation, whatever the batch size. Each example is one
    row of :func:`layernorm_rows_forward`.
    """
    return layernorm_rows_forward(_as3(x), scale, bias, eps, impl, x.shape)


def layernorm_backward(dy: np.ndarray, cache: tuple, need_dx: bool = True,
                       ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    r"""Backward of :func:`layernorm_forward`.

    With :math:`g = \gamma\, dy` and :math:`\overline{\cdot}` the mean over one example:

    .. math::  dx = \frac{1}{\sqrt{\sigma^2+\epsilon}}
                    \big(g - \overline{g} - \hat x\, \overline{g \hat x}\big),
               \quad d\gamma_c = \sum_{i,s} dy\,\hat x, \quad d\beta_c = \sum_{i,s} dy.
    """
    return layernorm_rows_backward(dy, cache, need_dx)


class LayerNorm(Layer):
    """Layer normalization (Ba et al. 2016) as a stateless layer; see :func:`layernorm_forward`.

    Parameters ``{name}/scale`` (ones) and ``{name}/bias`` (zeros), shape (C,).
    ``impl="numpy"`` runs the plain-numpy twin of the row kernels.
    """

    def __init__(self, num_features: int, *, name: str = "ln", eps: float = 1e-5,
                 impl: str = "numba"):
        self.num_features = _positive("num_features", num_features)
        self.name = name
        self.eps = _validate.real("eps", eps, low=0.0, low_open=True)
        self.impl = _validate.one_of("impl", impl, tuple(_IMPLS))

    def init(self, rng: np.random.Generator | None = None, dtype=np.float32) -> Tree:
        dt = _float_dtype(dtype)
        return {f"{self.name}/scale": np.ones(self.num_features, dt),
                f"{self.name}/bias": np.zeros(self.num_features, dt)}

    def forward(self, params, x, train=False, rng=None):
        scale, bias = params[f"{self.name}/scale"], params[f"{self.name}/bias"]
        x = np.asarray(x, dtype=scale.dtype)
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"LayerNorm {self.name!r}: x must have shape "
                             f"(N, {self.num_features}, ...) (num_features={self.num_features} "
                             f"on axis 1), got {x.shape}")
        return layernorm_forward(x, scale, bias, self.eps, self.impl)

    def backward(self, params, dout, cache, need_dx=True):
        dx, dscale, dbias = layernorm_backward(dout, cache, need_dx)
        return dx, {f"{self.name}/scale": dscale, f"{self.name}/bias": dbias}


def _float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt
