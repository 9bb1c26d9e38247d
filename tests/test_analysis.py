"""refplay.analysis on fabricated frames: every decision branch, NaN never best."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refplay import analysis, search, study
from refplay.study.synthetic import LinearRegressionTrial
from refplay.train.result import TrialResult

SPACE = search.SearchSpace({
    "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
    "nesterov/lr": search.Float(1e-3, 1.0, scale="log", when={"optimizer": "nesterov"}),
    "adam/lr": search.Float(1e-4, 1e-1, scale="log", when={"optimizer": "adam"}),
    "beta1": search.Fixed(0.9, when={"optimizer": "adam"}),
})
LR_ONLY = search.SearchSpace(lr=search.Float(1e-3, 1.0, scale="log"))


def result(config, objective, status="complete", steps=(0, 50, 100), curve=None, seed=0):
    """A fabricated TrialResult whose validation/error_rate curve ends at its best."""
    if curve is None:
        curve = [0.9, (0.9 + objective) / 2, objective] if status == "complete" else [0.9]
    steps = list(steps)[:len(curve)]
    best = int(np.nanargmin(curve)) if status == "complete" else None
    return TrialResult(config=dict(config), seed=seed, status=status,
                       steps_done=steps[-1] if status == "complete" else 7,
                       eval_steps=steps, curves={"validation/error_rate": list(curve)},
                       best_step=None if best is None else steps[best],
                       best_metrics={} if best is None else {"validation/error_rate": curve[best]})


def lr_frame(points, space=LR_ONLY, n_validation=500):
    """points: [(lr, objective or None for infeasible)]."""
    results = [result({"lr": lr}, obj if obj is not None else 0.9,
                      "complete" if obj is not None else "infeasible") for lr, obj in points]
    return analysis.from_results(results, space=space, n_validation=n_validation)


# ------------------------------------------------------------------ frame / best
def test_frame_rows_roles_and_conditional_values():
    results = [result({"optimizer": "nesterov", "lr": 0.1}, 0.10),
               result({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9}, 0.08),
               result({"optimizer": "adam", "lr": 0.05, "beta1": 0.9}, 0.9, "infeasible")]
    f = analysis.from_results(results, space=SPACE, n_validation=500)
    assert f.scientific == ("optimizer",)
    assert [r.scientific_value for r in f] == [("nesterov",), ("adam",), ("adam",)]
    assert f.parameter_of(f.rows[0], "lr") == "nesterov/lr"
    assert f.parameter_of(f.rows[1], "lr") == "adam/lr"
    assert np.isnan(f.values("nesterov/lr")[1]) and f.values("lr")[1] == 1e-3
    assert np.isnan(f.objectives()[2])               # infeasible: no objective
    assert len(f.complete()) == 2
    with pytest.raises(ValueError, match="not a parameter"):
        f.values("momentum")


def test_best_per_scientific_value_and_nan_is_never_best():
    curve_nan = [0.9, float("nan"), float("nan")]
    results = [result({"optimizer": "nesterov", "lr": 0.1}, 0.10),
               result({"optimizer": "nesterov", "lr": 0.2}, 0.05),
               result({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9}, 0.08),
               result({"optimizer": "adam", "lr": 0.05, "beta1": 0.9}, 0.0, "infeasible"),
               result({"optimizer": "adam", "lr": 0.01, "beta1": 0.9}, 0.0, curve=curve_nan)]
    # A complete trial whose best metric is NaN or -inf must never win.
    results[4].best_metrics = {"validation/error_rate": float("-inf")}
    f = analysis.from_results(results, space=SPACE)
    best = analysis.best(f)
    assert best[("nesterov",)] == analysis.Best(1, 0.05, 100)
    assert best[("adam",)].trial == 2
    assert analysis.best(f, by=None)[()].trial == 1
    assert all(math.isfinite(b.objective) for b in best.values())


def test_best_final_differs_from_best_checkpoint_post_hoc():
    # trial 0 is best at its best checkpoint, trial 1 at its final evaluation.
    r0 = result({"lr": 0.1}, 0.0, curve=[0.9, 0.05, 0.30])
    r1 = result({"lr": 0.2}, 0.0, curve=[0.9, 0.10, 0.12])
    f = analysis.from_results([r0, r1], space=LR_ONLY)
    assert analysis.best(f, by=None)[()] == analysis.Best(0, 0.05, 50)
    assert analysis.best(f, by=None, reduce="final")[()] == analysis.Best(1, 0.12, 100)
    for r in f:      # reduce="best" is the recorded objective of every trial
        assert analysis.objective_of(f, r)[0] == r.objective


def test_load_from_a_real_store_matches_the_trial_records(tmp_path):
    spec = study.StudySpec(name="toy", workload=None, num_trials=12, max_train_steps=60,
                           eval_every=20, metric="validation/loss", search_space=search.SearchSpace(
                               optimizer=search.Choice(["sgd", "adam"], role="scientific"),
                               lr=search.Float(1e-3, 10.0, scale="log")))
    study.run(spec, store=tmp_path, workers=0, trial_fn=LinearRegressionTrial(60, 20),
              progress=False)
    with study.Store(tmp_path, readonly=True) as store:
        records = store.trials("toy")
        f = analysis.load(store, "toy")
    assert [r.trial for r in f] == [t.trial for t in records]
    for row, rec in zip(f, records):
        if rec.status == "complete":
            assert row.objective == rec.objective
            steps, values = f.curve(row.trial, "validation/loss")
            assert values[list(steps).index(rec.best_step)] == rec.objective
            # reduce="final" is the last measurement
            assert analysis.objective_of(f, row, reduce="final")[0] == values[-1]
        else:
            assert math.isnan(row.objective)
    assert "infeasible" in f.statuses()        # lr up to 10 diverges
    assert f.grad_norms(0).size > 0            # lazy arrays, after the store is closed


# ------------------------------------------------------------------ boundaries
def _decision(points, **kw):
    return analysis.boundary_check(lr_frame(points), "lr", by=None, **kw).checks[()]


def test_boundary_ok_expand_high_expand_low():
    ok = _decision([(1e-3, .5), (0.01, .2), (0.03, .1), (0.1, .3), (1.0, .6)])
    assert ok.decision == "ok" and ok.suggested_range is None
    high = _decision([(1e-3, .5), (0.01, .4), (0.9, .1), (0.5, .2)])
    assert high.decision == "expand_high" and high.near_high and not high.near_low
    assert high.positions[0] == pytest.approx(math.log(0.9 / 1e-3) / math.log(1e3))
    assert high.suggested_range[0] == 1e-3 and high.suggested_range[1] > 1.0
    low = _decision([(1.2e-3, .1), (0.01, .4), (0.9, .6)])
    assert low.decision == "expand_low" and low.near_low
    assert low.suggested_range[0] < 1e-3 and low.suggested_range[1] == 1.0


def test_boundary_instability_limited_and_threshold():
    c = _decision([(1e-3, .5), (0.01, .3), (0.05, .1), (0.1, None), (0.5, None), (1.0, None)])
    assert c.divergence_threshold == 0.1
    assert c.best_at_infeasible_edge and c.decision == "instability_limited"
    # Best far below the threshold: the threshold exists but the decision is ok.
    c = _decision([(1e-3, .5), (0.004, .1), (0.01, .3), (0.05, .3), (0.5, None), (1.0, None)])
    assert c.divergence_threshold == 0.5 and c.decision == "ok"


def test_divergence_threshold_none_when_feasibility_is_not_monotone():
    c = _decision([(1e-3, .5), (0.01, None), (0.05, .1), (0.5, None)])
    assert c.divergence_threshold is None and not c.best_at_infeasible_edge


def test_boundary_no_complete_trials_and_n_good():
    c = _decision([(1e-3, None), (0.1, None)])
    assert c.decision == "no_complete_trials" and c.n_complete == 0
    # 2 SE of 0.10 on 500 examples = 0.0268: 0.10, 0.11, 0.12 are good, 0.2 is not.
    c = _decision([(0.01, .10), (0.02, .11), (0.03, .12), (0.04, .20)])
    assert c.good_tolerance == pytest.approx(2 * math.sqrt(.1 * .9 / 500))
    assert c.n_good == 3


def test_boundary_uses_each_values_own_parameter_range():
    results = [result({"optimizer": "nesterov", "lr": 0.9}, 0.1),
               result({"optimizer": "nesterov", "lr": 0.01}, 0.3),
               result({"optimizer": "adam", "lr": 0.09, "beta1": 0.9}, 0.1),
               result({"optimizer": "adam", "lr": 0.001, "beta1": 0.9}, 0.3)]
    rep = analysis.boundary_check(analysis.from_results(results, space=SPACE), "lr")
    assert rep.checks[("nesterov",)].parameter == "nesterov/lr"
    assert rep.checks[("adam",)].high == 0.1
    assert rep.decisions == {("nesterov",): "expand_high", ("adam",): "expand_high"}


# ------------------------------------------------------------------ isolation / importance
def test_isolation_exact_equals_brute_force_and_buckets_are_log_spaced():
    rng = np.random.default_rng(0)
    wd = [1e-5, 1e-4, 1e-3]
    space = search.SearchSpace(weight_decay=search.Discrete(wd, role="scientific"),
                               lr=search.Float(1e-3, 1.0, scale="log"))
    results = [result({"weight_decay": wd[i % 3], "lr": float(10 ** rng.uniform(-3, 0))},
                      float(rng.uniform(0.05, 0.5)),
                      "infeasible" if i == 4 else "complete") for i in range(30)]
    f = analysis.from_results(results, space=space, n_validation=1000)
    iso = analysis.isolation(f, "weight_decay")
    for row in iso.rows:
        brute = [r for r in f if r.config["weight_decay"] == row.x and r.status == "complete"]
        assert row.objective == min(r.objective for r in brute)
        assert row.n_trials == 10 and row.n_feasible == len(brute)
        assert row.se == pytest.approx(math.sqrt(row.objective * (1 - row.objective) / 1000))
    bucketed = analysis.isolation(f, "lr", buckets=3)
    edges = [bucketed.rows[0].low] + [r.high for r in bucketed.rows]
    assert np.allclose(edges, [1e-3, 1e-2, 1e-1, 1.0])
    assert sum(r.n_trials for r in bucketed.rows) == 30
    for row in bucketed.rows:
        inside = [r.objective for r in f if row.low <= r.config["lr"] < row.high
                  and r.status == "complete"] or [math.nan]
        assert row.objective == pytest.approx(min(inside), nan_ok=True)


def test_isolation_baseline_is_reported_apart():
    space = search.SearchSpace(weight_decay=search.Discrete([0.0, 1e-4], role="scientific"),
                               lr=search.Float(1e-3, 1.0, scale="log"))
    results = [result({"weight_decay": 0.0, "lr": 0.1}, 0.2),
               result({"weight_decay": 1e-4, "lr": 0.1}, 0.15)]
    iso = analysis.isolation(analysis.from_results(results, space=space), "weight_decay",
                             baseline=0.0)
    assert iso.baseline.objective == 0.2 and [r.x for r in iso.rows] == [1e-4]


def test_importance_ranks_the_parameter_that_moves_the_best():
    space = search.SearchSpace(lr=search.Float(1e-3, 1.0, scale="log"),
                               gamma=search.Float(0.8, 0.99))
    rng = np.random.default_rng(1)
    results = []
    for _ in range(60):
        lr, g = float(10 ** rng.uniform(-3, 0)), float(rng.uniform(0.8, 0.99))
        results.append(result({"lr": lr, "gamma": g}, 0.05 + 0.1 * abs(math.log10(lr) + 1.5)
                              + 0.001 * g))
    imp = analysis.importance(analysis.from_results(results, space=space))
    assert [i.param for i in imp] == ["lr", "gamma"] and imp[0].spread > 2 * imp[1].spread


# ------------------------------------------------------------------ best of N
def test_best_of_n_exact_vs_bootstrap_within_monte_carlo_error():
    x = np.random.default_rng(3).uniform(0.2, 0.3, 50)
    x[:5] = np.nan                                         # infeasible trials
    n_boot = 4000
    bon = analysis.best_of_n(x, range(2, 11), n_boot=n_boot, seed=0)
    rng = np.random.default_rng(np.random.SeedSequence(0))
    keyed = np.where(np.isfinite(x), x, np.inf)
    support = np.sort(keyed[np.isfinite(keyed)])
    for n in bon.budgets:
        draws = keyed[rng.integers(0, len(x), size=(n_boot, n))].min(axis=1)
        for v in support[::5]:
            g = analysis.exact_cdf(x, n, v)
            emp = float(np.mean(draws <= v))
            assert abs(emp - g) <= 4 * math.sqrt(g * (1 - g) / n_boot) + 1e-9
    for e, b in zip(bon.exact, bon.bootstrap):
        assert e.min == b.min == np.nanmin(x)             # the best of the study, for every N
        # quantiles agree within a few support points
        for q in ("q25", "median", "q75"):
            i, j = np.searchsorted(support, [getattr(e, q), getattr(b, q)])
            assert abs(int(i) - int(j)) <= 2
    medians = [q.median for q in bon.exact]
    assert all(a >= b for a, b in zip(medians, medians[1:]))
    assert bon.exact[0].iqr > bon.exact[-1].iqr


def test_best_of_n_exact_formula_on_a_tiny_sample():
    bon = analysis.best_of_n([3.0, 1.0, 2.0, float("inf")], [1, 2])
    # N=1: the empirical quantiles of the sample itself (inverted CDF).
    assert bon.exact[0][1:5] == (1.0, 1.0, 2.0, 3.0)
    # N=2: P(best <= 1) = 1 - (3/4)^2 = 0.4375 < 0.5 <= P(best <= 2) = 0.75
    assert bon.exact[1].median == 2.0 and bon.exact[1].q25 == 1.0
    assert bon.exact[1].max == math.inf


# ------------------------------------------------------------------ steps / infeasible / lint
def _steps_frame(fracs):
    rs = []
    for fr in fracs:
        r = result({"lr": 0.1}, 0.1)
        r.steps_done, r.best_step = 1000, int(fr * 1000)
        rs.append(r)
    return analysis.from_results(rs, space=LR_ONLY)


def test_best_step_fraction_decisions():
    assert analysis.best_step_fractions(_steps_frame([.02, .05, .09])).decision == \
        "max_train_steps_too_high"
    assert analysis.best_step_fractions(_steps_frame([.8, .9, .95, .3])).decision == \
        "train_longer"
    bsf = analysis.best_step_fractions(_steps_frame([.2, .5, .8, .3]))
    assert bsf.decision == "ok" and np.allclose(bsf.fractions, [.2, .5, .8, .3])


def test_infeasible_fraction_per_value():
    results = [result({"optimizer": "adam", "lr": 0.01, "beta1": 0.9}, .1, s)
               for s in ("complete", "infeasible", "infeasible", "failed")]
    results.append(result({"optimizer": "nesterov", "lr": 0.01}, .1))
    counts = analysis.infeasible_fraction(analysis.from_results(results, space=SPACE))
    # The crashed trial is reported apart: 2 of the 3 finished adam trials diverged.
    assert counts[("adam",)] == analysis.InfeasibleCount(
        n_trials=4, n_infeasible=2, n_failed=1, fraction=2 / 3, warning=True, n_pruned=0)
    assert counts[("nesterov",)].warning is False


def test_role_lint():
    space = search.SearchSpace({
        "optimizer": search.Choice(["sgd", "adam"], role="scientific"),
        "lr": search.Fixed(0.1), "batch_size": search.Discrete([32, 64]),
        "weight_decay": search.Float(0.0, 1e-3)})
    kinds = {(w.kind, w.parameter) for w in analysis.role_lint(space)}
    assert kinds == {("fixed_optimizer_hparam", "lr"), ("batch_size_searched", "batch_size")}
    space = search.SearchSpace(weight_decay=search.Float(0.0, 1e-3, role="scientific"),
                               lr=search.Float(1e-3, 1.0), batch_size=search.Fixed(64))
    assert [w.kind for w in analysis.role_lint(space)] == ["regularizer_scientific"]


def test_uncertainty():
    assert analysis.binomial_se(0.1, 900) == pytest.approx(0.01)
    c = analysis.compare(0.084, 0.012, 0.054, 0.010)
    assert c.se == pytest.approx(math.hypot(0.012, 0.010)) and c.significant is False
    assert analysis.compare(0.2, 0.01, 0.1, 0.01).significant is True
    with pytest.raises(ValueError, match="p="):
        analysis.binomial_se(1.5, 10)
    results = [result({"lr": 0.1}, v) for v in (0.10, 0.12, 0.30, 0.30)]
    spread = analysis.repeat_spread(analysis.from_results(results, space=LR_ONLY, repeats=2))
    assert spread.per_config == {0: pytest.approx(np.std([.10, .12], ddof=1)), 1: 0.0}


def test_isolation_of_a_log_spaced_list_of_values_uses_a_log_scale():
    from refplay import analysis, search
    from refplay.train.result import TrialResult
    space = search.SearchSpace(weight_decay=search.Discrete([1e-7, 1e-5, 1e-2], role="scientific"),
                               lr=search.Float(1e-3, 1.0, scale="log"))
    results = [TrialResult(config={"weight_decay": wd, "lr": 0.1}, seed=0, eval_steps=[0, 10],
                           curves={"validation/loss": [1.0, v]}, best_step=10,
                           best_metrics={"validation/loss": v})
               for wd, v in [(1e-7, 0.5), (1e-5, 0.4), (1e-2, 0.6)]]
    frame = analysis.from_results(results, space=space, metric="validation/loss")
    assert analysis.isolation(frame, "weight_decay").scale == "log"
    narrow = search.SearchSpace(weight_decay=search.Discrete([0.1, 0.2, 0.5], role="scientific"),
                                lr=search.Float(1e-3, 1.0, scale="log"))
    for r, wd in zip(results, [0.1, 0.2, 0.5]):
        r.config["weight_decay"] = wd
    frame = analysis.from_results(results, space=narrow, metric="validation/loss")
    assert analysis.isolation(frame, "weight_decay").scale == "linear"


def test_importance_on_the_adam_space_buckets_betas_in_log_one_minus_beta():
    import numpy as np

    from refplay import analysis, search
    from refplay.analysis.isolation import bucket_edges
    np.testing.assert_allclose(bucket_edges(0.9, 0.999, 2, "log1m"), [0.9, 0.99, 0.999])
    space = search.adam_space(30)                 # lr, beta1, eps searched
    configs = search.halton(space, 30, seed=0)
    # A made-up objective: only lr matters (a bowl around 1e-2), beta1 and eps do not.
    results = []
    for c in configs:
        v = 0.1 + (np.log10(c["lr"]) + 2.0) ** 2 / 10
        results.append(TrialResult(config=c, seed=0, eval_steps=[0, 10],
                                   curves={"validation/loss": [1.0, v]}, best_step=10,
                                   best_metrics={"validation/loss": v}))
    frame = analysis.from_results(results, space=space, metric="validation/loss")
    ranking = analysis.importance(frame, buckets=3)
    assert [i.param for i in ranking][0] == "lr"
    assert {i.param for i in ranking} == {"lr", "beta1", "eps"}
    spread = {i.param: i.spread for i in ranking}
    assert spread["lr"] > 5 * max(spread["beta1"], spread["eps"])
