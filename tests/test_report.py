"""The study report: renders on tiny, degenerate and large studies; its numbers are analysis's."""

from __future__ import annotations

import base64
import math
import re

import pytest

from refplay import analysis, report, search, study, tuning
from refplay.cli import main as refplay_main
from refplay.report.build import answer_line, fmt, fmt_position
from refplay.study.synthetic import LinearRegressionTrial

STEPS = 40


def space(scientific=True, lr_high=3.0):
    params = {"lr": search.Float(1e-3, lr_high, scale="log"),
              "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"})}
    if scientific:
        params["optimizer"] = search.Choice(["nesterov", "adam"], role="scientific")
    else:
        params["optimizer"] = search.Fixed("nesterov")
    return search.SearchSpace(params)


def run(ws, name, n, **kw):
    spec = study.StudySpec(name=name, workload=None, num_trials=n, max_train_steps=STEPS,
                           eval_every=10, metric="validation/loss", search_space=space(**kw),
                           goal="Which optimizer fits better?")
    study.run(spec, store=ws, workers=0, trial_fn=LinearRegressionTrial(STEPS, 10),
              progress=False)


def write(ws, name, tmp_path):
    with study.Store(ws, readonly=True) as store:
        rep = report.write_report(store, name, tmp_path / f"{name}_report")
        frame = analysis.load(store, name)
    md, page = rep.markdown.read_text(), rep.html.read_text()
    for key, path in rep.images.items():
        assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
        assert f"({key}.png)" in md
        assert base64.b64encode(path.read_bytes()).decode() in page     # embedded
    assert page.count("<img") == len(rep.images) and "src='report" not in page
    return rep, frame, md


def test_report_numbers_equal_the_analysis_functions(tmp_path):
    run(tmp_path / "ws", "mid", 24)
    rep, frame, md = write(tmp_path / "ws", "mid", tmp_path)
    best = analysis.best(frame)
    for value, b in best.items():
        row = f"| {frame.label(value)} | {fmt(b.objective)} | - | {b.trial} | {b.step} |"
        assert row in md
    assert answer_line(frame, list(rep.numbers["best"].values())) in md
    for param, by in (("lr", "scientific"), ("gamma", "scientific")):
        checks = analysis.boundary_check(frame, param, by=by).checks
        for value, c in checks.items():
            assert rep.numbers["boundary"][param].checks[value] == c
            assert f"| {param} | {frame.label(value)} | " \
                   f"{', '.join(fmt_position(u) for u in c.positions)} |" in md
            assert f"| {c.decision} |" in md
    counts = analysis.infeasible_fraction(frame)
    for value, c in counts.items():
        complete = c.n_trials - c.n_infeasible - c.n_failed - c.n_pruned
        assert f"| {complete}/{c.n_trials} | {fmt(c.fraction)} | {c.n_failed}/{c.n_pruned} |" \
            in md
    for i in analysis.importance(frame):
        assert f"| {i.param} | {fmt(i.spread)} | {i.n_slices} |" in md
    assert "**These conclusions hold only for**" in md and "max_train_steps = 40" in md
    assert set(rep.images) >= {"axis_lr", "axis_gamma", "isolation_optimizer", "best_of_n",
                               "training_curves", "best_steps"}


def test_report_on_a_two_trial_study(tmp_path):
    run(tmp_path / "ws", "two", 2)
    rep, frame, md = write(tmp_path / "ws", "two", tmp_path)
    assert "best_of_n" not in rep.images and len(frame) == 2
    assert "vs" in rep.numbers["answer"] or "Best" in rep.numbers["answer"]


def test_report_when_every_trial_is_infeasible(tmp_path):
    spec = study.StudySpec(name="boom", workload=None, num_trials=4, max_train_steps=STEPS,
                           eval_every=10, metric="validation/loss", search_space=search.SearchSpace(
                               optimizer=search.Fixed("sgd"),
                               lr=search.Float(50.0, 100.0, scale="log")))
    study.run(spec, store=tmp_path / "ws", workers=0, trial_fn=LinearRegressionTrial(STEPS, 10),
              progress=False)
    rep, frame, md = write(tmp_path / "ws", "boom", tmp_path)
    assert frame.statuses() == ["infeasible"] * 4
    assert "No trial completed" in md
    assert "no_complete_trials" in md and "more than half" in md
    assert "axis_lr" in rep.images and "training_curves" not in rep.images


def test_report_without_a_scientific_hyperparameter(tmp_path):
    run(tmp_path / "ws", "tune", 8, scientific=False)
    rep, frame, md = write(tmp_path / "ws", "tune", tmp_path)
    assert frame.scientific == ()
    assert "| all trials |" in md and "(none: a tuning study)" in md
    assert not any(k.startswith("isolation") for k in rep.images)


