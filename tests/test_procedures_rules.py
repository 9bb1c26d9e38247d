"""The procedures' pure decision rules, on fabricated inputs (milliseconds)."""

import math

import numpy as np
import pytest
from scipy import stats

from refplay import analysis, schedules
from refplay.procedures import batch_size, noise, rounds, step_budget, variance
from refplay.train.result import TrialResult


def _result(steps, values, metric="train_eval/error_rate", status="complete", best_step=None,
            steps_done=None):
    return TrialResult(config={"optimizer": "adam", "lr": 1e-3}, seed=0, status=status,
                       eval_steps=list(steps), curves={metric: list(values)},
                       best_step=best_step, steps_done=steps_done or max(steps),
                       best_metrics={"validation/error_rate": 0.1})


# ------------------------------------------------------------------ step budget
def test_first_step_reaching_finds_first_evaluation_at_or_below_target():
    r = _result([0, 50, 100, 150], [0.9, 0.1, 0.0, 0.0])
    assert step_budget.first_step_reaching(r, 0.0) == 100
    assert step_budget.first_step_reaching(r, 0.1) == 50
    assert step_budget.first_step_reaching(r, -1.0) is None


def test_first_step_reaching_ignores_nan_and_names_missing_metric():
    r = _result([0, 50], [math.nan, 0.0])
    assert step_budget.first_step_reaching(r, 0.0) == 50
    with pytest.raises(ValueError, match="validation/loss"):
        step_budget.first_step_reaching(r, 0.0, metric="validation/loss")


def test_fastest_fit_picks_minimum_and_flags_upper_edge():
    sweep = step_budget.fastest_fit([1e-3, 1e-2, 1e-1], [900, 400, 300])
    assert (sweep.candidate, sweep.fastest_lr, sweep.at_upper_edge) == (300, 1e-1, True)
    inner = step_budget.fastest_fit([1e-3, 1e-2, 1e-1], [900, 400, None])
    assert (inner.candidate, inner.fastest_lr, inner.at_upper_edge) == (400, 1e-2, False)
    none = step_budget.fastest_fit([1e-3, 1e-2], [None, None])
    assert none.candidate is None and none.fastest_lr is None


def test_fastest_fit_ties_go_to_smaller_lr():
    assert step_budget.fastest_fit([1e-3, 1e-2], [400, 400]).fastest_lr == 1e-3


def test_sweep_config_forces_regularizers_off_and_refuses_them_when_set():
    from refplay.train.workloads import get_workload
    wl = get_workload("mnist1d_mlp")
    c = step_budget._sweep_config(wl, "adam", 1e-3, None)
    assert c["dropout"] == 0.0 and c["label_smoothing"] == 0.0 and c["schedule"] == "constant"
    with pytest.raises(ValueError, match="dropout"):
        step_budget._sweep_config(wl, "adam", 1e-3, {"dropout": 0.2})
    with pytest.raises(ValueError, match="weight_decay"):
        step_budget._sweep_config(wl, "adam", 1e-3, {"weight_decay": 1e-4})
    with pytest.raises(ValueError, match="schedule"):
        step_budget._sweep_config(wl, "adam", 1e-3, {"schedule": "cosine"})


@pytest.mark.parametrize("best_steps,code", [
    ([5, 8, 9, 3], "max_train_steps_too_high"),
    ([95, 90, 99, 80], "train_longer"),
    ([30, 60, 95, 50], "ok"),
])
def test_refine_max_train_steps_branches(best_steps, code):
    results = [_result([0, 100], [0.5, 0.4], best_step=b, steps_done=100) for b in best_steps]
    out = step_budget.refine_max_train_steps(results)
    assert out.numbers["decision_code"] == code
    assert {"too_high": "too long", "train_longer": "train longer", "ok": "ok"}[
        code.replace("max_train_steps_", "")] in out.decision
    assert "best_step_fractions" in out.figures


