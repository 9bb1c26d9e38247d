"""refplay's Transformer (``models.vit1d``) against the same network built from ``torch.nn`` pieces.

The torch network is composed in the test from ``torch.nn.Linear``,
``torch.nn.MultiheadAttention`` (``batch_first=True``, the causal mask as
``attn_mask``), ``torch.nn.LayerNorm`` and ``torch.nn.GELU(approximate="tanh")``
/ ``torch.nn.ReLU``, in float64, with refplay's parameters copied in. Every
parameter is first perturbed away from its initial value (biases non-zero,
norm scales not one), so that each one changes the loss. The loss, the logits
and every parameter gradient agree to <= 1e-10 relative, for Post-LN and
Pre-LN, CLS and mean pooling, causal and not.
"""

import numpy as np
import pytest

from refplay.nn import models
from tests.helpers import optional_import

TOL = 1e-10
N, LENGTH, PATCH, WIDTH, HEADS, DEPTH = 5, 12, 3, 8, 2, 2


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _refplay(placement, pool, causal, activation, seed=0):
    model = models.vit1d(LENGTH, 4, patch_size=PATCH, width=WIDTH, depth=DEPTH, num_heads=HEADS,
                         mlp_ratio=2, activation=activation, norm_placement=placement, pool=pool,
                         causal=causal)
    rng = np.random.default_rng(seed)
    params, state = model.init_params(rng, np.float64)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
    return model, params, state


class _Batch:
    def __init__(self, x, y):
        self.x, self.y, self.weights = x, y, None


def _linear(torch, params, name, transpose=True):
    w = params[f"{name}/w"]
    lin = torch.nn.Linear(w.shape[0], w.shape[1], dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w.T))
        lin.bias.copy_(torch.tensor(params[f"{name}/b"]))
    return lin, {f"{name}/w": (lin.weight, True), f"{name}/b": (lin.bias, False)}


def _layernorm(torch, params, name):
    ln = torch.nn.LayerNorm(WIDTH, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(params[f"{name}/scale"]))
        ln.bias.copy_(torch.tensor(params[f"{name}/bias"]))
    return ln, {f"{name}/scale": (ln.weight, False), f"{name}/bias": (ln.bias, False)}


def _attention(torch, params, name):
    mha = torch.nn.MultiheadAttention(WIDTH, HEADS, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(params[f"{name}/qkv/w"].T))
        mha.in_proj_bias.copy_(torch.tensor(params[f"{name}/qkv/b"]))
        mha.out_proj.weight.copy_(torch.tensor(params[f"{name}/out/w"].T))
        mha.out_proj.bias.copy_(torch.tensor(params[f"{name}/out/b"]))
    return mha, {f"{name}/qkv/w": (mha.in_proj_weight, True),
                 f"{name}/qkv/b": (mha.in_proj_bias, False),
                 f"{name}/out/w": (mha.out_proj.weight, True),
                 f"{name}/out/b": (mha.out_proj.bias, False)}


def _torch_blocks(torch, params):
    """Each block's modules, and refplay name -> (torch parameter, transposed?)."""
    blocks, where = [], {}
    for i in range(1, DEPTH + 1):
        parts = {}
        for key, (module, names) in {
            "attn": _attention(torch, params, f"block_{i}/attn"),
            "ln_1": _layernorm(torch, params, f"block_{i}/ln_1"),
            "ln_2": _layernorm(torch, params, f"block_{i}/ln_2"),
            "mlp_1": _linear(torch, params, f"block_{i}/mlp_1"),
            "mlp_2": _linear(torch, params, f"block_{i}/mlp_2"),
        }.items():
            parts[key] = module
            where.update(names)
        blocks.append(parts)
    return blocks, where


