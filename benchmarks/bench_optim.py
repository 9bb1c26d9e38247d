"""Update time per step of the six playbook rules (pytest-benchmark).

One thread, float32 parameters in a single leaf of 10^4, 10^5 and 10^6
scalars; the time is one ``opt.update(params, grads, state, lr)`` call,
which returns new arrays (refplay's updates are pure)::

    python -m pytest benchmarks/bench_optim.py --benchmark-columns=median,iqr

``test_many_small_leaves`` times one step of a tree shaped like the 6-block
Transformer's (78 leaves, 52k scalars) leaf by leaf (``opt.update`` on the
tree) and packed, as ``run_trial`` does after its first step (the gradient
copied into one buffer, one ``opt.update`` of the buffers, the result copied
back; :class:`refplay.tree.FlatLayout`)::

    python -m pytest benchmarks/bench_optim.py -k many --benchmark-columns=median,iqr

For the side-by-side ratio against ``torch.optim`` see
``benchmarks/compare_optim_torch.py``.
"""

from __future__ import annotations

from refplay.threads import set_thread_env

set_thread_env(1)   # before numpy is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from refplay import optim  # noqa: E402
from refplay import tree as tree_lib  # noqa: E402
from refplay.threads import pin_threads  # noqa: E402

SIZES = [10**4, 10**5, 10**6]
HPARAMS = {"sgd": {}, "momentum": {"gamma": 0.9}, "nesterov": {"gamma": 0.9},
           "rmsprop": {"gamma": 0.9}, "adam": {}, "nadam": {}}


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n=1e{len(str(n)) - 1}")
@pytest.mark.parametrize("name", list(HPARAMS))
def test_update(benchmark, name, n):
    pin_threads(1)
    rng = np.random.default_rng(np.random.SeedSequence([2, n]))
    params = {"w": rng.standard_normal(n, dtype=np.float32)}
    grads = {"w": rng.standard_normal(n, dtype=np.float32)}
    opt = optim.get(name, **HPARAMS[name])
    state = opt.init(params)
    params, state = opt.update(params, grads, state, 1e-3)   # leave step 0 (Adam's b_1)

    new_params, _ = benchmark.pedantic(opt.update, args=(params, grads, state, 1e-3),
                                       rounds=max(20, 2 * 10**7 // n), warmup_rounds=10)
    assert new_params["w"].dtype == np.float32
    benchmark.extra_info["params"] = n


def _transformer_like_tree(rng) -> dict[str, np.ndarray]:
    """78 float32 leaves: a patch embedding, 6 blocks of 12 arrays (width 32, MLP 64), a head."""
    shapes = {"embed/w": (4, 32), "embed/b": (32,), "cls": (1, 32), "pos": (11, 32)}
    for i in range(6):
        for name, shape in [("qkv/w", (32, 96)), ("qkv/b", (96,)), ("proj/w", (32, 32)),
                            ("proj/b", (32,)), ("ln1/scale", (32,)), ("ln1/bias", (32,)),
                            ("mlp1/w", (32, 64)), ("mlp1/b", (64,)), ("mlp2/w", (64, 32)),
                            ("mlp2/b", (32,)), ("ln2/scale", (32,)), ("ln2/bias", (32,))]:
            shapes[f"block_{i}/{name}"] = shape
    shapes["head/w"], shapes["head/b"] = (32, 10), (10,)
    return {k: rng.standard_normal(s, dtype=np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("how", ["per_leaf", "packed"])
@pytest.mark.parametrize("name", ["nesterov", "adam"])
def test_many_small_leaves(benchmark, name, how):
    pin_threads(1)
    rng = np.random.default_rng(3)
    params, grads = _transformer_like_tree(rng), _transformer_like_tree(rng)
    assert len(params) == 78
    opt = optim.get(name, **HPARAMS[name])
    state = opt.init(params)
    if how == "per_leaf":          # as run_trial updated until this round (checks off)
        def step():
            opt.update(params, grads, state, 1e-3, check=False)
    else:
        layout = tree_lib.FlatLayout(params)
        flat_params, flat_grads = layout.pack(params), layout.zeros()
        flat_state = optim.OptState(0, {s: layout.pack(t) for s, t in state.slots.items()})
        grad_views = layout.views(flat_grads)

        def step():
            tree_lib.copy_leaves(grad_views, grads)
            new_params, new_state = opt.update(flat_params, flat_grads, flat_state, 1e-3,
                                               check=False)
            for key, buffer in new_params.items():
                flat_params[key][...] = buffer
            for slot, flat in new_state.slots.items():
                for key, buffer in flat.items():
                    flat_state.slots[slot][key][...] = buffer
    benchmark.pedantic(step, rounds=200, warmup_rounds=10)
    benchmark.extra_info["leaves"] = len(params)
