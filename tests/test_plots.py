"""refplay.plots: every trial drawn, infeasible at the cap, stars on the top k, log axes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from refplay import analysis, plots, search
from tests.test_analysis import SPACE, result

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