def test_refine_counts_a_best_step_at_exactly_75_percent_as_late():
    # The histogram draws 0.75 right of the line; the number and the decision agree with it.
    results = [_result([0, 100], [0.5, 0.4], best_step=b, steps_done=100)
               for b in (75, 80, 90, 10)]
    out = step_budget.refine_max_train_steps(results)
    assert out.numbers["fraction_in_last_25pct"] == 0.75
    assert out.numbers["decision_code"] == "train_longer"


def test_refine_rejects_other_inputs():
    with pytest.raises(TypeError, match="TrialsFrame"):
        step_budget.refine_max_train_steps("study")


# --------------------------------------------------------------- batch size
def test_throughput_decision_nearly_doubles_rule():
    # 2x, 1.9x, 1.2x: the third doubling falls short of 1.5x.
    d = batch_size.throughput_decision([8, 16, 32, 64], [100, 200, 380, 456])
    assert d.max_useful_batch == 32 and not d.bottleneck_suspected
    assert d.max_throughput_batch == 64
    np.testing.assert_allclose(d.gains, [2.0, 1.9, 1.2])


def test_throughput_decision_bottleneck_and_memory_limit():
    d = batch_size.throughput_decision([8, 16, 32], [100, 120, 130])
    assert d.bottleneck_suspected and d.max_useful_batch == 8
    m = batch_size.throughput_decision([8, 16, 32], [100, 200, 400], feasible=[True, True, False])
    assert m.max_useful_batch == 16 and m.max_throughput_batch == 16


def test_throughput_decision_scales_requirement_for_non_doublings():
    # 8 -> 32 is two doublings: needs 1.5**2 = 2.25x.
    assert batch_size.throughput_decision([8, 32], [100, 230]).max_useful_batch == 32
    assert batch_size.throughput_decision([8, 32], [100, 220]).max_useful_batch == 8


def test_throughput_decision_rejects_unsorted():
    with pytest.raises(ValueError, match="increasing"):
        batch_size.throughput_decision([16, 8], [1, 2])


def test_batch_throughput_with_injected_step_time_model():
    # Time per step: fixed overhead 1 ms + 0.01 ms per example: saturates past B ~ 100.
    def model(workload, b, steps):
        return 1e-3 + 1e-5 * b, 0.01 * b, 100.0
    out = batch_size.batch_throughput("spirals_mlp", batch_sizes=(8, 16, 32, 64, 128, 256),
                                      measure=model)
    eps = [b / (1e-3 + 1e-5 * b) for b in (8, 16, 32, 64, 128, 256)]
    np.testing.assert_allclose(out.numbers["examples_per_second"], eps)
    gains = [e1 / e0 for e0, e1 in zip(eps, eps[1:])]
    expected = 8
    for b, g in zip((16, 32, 64, 128, 256), gains):
        if g < 1.5:
            break
        expected = b
    assert out.numbers["max_useful_batch"] == expected
    # Peak memory grows linearly in B under the model, and a limit marks the large sizes.
    limited = batch_size.batch_throughput("spirals_mlp", batch_sizes=(8, 16, 32, 64, 128, 256),
                                          measure=model, memory_limit_mb=1.0)
    assert limited.numbers["feasible"] == [True, True, True, True, False, False]


def test_batch_throughput_refuses_batches_larger_than_training_set():
    with pytest.raises(ValueError, match="batch_sizes"):
        batch_size.batch_throughput("spirals_mlp", batch_sizes=(8, 100_000),
                                    measure=lambda *a: (1.0, 1.0, 1.0))


def test_scaling_decision_perfect_then_flat():
    bs = [16, 32, 64, 128, 256]
    steps = [1600, 800, 400, 300, 290]
    d = batch_size.scaling_decision(bs, steps)
    assert d.small_slope == pytest.approx(-1.0)
    assert d.large_slope == pytest.approx(math.log2(290 / 300))
    assert d.critical_batch == 64
    assert d.examples == (25600, 25600, 25600, 38400, 74240)
    assert d.max_increase < 0


