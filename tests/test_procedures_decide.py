"""Every branch of every procedure's ``decide``, on hand-made numbers (no training).

A procedure is measure -> decide -> draw; ``decide`` is a pure function of the
measured numbers, so each of the playbook's decisions is checked here in
milliseconds, on values chosen to land in one branch each.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from refplay import analysis
from refplay.procedures import (batch_size, boundaries, clipping, frequent_evals, instability,
                                isolation, model_change, rounds, step_budget, sweeps, trial_budget,
                                variance, warmup, warmup_effect)


# ------------------------------------------------------------------------ warmup
def _candidate(w, *, seed=0, status="complete", learned=True, recovered=True, error=0.1,
               fail=None, lr_at=None):
    return warmup.Candidate(warmup_steps=w, seed=seed, status=status, steps_done=400, events=0,
                            recovered=recovered, learned=learned, best_error=error,
                            failing_step=fail, lr_at_failure=lr_at)


def _warmup(candidates, *, steps=400, prepended=None, baseline=0.05, seeds=(0,)):
    return warmup.WarmupMeasured(
        workload="w", max_train_steps=steps, target_lr=0.32, baseline_lr=0.04, seeds=list(seeds),
        good_factor=3.0, candidates=candidates, losses={}, baseline_errors=[baseline] * len(seeds),
        prepended_error=prepended, prepended_steps=None if prepended is None else steps + 40,
        prepended_best_step=None)


@pytest.mark.parametrize("kwargs, why", [
    ({}, "stable"),
    ({"status": "infeasible"}, "infeasible"),
    ({"learned": False}, "collapsed back (did not learn)"),
    ({"recovered": False}, "a loss spike did not recover"),
    ({"error": 0.16}, "error 0.160 > 3 × the baseline's 0.050"),
])
def test_warmup_is_stable_needs_every_condition_and_says_which_failed(kwargs, why):
    assert warmup.why_not_stable(_candidate(40, **kwargs), 0.05, 3.0) == why
    assert warmup.is_stable(_candidate(40, **kwargs), 0.05, 3.0) is (why == "stable")
    assert not warmup.is_stable(_candidate(40), None, 3.0)     # no baseline: nothing stable


def test_warmup_decide_no_stable_warmup():
    d = warmup.decide(_warmup([_candidate(0, learned=False), _candidate(10, error=0.5)]))
    assert d.shortest is None and d.stable == [False, False]
    assert d.why == ["collapsed back (did not learn)", "error 0.500 > 3 × the baseline's 0.050"]
    assert d.text.startswith("No warmup tried ([0, 10]) trains lr = 0.32 (8 × the baseline's "
                             "0.04) stably on every seed.")


def test_warmup_decide_shortest_within_5_percent_and_prepended_better():
    d = warmup.decide(_warmup([_candidate(0, learned=False), _candidate(10), _candidate(40)],
                              prepended=0.04, baseline=0.05))
    assert d.shortest == 10 and d.within_10pct and not d.above_5pct and d.prepended_better
    assert "A warmup of 10 steps (2% of max_train_steps)" in d.text
    assert "(8.0 × the baseline's 0.04)" in d.text
    assert d.text.endswith("adopt the warmup and the higher rate.") and "consider" not in d.text


def test_warmup_decide_above_5_and_above_10_percent_and_no_gain():
    d = warmup.decide(_warmup([_candidate(40)], prepended=0.06, baseline=0.05))
    assert d.shortest == 40 and d.within_10pct and d.above_5pct and d.prepended_better is False
    assert "It is above 5% of max_train_steps: consider a larger max_train_steps." in d.text
    assert d.text.endswith("no gain over the baseline.")
    d = warmup.decide(_warmup([_candidate(100)]))
    assert not d.within_10pct and "It is above 10% of max_train_steps: too long." in d.text
    assert d.prepended_better is None and "Prepended" not in d.text


def test_warmup_shortest_must_be_stable_on_every_seed():
    cands = [_candidate(10, seed=0), _candidate(10, seed=1, learned=False),
             _candidate(40, seed=0), _candidate(40, seed=1)]
    assert warmup.decide(_warmup(cands, seeds=(0, 1))).shortest == 40


def test_warmup_decide_failures_follow_the_ramp_on_every_seed():
    def fails(seed, steps):
        return [_candidate(w, seed=seed, status="infeasible", fail=f, lr_at=0.32 * min(1, f / w))
                for w, f in zip((10, 40, 100), steps)]
    d = warmup.decide(_warmup(fails(0, (8, 30, 70)) + fails(1, (9, 35, 80)), seeds=(0, 1)))
    assert d.failure_grows is True
    assert d.threshold_lr == pytest.approx((0.32 * 0.7, 0.32 * 0.9))     # 70/100 ... 9/10
    assert "each fail later than the shorter ones (on every seed)" in d.text
    d = warmup.decide(_warmup(fails(0, (8, 30, 70)) + fails(1, (9, 35, 20)), seeds=(0, 1)))
    assert d.failure_grows is False and "do not fail in order of their length" in d.text
    assert warmup.decide(_warmup([_candidate(10, fail=5, lr_at=0.16)])).failure_grows is None


def test_failure_point_is_the_low_before_the_collapse():
    down = np.linspace(2.9, 1.0, 50)
    losses = np.concatenate([down, np.full(50, 2.3)])       # learns to step 49, then collapses
    assert warmup.failure_point(losses, 2.07, window=10) == 49
    assert warmup.failure_point(np.full(60, 2.5), 2.07, window=10) == 0    # never learned
    assert warmup.failure_point(down, 2.07, window=10) is None             # trained
    assert warmup.failure_point(losses, None) is None


# ----------------------------------------------------- model change (Figure 4)
def _change(unstable_high, *, rescued=(0.2, 0.21), rescued_status=("complete",) * 2,
            low=(0.20, 0.21), status_high=("infeasible", "infeasible")):
    lrs = [0.002, 0.008, 0.032]
    std = [[0.19, 0.18, 0.30], [0.2, 0.19, 0.31]]
    chg = [[low[0], 0.25, unstable_high[0]], [low[1], 0.26, unstable_high[1]]]
    return model_change.ModelChangeMeasured(
        workload="w", variants={"stable": {}, "unstable": {}}, lrs=lrs, seeds=[0, 1],
        max_train_steps=500, n_validation=500, errors={"stable": std, "unstable": chg},
        statuses={"stable": [["complete"] * 3] * 2,
                  "unstable": [["complete", "complete", st] for st in status_high]},
        low_lr=0.002, target_lr=0.032, warmup_steps=50, rescued_errors=list(rescued),
        rescued_statuses=list(rescued_status), losses={})


def test_model_change_decide_unstable_at_high_rescued_by_warmup():
    d = model_change.decide(_change((0.85, 0.9)))
    assert d.unstable_at_high and d.rescued and d.fine_at_low
    assert d.gap_high == [math.inf, math.inf] and d.margin == pytest.approx(
        2 * math.sqrt(0.305 * 0.695 / 500))
    assert d.lr_star == {"stable": [0.008, 0.008], "unstable": [0.002, 0.002]}
    assert "fails or trains worse than the standard one on every seed of 2" in d.text
    assert d.text.endswith("The change makes high learning rates unstable, and warmup fixes that instability.")


def test_model_change_decide_not_worse_not_rescued_and_worse_at_low():
    d = model_change.decide(_change((0.31, 0.9), status_high=("complete", "infeasible"),
                                    rescued_status=("infeasible", "complete"), low=(0.3, 0.3)))
    assert not d.unstable_at_high and not d.rescued and not d.fine_at_low
    assert "is not clearly worse than the standard one on some seed of 2" in d.text
    assert "(error 0.200 infeasible / 0.210)" in d.text
    assert "it is already worse" in d.text and "does not rescue it" in d.text


# ---------------------------------------------------- warmup effect (Figure 8)
def _effect(post_warm_best, pre_warm_best):
    lrs = [0.002, 0.004, 0.008]
    def sweep(best, bad_from=None):
        errs = [0.3, 0.3, 0.3]
        errs[lrs.index(best)] = 0.1
        sts = ["complete" if bad_from is None or lr < bad_from else "infeasible" for lr in lrs]
        return [errs, errs], [sts, sts]
    series = {"unstable": sweep(0.002, 0.008), "unstable+warmup": sweep(post_warm_best),
              "stable": sweep(0.002), "stable+warmup": sweep(pre_warm_best)}
    return warmup_effect.WarmupEffectMeasured(
        workload="w", variants={"unstable": {}, "stable": {}}, lrs=lrs, seeds=[0, 1],
        max_train_steps=500, warmup_steps=50, errors={k: v[0] for k, v in series.items()},
        statuses={k: v[1] for k, v in series.items()})


def test_warmup_effect_decide_cl22_holds_and_fails():
    d = warmup_effect.decide(_effect(0.008, 0.004))
    assert d.ratio == {"unstable": 4.0, "stable": 2.0} and d.holds
    assert d.sweeps["unstable"].largest_training_lr == 0.004
    assert d.ratio_per_seed["unstable"] == [4.0, 4.0]
    assert d.text.endswith("more than the stable one's: adopt it.")
    assert not warmup_effect.decide(_effect(0.008, 0.008)).holds       # Pre-LN moves as much
    assert not warmup_effect.decide(_effect(0.002, 0.002)).holds       # Post-LN does not move


def test_mean_best_needs_every_seed_to_train():
    lrs = [0.1, 0.2]
    assert sweeps.mean_best(lrs, [[0.3, 0.1], [0.3, 0.1]],
                            [["complete"] * 2, ["complete", "infeasible"]]) == (0.1, 0.3)
    lr, error = sweeps.mean_best(lrs, [[0.3, 0.1]], [["infeasible"] * 2])
    assert lr is None and math.isnan(error)
    assert sweeps.largest_training_lr(lrs, [["complete", "infeasible"]]) == 0.1
    with pytest.raises(ValueError, match="low_lr=0.3"):
        sweeps.index_of(lrs, 0.3, "low_lr")


# -------------------------------------------------- frequent evals (Figure 5)
def _views(dense, coarse, variant="unstable", seed=0, status="complete"):
    return frequent_evals.RunViews(variant=variant, seed=seed, status=status,
                                   dense_steps=list(range(len(dense))), dense=dense,
                                   coarse_steps=[0, 50, 100, 150][:len(coarse)], coarse=coarse)


def _frequent(*runs):
    return frequent_evals.FrequentMeasured(workload="w", variants={}, lr=0.03,
                                           max_train_steps=500, coarse_every=50, dense_steps=100,
                                           runs=list(runs))


def test_frequent_evals_decide_hidden_jump_and_visible_one():
    d = frequent_evals.decide(_frequent(_views([2.9, 6.0, 3.0, 2.5], [2.9, 2.3, 2.4]),
                                        _views([2.9, 3.0, 2.8], [2.9, 2.3], "stable",
                                               status="infeasible")))
    assert d.jump[0] == pytest.approx(6.0 / 2.9) and d.jump_step == [1, 1]
    assert d.hidden == [True, False] and d.holds and d.recovered == [True, False]
    assert "stable seed 0: 1.03x at step 1, then collapsed" in d.text
    assert "evaluate every step early on" in d.text
    d = frequent_evals.decide(_frequent(_views([2.9, 6.0, 3.0], [2.9, 3.5, 2.0])))
    assert not d.holds and d.coarse_below_start == [False]
    assert d.text.endswith("No run jumps 2x early while its coarse view stays below its start.")


# ------------------------------------------------------------------- stability scan
def _above(factor, status="complete", events=()):
    return instability.AboveRun(factor=factor, lr=0.04 * factor, steps=400, status=status,
                                best_error=0.1, events=list(events), reason="")


def _scan(decision, threshold, above):
    return instability.ScanMeasured(
        workload="w", variant={}, max_train_steps=400, lrs=[0.02, 0.04, 0.08],
        statuses=["complete"] * 3, objectives=[0.1, 0.05, 0.08], lr_star=0.04, best_error=0.05,
        divergence_threshold=threshold, boundary_decision=decision,
        best_at_infeasible_edge=decision == "instability_limited", above_lr_star=above,
        above_losses=[], lr_star_losses=[], frame=None)


def test_decide_scan_instability_limited_with_rises():
    text = instability.decide_scan(_scan("instability_limited", 0.08,
                                         [_above(2), _above(5, "infeasible"),
                                          _above(10, events=[{"kind": "mid"}])]))
    assert text.startswith("instability limits the learning rate: lr* = 0.04")
    assert "every lr ≥ 0.08 fails" in text and text.endswith("at 5×, 10×")


def test_decide_scan_not_limited_with_and_without_a_failing_rate():
    text = instability.decide_scan(_scan("ok", 0.64, [_above(2)]))
    assert text == ("instability does not limit the learning rate here: lr* = 0.04 is not at "
                    "the infeasible edge (boundary check: ok, first failing lr 0.64)")
    assert instability.decide_scan(_scan("expand_high", None, [])).endswith(
        "(boundary check: expand_high)")


# -------------------------------------------------------------- early instability
def _early(events, sparse):
    return instability.EarlyMeasured(
        workload="w", variant={}, lr=0.08, max_train_steps=400, status="complete",
        coarse_every=100, min_rise=2.0, dense=np.ones(400), events=events,
        sparse_steps=[100, 200, 300, 400][:len(sparse)], sparse_loss=sparse)


def _event(kind, height, recovered=True, step=181):
    return {"kind": kind, "height": height, "recovered": recovered, "peak_step": step}


def test_decide_early_every_branch():
    assert instability.decide_early(_early([], [2.0, 1.0])).text.startswith(
        "no loss spike ≥ 2× at lr = 0.08")
    d = instability.decide_early(_early([_event("mid", 3.0), _event("mid", 5.0)], [2.0, 1.5, 1.0]))
    assert d.sparse_monotone and d.biggest["height"] == 5.0 and not d.early
    assert d.text.startswith("a mid-training spike with recovery: the per-step loss jumps 5.0×")
    d = instability.decide_early(_early([_event("early", 4.0, recovered=False, step=5)],
                                        [2.0, 1.0]))
    assert d.text.startswith("early instability with no full recovery") and len(d.early) == 1
    d = instability.decide_early(_early([_event("mid", 3.0)], [2.0, 2.5, 1.0]))
    assert not d.sparse_monotone and "is visible even every 100 steps" in d.text


# ------------------------------------------------------------------------ clipping
def _row(p, t, status="complete", fraction=0.1, error=0.37):
    return clipping.ThresholdRun(percentile=p, threshold=t, status=status, steps_done=400,
                                 clipped_fraction=fraction, best_error=error, events=0)


def _clip(unclipped, runs):
    return clipping.ClippingMeasured(
        workload="w", lr=0.04, max_train_steps=400, reference_variant={}, unstable_variant={},
        reference_error=0.3, reference_norms=np.ones(4), unclipped=unclipped, runs=runs,
        norms=[], losses=[])


def test_clipping_decide_every_branch():
    diverged = _row(None, None, status="infeasible", fraction=0.0, error=math.nan)
    d = clipping.decide(_clip(_row(None, None), [_row(90, 3.1)]))
    assert d.text.startswith("no clipping needed")
    d = clipping.decide(_clip(diverged, [_row(90, 3.1, status="infeasible")]))
    assert d.chosen is None and d.text.startswith("no threshold tried stabilizes training")
    d = clipping.decide(_clip(diverged, [_row(10, 1.8, fraction=1.0)]))
    assert d.chosen.threshold == 1.8 and "extremely aggressive" in d.text
    d = clipping.decide(_clip(diverged, [_row(10, 1.8, fraction=1.0), _row(90, 3.1, fraction=0.42),
                                         _row(99, 3.66, fraction=0.13)]))
    assert d.chosen.threshold == 3.66 and [r.threshold for r in d.aggressive] == [1.8]
    assert d.text.startswith("clip at λ = 3.66 (the 99th percentile")


# --------------------------------------------------------------- initial max steps
def _initial(steps_to_fit, *, sweep_steps=1000, lrs=(1e-3, 1e-2, 1e-1)):
    return step_budget.InitialSteps(
        workload="w", optimizer="adam", fit_error=0.0, cap=4000, probe_lr=1e-2,
        probe_steps=[500, 1000], probe_final_error=0.12, sweep_steps=sweep_steps,
        lrs=list(lrs), steps_to_fit=list(steps_to_fit), statuses=["complete"] * len(lrs),
        curves={})


def test_decide_initial_every_branch():
    sweep, text = step_budget.decide_initial(_initial([], sweep_steps=None))
    assert sweep is None and text.startswith("cannot perfectly fit the training set: after 1000")
    sweep, text = step_budget.decide_initial(_initial([None, None, None]))
    assert sweep.candidate is None and text.startswith("no learning rate fit")
    _, text = step_budget.decide_initial(_initial([None, 600, 400]))
    assert text.startswith("initial max_train_steps = 400") and "expand the grid upward" in text
    _, text = step_budget.decide_initial(_initial([300, 600, None]))
    assert "the smallest in the grid: expand downward" in text
    sweep, text = step_budget.decide_initial(_initial([700, 300, 300]))
    assert sweep.fastest_lr == 1e-2 and text.endswith("fits the training set at step 300)")


# ---------------------------------------------------------------------- batch size
def _steps(steps):
    n = len(steps)
    return batch_size.StepsMeasured(
        workload="w", metric="validation/error_rate", target=0.45, max_steps=1500, eval_every=25,
        n_configs=6, seeds=1, batch_sizes=[16 * 4 ** k for k in range(n)],
        steps_to_result=list(steps), best_lr=[0.1 * 2 ** k for k in range(n)],
        best_gamma=[0.9] * n, budget_steps=[1500] * n, seconds_per_step=[1e-3 * 2 ** k
                                                                          for k in range(n)])


def test_decide_steps_every_branch():
    d = batch_size.decide_steps(_steps([1000, None, None]))
    assert d.scaling is None and d.text.startswith("fewer than two batch sizes reached")
    d = batch_size.decide_steps(_steps([1000, 900, 850]))
    assert d.scaling.critical_batch is None and d.text.startswith("no perfect-scaling regime")
    d = batch_size.decide_steps(_steps([1600, 400, 300]))      # 4x steps cut per 4x batch
    assert d.scaling.critical_batch == 64 and d.time_optimal_batch == 64
    assert d.lr_ratio == pytest.approx(4.0) and "best lr x4 from B=16 to B=256" in d.text


def _fair(base, fixed, retuned):
    return batch_size.FairMeasured(
        workload="w", batch_sizes=[32, 256], steps_budget=1500, seeds=3,
        best_config_small={"lr": 1e-3}, best_config_large={"lr": 4e-3}, base=np.array(base),
        fixed=np.array(fixed), retuned=np.array(retuned), metric="validation/error_rate")


def test_decide_fair_within_and_beyond_two_standard_errors():
    d = batch_size.decide_fair(_fair([0.30, 0.31, 0.32], [0.40, 0.41, 0.42], [0.305, 0.31, 0.32]))
    assert abs(d.gap_retuned) <= 2 * d.se_retuned and d.gap_fixed == pytest.approx(0.1)
    assert d.text.startswith("batch size does not change attainable performance")
    d = batch_size.decide_fair(_fair([0.30, 0.31, 0.32], [0.40, 0.41, 0.42], [0.40, 0.41, 0.42]))
    assert d.text.startswith("the retuned gap +0.1000 exceeds 2 SE")


# ------------------------------------------------------------------------ variance
def test_decide_retrains_names_the_largest_stream_and_the_significant_fractions():
    y, right = np.array([True, False] * 50), np.ones(100, dtype=bool)
    m = variance.RetrainMeasured(
        workload="w", config={}, n_seeds=3, max_train_steps=600, n_validation=100,
        objectives={"all": [0.30, 0.31, 0.50], "init": [0.30, 0.30, 0.31],
                    "data": [0.2, math.nan, 0.4]},
        correct=[right, right, y], alpha=0.05)
    d = variance.decide_retrains(m)
    assert d.largest == "data" and d.stats["data"].n == 2 and d.n_pairs == 3
    # 0.30 vs 0.50 on 100 examples is "significant" by the unpaired z-test; 0.30 vs 0.31 is not
    assert d.unpaired_fraction == pytest.approx(2 / 3)
    # McNemar: all right vs half right is 50 one-sided disagreements; equal arrays none
    assert d.paired_fraction == pytest.approx(2 / 3)
    assert d.text.startswith(f"retrain std {d.stats['all'].std:.4f}; the largest single source "
                             f"is 'data'")


def test_adopt_names_why_it_does_not_adopt():
    a = variance.adopt([0.30, 0.31, 0.30, 0.31], [0.40, 0.41, 0.40, 0.41], min_effect=0.2)
    assert a.decision == "insufficient evidence" and "below min_effect=0.2" in a.message
    a = variance.adopt([0.30, 0.31], [0.30, 0.31])
    assert a.effect == 0 and "the interval includes no improvement" in a.message


# -------------------------------------------------------------------------- rounds
def _rounds(obj1, obj2, control=None):
    return rounds.RoundsMeasured(workload="w", extension="linear", round1_steps=300,
                                 round2_steps=1500, top_configs=[{}] * len(obj1),
                                 round1_objectives=obj1, round2_objectives=obj2,
                                 control_objectives=control)


def test_decide_rounds_every_branch():
    d = rounds.decide_rounds(_rounds([0.1, 0.2, 0.3], [0.05, 0.1, 0.2], [0.06, 0.12, 0.25]))
    assert d.spearman_rho == pytest.approx(1.0) and d.best_transfers
    assert d.gain_over_control > 0 and "carries over" in d.text
    assert "linear extension beats" in d.text
    d = rounds.decide_rounds(_rounds([0.1, 0.2, 0.3], [0.2, 0.1, 0.05], [0.1, 0.05, 0.01]))
    assert d.spearman_rho == pytest.approx(-1.0) and not d.best_transfers
    assert "does not carry" in d.text and "no longer best" in d.text and "does not beat" in d.text
    assert rounds.decide_rounds(_rounds([0.1, 0.2], [0.1, 0.2])).gain_over_control is None


# ---------------------------------------------------------------------- boundaries
def _range(decision, best, pos):
    return boundaries.RangeCheck(range=[1e-5, 1e-3], decision=decision, best_lr=best,
                                 best_error=None if best is None else 0.3,
                                 top3_lr=[] if best is None else [best], top3_positions=[pos],
                                 n_trials=8, n_infeasible=0, n_above_cap=0,
                                 divergence_threshold=None, n_good=1, message="(message)")


def test_boundaries_decide_says_expand_keep_or_nothing():
    text = boundaries.decide({"bad": _range("expand_high", 5.7e-4, 0.878),
                              "good": _range("ok", 0.0586, 0.628)})
    assert text == ("bad range: expand_high (best lr 0.00057 at 0.88 of the log range: expand it "
                    "upward); good range: ok (best lr 0.0586 at 0.63, inside the range: keep it)")
    assert "expand it downward" in boundaries.decide({"r": _range("expand_low", 2e-5, 0.1)})
    assert boundaries.decide({"r": _range("ok", None, 0.0)}) == "r range: ok (no complete trial)"


# ----------------------------------------------------------------------- isolation
def _iso(objectives, baseline, se=0.01):
    rows = [SimpleNamespace(x=10.0 ** (-7 + 1.25 * k), objective=o, se=se, n_feasible=5,
                            n_trials=5) for k, o in enumerate(objectives)]
    base = None if baseline is None else SimpleNamespace(objective=baseline)
    return SimpleNamespace(rows=rows, baseline=base)


def test_isolation_decide_every_branch():
    m = isolation.IsolationMeasured(_iso([0.3, 0.2, 0.3, 0.3, 0.5], 0.3),
                                    _iso([0.3, 0.3, 0.2, 0.3, 0.5], None), isolation.SIZES["quick"])
    d = isolation.decide(m)
    assert (d.exact_best, d.bucket_best, d.worst) == (1, 2, 4)
    assert ": adopt it; 1e-2 is the worst value; the bucketed plot's best bucket is 1 bucket(s)" \
        in d.text
    m = m._replace(exact=_iso([0.3, 0.29, 0.3, 0.5, 0.3], 0.3))
    d = isolation.decide(m)
    assert "no clear gain over the baseline" in d.text and "1e-2 is not the worst" in d.text
    d = isolation.decide(m._replace(exact=_iso([0.3] * 5, None)))
    assert d.text.startswith("no complete trial for some value")


# -------------------------------------------------------------------- trial budget
def test_trial_budget_decide_reads_the_iqr_ratio_and_the_retrain_spread():
    rng = np.random.default_rng(0)
    objectives = np.concatenate([rng.uniform(0.1, 0.9, 40), [math.nan]])
    bon = analysis.best_of_n(objectives, trial_budget.BUDGETS, n_boot=50, seed=0)
    m = trial_budget.TrialBudgetMeasured(best_of_n=bon, metric="validation/error_rate",
                                         objectives=objectives,
                                         retrain_errors=[0.1, 0.12, 0.11],
                                         size=trial_budget.SIZES["quick"])
    numbers, text = trial_budget.decide(m)
    exact = {q.n: q for q in bon.exact}
    assert numbers["iqr_ratio"] == pytest.approx(exact[6].iqr / exact[20].iqr)
    assert numbers["medians_non_increasing"] and numbers["min_whisker_constant"]
    assert numbers["retrain_std"] == pytest.approx(0.01)
    assert text.startswith(f"the spread of the best result shrinks from IQR {exact[6].iqr:.4f}")
    # identical trials: the IQR at 20 is 0 and the ratio infinite
    flat = np.full(30, 0.2)
    m = m._replace(best_of_n=analysis.best_of_n(flat, trial_budget.BUDGETS, n_boot=20, seed=0),
                   objectives=flat)
    numbers, text = trial_budget.decide(m)
    assert math.isnan(numbers["iqr_ratio"]) or math.isinf(numbers["iqr_ratio"])


def test_the_quick_sweep_is_every_other_rate_of_the_setups_grid():
    from refplay.train import unstable
    assert instability.quick_lrs(unstable.WARMUP) == (0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
    assert instability.QUICK_LRS == instability.quick_lrs(unstable.WARMUP)
