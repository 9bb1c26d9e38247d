"""Curve diagnostics and the instability detector on synthetic curves and planted spikes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refplay import analysis
from refplay.train.result import TrialResult
from tests.helpers import optional_import

N_VAL = 1000
STEPS = list(range(0, 2001, 100))          # 21 evaluations


def trial(val, train_losses=(), train_curve=None, steps=STEPS):
    curves = {"validation/error_rate": list(val)}
    if train_curve is not None:
        curves["train/loss"] = list(train_curve)
    r = TrialResult(config={}, seed=0, steps_done=steps[-1], eval_steps=list(steps),
                    curves=curves, best_step=steps[int(np.argmin(val))])
    r.train_losses = np.asarray(train_losses, dtype=np.float64)   # the seam's per-step losses
    return r


def diag(r, **kw):
    return analysis.curve_diagnostics(r, n_validation=N_VAL, **kw)


def decaying(final=0.10, start=0.9, rate=0.004):
    s = np.asarray(STEPS, dtype=float)
    return final + (start - final) * np.exp(-rate * s)


SE = math.sqrt(0.1 * 0.9 / N_VAL)           # ~0.0095


def test_clean_curve_raises_nothing():
    d = diag(trial(decaying()))
    assert not d["overfitting"].raised and not d["late_variance"].raised
    assert not d["still_improving"].raised and not d["train_loss_increasing"].raised
    p = decaying().min()
    assert d.se == pytest.approx(math.sqrt(p * (1 - p) / N_VAL)) and "binomial" in d.se_basis
    # The curve is flat after ~1000 steps, but its (tiny) improvement puts the best at the end.
    assert not d["saturated_early"].raised


def test_overfitting_flag_in_units_of_se():
    v = decaying().copy()
    v[10:] = 0.10 + np.linspace(0, 5 * SE, 11)          # rises 5 SE after step 1000
    d = diag(trial(v))
    f = d["overfitting"]
    assert f.raised and f.numbers["rise_in_se"] == pytest.approx(5.0, rel=0.05)
    v[10:] = 0.10 + np.linspace(0, 1 * SE, 11)          # 1 SE: noise, not overfitting
    assert not diag(trial(v))["overfitting"].raised


def test_late_variance_flag():
    v = decaying().copy()
    v[-5::2] += 4 * SE                                   # a zig-zag tail
    f = diag(trial(v))["late_variance"]
    assert f.raised and f.numbers["std_in_se"] > 2


def test_still_improving_and_saturated_early():
    v = 0.5 - 0.2 * np.asarray(STEPS) / 2000             # a straight line down to the end
    f = diag(trial(v))["still_improving"]
    assert f.raised and f.numbers["best_step_fraction"] == 1.0
    v = decaying(rate=0.02).copy()                        # flat from ~300 steps on
    v[5] -= 0.001                                         # best at step 500
    d = diag(trial(v))
    assert d["saturated_early"].raised and not d["still_improving"].raised


def test_train_loss_increasing_from_per_step_losses():
    rng = np.random.default_rng(0)
    steps = np.arange(2000)
    losses = np.exp(-steps / 300) + 0.3 + 0.02 * rng.standard_normal(2000)
    assert not diag(trial(decaying(), losses))["train_loss_increasing"].raised
    losses[1000:] += np.linspace(0, 0.5, 1000)            # a pipeline bug halfway
    f = diag(trial(decaying(), losses))["train_loss_increasing"]
    assert f.raised and f.numbers["spearman"] > 0.5 and "per-step" in f.numbers["source"]


def test_train_loss_flag_falls_back_to_the_curve():
    up = np.linspace(0.3, 0.9, len(STEPS))
    f = diag(trial(decaying(), train_curve=up))["train_loss_increasing"]
    assert f.raised and f.numbers["source"] == "train/loss curve"


def test_loss_metric_uses_one_percent_of_the_best_as_unit():
    r = trial(decaying())
    r.curves["validation/loss"] = list(decaying(final=2.0, start=3.0))
    d = analysis.curve_diagnostics(r, "validation/loss", n_validation=N_VAL)
    assert d.se == pytest.approx(0.02, rel=1e-3) and "1%" in d.se_basis


def test_spearman_matches_scipy():
    stats = optional_import("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(50), rng.integers(0, 5, 50).astype(float)
    assert analysis.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


# ------------------------------------------------------------------ instability
def smooth_trace(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 2.3 * np.exp(-t / 400) + 0.2 + 0.01 * rng.standard_normal(n)


def test_no_event_on_a_smooth_trace():
    assert analysis.detect_instability(smooth_trace()) == ()


def test_planted_early_spike_is_found_recovered_and_missed_by_a_coarse_view():
    x = smooth_trace()
    x[3:8] = [20.0, 100.0, 60.0, 30.0, 10.0]              # Figure 5: steps 3-7
    (e,) = analysis.detect_instability(x)
    assert (e.start, e.peak_step, e.kind, e.recovered) == (3, 4, "early", True)
    assert e.height == pytest.approx(100.0 / e.baseline)
    assert e.recovery_step is not None and e.recovery_step > e.end
    # Every 100th step (an evaluation every 100 steps) never sees it.
    assert analysis.detect_instability(x[::100], window=3) == ()


def test_planted_mid_training_rise_does_not_recover():
    x = smooth_trace()
    x[1500:] = 0.9 + 0.3 * np.exp(-(np.arange(1500)) / 2000)   # Figure 7b: jump, slow decline
    events = analysis.detect_instability(x)
    assert len(events) == 1
    (e,) = events
    assert e.kind == "mid" and e.start == 1500 and not e.recovered and e.height > 2


def test_nan_is_an_unrecovered_event():
    x = smooth_trace(500)
    x[400:] = np.nan
    (e,) = analysis.detect_instability(x)
    assert e.start == 400 and e.height == math.inf and not e.recovered


def test_instability_flag_in_diagnostics():
    x = smooth_trace(2000)
    x[3:8] = 50.0
    f = diag(trial(decaying(), x))["instability"]
    assert f.raised and f.numbers["events"][0].kind == "early"
    with pytest.raises(ValueError, match="min_rise"):
        analysis.detect_instability(x, min_rise=1.0)
