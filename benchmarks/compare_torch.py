"""One training step, refplay vs torch CPU, side by side: examples/second and their ratio.

    python benchmarks/compare_torch.py               # everything (~3 minutes)
    python benchmarks/compare_torch.py --quick       # fewer rounds
    python benchmarks/compare_torch.py --only mlp    # one family: mlp, cnn2d, mnist1d, kernels, startup
    python benchmarks/compare_torch.py --only transformer --threads 1   # vit1d, Adam steps

A *training step* is forward, backward and an SGD update on one float32
batch, for the same network on both sides:

* refplay: ``model.loss_and_grads(params, state, batch)`` then
  ``optim.sgd().update(params, grads, state, lr)`` -- the path a trial runs
  (the batch carries unit per-example weights, as ``data.TrainBatches`` gives);
* torch: ``opt.zero_grad(); F.cross_entropy(net(x), y).backward(); opt.step()``.

Networks (issue 4): MLP 784-256-256-10 (batch 32, 128, 512); a 2-D CNN on
1x28x28 (conv3x3 1->16 pad 1, ReLU, maxpool 2; conv3x3 16->32 pad 1, ReLU,
maxpool 2; dense 1568->10; batch 32, 128; ``models.cnn2d`` runs each
conv + max-pool pair as one ``Conv2D(max_pool=True)``, torch as two
modules); the MNIST-1D paper's MLP and CNN
(batch 100). Each is timed with 1 and with 2 threads on *both* sides
(``refplay.threads.limited_threads`` + ``numba.set_num_threads`` for refplay,
``torch.set_num_threads`` for torch). Short rounds (~30 ms) of refplay and
torch steps alternate, 40 times, and each side keeps its best round: on a
shared machine both sides then get the same chances at a quiet moment. The
ratio is ``refplay examples/s / torch examples/s`` (> 1: refplay is faster). GFLOP/s counts the multiply-adds of the dense and convolution layers
(forward, weight gradient, and input gradient for all but the first layer).

The process first calls ``refplay.threads.keep_freed_memory()`` so that
glibc reuses freed blocks instead of unmapping them: without it a refplay CNN
step pays ~2,000 page faults (batch 32) for arrays it re-allocates every step,
while torch's own allocator already caches its blocks.

``kernels`` compares each convolution and pooling layer (forward + backward)
on the Numba kernels against the same layer on their plain-numpy twins
(``impl="numpy"``, the twins of ``refplay.nn.reference`` that the tests
check the kernels against), and each convolution against its direct
definition (``reference.conv2d_direct``). For a convolution it also times
the kernel calls alone and the GEMMs both paths share: the GEMMs' share of
the layer bounds the layer's speed-up (Amdahl), whatever the kernels do. ``startup`` times ``import refplay`` and a fresh process
up to the end of its first training step with a warm Numba cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from refplay import optim
from refplay.data import Batch
from refplay.nn import layers as L
from refplay.nn import kernels, models, reference
from refplay.threads import keep_freed_memory, limited_threads

LR = 0.01


# ----------------------------------------------------------------------------
# The networks on both sides
# ----------------------------------------------------------------------------

def _macs(name: str) -> tuple[int, int]:
    """(multiply-adds per example of all dense/conv layers, of the first one)."""
    if name == "mlp":
        return 784 * 256 + 256 * 256 + 256 * 10, 784 * 256
    if name == "cnn2d":
        c1, c2 = 16 * 28 * 28 * 1 * 9, 32 * 14 * 14 * 16 * 9
        return c1 + c2 + 1568 * 10, c1
    if name == "mnist1d_mlp":
        return 40 * 100 + 100 * 100 + 100 * 10, 40 * 100
    if name == "mnist1d_cnn":
        c1, c2, c3 = 25 * 19 * 1 * 5, 25 * 10 * 25 * 3, 25 * 5 * 25 * 3
        return c1 + c2 + c3 + 125 * 10, c1
    raise ValueError(name)


def train_flops(name: str, batch: int) -> float:
    """FLOPs of one training step: 2 x (forward + weight-gradient + input-gradient MACs)."""
    total, first = _macs(name)
    return 2.0 * batch * (3 * total - first)


def refplay_model(name: str) -> models.Model:
    if name == "mlp":
        return models.mlp(784, (256, 256), 10)
    if name == "cnn2d":
        return models.cnn2d((1, 28, 28))
    if name == "mnist1d_mlp":
        return models.mnist1d_mlp()
    if name == "mnist1d_cnn":
        return models.mnist1d_cnn()
    raise ValueError(name)


def torch_model(torch, name: str):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                             nn.Linear(256, 10))
    if name == "cnn2d":
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(1568, 10))
    if name == "mnist1d_mlp":
        class MLPBase(nn.Module):          # the MNIST-1D reference, with its skip connection
            def __init__(self):
                super().__init__()
                self.l1, self.l2, self.l3 = nn.Linear(40, 100), nn.Linear(100, 100), nn.Linear(100, 10)

            def forward(self, x):
                h = self.l1(x).relu()
                h = h + self.l2(h).relu()
                return self.l3(h)
        return MLPBase()
    if name == "mnist1d_cnn":
        class ConvBase(nn.Module):         # the MNIST-1D reference
            def __init__(self):
                super().__init__()
                self.c1 = nn.Conv1d(1, 25, 5, stride=2, padding=1)
                self.c2 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
                self.c3 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
                self.linear = nn.Linear(125, 10)

            def forward(self, x):
                h = self.c1(x.view(-1, 1, x.shape[-1])).relu()
                h = self.c3(self.c2(h).relu()).relu()
                return self.linear(h.view(h.shape[0], -1))
        return ConvBase()
    raise ValueError(name)


def input_shape(name: str) -> tuple[int, ...]:
    return {"mlp": (784,), "cnn2d": (1, 28, 28), "mnist1d_mlp": (40,), "mnist1d_cnn": (40,)}[name]


class RefplayStep:
    """A callable doing one refplay training step (state kept between calls)."""

    def __init__(self, name: str, batch_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.model = refplay_model(name)
        self.params, self.state = self.model.init_params(rng, np.float32)
        self.opt = optim.sgd()
        self.opt_state = self.opt.init(self.params)
        x = rng.standard_normal((batch_size, *input_shape(name)), dtype=np.float32)
        # Unit weights, as refplay.data.TrainBatches gives them: the path run_trial takes.
        self.batch = Batch(x, rng.integers(0, 10, batch_size), np.ones(batch_size))

    def __call__(self) -> float:
        loss, grads, self.state, _ = self.model.loss_and_grads(self.params, self.state, self.batch, None)
        self.params, self.opt_state = self.opt.update(self.params, grads, self.opt_state, LR)
        return loss


class TorchStep:
    def __init__(self, torch, name: str, batch_size: int, seed: int = 0):
        torch.manual_seed(seed)
        self.torch = torch
        self.net = torch_model(torch, name)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn((batch_size, *input_shape(name)), generator=g)
        self.y = torch.randint(0, 10, (batch_size,), generator=g)

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.cross_entropy(self.net(self.x), self.y)
        loss.backward()
        self.opt.step()
        return loss.item()


def _reps_for(fn, target_s: float) -> int:
    t = time.perf_counter()
    fn()
    dt = max(time.perf_counter() - t, 1e-6)
    return max(1, int(target_s / dt))


def best_times(fns: dict, rounds: int, round_s: float, medians: dict | None = None,
               ) -> dict[str, float]:
    """Seconds per call of each function: best of ``rounds`` interleaved rounds.

    ``medians``, if given, receives each function's median round as well.
    """
    for fn in fns.values():            # warm-up (compiles kernels, fills caches)
        for _ in range(3):
            fn()
    reps = {k: _reps_for(fn, round_s) for k, fn in fns.items()}
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(reps[k]):
                fn()
            times[k].append((time.perf_counter() - t) / reps[k])
    if medians is not None:
        medians.update({k: float(np.median(v)) for k, v in times.items()})
    return {k: min(v) for k, v in times.items()}


def gemm_peak(rounds: int = 5, size: int = 1024) -> float:
    """This machine's single-thread float32 GEMM rate now (GFLOP/s): best of ``rounds``
    ``size``-cubed products, the yardstick the step's GFLOP/s is read against."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    with limited_threads(1):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(rounds))
    return 2.0 * size ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def set_threads(torch, n: int):
    """Both sides to ``n`` threads; returns the threadpoolctl context to exit afterwards."""
    import numba
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    ctx = limited_threads(n)
    ctx.__enter__()
    return ctx


