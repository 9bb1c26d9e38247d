"""Studies made elsewhere, in: Optuna (with a pruner, NaN returns and crashes), CSV, records.

The central check: the same trials run natively by refplay's runner and run
through a real Optuna study (replayed with ``enqueue_trial``, plus pruned
trials) give the same ``best``, ``boundary_check`` and ``isolation`` numbers
and the right infeasible / failed / pruned counts.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from refplay import analysis, report, search, study
from refplay.cli import main
from refplay.study import imports
from refplay.study.synthetic import LinearRegressionTrial
from refplay.train.result import TrialStatus
from tests.helpers import optional_import

STEPS, EVERY, N_NATIVE, N_PRUNED = 40, 10, 16, 5
LR = (1e-3, 3.0)
METRIC = "validation/loss"


def space():
    return search.SearchSpace({
        "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
        "lr": search.Float(*LR, scale="log"),
        "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
    })


@dataclasses.dataclass(frozen=True)
class CrashingTrial:
    """The synthetic trial, with a planted bug: Adam at a learning rate below 3e-3 crashes."""

    inner: LinearRegressionTrial = LinearRegressionTrial(STEPS, EVERY)

    def __call__(self, config, seed, *, trial_dir=None):
        if config["optimizer"] == "adam" and config["lr"] < 3e-3:
            raise RuntimeError("planted bug: adam below lr=3e-3")
        return self.inner(config, seed, trial_dir=trial_dir)


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """The study run by refplay (serially), and its frame."""
    ws = tmp_path_factory.mktemp("native")
    spec = study.StudySpec(name="native", workload=None, num_trials=N_NATIVE, max_train_steps=STEPS,
                           eval_every=EVERY, metric=METRIC, search_space=space())
    study.run(spec, store=ws, workers=0, trial_fn=CrashingTrial(), progress=False)
    with study.Store(ws, readonly=True) as store:
        return spec, analysis.load(store, "native")


def _objective(optuna, native_spec):
    """Replays the native trials (same config and seed); the extra ones can be pruned."""
    trial_fn = CrashingTrial()

    def objective(trial):
        opt = trial.suggest_categorical("optimizer", ["nesterov", "adam"])
        config = {"optimizer": opt, "lr": trial.suggest_float("lr", *LR, log=True)}
        if opt == "nesterov":
            config["gamma"] = trial.suggest_float("gamma", 0.8, 0.99)
        seed = native_spec.trial(trial.number).seed if trial.number < N_NATIVE else 0
        result = trial_fn(config, seed)            # a crash propagates: Optuna records FAIL
        steps, values = result.eval_steps, result.curves[METRIC]
        for step, value in zip(steps, values):
            trial.report(value, step)
            if trial.number >= N_NATIVE and trial.should_prune():
                raise optuna.TrialPruned()
        if result.status != TrialStatus.COMPLETE:
            trial.report(math.nan, result.steps_done)   # the divergence, then a NaN return
            return math.nan
        return float(min(values))                  # the best checkpoint's value
    return objective


@pytest.fixture(scope="module")
def optuna_study(native):
    optuna = optional_import("optuna")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    native_spec, _ = native
    s = optuna.create_study(study_name="replayed", pruner=optuna.pruners.ThresholdPruner(
        upper=0.0, n_warmup_steps=EVERY))
    for i in range(N_NATIVE):
        s.enqueue_trial(native_spec.trial(i).config)
    for k in range(N_PRUNED):         # trials that train fine until the pruner stops them
        s.enqueue_trial({"optimizer": "nesterov", "lr": 0.01 * (k + 1), "gamma": 0.9})
    s.optimize(_objective(optuna, native_spec), n_trials=N_NATIVE + N_PRUNED,
               catch=(RuntimeError,))
    return s


def test_an_optuna_study_imported_in_one_call_gives_the_native_numbers(native, optuna_study):
    _, frame = native
    states = [t.state.name for t in optuna_study.trials]
    assert states.count("PRUNED") == N_PRUNED and "FAIL" in states
    imported = analysis.from_optuna(optuna_study, scientific=["optimizer"], metric=METRIC)
    assert [r.trial for r in imported.rows] == list(range(N_NATIVE + N_PRUNED))
    assert analysis.best(imported) == analysis.best(frame)
    assert analysis.best(imported, by=None) == analysis.best(frame, by=None)
    for param in ("lr", "gamma"):
        got = analysis.boundary_check(imported, param).checks
        want = analysis.boundary_check(frame, param).checks
        assert got.keys() == want.keys()
        for value, c in want.items():
            # The ranges come from Optuna's distributions: equal to the spec's, to rounding.
            assert got[value].low == pytest.approx(c.low) and got[value].high == \
                pytest.approx(c.high)
            assert got[value] == dataclasses.replace(c, low=got[value].low,
                                                     high=got[value].high)
    assert analysis.isolation(imported, "optimizer").rows == \
        analysis.isolation(frame, "optimizer").rows
    assert analysis.isolation(imported, "lr", buckets=4).rows == \
        analysis.isolation(frame, "lr", buckets=4).rows
    got, want = analysis.infeasible_fraction(imported), analysis.infeasible_fraction(frame)
    for value in want:
        assert (got[value].n_infeasible, got[value].n_failed, got[value].fraction) == \
            (want[value].n_infeasible, want[value].n_failed, want[value].fraction)
    assert sum(c.n_pruned for c in got.values()) == N_PRUNED
    assert frame.count(TrialStatus.INFEASIBLE) >= 1 and frame.count(TrialStatus.FAILED) >= 1
    assert imported.count(TrialStatus.INFEASIBLE) == frame.count(TrialStatus.INFEASIBLE)
    assert imported.sampler == "TPESampler" and not imported.quasi_random


def test_the_imported_report_renders_and_counts_pruned_trials_apart(native, optuna_study, tmp_path):
    imported = analysis.from_optuna(optuna_study, scientific=["optimizer"], metric=METRIC)
    rep = report.write(imported, tmp_path / "report")
    md = rep.markdown.read_text()
    n_failed = imported.count(TrialStatus.FAILED)
    assert f"{N_PRUNED} pruned (stopped early on purpose" in md
    assert f"{n_failed} trial{'s' if n_failed != 1 else ''} crashed (failed)" in md
    assert "Sampler: the trials were chosen by sampler 'TPESampler'" in md
    assert {"axis_lr", "isolation_optimizer", "best_of_n", "best_steps"} <= set(rep.images)
    for path in rep.images.values():
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_import_study_writes_an_ordinary_study_with_its_source(native, optuna_study, tmp_path):
    optuna = optional_import("optuna")
    db = tmp_path / "optuna.db"
    stored = optuna.copy_study(from_study_name="replayed",
                               from_storage=optuna_study._storage, to_storage=f"sqlite:///{db}")
    assert stored is None
    summary = imports.import_study("optuna", db, workspace=tmp_path / "ws", name="imported",
                                   scientific=["optimizer"], metric=METRIC, n_validation=64)
    assert summary.counts["pruned"] == N_PRUNED
    _, frame = native
    with study.Store(tmp_path / "ws", readonly=True) as store:
        loaded = analysis.load(store, "imported")
        meta = store.meta("imported")
        status = store.status("imported")
        trials_csv, _ = study.export_csv(store, "imported", tmp_path / "imported.csv")
    assert analysis.best(loaded) == analysis.best(frame)
    assert meta["source"]["kind"] == "optuna" and meta["source"]["study_name"] == "replayed"
    assert meta["sampler"] is None and loaded.n_validation == 64   # a loaded study: sampler unknown
    assert status.done == N_NATIVE + N_PRUNED and status.missing == 0
    assert trials_csv.read_text().count(",pruned,") == N_PRUNED
    with pytest.raises(ValueError, match="'imported' is already in"):
        imports.import_study("optuna", db, workspace=tmp_path / "ws", name="imported")


def _wandb_export(tmp_path):
    """A W&B runs export (Name, State, config.*, a summary metric) and its history, as CSV."""
    pandas = optional_import("pandas")
    rng = np.random.default_rng(0)
    runs, history = [], []
    states = ["finished"] * 6 + ["killed", "crashed", "running"]
    for i, state in enumerate(states):
        lr = float(10 ** rng.uniform(-3, 0))
        opt = ("sgd", "adam")[i % 2]
        curve = [1.0 / (1 + lr * 100 * s) + 0.05 for s in range(0, 50, 10)]
        if i == 5:
            curve[-1] = math.inf                            # diverged, yet "finished"
        done = {"finished": 5, "killed": 2, "crashed": 1, "running": 3}[state]
        runs.append({"Name": f"run-{chr(97 + i)}", "State": state, "config.lr": lr,
                     "config.optimizer": opt, "val_loss": min(curve[:done]) if done else None})
        history += [{"Name": f"run-{chr(97 + i)}", "_step": 10 * s, "val_loss": v}
                    for s, v in enumerate(curve[:done])]
    pandas.DataFrame(runs).to_csv(tmp_path / "runs.csv", index=False)
    pandas.DataFrame(history).to_csv(tmp_path / "history.csv", index=False)
    return tmp_path / "runs.csv", tmp_path / "history.csv"


def test_a_csv_in_the_wandb_export_shape(tmp_path):
    runs, history = _wandb_export(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = analysis.from_csv(runs, curves=history, metric="validation/loss",
                                  value="val_loss", scientific=["optimizer"])
    assert any("'running' (unfinished): left out" in str(w.message) for w in caught)
    statuses = [r.status for r in frame.rows]
    assert statuses == [TrialStatus.COMPLETE] * 5 + [TrialStatus.INFEASIBLE, TrialStatus.PRUNED,
                                                     TrialStatus.FAILED]
    assert frame.result(0).extras["external_id"] == "run-a"          # names are kept
    assert frame.space["lr"].scale == "log" and frame.scientific == ("optimizer",)
    steps, values = frame.curve(0, "validation/loss")
    assert list(steps) == [0, 10, 20, 30, 40] and frame.row(0).objective == values.min()
    assert frame.row(0).best_step == 40 and frame.max_train_steps == 40


def test_import_study_from_csv_and_its_report(tmp_path):
    runs, history = _wandb_export(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imports.StudyImportWarning)
        summary = imports.import_study("csv", runs, workspace=tmp_path / "ws", name="wandb",
                                       curves=history, metric="validation/loss",
                                       value="val_loss", scientific=["optimizer"])
    assert summary.counts == {"complete": 5, "infeasible": 1, "failed": 1, "pruned": 1}
    assert any("running" in w for w in summary.warnings)
    with study.Store(tmp_path / "ws", readonly=True) as store:
        rep = report.write_report(store, "wandb", tmp_path / "report")
    md = rep.markdown.read_text()
    assert "**Imported** (csv: path=" in md and "sampler: unknown" in md
    assert "1 pruned (stopped early" in md and "1 trial crashed (failed)" in md


def test_records_outside_the_given_range_are_kept_with_a_warning():
    sp = search.SearchSpace(lr=search.Float(1e-3, 1.0, scale="log"))
    rows = [{"trial": 3, "status": "complete", "objective": 0.2, "config": {"lr": 0.01}},
            {"trial": 7, "status": "COMPLETE", "objective": 0.1, "config": {"lr": 5.0}},
            {"trial": 9, "status": "pruned", "objective": None, "config": {"lr": 0.1},
             "curves": {"validation/objective": {0: 0.9, 1: 0.8}}},
            {"trial": 11, "status": "complete", "objective": math.nan, "config": {"lr": 0.5}}]
    with pytest.warns(imports.StudyImportWarning, match=r"trial 7: lr=5.*widened to \[0.001, 5\]"):
        frame = analysis.from_records(rows, space=sp)
    assert [r.trial for r in frame.rows] == [3, 7, 9, 11]               # external numbers kept
    assert frame.space["lr"].high == 5.0
    assert [r.status for r in frame.rows] == [TrialStatus.COMPLETE, TrialStatus.COMPLETE,
                                              TrialStatus.PRUNED, TrialStatus.INFEASIBLE]
    assert analysis.best(frame, by=None)[()].trial == 7


def test_status_words_and_their_errors():
    assert imports.parse_status("FAIL") == TrialStatus.FAILED
    assert imports.parse_status("TrialState.PRUNED") == TrialStatus.PRUNED
    assert imports.parse_status("TERMINATED") == TrialStatus.COMPLETE
    assert imports.parse_status("RUNNING") is None
    with pytest.raises(ValueError, match="status 'exploded' is not one refplay reads"):
        imports.parse_status("exploded")
    with pytest.raises(ValueError, match="kind='wandb' is not allowed"):
        imports.import_study("wandb", "x.csv", workspace="ws", name="x")


def test_a_conditional_parameter_without_a_deciding_choice_is_an_error():
    pandas = optional_import("pandas")
    df = pandas.DataFrame({"number": [0, 1], "value": [0.1, 0.2], "state": ["COMPLETE"] * 2,
                           "params_lr": [0.1, 0.2], "params_gamma": [0.9, None]})
    with pytest.raises(ValueError, match="'gamma' is missing from some trials"):
        imports.read_dataframe(df)


def test_optunas_trials_dataframe_and_a_ray_tune_table(native, optuna_study):
    pandas = optional_import("pandas")
    _, frame = native
    df = optuna_study.trials_dataframe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imports.StudyImportWarning)
        table = analysis.from_dataframe(df, scientific=["optimizer"], metric=METRIC)
    # The same best trials; without the reports a NaN return reads as a crash (FAIL).
    assert {v: (b.trial, b.objective) for v, b in analysis.best(table).items()} == \
        {v: (b.trial, b.objective) for v, b in analysis.best(frame).items()}
    assert table.space["gamma"].when == {"optimizer": ("nesterov",)}      # inferred
    assert table.count(TrialStatus.PRUNED) == N_PRUNED
    assert table.count(TrialStatus.FAILED) == frame.count(TrialStatus.FAILED) + \
        frame.count(TrialStatus.INFEASIBLE)
    ray = pandas.DataFrame({"trial_id": ["a_00000", "a_00001", "a_00002"],
                            "loss": [0.3, float("nan"), 0.2],
                            "config/lr": [0.01, 2.0, 0.1], "config/optimizer": ["sgd"] * 3})
    tune = analysis.from_dataframe(ray, metric="validation/loss")
    assert [str(s) for s in tune.statuses()] == ["complete", "infeasible", "complete"]
    assert analysis.best(tune, by=None)[()].trial == 2
    assert tune.result(0).extras["external_id"] == "a_00000"
    assert tune.space["optimizer"] == search.Fixed("sgd")


# ------------------------------------------------------------------ refplay study import
def _cli(capsys, *argv):
    """``refplay ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_refplay_study_import_optuna_then_list_status_report_export(optuna_study, tmp_path,
                                                                     capsys):
    optuna = optional_import("optuna")
    db = tmp_path / "optuna.db"
    optuna.copy_study(from_study_name="replayed", from_storage=optuna_study._storage,
                      to_storage=f"sqlite:///{db}")
    ws = str(tmp_path / "ws")
    code, out, err = _cli(capsys, "study", "import", "optuna", str(db), "--name", "tpe",
                          "--scientific", "optimizer", "--metric", METRIC, "--n-validation",
                          "64", "--sampler", "TPESampler", "--goal", "adam or nesterov?",
                          "--workspace", ws)
    assert code == 0 and err == ""
    counts = {s: sum(t.state.name == s for t in optuna_study.trials) for s in ("PRUNED", "FAIL")}
    assert f"{counts['PRUNED']} pruned" in out and counts["PRUNED"] == N_PRUNED
    assert "failed" in out and "infeasible" in out       # the crashes and the NaN returns
    code, out, _ = _cli(capsys, "study", "status", "tpe", "--workspace", ws)
    assert code == 0 and f"pruned {N_PRUNED})" in out and "goal:        adam or nesterov?" in out
    assert "reproduce:   refplay study import optuna" in out and "--sampler TPESampler" in out
    code, out, _ = _cli(capsys, "study", "list", "--workspace", ws)
    assert code == 0 and out.startswith("study") and "\ntpe " in out
    code, out, _ = _cli(capsys, "study", "resume", "tpe", "--workspace", ws)
    assert code == 0 and out.strip() == ("study 'tpe' was imported from optuna: its trials ran "
                                         "there, nothing to resume")
    code, out, _ = _cli(capsys, "study", "report", "tpe", "--n-validation", "1000",
                        "--workspace", ws)
    assert code == 0 and "optimizer=" in out and "report.html" in out
    with study.Store(ws, readonly=True) as store:
        assert analysis.load(store, "tpe").n_validation == 64      # recorded, not overwritten
        assert store.meta("tpe")["sampler"] == "TPESampler"
    code, out, _ = _cli(capsys, "study", "export", "tpe", "--csv", str(tmp_path / "t.csv"),
                        "--workspace", ws)
    assert code == 0 and (tmp_path / "t.csv").read_text().count(",pruned,") == N_PRUNED


