"""The MNIST-1D paper's training run, refplay vs torch: wall time per run, side by side.

    python benchmarks/compare_mnist1d_torch.py                 # 2,000 steps per model
    python benchmarks/compare_mnist1d_torch.py --steps 8000    # the paper's full run

Both sides train the same network (the reference's ``LinearBase``,
``MLPBase`` with its skip connection, ``ConvBase``) on the same batches (the
order of :class:`refplay.data.TrainBatches` for the trial seed), Adam with
learning rate 1e-2, batch 100, float32, one thread each (``refplay.threads``
and ``torch.set_num_threads(1)``), and evaluate the 1,000 test examples every
250 steps. refplay runs through ``train.run_trial`` (so its time includes
logging the gradient norm every step); torch runs a plain loop like the
reference's ``train.py``. The two Adams are different rules (ε before vs.
after the bias correction) and the initializations differ in their random
draws, so accuracies agree only statistically; the ratio is what this script
measures: ``torch seconds / refplay seconds`` (> 1: refplay is faster).
"""

from __future__ import annotations

from refplay.threads import set_thread_env

set_thread_env(1)   # before numpy and torch are imported

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))   # for mnist1d_table, run from anywhere
from mnist1d_table import CONFIG, paper_workload  # noqa: E402

from refplay.data import TrainBatches  # noqa: E402
from refplay.threads import pin_threads  # noqa: E402
from refplay.train import run_trial, seeds  # noqa: E402

EVAL_EVERY = 250


def torch_model(torch, name: str):
    """The reference networks (``notebooks/models.py`` of github.com/greydanus/mnist1d)."""
    nn = torch.nn

    class LinearBase(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(40, 10)

        def forward(self, x):
            return self.linear(x)

    class MLPBase(nn.Module):
        def __init__(self, hidden=100):
            super().__init__()
            self.linear1, self.linear2 = nn.Linear(40, hidden), nn.Linear(hidden, hidden)
            self.linear3 = nn.Linear(hidden, 10)

        def forward(self, x):
            h = self.linear1(x).relu()
            h = h + self.linear2(h).relu()
            return self.linear3(h)

    class ConvBase(nn.Module):
        def __init__(self, channels=25):
            super().__init__()
            self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
            self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
            self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
            self.linear = nn.Linear(channels * 5, 10)

        def forward(self, x):
            x = x.view(-1, 1, x.shape[-1])
            h = self.conv3(self.conv2(self.conv1(x).relu()).relu()).relu()
            return self.linear(h.view(h.shape[0], -1))

    return {"logreg": LinearBase, "mlp": MLPBase, "cnn": ConvBase}[name]()


def run_torch(torch, model_name: str, seed: int, steps: int) -> tuple[float, float]:
    """(wall seconds, final test accuracy %) of the reference loop on refplay's batches."""
    wl = paper_workload(model_name, shuffle_seq=False)
    torch.manual_seed(seed)
    model = torch_model(torch, model_name)
    opt = torch.optim.Adam(model.parameters(), lr=CONFIG["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = TrainBatches(wl.train, CONFIG["batch_size"], seed=seeds.trial_streams(seed).data)
    x_test = torch.from_numpy(wl.validation.x)
    y_test = torch.from_numpy(wl.validation.y)
    start = time.perf_counter()
    accuracy = float("nan")
    for step in range(steps + 1):
        if step % EVAL_EVERY == 0 or step == steps:
            with torch.no_grad():
                accuracy = 100.0 * float((model(x_test).argmax(-1) == y_test).float().mean())
        if step == steps:
            break
        batch = batches.next()
        loss = loss_fn(model(torch.from_numpy(batch.x)), torch.from_numpy(batch.y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start, accuracy


def run_refplay(model_name: str, seed: int, steps: int) -> tuple[float, float]:
    wl = paper_workload(model_name, shuffle_seq=False)
    start = time.perf_counter()
    result = run_trial(wl, CONFIG, seed=seed, max_train_steps=steps, eval_every=EVAL_EVERY)
    seconds = time.perf_counter() - start
    return seconds, 100.0 * (1.0 - result.curves["validation/error_rate"][-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=["logreg", "mlp", "cnn"],
                        choices=["logreg", "mlp", "cnn"])
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    pin_threads(1)
    # Warm up both (Numba compilation or cache load; torch's first-call overheads).
    for name in args.models:
        run_refplay(name, args.seed, 20)
        run_torch(torch, name, args.seed, 20)
    rows = []
    print(f"MNIST-1D paper run, {args.steps} steps, batch 100, Adam lr 1e-2, 1 thread, float32")
    print(f"{'model':<8}{'refplay s':>11}{'torch s':>10}{'torch/refplay':>15}"
          f"{'acc refplay':>13}{'acc torch':>11}")
    for name in args.models:
        t_ref, acc_ref = run_refplay(name, args.seed, args.steps)
        t_torch, acc_torch = run_torch(torch, name, args.seed, args.steps)
        rows.append({"model": name, "refplay_seconds": t_ref, "torch_seconds": t_torch,
                     "ratio": t_torch / t_ref, "refplay_accuracy": acc_ref,
                     "torch_accuracy": acc_torch})
        print(f"{name:<8}{t_ref:>11.2f}{t_torch:>10.2f}{t_torch / t_ref:>15.2f}"
              f"{acc_ref:>13.1f}{acc_torch:>11.1f}", flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
