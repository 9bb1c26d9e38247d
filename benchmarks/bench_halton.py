"""pytest-benchmark suite for the randomized Halton sampler.

Run: ``python -m pytest benchmarks/bench_halton.py --benchmark-only``.
Threads are pinned to one (DESIGN.md principle 4).
"""

from __future__ import annotations

from refplay import threads

threads.set_thread_env(1)

import pytest  # noqa: E402

from refplay import search  # noqa: E402

threads.pin_threads(1)

SPACE = search.SearchSpace({
    "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
    "nesterov/lr": search.Float(1e-2, 10.0, scale="log", when={"optimizer": "nesterov"}),
    "momentum": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
    "adam/lr": search.Float(1e-4, 1e-1, scale="log", when={"optimizer": "adam"}),
    "beta1": search.Float(0.8, 0.99, when={"optimizer": "adam"}),
    "batch_size": search.Discrete([64, 128, 256]),
    "warmup_steps": search.Int(0, 1000),
    "weight_decay": search.Fixed(0.0),
})


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    search.halton_points(10, 8, 0)  # compile (or load from cache) outside the timings


def test_halton_points_100k_by_8(benchmark):
    x = benchmark(search.halton_points, 100_000, 8, 0)
    assert x.shape == (100_000, 8)


def test_scipy_halton_100k_by_8(benchmark):
    qmc = pytest.importorskip("scipy.stats.qmc")
    try:  # scipy >= 1.15 calls the seed rng, older versions seed
        qmc.Halton(d=8, scramble=True, rng=0)
        seed_kw = "rng"
    except TypeError:
        seed_kw = "seed"
    x = benchmark(lambda: qmc.Halton(d=8, scramble=True, **{seed_kw: 0}).random(100_000))
    assert x.shape == (100_000, 8)


def test_halton_points_small_study(benchmark):
    """A realistic study: 64 trials; dominated by drawing the randomization."""
    x = benchmark(search.halton_points, 64, 8, 0)
    assert x.shape == (64, 8)


def test_halton_configs_1000(benchmark):
    configs = benchmark(search.halton, SPACE, 1000, 0)
    assert len(configs) == 1000