@pytest.mark.slow
def test_report_on_a_200_trial_study(tmp_path):
    run(tmp_path / "ws", "big", 200)
    rep, frame, md = write(tmp_path / "ws", "big", tmp_path)
    assert len(frame) == 200
    assert all(b.budgets == tuple(range(2, 21)) for b in rep.numbers["best_of_n"].values())


def test_cli_report_and_run_summary(tmp_path, capsys):
    run(tmp_path / "ws", "cli", 6)
    out = tmp_path / "out"
    code = refplay_main(["study", "report", "cli", "--workspace", str(tmp_path / "ws"),
                         "--out", str(out)])
    assert code == 0 and (out / "report.md").exists() and (out / "report.html").exists()
    assert str(out / "report.html") in capsys.readouterr().out
    code = refplay_main(["study", "report", "nope", "--workspace", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope" in err
    with study.Store(tmp_path / "ws", readonly=True) as store:
        text = report.summary_table(analysis.load(store, "cli"))
    assert re.search(r"optimizer=(adam|nesterov)", text) and text.splitlines()[-1].endswith(".")


def test_the_answer_states_error_rates_with_their_binomial_standard_error():
    from refplay.report.build import summary_table
    from refplay.train.result import TrialResult
    sp = search.SearchSpace({"optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
                             "lr": search.Float(1e-3, 1.0, scale="log")})
    results = [TrialResult(config={"optimizer": o, "lr": 0.1}, seed=0, eval_steps=[0, 10],
                           curves={"validation/error_rate": [0.9, e]}, best_step=10,
                           best_metrics={"validation/error_rate": e})
               for o, e in [("nesterov", 0.078), ("adam", 0.086), ("adam", 0.2)]]
    frame = analysis.from_results(results, space=sp, n_validation=500)
    text = summary_table(frame)
    se_n = analysis.binomial_se(0.078, 500)
    se_a = analysis.binomial_se(0.086, 500)
    both = (se_n ** 2 + se_a ** 2) ** 0.5
    assert (f"optimizer=nesterov 0.078 ± {se_n:.2g} vs optimizer=adam 0.086 ± {se_a:.2g} on 500 "
            f"validation examples: the difference (0.008) is not larger than 2 standard errors "
            f"(2 × {both:.2g} = {2 * both:.2g}).") in text
    assert "0.078 ± 0.012" in text                # what a student reads: two significant digits


def error_rate(config, seed):
    """An error rate in [0.05, 1): best at lr = 0.1, sgd 0.01 worse than adam."""
    gap = abs(math.log10(config["lr"]) + 1.0)
    return min(0.99, 0.05 + 0.1 * gap + (0.01 if config["optimizer"] == "sgd" else 0.0))


def test_n_validation_as_a_study_setting_and_a_report_option(tmp_path):
    sp = search.SearchSpace({"optimizer": search.Choice(["sgd", "adam"], role="scientific"),
                             "lr": search.Float(1e-3, 1.0, scale="log")})
    tuning.optimize(error_rate, sp, n_trials=12, name="er", workspace=tmp_path / "ws",
                    metric="validation/error_rate")
    with study.Store(tmp_path / "ws", readonly=True) as store:
        unknown = report.write_report(store, "er", tmp_path / "a").numbers["answer"]
        given = report.write_report(store, "er", tmp_path / "b", n_validation=500)
    assert "n_validation unknown" in unknown and "not an error rate" not in unknown
    assert "on 500 validation examples" in given.numbers["answer"]
    assert "± " in given.numbers["answer"]
    tuning.optimize(error_rate, sp, n_trials=12, name="er", workspace=tmp_path / "ws",
                    metric="validation/error_rate", n_validation=800)     # recorded with the study
    with study.Store(tmp_path / "ws", readonly=True) as store:
        assert analysis.load(store, "er").n_validation == 800
        assert "on 800 validation examples" in report.write_report(
            store, "er", tmp_path / "c").numbers["answer"]


def test_the_conclusions_list_the_defaults_the_trials_used(tmp_path):
    spec = study.StudySpec(name="mlp", workload="spirals_mlp", num_trials=2, max_train_steps=10,
                           eval_every=5, metric="validation/error_rate",
                           search_space=search.SearchSpace(
                               optimizer=search.Fixed("adam"),
                               lr=search.Float(1e-3, 1e-2, scale="log")))
    study.run(spec, store=tmp_path / "ws", workers=0, progress=False)
    with study.Store(tmp_path / "ws", readonly=True) as store:
        frame = analysis.load(store, "mlp")
        resolved = frame.result(0).extras["resolved_config"]
        md = report.write_report(store, "mlp", tmp_path / "r").markdown.read_text()
    scope = md.split("**These conclusions hold only for**")[1].split("\n\n")[1]
    assert f"- batch_size = {resolved['batch_size']!r} (default)" in scope
    assert "- lr" not in scope and "- optimizer = 'adam'" in scope