# ----------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------

STEP_CASES = [("mlp", 32), ("mlp", 128), ("mlp", 512), ("cnn2d", 32), ("cnn2d", 128),
              ("mnist1d_mlp", 100), ("mnist1d_cnn", 100)]
TARGET = {"mlp": 1.0, "cnn2d": 1.4, "mnist1d_mlp": 2.0, "mnist1d_cnn": 2.0}


def compare_steps(torch, families: set[str], rounds: int, round_s: float, threads=(1, 2)) -> None:
    peak = gemm_peak()
    print("\n== One training step (forward, backward, SGD), float32 ==")
    print(f"   load average {os.getloadavg()[0]:.2f}; single-thread float32 GEMM peak now "
          f"{peak:.0f} GFLOP/s (1024^3, best of 5); ms: best round (median round)")
    print(f"{'network':<13}{'batch':>6}{'thr':>4}{'refplay ms':>16}{'torch ms':>16}"
          f"{'refplay ex/s':>14}{'torch ex/s':>12}{'ratio':>7}{'median':>7}{'target':>8}"
          f"{'GFLOP/s':>9}{'of peak':>8}")
    for name, bs in STEP_CASES:
        family = "mnist1d" if name.startswith("mnist1d") else name
        if family not in families:
            continue
        for n in threads:
            ctx = set_threads(torch, n)
            med = {}
            try:
                t = best_times({"refplay": RefplayStep(name, bs), "torch": TorchStep(torch, name, bs)},
                               rounds, round_s, med)
            finally:
                ctx.__exit__(None, None, None)
            ratio = t["torch"] / t["refplay"]
            gflops = train_flops(name, bs) / t["refplay"] / 1e9
            ok = "ok" if ratio >= TARGET[name] else "MISS"
            ms = {k: f"{t[k] * 1e3:.3f} ({med[k] * 1e3:.2f})" for k in t}
            print(f"{name:<13}{bs:>6}{n:>4}{ms['refplay']:>16}{ms['torch']:>16}"
                  f"{bs / t['refplay']:>14,.0f}{bs / t['torch']:>12,.0f}{ratio:>7.2f}"
                  f"{med['torch'] / med['refplay']:>7.2f}{'>=' + str(TARGET[name]):>6} {ok:<4}"
                  f"{gflops:>6.1f}{gflops / peak:>8.0%}", flush=True)


