"""refplay.nn speed suite (pytest-benchmark), single-threaded, float32.

    python -m pytest benchmarks/bench_nn.py --benchmark-columns=median,iqr,ops

* ``test_train_step``: one training step (forward, backward, SGD update) of
  the issue's networks -- the MLP 784-256-256-10, the 2-D CNN on 1x28x28 and
  the two MNIST-1D reference models -- through ``Model.loss_and_grads`` and
  ``optim.sgd``. ``extra_info`` records examples per step and FLOPs per step,
  so ``ops * flops`` is the achieved FLOP/s.
* ``test_layer``: forward + backward of one convolution or pooling layer on
  the Numba kernels (``impl="numba"``) and on their numpy twins
  (``impl="numpy"``); the ratio of the two medians is the kernels' speed-up.
* ``test_transformer_step``: one Adam step of ``models.vit1d`` at batch 100
  (the ``mnist1d_transformer`` workload; Post-LN and Pre-LN, depth 4 and 6).
* ``test_resnet_layernorm_step``: one SGD step of the MNIST-1D ResNet with
  LayerNorm after each residual sum (``mnist1d_resnet`` with ``norm="layer"``,
  ``norm_placement="post"``, channels 8/16/32), batch 100.

For refplay vs torch side by side (ratios, 1 and 2 threads) run
``benchmarks/compare_torch.py``.
"""

from __future__ import annotations

import os
import sys

from refplay.threads import set_thread_env

set_thread_env(1)   # before numpy and numba are imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from compare_torch import (KERNEL_CASES, STEP_CASES, TRANSFORMER_CASES, AdamStep,  # noqa: E402
                           RefplayStep, train_flops)

from refplay import optim  # noqa: E402
from refplay.data import Batch  # noqa: E402
from refplay.nn import models  # noqa: E402

from refplay.threads import keep_freed_memory, pin_threads  # noqa: E402

keep_freed_memory()   # reuse freed blocks: no page faults per step (see refplay.threads)


@pytest.mark.parametrize("name,batch", STEP_CASES, ids=[f"{n}-B{b}" for n, b in STEP_CASES])
def test_train_step(benchmark, name, batch):
    pin_threads(1)
    step = RefplayStep(name, batch)
    step()                                           # compile / load the kernels
    loss = benchmark.pedantic(step, rounds=30, warmup_rounds=3)
    assert np.isfinite(loss)
    benchmark.extra_info.update(examples=batch, flops=train_flops(name, batch))


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=[c[0].replace(" ", "") for c in KERNEL_CASES])
def test_layer(benchmark, case, impl):
    pin_threads(1)
    _, make, shape, need_dx = case
    layer = make(impl)
    rng = np.random.default_rng(0)
    params = layer.init(rng)
    x = rng.standard_normal(shape, dtype=np.float32)

    def step():
        out, cache = layer.forward(params, x, train=True)
        return layer.backward(params, out, cache, need_dx=need_dx)

    step()
    _, grads = benchmark.pedantic(step, rounds=30, warmup_rounds=3)
    assert all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("label,hparams", TRANSFORMER_CASES,
                         ids=[label.replace("  ", " ").replace(" ", "-") for label, _ in TRANSFORMER_CASES])
def test_transformer_step(benchmark, label, hparams):
    pin_threads(1)
    step = AdamStep(None, hparams, 100, "refplay")
    step()                                           # compile / load the kernels
    loss = benchmark.pedantic(step, rounds=30, warmup_rounds=3)
    assert np.isfinite(loss)


def test_resnet_layernorm_step(benchmark):
    pin_threads(1)
    rng = np.random.default_rng(0)
    model = models.resnet1d(40, 10, channels=[8, 16, 32], norm="layer", norm_placement="post")
    params, state = model.init_params(rng, np.float32)
    batch = Batch(rng.standard_normal((100, 40), dtype=np.float32), rng.integers(0, 10, 100),
                  np.ones(100))
    opt = optim.sgd()
    box = [params, opt.init(params)]

    def step():
        loss, grads, _, _ = model.loss_and_grads(box[0], state, batch, None)
        box[0], box[1] = opt.update(box[0], grads, box[1], 0.01)
        return loss

    step()
    assert np.isfinite(benchmark.pedantic(step, rounds=30, warmup_rounds=3))
