"""refplay's update rules vs ``torch.optim``: milliseconds per step, side by side.

    python benchmarks/compare_optim_torch.py [--sizes 10000 100000 1000000] [--repeats 50]
    python benchmarks/compare_optim_torch.py --tune-malloc   # see below

One thread for both (``refplay.threads`` and ``torch.set_num_threads(1)``),
float32, one parameter leaf of ``n`` scalars, measured alternately in the same
process; each number is the median over ``--repeats`` steps after a warm-up.

SGD, momentum and Nesterov compute the same rule in both libraries
(``torch.optim.SGD(lr, momentum=γ, dampening=0, nesterov=...)``). torch's
RMSprop, Adam and NAdam are *different rules* from the playbook's (ε
placement, v_0, lr inside the buffer, momentum decay): they are listed for a
sense of scale only. torch updates in place; refplay returns new arrays.

At 10^6 parameters (4 MB per array) refplay's time is dominated by glibc
handing freed memory back to the OS and faulting it in again on the next
step, not by arithmetic. ``--tune-malloc`` raises glibc's trim and mmap
thresholds (``mallopt``) for this process to show the difference; the update
rules themselves are unchanged.
"""

from __future__ import annotations

from refplay.threads import set_thread_env

set_thread_env(1)   # before numpy and torch are imported

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from refplay import optim  # noqa: E402
from refplay.threads import pin_threads  # noqa: E402

# (refplay name, refplay hparams, torch class name, torch kwargs, same rule?)
PAIRS = [
    ("sgd", {}, "SGD", {}, True),
    ("momentum", {"gamma": 0.9}, "SGD", {"momentum": 0.9}, True),
    ("nesterov", {"gamma": 0.9}, "SGD", {"momentum": 0.9, "nesterov": True}, True),
    ("rmsprop", {"rho": 0.9, "gamma": 0.9}, "RMSprop", {"alpha": 0.9, "momentum": 0.9}, False),
    ("adam", {}, "Adam", {}, False),
    ("nadam", {}, "NAdam", {}, False),
]
LR = 1e-3


def _tune_glibc_malloc() -> None:
    """Keep freed memory in the process (glibc only).

    M_MMAP_THRESHOLD = 64 MB and M_TRIM_THRESHOLD = 256 MB, so 4 MB arrays come
    from the heap and freed memory is not returned to the OS at every step.
    """
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_mmap_threshold, 64 << 20) and libc.mallopt(m_trim_threshold, 256 << 20)):
        raise RuntimeError("mallopt failed")


def _median_ms(step, repeats: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _refplay_step(name, hparams, w, g):
    opt = optim.get(name, **hparams)
    box = {"params": {"w": w.copy()}, "state": opt.init({"w": w})}
    grads = {"w": g}

    def step():
        box["params"], box["state"] = opt.update(box["params"], grads, box["state"], LR)
    return step


def _torch_step(torch, cls, kwargs, w, g):
    p = torch.nn.Parameter(torch.from_numpy(w.copy()))
    p.grad = torch.from_numpy(g.copy())
    opt = getattr(torch.optim, cls)([p], lr=LR, **kwargs)

    def step():
        with torch.no_grad():
            opt.step()
    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--tune-malloc", action="store_true",
                    help="raise glibc's malloc trim/mmap thresholds first (Linux/glibc only)")
    args = ap.parse_args(argv)
    if args.tune_malloc:
        _tune_glibc_malloc()

    import torch
    torch.set_num_threads(1)
    pin_threads(1)
    print(f"numpy {np.__version__}, torch {torch.__version__}, 1 thread, float32, "
          f"median of {args.repeats} steps, malloc {'tuned' if args.tune_malloc else 'default'}")
    print(f"{'rule':<10}{'n':>9}{'refplay ms':>12}{'torch ms':>10}{'ratio':>8}  note")
    for n in args.sizes:
        rng = np.random.default_rng(np.random.SeedSequence([3, n]))
        w = rng.standard_normal(n, dtype=np.float32)
        g = rng.standard_normal(n, dtype=np.float32)
        for name, hp, cls, kw, same in PAIRS:
            ours = _refplay_step(name, hp, w, g)
            theirs = _torch_step(torch, cls, kw, w, g)
            # alternate the two so drifting machine load hits both alike
            r = [_median_ms(ours, args.repeats // 2) for _ in range(2)]
            t = [_median_ms(theirs, args.repeats // 2) for _ in range(2)]
            ours_ms, theirs_ms = min(r), min(t)
            note = "same rule" if same else f"torch.optim.{cls} is a different rule"
            print(f"{name:<10}{n:>9}{ours_ms:>12.4f}{theirs_ms:>10.4f}{ours_ms / theirs_ms:>8.2f}"
                  f"  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