def test_refplay_study_import_csv_prints_each_warning_once(tmp_path, capsys):
    runs, history = _wandb_export(tmp_path)
    ws = str(tmp_path / "ws")
    with warnings.catch_warnings():
        warnings.simplefilter("error", imports.StudyImportWarning)  # the CLI silences them
        code, out, err = _cli(capsys, "study", "import", "csv", str(runs), "--name", "wandb",
                              "--curves", str(history), "--value", "val_loss", "--metric",
                              "validation/loss", "--scientific", "optimizer", "--mode", "min",
                              "--workspace", ws)
    assert code == 0 and err == ""
    assert "wandb (5 complete, 1 infeasible, 1 failed, 1 pruned)" in out
    assert out.count("'running' (unfinished): left out") == 1
    code, out, _ = _cli(capsys, "study", "status", "wandb", "--workspace", ws)
    assert "(complete 5, infeasible 1, failed 1, pruned 1)" in out
    code, out, _ = _cli(capsys, "study", "report", "wandb", "--workspace", ws)
    assert code == 0 and "optimizer=sgd" in out
    code, _, err = _cli(capsys, "study", "import", "csv", str(runs), "--name", "again",
                        "--study-name", "x", "--workspace", ws)
    assert code == 2 and err.strip() == ("refplay: error: --study-name goes with `refplay study "
                                         "import optuna`, not csv")