KERNEL_CASES = [
    ("cnn2d conv_1  B=32", lambda impl: L.Conv2D(1, 16, 3, padding=1, activation="relu", name="c", impl=impl),
     (32, 1, 28, 28), True),
    ("cnn2d conv_2  B=32", lambda impl: L.Conv2D(16, 32, 3, padding=1, activation="relu", name="c", impl=impl),
     (32, 16, 14, 14), True),
    ("cnn2d conv_2  B=128", lambda impl: L.Conv2D(16, 32, 3, padding=1, activation="relu", name="c",
                                                  impl=impl), (128, 16, 14, 14), True),
    ("mnist1d conv_2 B=100", lambda impl: L.Conv1D(25, 25, 3, stride=2, padding=1, activation="relu", name="c",
                                                   impl=impl), (100, 25, 19), True),
    ("mnist1d conv_3 B=100", lambda impl: L.Conv1D(25, 25, 3, stride=2, padding=1, activation="relu", name="c",
                                                   impl=impl), (100, 25, 10), True),
    ("maxpool 2x2   B=32", lambda impl: L.MaxPool2D(2, impl=impl), (32, 16, 28, 28), True),
    ("avgpool 3x3/2 B=32", lambda impl: L.AvgPool2D(3, stride=2, padding=1, impl=impl), (32, 16, 28, 28), True),
]


