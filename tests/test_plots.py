"""refplay.plots: every trial drawn, infeasible at the cap, stars on the top k, log axes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from refplay import analysis, plots, search
from refplay.plots import style
from tests.test_analysis import LR_ONLY, SPACE, result

N_VAL = 500


def frame():
    rng = np.random.default_rng(0)
    results = []
    for i in range(24):
        opt = ("nesterov", "adam")[i % 2]
        lr = float(10 ** rng.uniform(-3, 0) if opt == "nesterov" else 10 ** rng.uniform(-4, -1))
        cfg = {"optimizer": opt, "lr": lr} | ({"beta1": 0.9} if opt == "adam" else {})
        status = "infeasible" if lr > 0.3 or (opt == "adam" and lr > 0.05) else "complete"
        results.append(result(cfg, float(rng.uniform(0.05, 0.4)), status))
    return analysis.from_results(results, space=SPACE, n_validation=N_VAL)


def offsets(ax, gid):
    return np.concatenate([c.get_offsets().reshape(-1, 2) for c in ax.collections
                           if c.get_gid() == gid] or [np.zeros((0, 2))])


def test_axis_plot_draws_every_trial_once_with_infeasible_at_the_cap():
    f = frame()
    fig = plots.axis_plot(f, "lr")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    dots, crosses, stars = offsets(ax, "trials"), offsets(ax, "infeasible"), offsets(ax, "top")
    n_bad = f.statuses().count("infeasible")
    assert n_bad > 0 and len(crosses) == n_bad
    assert len(dots) + len(crosses) == len(f)                  # every trial, once
    assert np.all(crosses[:, 1] == crosses[0, 1]) and crosses[0, 1] > np.nanmax(f.objectives())
    # the top 3 of each optimizer are the stars
    expected = sorted(v for g in f.groups().values() for _, v, _ in analysis.ranked(g)[:3])
    assert sorted(stars[:, 1]) == pytest.approx(expected)
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "optimizer=nesterov" in labels and "optimizer=adam" in labels


def test_axis_plot_draws_bad_but_finite_results_as_crosses_above_a_cap():
    f = frame()
    ax = plots.axis_plot(f, "lr", cap=0.2).axes[0]
    finite = f.objectives()
    n_cross = int(np.sum(~np.isfinite(finite) | (finite > 0.2)))
    assert len(offsets(ax, "infeasible")) == n_cross
    assert len(offsets(ax, "trials")) + n_cross == len(f)


def test_axis_plot_with_every_trial_infeasible():
    results = [result({"lr": lr}, 0.9, "infeasible") for lr in (0.1, 0.5)]
    f = analysis.from_results(results, space=search.SearchSpace(
        lr=search.Float(1e-3, 1.0, scale="log")))
    ax = plots.axis_plot(f, "lr").axes[0]
    assert len(offsets(ax, "infeasible")) == 2 and len(offsets(ax, "top")) == 0


def test_isolation_plot_points_and_baseline():
    space = search.SearchSpace(weight_decay=search.Discrete([0.0, 1e-5, 1e-4, 1e-3],
                                                            role="scientific"),
                               lr=search.Float(1e-3, 1.0, scale="log"))
    results = [result({"weight_decay": wd, "lr": 0.1}, obj)
               for wd, obj in [(0.0, .2), (1e-5, .18), (1e-5, .25), (1e-4, .15), (1e-3, .3)]]
    iso = analysis.isolation(analysis.from_results(results, space=space, n_validation=N_VAL),
                             "weight_decay", baseline=0.0)
    ax = plots.isolation_plot(iso).axes[0]
    line = ax.lines[0]
    assert list(line.get_ydata()) == [r.objective for r in iso.rows] == [.18, .15, .3]
    assert any(list(l.get_ydata()) == [.2, .2] for l in ax.lines)      # the baseline
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"n={r.n_trials}" for r in iso.rows]


def test_best_of_n_plot_uses_the_table():
    bon = analysis.best_of_n(np.random.default_rng(0).uniform(.2, .3, 40), range(6, 11))
    ax = plots.best_of_n_plot(bon, source="exact").axes[0]
    drawn = {float(y) for line in ax.lines for y in line.get_ydata()}
    for q in bon.exact:                       # medians, lower and upper whiskers
        assert {q.median, q.min, q.max} <= drawn
    assert ax.get_xlabel().startswith("number of trials")


def test_training_curves_grad_norms_and_best_steps():
    f = frame()
    fig = plots.training_curves(f, top_k=2)
    assert len(fig.axes) == 2 * 2                      # error rate row + loss row, 2 values
    assert len(fig.axes[0].lines) >= 2
    g = np.exp(np.random.default_rng(0).standard_normal(300))
    summary = analysis.grad_norm_summary(g)
    ax, hx = plots.grad_norm_plot(g, summary).axes[:2]
    ys = {l.get_ydata()[0] for l in ax.lines[1:]}
    assert ys == {summary.p90, summary.p50} and ax.get_yscale() == "log"
    assert summary.clipped_fraction_at_p90 == pytest.approx(0.1, abs=0.01)
    bsf = analysis.best_step_fractions(f)
    hax = plots.best_step_histogram(bsf).axes[0]
    assert sum(p.get_height() for p in hax.patches) == len(bsf.fractions)
    assert bsf.decision in hax.get_title()
    assert math.isfinite(summary.max)


def test_the_best_step_histogram_draws_what_the_rule_counts_even_at_the_lines():
    from tests.test_analysis import _steps_frame
    # Six trials exactly at the 75 % line, two at 10 %: the rule counts 0.75 as late.
    fracs = [0.75] * 6 + [0.9, 0.5, 0.10, 0.10]
    bsf = analysis.best_step_fractions(_steps_frame(fracs))
    assert bsf.n_late == 7 and bsf.decision == "ok" and bsf.late_fraction == 0.7
    ax = plots.best_step_histogram(bsf).axes[0]
    right = sum(p.get_height() for p in ax.patches if p.get_x() >= 0.75 - 1e-12)
    left_of_10 = sum(p.get_height() for p in ax.patches if p.get_x() + p.get_width() <= 0.1)
    assert right == bsf.n_late and left_of_10 == bsf.n_early == 0
    labels = ax.get_legend_handles_labels()[1]
    assert any("at or right of it → train longer (here 7 of 10)" in t for t in labels)
    late = analysis.best_step_fractions(_steps_frame([0.75] * 3 + [0.2]))
    assert late.decision == "train_longer" and late.n_late == 3     # 3 of 4 = 75 %


def test_axis_plot_red_line_only_with_crosses_and_pruned_trials_hollow():
    results = [result({"lr": lr}, obj) for lr, obj in [(0.01, 0.3), (0.1, 0.2), (0.5, 0.25)]]
    results.append(result({"lr": 0.05}, 0.0, status="pruned", curve=[0.9, 0.22]))
    results.append(result({"lr": 0.02}, 0.0, status="failed"))
    f = analysis.from_results(results, space=LR_ONLY)
    ax = plots.axis_plot(f, "lr").axes[0]
    assert not [l for l in ax.lines if l.get_color() == style.INFEASIBLE]     # no cross, no line
    assert offsets(ax, "infeasible").shape == (0, 2)
    pruned = offsets(ax, "pruned")
    assert pruned.tolist() == [[0.05, 0.22]]            # at the best value it reported
    drawn = np.concatenate([offsets(ax, "trials"), pruned])
    assert len(drawn) == 4                              # the crash is not drawn
    results.append(result({"lr": 0.9}, 0.0, status="infeasible"))
    ax = plots.axis_plot(analysis.from_results(results, space=LR_ONLY), "lr").axes[0]
    lines = [l for l in ax.lines if l.get_color() == style.INFEASIBLE]
    assert len(lines) == 1 and "red line" in " ".join(ax.get_legend_handles_labels()[1])
