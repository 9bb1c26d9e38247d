"""docs/external-studies.md: every Python block runs, on studies this test makes.

An Optuna study with a median pruner, NaN returns (reported first, as the doc
asks) and a crash, in ``optuna.db``; a W&B runs export and its history as
CSV. The blocks run in order in one namespace, in a temporary directory.
"""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import numpy as np

from refplay.cli import main
from refplay.train.result import TrialStatus
from tests.helpers import optional_import

DOC = Path(__file__).resolve().parents[1] / "docs" / "external-studies.md"


def _error_rate(optimizer: str, lr: float, momentum: float, step: int) -> float:
    """A made-up error-rate curve: best near lr = 0.01, falling with steps; NaN above lr = 0.5."""
    if lr > 0.5:
        return math.nan
    floor = 0.05 + 0.04 * abs(math.log10(lr) + 2) + (0.01 if optimizer == "sgd" else 0.0)
    return floor + 0.5 * math.exp(-step / 30) + 0.02 * (1 - momentum)


def make_optuna_db(path: Path) -> None:
    optuna = optional_import("optuna")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    s = optuna.create_study(study_name="sgd_vs_adam", storage=f"sqlite:///{path}",
                            sampler=optuna.samplers.RandomSampler(seed=0),
                            pruner=optuna.pruners.MedianPruner(n_startup_trials=5,
                                                               n_warmup_steps=20))

    def objective(trial):
        opt = trial.suggest_categorical("optimizer", ["sgd", "adam"])
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        momentum = trial.suggest_float("momentum", 0.5, 0.99) if opt == "sgd" else 1.0
        if trial.number == 3:
            raise RuntimeError("out of memory")               # a crash
        for step in range(0, 101, 20):
            value = _error_rate(opt, lr, momentum, step)
            trial.report(value, step)
            if math.isnan(value):
                return value                                  # reported, then returned
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value
    s.optimize(objective, n_trials=30, catch=(RuntimeError,))


def make_wandb_csv(directory: Path) -> None:
    pandas = optional_import("pandas")
    rng = np.random.default_rng(1)
    runs, history = [], []
    for i, state in enumerate(["finished"] * 8 + ["killed", "crashed", "running"]):
        opt, lr = ("sgd", "adam")[i % 2], float(10 ** rng.uniform(-4, 0))
        done = {"finished": 6, "killed": 2, "crashed": 1, "running": 3}[state]
        curve = [_error_rate(opt, lr, 0.9, 20 * k) for k in range(done)]
        name = f"wise-{i}"
        runs.append({"Name": name, "State": state, "config.optimizer": opt, "config.lr": lr,
                     "val_error": min(curve) if state == "finished" else curve[-1]})
        history += [{"Name": name, "_step": 20 * k, "val_error": v} for k, v in enumerate(curve)]
    pandas.DataFrame(runs).to_csv(directory / "wandb_runs.csv", index=False)
    pandas.DataFrame(history).to_csv(directory / "wandb_history.csv", index=False)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def console_commands(text: str) -> list[list[str]]:
    """The ``refplay ...`` commands of the doc's console blocks (continuation lines joined)."""
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("refplay ")]


def test_every_recipe_of_the_doc_runs(tmp_path, monkeypatch, capsys):
    make_optuna_db(tmp_path / "optuna.db")
    make_wandb_csv(tmp_path)
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) == 5
    namespace: dict = {"__name__": "external_studies_doc"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    frame = namespace["frame"]                                # the CSV recipe's frame
    optuna_frame = namespace["summary"]
    assert optuna_frame.counts["pruned"] >= 1 and optuna_frame.counts["failed"] == 1
    assert optuna_frame.counts["infeasible"] >= 1               # the NaN returns
    lrs = frame.values("lr")
    assert [str(s) for s in frame.statuses()] == \
        ["infeasible" if lr > 0.5 else "complete" for lr in lrs[:8]] + ["pruned", "failed"]
    assert "infeasible" in [str(s) for s in frame.statuses()]     # a NaN in a finished run
    memory = namespace["memory"]
    assert memory.statuses()[2:] == [TrialStatus.PRUNED, TrialStatus.INFEASIBLE]
    assert namespace["result"].best.config["optimizer"] == "adam"
    for report_dir in ("report_optuna", "report_wandb", "report_mine"):
        assert (tmp_path / report_dir / "report.html").exists()
    md = (tmp_path / "report_optuna" / "report.md").read_text()
    assert "on 1000 validation examples" in md and "1 trial crashed" in md
    out = capsys.readouterr().out
    assert "optimizer=adam" in out and "'pruned'" in out      # the doc's prints ran


def test_the_docs_command_lines_run(tmp_path, monkeypatch, capsys):
    make_optuna_db(tmp_path / "optuna.db")
    monkeypatch.chdir(tmp_path)
    commands = console_commands(DOC.read_text())
    assert [c[:2] for c in commands] == [["study", "import"], ["study", "report"]]
    for argv in commands:
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "imported optuna study into ws: sgd_vs_adam (" in out and " pruned" in out
    assert (tmp_path / "ws" / "sgd_vs_adam" / "report" / "report.html").exists()