def _torch_loss(torch, params, x, y, placement, pool, causal, activation):
    """The network of ``models.vit1d`` composed from torch.nn; returns (loss, logits, grads)."""
    blocks, where = _torch_blocks(torch, params)
    embed, names = _linear(torch, params, "embed")
    where.update(names)
    head, names = _linear(torch, params, "head")
    where.update(names)
    pos = torch.tensor(params["embed/pos"], requires_grad=True)
    where["embed/pos"] = (pos, False)
    act = torch.nn.GELU(approximate="tanh") if activation == "gelu" else torch.nn.ReLU()
    n_tokens = LENGTH // PATCH
    z = embed(torch.tensor(x).view(N, n_tokens, PATCH))
    if pool == "cls":
        cls = torch.tensor(params["embed/cls"], requires_grad=True)
        where["embed/cls"] = (cls, False)
        z = torch.cat([cls.expand(N, 1, WIDTH), z], dim=1)
    z = z + pos
    t = z.shape[1]
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1) if causal else None
    for b in blocks:
        def attend(h):
            return b["attn"](h, h, h, attn_mask=mask, need_weights=False)[0]

        def mlp(h):
            return b["mlp_2"](act(b["mlp_1"](h)))

        if placement == "pre":
            z = z + attend(b["ln_1"](z))
            z = z + mlp(b["ln_2"](z))
        else:
            z = b["ln_1"](z + attend(z))
            z = b["ln_2"](z + mlp(z))
    if placement == "pre":
        final, names = _layernorm(torch, params, "final_norm")
        where.update(names)
        z = final(z)
    logits = head(z[:, 0] if pool == "cls" else z.mean(dim=1))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    grads = {k: (p.grad.numpy().T if transposed else p.grad.numpy())
             for k, (p, transposed) in where.items()}
    return float(loss.detach()), logits.detach().numpy(), grads


CASES = [("post", "cls", False, "gelu"), ("pre", "cls", False, "gelu"),
         ("post", "mean", True, "gelu"), ("pre", "mean", True, "gelu"),
         ("post", "mean", False, "relu"), ("pre", "mean", True, "relu")]


@pytest.mark.parametrize("placement,pool,causal,activation", CASES)
def test_vit1d_loss_and_every_gradient_match_torch(placement, pool, causal, activation):
    torch = optional_import("torch")
    model, params, state = _refplay(placement, pool, causal, activation)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, LENGTH))
    y = rng.integers(0, 4, N)
    loss, grads, _, aux = model.loss_and_grads(params, state, _Batch(x, y))
    t_loss, t_logits, t_grads = _torch_loss(torch, params, x, y, placement, pool, causal,
                                            activation)
    assert sorted(t_grads) == sorted(grads)                  # every parameter is compared
    assert abs(loss - t_loss) <= TOL * abs(t_loss)
    assert _rel(aux["outputs"], t_logits) <= TOL
    errors = {k: _rel(grads[k], t_grads[k]) for k in grads}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOL, (worst, errors[worst])
    assert all(np.max(np.abs(g)) > 0 for g in grads.values())   # each gradient is non-trivial


def test_causal_mask_changes_the_gradients():
    """Causal differs from non-causal: the torch comparison would catch a dropped mask."""
    model_c, params, state = _refplay("pre", "mean", True, "gelu")
    model_f = models.vit1d(LENGTH, 4, patch_size=PATCH, width=WIDTH, depth=DEPTH, num_heads=HEADS,
                           mlp_ratio=2, norm_placement="pre", pool="mean", causal=False)
    rng = np.random.default_rng(1)
    batch = _Batch(rng.standard_normal((N, LENGTH)), rng.integers(0, 4, N))
    loss_c, grads_c, _, _ = model_c.loss_and_grads(params, state, batch)
    loss_f, grads_f, _, _ = model_f.loss_and_grads(params, state, batch)
    assert abs(loss_c - loss_f) > 1e-6
    assert _rel(grads_c["block_1/attn/qkv/w"], grads_f["block_1/attn/qkv/w"]) > 1e-3