def _direct_conv_step(layer, params, x, need_dx):
    """Forward + backward of ``layer`` by :func:`refplay.nn.reference.conv2d_direct` (its definition)."""
    w, b = params[f"{layer.name}/w"], params[f"{layer.name}/b"]
    if isinstance(layer, L.Conv1D):
        x, w = x[:, :, None, :], w[:, :, None, :]
        stride, pads = (1, layer.stride[0]), ((0, 0), *layer._pads(x.shape[3:]))
    else:
        stride, pads = layer.stride, layer._pads(x.shape[2:])
    z = np.maximum(reference.conv2d_direct(x, w, b, stride, pads), 0)
    return reference.conv2d_direct_backward(z * (z > 0), x, w, stride, pads)


def _conv_pieces(layer, params, x, need_dx) -> dict:
    """The two halves of a convolution layer's forward + backward, chunked as the layer chunks.

    ``"shared"``: its GEMMs and the bias-gradient sum (numpy; the same on both
    paths). ``"numba"`` / ``"numpy"``: its kernel calls (im2col, bias + ReLU
    into NCHW, ReLU gradient into the GEMM layout, col2im) on
    :mod:`refplay.nn.kernels` or on their twins in :mod:`refplay.nn.reference`.
    """
    w, b = params[f"{layer.name}/w"], params[f"{layer.name}/b"]
    if isinstance(layer, L.Conv1D):
        x, w = x[:, :, None, :], w[:, :, None, :]
        (sh, sw), ((pt, pb), (pl, pr)) = (1, layer.stride[0]), ((0, 0), *layer._pads(x.shape[3:]))
    else:
        (sh, sw), ((pt, pb), (pl, pr)) = layer.stride, layer._pads(x.shape[2:])
    x = np.ascontiguousarray(x)
    n, c, c_out, (kh, kw) = x.shape[0], x.shape[1], w.shape[0], w.shape[2:]
    oh = L.conv_output_size(x.shape[2], kh, sh, pt, pb)
    ow = L.conv_output_size(x.shape[3], kw, sw, pl, pr)
    geometry = (kh, kw, sh, sw, pt, pl, oh, ow)
    w2 = w.reshape(c_out, -1)
    if L._small_k(w2.shape[1], oh * ow):     # the layer runs no GEMM but the input gradient's
        return _small_k_pieces(x, w2, b, geometry, need_dx)
    chunks = []                              # per chunk: x, cols, y, z, dz, dcols, dx
    for sl in L._batch_chunks(n, (c * kh * kw + c_out) * oh * ow * w.itemsize):
        cols = kernels.im2col(x[sl], *geometry)
        y = w2 @ cols
        z = kernels.bias_act_to_nchw(y, b, True, np.empty((len(y[0]) // (oh * ow), c_out, oh * ow),
                                                           w.dtype))
        dz = kernels.relu_grad_to_cn(z, z, True)
        chunks.append((x[sl], cols, y, z, dz, w2.T @ dz, np.empty_like(x[sl])))

    def shared():
        for _, cols, _, _, dz, _, _ in chunks:
            w2 @ cols, (cols @ dz.T).T, dz.sum(axis=1)
            if need_dx:
                w2.T @ dz

    def kernel_calls(k):
        def run():
            for xk, _, y, z, _, dcols, dx in chunks:
                k.im2col(xk, *geometry)
                k.bias_act_to_nchw(y, b, True, z)
                k.relu_grad_to_cn(z, z, True)
                if need_dx:
                    k.col2im(dcols, dx, *geometry)
        return run

    return {"shared": shared, "numba": kernel_calls(kernels), "numpy": kernel_calls(reference)}


def _small_k_pieces(x, w2, b, geometry, need_dx) -> dict:
    """:func:`_conv_pieces` for a layer on the small-K path (``kernels.conv_small_k_*``): its
    kernels are im2col, the fused forward and backward, and col2im; its only GEMM is the
    input gradient's."""
    kh, kw, sh, sw, pt, pl, oh, ow = geometry
    c_out, n = w2.shape[0], x.shape[0]
    chunks = []                              # per chunk: x, cols, z, dz, dcols, dx
    for sl in L._batch_chunks(n, (w2.shape[1] + c_out) * oh * ow * w2.itemsize):
        cols = kernels.im2col(x[sl], *geometry)
        z = kernels.conv_small_k_forward(cols, w2, b, True,
                                         np.empty((len(x[sl]), c_out, oh * ow), w2.dtype))
        dz = np.empty((c_out, cols.shape[1]) if need_dx else (0, 0), w2.dtype)
        kernels.conv_small_k_backward(z, z, cols, True, dz)
        chunks.append((x[sl], cols, z, dz, w2.T @ dz if need_dx else None, np.empty_like(x[sl])))

    def shared():
        for _, _, _, dz, _, _ in chunks:
            if need_dx:
                w2.T @ dz

    def kernel_calls(k):
        def run():
            for xk, cols, z, dz, dcols, dx in chunks:
                k.im2col(xk, *geometry)
                k.conv_small_k_forward(cols, w2, b, True, z)
                k.conv_small_k_backward(z, z, cols, True, dz)
                if need_dx:
                    k.col2im(dcols, dx, *geometry)
        return run

    return {"shared": shared, "numba": kernel_calls(kernels), "numpy": kernel_calls(reference)}


def compare_kernels(rounds: int, round_s: float) -> None:
    print("\n== Numba kernels vs numpy twins, float32, 1 thread ==")
    print("   layer: forward + backward of the layer on the Numba kernels vs on reference.py's twins")
    print("          (impl='numpy': the same im2col/GEMM algorithm, the twins the tests check against);")
    print("   kernels: the kernel calls alone (im2col, bias+ReLU, ReLU grad, col2im; for a layer with few inputs")
    print("          per output, conv_small_k_forward/backward instead of the GEMMs), chunked as in the layer;")
    print("   GEMM: the GEMMs and bias sum both paths share, and their share of the Numba layer's time")
    print("          (it bounds the layer speed-up: twins / GEMM);")
    print("   direct: reference.conv2d_direct(_backward), the definition as one einsum per kernel offset")
    print(f"{'':<22}{'---------- layer ----------':>30}{'--------- kernels ---------':>30}"
          f"{'---- GEMM ----':>16}{'----- direct -----':>20}")
    print(f"{'case':<22}{'numba ms':>10}{'twins ms':>10}{'speed-up':>10}{'numba ms':>10}{'twins ms':>10}"
          f"{'speed-up':>10}{'ms':>8}{'share':>8}{'ms':>10}{'vs numba':>10}")
    with limited_threads(1):
        for label, make, shape, need_dx in KERNEL_CASES:
            rng = np.random.default_rng(0)
            x = rng.standard_normal(shape, dtype=np.float32)
            fns = {}
            for impl in ("numba", "numpy"):
                layer = make(impl)
                params = layer.init(rng)

                def step(layer=layer, params=params):
                    out, cache = layer.forward(params, x, train=True)
                    return layer.backward(params, out, cache, need_dx=need_dx)
                fns[impl] = step
            is_conv = isinstance(layer, (L.Conv1D, L.Conv2D))
            if is_conv:
                fns["direct"] = lambda layer=layer, params=params: _direct_conv_step(layer, params, x, need_dx)
                pieces = _conv_pieces(layer, params, x, need_dx)
                fns.update({"shared": pieces["shared"], "k numba": pieces["numba"],
                            "k numpy": pieces["numpy"]})
            t = best_times(fns, rounds, round_s)
            line = (f"{label:<22}{t['numba'] * 1e3:>10.3f}{t['numpy'] * 1e3:>10.3f}"
                    f"{t['numpy'] / t['numba']:>9.1f}x")
            if is_conv:
                line += (f"{t['k numba'] * 1e3:>10.3f}{t['k numpy'] * 1e3:>10.3f}"
                         f"{t['k numpy'] / t['k numba']:>9.1f}x{t['shared'] * 1e3:>8.3f}"
                         f"{t['shared'] / t['numba']:>7.0%} {t['direct'] * 1e3:>10.3f}"
                         f"{t['direct'] / t['numba']:>9.1f}x")
            print(line, flush=True)


_FIRST_STEP = """
import time
t0 = time.perf_counter()
import numpy as np
import refplay
t1 = time.perf_counter()
from refplay import optim
from refplay.data import Batch
from refplay.nn import models, reference
t2 = time.perf_counter()
for name, shape in (("mnist1d_cnn", (40,)), ("cnn2d", (1, 28, 28))):
    m = getattr(models, name)()
    rng = np.random.default_rng(0)
    params, state = m.init_params(rng)
    batch = Batch(rng.standard_normal((32, *shape), dtype=np.float32), rng.integers(0, 10, 32), None)
    opt = optim.sgd()
    loss, grads, state, _ = m.loss_and_grads(params, state, batch, None)
    params, _ = opt.update(params, grads, opt.init(params), 0.01)
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f}")
"""


def startup() -> None:
    print("\n== Start-up (fresh processes; warm Numba cache) ==")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

    def wall(code: str) -> tuple[float, str]:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        return time.perf_counter() - t, out.stdout.strip()

    wall(_FIRST_STEP)                                         # warm the on-disk cache
    base = min(wall("pass")[0] for _ in range(3))
    timed_import = "import time; t = time.perf_counter(); import refplay; print(time.perf_counter() - t)"
    imp = min(float(wall(timed_import)[1]) for _ in range(3))
    runs = [wall(_FIRST_STEP) for _ in range(3)]
    total, parts = min(runs)
    t_imp, t_nn, t_step = (float(v) for v in parts.split())
    print(f"python start-up alone:                       {base * 1e3:7.0f} ms")
    print(f"import refplay (lazy subpackages):           {imp * 1e3:7.1f} ms")
    first = base + t_imp + t_nn + t_step
    print(f"fresh process -> end of first training step: {first * 1e3:7.0f} ms  (interpreter start-up "
          f"included; {total * 1e3:.0f} ms with the process's exit)")
    print(f"   import numpy + refplay {t_imp * 1e3:.0f} ms; import refplay.nn.models (numba, numpy) "
          f"{t_nn * 1e3:.0f} ms; build + first step of mnist1d_cnn and cnn2d (cached kernels load) "
          f"{t_step * 1e3:.0f} ms")


# ----------------------------------------------------------------------------
# The Transformer (models.vit1d, the mnist1d_transformer workload) vs torch.nn
# ----------------------------------------------------------------------------

#: (label, vit1d hyperparameters); batch 100 of MNIST-1D signals (40 samples, 10 patches + CLS).
TRANSFORMER_CASES = [
    ("post d4 w32", {"norm_placement": "post", "depth": 4, "width": 32}),
    ("pre  d4 w32", {"norm_placement": "pre", "depth": 4, "width": 32}),
    ("post d6 w32", {"norm_placement": "post", "depth": 6, "width": 32}),
    ("pre  d6 w32", {"norm_placement": "pre", "depth": 6, "width": 32}),
    ("pre  d4 w64", {"norm_placement": "pre", "depth": 4, "width": 64}),
]


def torch_vit1d(torch, *, width, depth, norm_placement, patch_size=4, num_heads=4, mlp_ratio=2,
                length=40, num_classes=10):
    """``models.vit1d`` (pool "cls", tanh GELU) from torch.nn pieces, as in the equality test."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)
            self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width),
                                     nn.GELU(approximate="tanh"),
                                     nn.Linear(mlp_ratio * width, width))

        def forward(self, z):
            if norm_placement == "pre":
                h = self.ln_1(z)
                z = z + self.attn(h, h, h, need_weights=False)[0]
                return z + self.mlp(self.ln_2(z))
            z = self.ln_1(z + self.attn(z, z, z, need_weights=False)[0])
            return self.ln_2(z + self.mlp(z))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(patch_size, width)
            self.cls = nn.Parameter(0.02 * torch.randn(1, 1, width))
            self.pos = nn.Parameter(0.02 * torch.randn(1, length // patch_size + 1, width))
            self.blocks = nn.Sequential(*[Block() for _ in range(depth)])
            self.final = nn.LayerNorm(width) if norm_placement == "pre" else nn.Identity()
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            e = self.embed(x.view(x.shape[0], -1, patch_size))
            z = torch.cat([self.cls.expand(x.shape[0], 1, width), e], dim=1) + self.pos
            return self.head(self.final(self.blocks(z))[:, 0])

    return ViT()


class AdamStep:
    """One training step with Adam (the calibration's optimizer) on either side."""

    def __init__(self, torch, hparams: dict, batch_size: int, side: str, seed: int = 0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch_size, 40), dtype=np.float32)
        y = rng.integers(0, 10, batch_size)
        self.side, self.torch = side, torch
        if side == "refplay":
            self.model = models.vit1d(**hparams)
            self.params, self.state = self.model.init_params(rng, np.float32)
            self.opt = optim.adam()
            self.opt_state = self.opt.init(self.params)
            self.batch = Batch(x, y, np.ones(batch_size))
        else:
            torch.manual_seed(seed)
            self.net = torch_vit1d(torch, **hparams)
            self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
            self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def __call__(self) -> float:
        if self.side == "refplay":
            loss, grads, self.state, _ = self.model.loss_and_grads(self.params, self.state,
                                                                   self.batch, None)
            self.params, self.opt_state = self.opt.update(self.params, grads, self.opt_state, 1e-3)
            return loss
        self.opt.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.cross_entropy(self.net(self.x), self.y)
        loss.backward()
        self.opt.step()
        return loss.item()


def compare_transformer(torch, rounds: int, round_s: float, threads=(1,)) -> None:
    """ms per Adam step of ``models.vit1d`` and of the same torch.nn network (goal ratio >= 1)."""
    print("\n== Transformer (vit1d on MNIST-1D, batch 100): one Adam step, float32 ==")
    print(f"{'network':<13}{'thr':>4}{'refplay ms':>12}{'torch ms':>10}{'ratio':>7}{'target':>8}")
    for label, hp in TRANSFORMER_CASES:
        for n in threads:
            ctx = set_threads(torch, n)
            try:
                steps = {side: AdamStep(torch, hp, 100, side) for side in ("refplay", "torch")}
                t = best_times(steps, rounds, round_s)
            finally:
                ctx.__exit__(None, None, None)
            ratio = t["torch"] / t["refplay"]
            print(f"{label:<13}{n:>4}{t['refplay'] * 1e3:>12.2f}{t['torch'] * 1e3:>10.2f}"
                  f"{ratio:>7.2f}{'>=1.0':>7} {'ok' if ratio >= 1.0 else 'MISS'}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    p.add_argument("--only", action="append",
                   choices=["mlp", "cnn2d", "mnist1d", "kernels", "startup", "transformer"],
                   help="run only these sections (repeatable)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    rounds, round_s = (10, 0.02) if args.quick else (40, 0.03)
    only = set(args.only or ["mlp", "cnn2d", "mnist1d", "kernels", "startup", "transformer"])
    import numba
    import torch
    kept = keep_freed_memory()        # both sides: no page faults from re-allocating big arrays
    print(f"numpy {np.__version__}, numba {numba.__version__}, torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs; best of {rounds} interleaved rounds of ~{round_s:g} s; "
          f"keep_freed_memory: {kept}")
    if only & {"mlp", "cnn2d", "mnist1d"}:
        compare_steps(torch, only, rounds, round_s, tuple(args.threads))
    if "transformer" in only:
        compare_transformer(torch, rounds, round_s, tuple(args.threads))
    if "kernels" in only:
        compare_kernels(rounds, round_s)
    if "startup" in only:
        startup()


if __name__ == "__main__":
    main()
