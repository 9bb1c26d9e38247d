"""Test helpers importable as ``from tests.helpers import optional_import``.

``optional_import(name)`` imports an optional package. Locally a missing
package skips the test; under CI (``REFPLAY_REQUIRE_OPTIONAL=1``) it *fails*,
so no test is silently skipped where the package is supposed to be installed.
"""

from __future__ import annotations

import importlib
import os

import pytest


def optional_import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("REFPLAY_REQUIRE_OPTIONAL") == "1":
            pytest.fail(f"optional package {name!r} is required under CI but missing: {exc}")
        pytest.skip(f"optional package {name!r} not installed")


def numeric_grad(f, x, h: float = 1e-6):
    """Centered finite differences of the scalar ``f(x)`` with respect to ``x`` (float64).

    ``x`` is perturbed in place, one coordinate at a time, and restored.
    """
    import numpy as np
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f(x)
        x[i] = old - h
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def rel_error(a, b) -> float:
    """``‖a − b‖ / max(‖a‖, ‖b‖)``: the relative error of a gradient check."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def playbook_search_space():
    """The playbook's optimizer example as a search space: a learning rate per optimizer
    (namespaced names), conditional momentum / beta1, a discrete and a fixed parameter."""
    from refplay.search import Choice, Discrete, Fixed, Float, SearchSpace
    return SearchSpace({
        "optimizer": Choice(["nesterov", "adam"], role="scientific"),
        "nesterov/lr": Float(1e-2, 10.0, scale="log", when={"optimizer": "nesterov"}),
        "momentum": Float(0.8, 0.99, when={"optimizer": "nesterov"}),
        "adam/lr": Float(1e-4, 1e-1, scale="log", when={"optimizer": "adam"}),
        "beta1": Float(0.8, 0.99, when={"optimizer": "adam"}),
        "batch_size": Discrete([256, 64, 128]),     # unsorted on purpose: Discrete sorts
        "weight_decay": Fixed(0.0),
    })


# --------------------------------------------------------------------------- trial gate
# A study run in a subprocess (its pool workers included) whose trials block at a gate
# the test opens: a test can interrupt a study at a known point without any timing.
TRIAL_GATE_ENV = "REFPLAY_TEST_TRIAL_GATE"

_SITECUSTOMIZE = """\
# Written by tests/helpers.py: every Python process started with this folder on
# PYTHONPATH (a study driver, its forkserver, its pool workers) gates refplay's trials.
from tests.helpers import install_trial_gate
install_trial_gate()
"""


def trial_gate_env(gate_dir, free_trials: int, repo) -> dict:
    """Environment additions that gate ``refplay.train.run_trial`` in every process.

    The first ``free_trials`` calls (over all processes) run normally; every
    later call writes ``gate_dir/blocked-<k>`` and waits until
    :func:`open_trial_gate` is called. Python imports ``sitecustomize`` at
    start-up, so the gate reaches the pool workers the runner starts itself.
    """
    import pathlib
    gate_dir = pathlib.Path(gate_dir)
    site = gate_dir / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return {"PYTHONPATH": os.pathsep.join([str(site), str(repo)]),
            TRIAL_GATE_ENV: f"{int(free_trials)}{os.pathsep}{gate_dir}"}


def blocked_trials(gate_dir) -> int:
    """How many trials are waiting at the gate now."""
    import pathlib
    return len(list(pathlib.Path(gate_dir).glob("blocked-*")))


def open_trial_gate(gate_dir) -> None:
    import pathlib
    (pathlib.Path(gate_dir) / "open").touch()


def install_trial_gate() -> None:
    """Wrap ``refplay.train.run_trial`` with the gate named by ``$REFPLAY_TEST_TRIAL_GATE``."""
    import pathlib
    import time
    setting = os.environ.get(TRIAL_GATE_ENV)
    if not setting:
        return
    free, gate = setting.split(os.pathsep, 1)
    free, gate = int(free), pathlib.Path(gate)
    from refplay import train
    real_run_trial = train.run_trial

    def claim_ticket() -> int:
        k = 0
        while True:          # O_EXCL: exactly one process gets each ticket
            try:
                os.close(os.open(gate / f"ticket-{k}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return k
            except FileExistsError:
                k += 1

    def gated_run_trial(*args, **kwargs):
        ticket = claim_ticket()
        if ticket >= free:
            (gate / f"blocked-{ticket}").touch()
            while not (gate / "open").exists():     # waits for the test, however long
                time.sleep(0.01)
        return real_run_trial(*args, **kwargs)

    train.run_trial = gated_run_trial


def max_rel_error(a, b) -> float:
    """max |a - b| / max |b| in float64 (shapes must match): one number for a whole array."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))
