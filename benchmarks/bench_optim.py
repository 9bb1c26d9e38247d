"""Update time per step of the six playbook rules (pytest-benchmark).

One thread, float32 parameters in a single leaf of 10^4, 10^5 and 10^6
scalars; the time is one ``opt.update(params, grads, state, lr)`` call,
which returns new arrays (refplay's updates are pure)::

    python -m pytest benchmarks/bench_optim.py --benchmark-columns=median,iqr

For the side-by-side ratio against ``torch.optim`` see
``benchmarks/compare_optim_torch.py``.
"""

from __future__ import annotations

from refplay.threads import set_thread_env

set_thread_env(1)   # before numpy is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from refplay import optim  # noqa: E402
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