def test_scaling_decision_drops_unreached_and_needs_two():
    d = batch_size.scaling_decision([16, 32, 64], [None, 800, 400])
    assert d.batch_sizes == (32, 64)
    with pytest.raises(ValueError, match="two batch sizes"):
        batch_size.scaling_decision([16, 32], [None, 800])


def test_log2_slope():
    assert batch_size.log2_slope(16, 1000, 64, 250) == pytest.approx(-1.0)


# ------------------------------------------------------------------ adoption
def test_student_t_matches_scipy():
    for df in (2.0, 5.5, 30.0):
        for t in (-3.0, -0.5, 0.0, 1.2, 4.0):
            assert variance.student_t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-10)
        assert variance.student_t_ppf(0.975, df) == pytest.approx(stats.t.ppf(0.975, df),
                                                                  abs=1e-8)


def test_adopt_welch_matches_scipy_and_decides():
    rng = np.random.default_rng(0)
    base = rng.normal(0.30, 0.01, 10)
    cand = rng.normal(0.28, 0.01, 10)
    a = variance.adopt(cand, base)
    ref = stats.ttest_ind(base, cand, equal_var=False)
    assert a.p_value == pytest.approx(ref.pvalue, rel=1e-6)
    assert a.effect == pytest.approx(base.mean() - cand.mean())
    assert a.decision == "adopt" and a.ci_low > 0
    # Same effect, but demand more than it delivers.
    assert variance.adopt(cand, base, min_effect=0.05).decision == "insufficient evidence"


def test_adopt_welch_no_effect_is_insufficient():
    rng = np.random.default_rng(1)
    a = variance.adopt(rng.normal(0.3, 0.01, 10), rng.normal(0.3, 0.01, 10))
    assert a.decision == "insufficient evidence" and a.ci_low <= 0 <= a.ci_high


def test_adopt_mcnemar_exact_p_value_and_effect():
    # 30 examples only the candidate gets right, 10 only the baseline, 460 both/neither.
    base = np.array([True] * 10 + [False] * 30 + [True] * 300 + [False] * 160)
    cand = np.array([False] * 10 + [True] * 30 + [True] * 300 + [False] * 160)
    a = variance.adopt(cand, base, test="mcnemar")
    assert a.effect == pytest.approx(20 / 500)
    assert a.p_value == pytest.approx(stats.binomtest(10, 40, 0.5).pvalue, rel=1e-9)
    assert a.decision == "adopt"
    assert set(a.record(study="s", trial=3)) >= {"study", "trial", "effect", "ci_low", "p_value"}


def test_adopt_rejects_bad_input():
    with pytest.raises(ValueError, match="test"):
        variance.adopt([1, 2], [1, 2], test="ttest")
    with pytest.raises(ValueError, match="at least 2"):
        variance.adopt([0.1], [0.2, 0.3])
    with pytest.raises(ValueError, match="boolean"):
        variance.adopt([0.1, 0.2], [0.2, 0.3], test="mcnemar")


def test_two_proportion_z():
    z = variance.two_proportion_z(0.30, 0.25, 500)
    pbar = 0.275
    assert z == pytest.approx(0.05 / math.sqrt(pbar * (1 - pbar) * 2 / 500))


# -------------------------------------------------------------------- rounds
@pytest.mark.parametrize("n1,n2", [(100, 1000), (1000, 10_000), (300, 1500), (7, 7)])
def test_rsqrt_pitfall_is_exactly_one_minus_ratio(n1, n2):
    # CL25: a sqrt decay tuned for N1 and extended to N2 spends 1 - N1/N2 below its final rate.
    assert rounds.rsqrt_pitfall(n1, n2, base_lr=0.1, shift=50) == pytest.approx(1 - n1 / n2)


def test_pitfall_of_playbook_extensions_is_zero_for_linear():
    # extend_linear keeps the rate at base until the same decay: never below Round 1's final
    # rate before the last N1 steps.
    n1, n2 = 100, 1000
    s1 = schedules.linear_decay(1.0, n1, final_lr=0.1)
    s2 = schedules.extend_linear(s1, n2)
    assert rounds.schedule_pitfall(s1, n1, s2, n2) == 0.0


def test_round2_config_matches_schedule_extension():
    c = rounds._round2_config({"optimizer": "adam", "lr": 0.01}, "linear", 300, 1500)
    assert (c["decay_steps"], c["constant_steps"]) == (300, 1200)
    c = rounds._round2_config({"optimizer": "adam", "lr": 0.01}, "cosine", 300, 1500)
    assert c["decay_steps"] == 1500


# --------------------------------------------------------------------- noise
def test_monotone_in_treats_none_as_infinite():
    assert noise.monotone_in([100, 200, None])
    assert not noise.monotone_in([100, None, 300])
    assert not noise.monotone_in([300, 200])


def test_analysis_frame_round_trip_for_refine():
    # refine accepts a TrialsFrame as well as a list of results.
    frame = analysis.from_results([_result([0, 100], [0.5, 0.4], best_step=5, steps_done=100)])
    assert step_budget.refine_max_train_steps(frame).numbers["decision_code"] == \
        "max_train_steps_too_high"


def test_epoch_budget_misses_the_batch_sizes_past_the_critical_one():
    from refplay.procedures.batch_size import epoch_budget
    # Perfect scaling up to B=64, then flat: examples-to-result 1600, 1600, 1600, 3200, 6400.
    out = epoch_budget([16, 32, 64, 128, 256], [100, 50, 25, 25, 25], critical_batch=64)
    assert out["epoch_budget_examples"] == 1600
    assert out["epoch_budget_misses"] == [128, 256]
    assert out["large_batches_miss_epoch_budget"] is True
    # No size at 4x the critical one: nothing to say.
    assert epoch_budget([16, 32], [100, 50], 32)["large_batches_miss_epoch_budget"] is None
    assert epoch_budget([16, 32], [100, None], 16)["epoch_budget_misses"] == [32]


def test_refine_steps_from_the_command_line_reads_a_stored_study(tmp_path, capsys):
    from refplay import search, study
    from refplay.cli import main
    from refplay.study.synthetic import LinearRegressionTrial
    spec = study.StudySpec(name="toy", workload=None, num_trials=6, max_train_steps=60,
                           eval_every=10, metric="validation/loss",
                           search_space=search.SearchSpace(
                               optimizer=search.Fixed("sgd"),
                               lr=search.Float(1e-3, 0.3, scale="log")))
    study.run(spec, store=tmp_path / "ws", trial_fn=LinearRegressionTrial(60, 10), workers=0,
              progress=False)
    assert main(["procedure", "refine-steps", "toy", "--workspace", str(tmp_path / "ws"),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "Decision: " in out and "n_complete: " in out
    assert (tmp_path / "out" / "best_step_fractions.png").exists()
    assert main(["procedure", "refine-steps", "nosuch", "--workspace",
                 str(tmp_path / "ws")]) == 2
    assert "no study named 'nosuch'" in capsys.readouterr().err


def test_adopt_from_the_command_line_compares_two_studies_of_retrains(tmp_path, capsys):
    from refplay import study
    from refplay.cli import main
    from refplay.procedures import adopt
    from refplay.study.synthetic import LinearRegressionTrial
    fn = LinearRegressionTrial(60, 10)
    for name, lr in (("good", 0.1), ("bad", 0.003)):
        spec = study.StudySpec(name=name, workload=None, sampler="explicit", repeats=4,
                               configs=[{"optimizer": "sgd", "lr": lr}], max_train_steps=60,
                               eval_every=10, metric="validation/loss")
        study.run(spec, store=tmp_path, trial_fn=fn, workers=0, progress=False)
    assert main(["procedure", "adopt", "good", "bad", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    with study.Store(tmp_path, readonly=True) as store:
        good = [t.objective for t in store.trials("good")]
        bad = [t.objective for t in store.trials("bad")]
    assert adopt(good, bad).message in out and out.count("complete retrains") == 1
    assert "adopt: the candidate improves" in out
    assert main(["procedure", "adopt", "good", "nosuch", "--workspace", str(tmp_path)]) == 2
