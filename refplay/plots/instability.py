"""Figures of the instability procedures (the playbook's Figures 4-8), drawn from their numbers.

Nothing here trains or decides: each function takes what
:mod:`refplay.procedures.instability` or :mod:`~refplay.procedures.warmup`
measured (per-step losses, statuses, best errors) and draws it in the
playbook's visual language (:mod:`refplay.plots.style`): infeasible runs as red
``x``, the best learning rate as a star, log axes where the playbook uses them,
labelled axes, a title that states the question.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from refplay.plots import style
from refplay.train.result import TrialStatus

__all__ = ["smooth", "smooth_log", "plain_log_x", "loss_traces_plot", "dense_vs_sparse_plot",
           "warmup_plot",
           "lr_sweep_plot", "sweep_series", "model_change_plot", "warmup_effect_plot",
           "frequent_evals_plot"]


def smooth(x, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (expanding at the start); NaN/Inf stay out."""
    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or x.size == 0:
        return x.copy()
    finite = np.isfinite(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(finite, x, 0.0))])
    n = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(idx - window, 0)
    count = n[idx] - n[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (c[idx] - c[lo]) / count, np.nan)


def smooth_log(x) -> np.ndarray:
    """Trailing mean over ~10 % of the steps so far: raw early, smooth late (for a log-x axis,
    where the first steps are spread wide and the last ones crowd together)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    finite = np.isfinite(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(finite, x, 0.0))])
    n = np.concatenate([[0], np.cumsum(finite)])
    for t in range(x.size):
        lo = t + 1 - max(1, (t + 1) // 10)
        count = n[t + 1] - n[lo]
        out[t] = (c[t + 1] - c[lo]) / count if count else np.nan
    return out


def plain_log_x(fig) -> None:
    """Layout only: plain labels (0.02, 0.05, 0.1) on the log x axes of ``fig``."""
    for ax in fig.axes:
        if ax.get_xscale() == "log":
            style.plain_log(ax.xaxis, numticks=8)


def _shade_events(ax, events, colour: str = style.INFEASIBLE) -> None:
    for e in events:
        ax.axvspan(e["start"], e["end"] + 1, color=colour, alpha=0.15, lw=0)


def loss_traces_plot(traces: dict, *, events: dict | None = None, window: int = 10,
                     title: str = ""):
    """Per-step training loss of several runs (log y, ``window``-step mean); spikes shaded."""
    fig, ax = style.new_figure(9.0, 4.6)
    for i, (label, loss) in enumerate(traces.items()):
        c = style.colour(i)
        raw_s, raw = style.positive_points(loss)
        ax.plot(raw_s, raw, color=c, lw=0.4, alpha=0.35)
        xs, ys = style.positive_points(smooth(loss, window))
        ax.plot(xs, ys, color=c, lw=1.6, label=label)
        if TrialStatus.INFEASIBLE in label and len(loss):
            ax.plot(len(loss) - 1, ys[-1] if ys.size else 1.0, "x", color=style.INFEASIBLE,
                    ms=10, mew=2.5)
        for e in (events or {}).get(label, []):
            ax.axvspan(e["start"], e["end"] + 1, color=c, alpha=0.15, lw=0)
    # Legend entries only for what the figure shows.
    if any(TrialStatus.INFEASIBLE in label for label in traces):
        ax.plot([], [], "x", color=style.INFEASIBLE, ms=8, mew=2,
                label="infeasible: diverged, or ended collapsed")
    if any((events or {}).get(label) for label in traces):
        ax.fill_between([], [], color="0.5", alpha=0.2,
                        label="loss spike (analysis.detect_instability)")
    ax.set_yscale("log")
    style.plain_log(ax.yaxis)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training loss (per step faint; {window}-step mean bold; log)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.25)
    return fig


def dense_vs_sparse_plot(dense, sparse_steps, sparse, events, *, lr: float, coarse_every: int):
    """The one-run early check: the loss of every step beside the same run seen every
    ``coarse_every`` steps (Figure 5's advice; Figure 5 itself is :func:`frequent_evals_plot`)."""
    fig, (ax, bx) = style.new_figure(11.0, 4.2, ncols=2, sharey=True)
    s, y = style.positive_points(dense)
    ax.plot(s, y, color=style.FEASIBLE, lw=0.8, label="minibatch loss, every step")
    _shade_events(ax, events)
    for e in events:
        ax.annotate(f"{e['height']:.1f}× spike ({e['kind']})",
                    (e["peak_step"], float(np.asarray(dense)[e["peak_step"]])),
                    xytext=(6, 2), textcoords="offset points", fontsize=8,
                    color=style.INFEASIBLE)
    ax.fill_between([], [], color=style.INFEASIBLE, alpha=0.15, label="detected loss spike")
    ax.set_title("evaluated every step: the spike is there", fontsize=10)
    bx.plot(sparse_steps, sparse, "o-", color="tab:orange", lw=1.6,
            label=f"mean loss since the last evaluation, every {coarse_every} steps")
    bx.set_title(f"evaluated every {coarse_every} steps: only goes down", fontsize=10)
    for a in (ax, bx):
        a.set_yscale("log")
        style.plain_log(a.yaxis)
        a.set_xlabel("training step")
        a.grid(alpha=0.25)
        a.legend(fontsize=8, loc="lower left")
        a.set_xlim(0, len(dense))
    ax.set_ylabel("training loss (log)")
    fig.suptitle(f"Does a sparse evaluation schedule hide instability? "
                 f"(the same run, lr = {lr:g})", fontsize=11)
    return fig


def warmup_plot(losses: dict, rows, *, target_lr: float, shortest: int | None, title: str = ""):
    """Figure 6: training loss vs step (log x) per warmup length, and the schedules (log-log).

    ``losses``: warmup steps -> per-step training loss; ``rows``: the
    procedure's per-candidate dicts (status, stable, ``why``: the decision's
    reason, shown in the legend; ``failing_step`` and ``lr_at_failure``: where
    the run turned back up, marked with a dot on both panels).
    """
    fig, (ax, bx) = style.new_figure(12.0, 4.8, ncols=2, width_ratios=[1.5, 1])
    status = {row["warmup_steps"]: row for row in rows}
    n = max(len(x) for x in losses.values())
    failed_rates = []
    for i, (w, loss) in enumerate(sorted(losses.items())):
        c = style.colour(i)
        row = status[w]
        tag = row.get("why") or ("stable" if row["stable"] else row["status"])
        smoothed = smooth_log(loss)
        xs, ys = style.positive_points(smoothed)
        ax.plot(xs + 1, ys, color=c, lw=2.2 if w == shortest else 1.3,
                label=f"warmup {w} steps: {tag}" + ("  ← shortest stable" if w == shortest
                                                     else ""))
        s = np.arange(1, n + 1)
        lr = target_lr * np.minimum(1.0, (s - 1) / w) if w else np.full(n, target_lr)
        bx.plot(s, np.where(lr > 0, lr, np.nan), color=c, lw=1.5, label=f"warmup {w}")
        fail = row.get("failing_step")
        if fail is not None and fail < len(loss):
            ax.plot(fail + 1, smoothed[fail], "o", color=c, mec="black", ms=7, zorder=5)
            if row.get("lr_at_failure"):
                bx.plot(fail + 1, row["lr_at_failure"], "o", color=c, mec="black", ms=7,
                        zorder=5)
                if w > 0:
                    failed_rates.append(row["lr_at_failure"])
    if failed_rates:
        bx.axhspan(min(failed_rates), max(failed_rates), color=style.INFEASIBLE, alpha=0.12,
                   label="rate reached when a warmup failed")
        ax.plot([], [], "o", color="0.6", mec="black", label="turned back up (then collapsed)")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xlabel("training step + 1 (log)")
        a.grid(alpha=0.25)
    ax.set_yscale("log")
    style.plain_log(ax.yaxis)
    ax.set_ylabel("training loss (log; mean of the last 10 % of steps)")
    ax.legend(fontsize=8, loc="lower left")
    bx.set_yscale("log")
    bx.set_ylabel("learning rate (log)")
    bx.set_title(f"linear ramp 0 → {target_lr:g}, then constant", fontsize=9)
    bx.legend(fontsize=8, loc="lower right")
    fig.suptitle(title or f"Figure 6: how long a warmup does lr = {target_lr:g} need to train "
                 f"stably?", fontsize=11)
    return fig


def lr_sweep_plot(lrs, sweeps: dict, *, warmup_steps: int, variants_labels: dict | None = None):
    """Figure 8: validation error vs learning rate (log x), with and without warmup, per variant.

    ``sweeps``: variant -> the procedure's numbers (``errors``, ``errors_warmup``,
    ``statuses``, ``statuses_warmup``, ``lr_star``, ``lr_star_warmup``).
    """
    fig, axes = style.new_figure(5.4 * len(sweeps) + 0.8, 4.4, ncols=len(sweeps), squeeze=False,
                                 sharey=True)
    all_err = [e for s in sweeps.values() for k in ("errors", "errors_warmup") for e in s[k]]
    cap = style.cap_for([e for e in all_err if math.isfinite(e)], None)
    for ax, (variant, s) in zip(axes[0], sweeps.items()):
        for j, (key, label) in enumerate((("", "no warmup"),
                                          ("_warmup", f"warmup {warmup_steps} steps"))):
            err = np.asarray(s["errors" + key], dtype=np.float64)
            ok = np.array([st == TrialStatus.COMPLETE for st in s["statuses" + key]])
            c = style.colour(j)
            x = np.asarray(lrs)
            ax.plot(x[ok], err[ok], "o-", color=c, lw=1.4, ms=5, label=label)
            ax.plot(x[~ok], np.full((~ok).sum(), cap), "x", color=style.INFEASIBLE, ms=9,
                    mew=2)
            best = s["lr_star" + key]
            if best is not None:
                ax.plot([best], [s["error" + key]], "*", ms=18, color=c, mec="black", mew=0.8,
                        label=f"best lr {'with' if key else 'without'} warmup = {best:g}")
        ax.plot([], [], "x", color=style.INFEASIBLE, ms=8, mew=2,
                label="infeasible (NaN/blow-up), at the cap")
        ratio = s.get("ratio")
        ax.set_title(f"{variant}: {(variants_labels or {}).get(variant, '')}\n"
                     + (f"warmup moves the best lr {ratio:.1f}×" if ratio else ""), fontsize=9)
        ax.set_xscale("log")
        style.plain_log(ax.xaxis, numticks=8)
        ax.set_xlabel("learning rate (log)")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7.5, loc="upper left")
    axes[0, 0].set_ylabel("validation error rate (best checkpoint)")
    fig.suptitle("Figure 8: does warmup let the model use a larger learning rate?", fontsize=11)
    return fig


# ------------------------------------------------ sweeps repeated over seeds (Figures 4 and 8)
def _seed_means(errors_by_seed, statuses_by_seed) -> tuple[np.ndarray, np.ndarray]:
    """Per lr: the mean error over seeds, and whether every seed's trial completed."""
    err = np.asarray(errors_by_seed, dtype=np.float64)
    ok = np.array([[st == TrialStatus.COMPLETE for st in row] for row in statuses_by_seed])
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(np.isfinite(err), err, np.nan), axis=0)
    return mean, ok.all(axis=0)


def sweep_series(ax, lrs, errors_by_seed, statuses_by_seed, *, colour: str, label: str,
                 star: bool = True, ls: str = "-") -> None:
    """One model's learning-rate sweep over several seeds, in the playbook's marks.

    The line joins the mean error over seeds where every seed trained; faint
    dots are the single seeds; a black ``x`` marks a rate where some seed's
    run was infeasible (drawn at its mean error: the playbook's "poor
    optimization"); a star marks the best rate among those every seed trained.
    """
    x = np.asarray(lrs, dtype=np.float64)
    mean, ok = _seed_means(errors_by_seed, statuses_by_seed)
    for row in np.asarray(errors_by_seed, dtype=np.float64):
        ax.plot(x, row, ".", color=colour, alpha=0.35, ms=5)
    ax.plot(x, mean, ls, color=colour, lw=1.6, marker="o", ms=4, label=label)
    bad = ~ok & np.isfinite(mean)
    ax.plot(x[bad], mean[bad], "x", color="black", ms=9, mew=1.8)
    if star and ok.any():
        i = int(np.nanargmin(np.where(ok, mean, np.nan)))
        ax.plot([x[i]], [mean[i]], "*", ms=17, color=colour, mec="black", mew=0.7)


def _finish_sweep_axes(ax, n_seeds: int, title: str) -> None:
    """The marks' legend entries, log-lr axis, labels and title of a seeded sweep."""
    ax.plot([], [], "x", color="black", ms=8, mew=1.8,
            label="infeasible on a seed (collapsed or diverged)")
    ax.plot([], [], "*", color="0.6", mec="black", ms=12, label="best learning rate")
    if n_seeds > 1:
        ax.plot([], [], ".", color="0.5", alpha=0.5,
                label=f"single seeds (line: mean of {n_seeds})")
    ax.set_xscale("log")
    style.plain_log(ax.xaxis, numticks=8)
    ax.set_xlabel("base learning rate (log)")
    ax.set_ylabel("validation error rate (best checkpoint)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")


def _loss_panel(ax, traces: dict, colours: dict, title: str) -> None:
    for label, loss in traces.items():
        xs, ys = style.positive_points(smooth_log(loss))
        ax.plot(xs + 1, ys, color=colours[label], lw=1.4,
                ls="--" if "warmup" in label else "-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.plain_log(ax.yaxis)
    ax.set_xlabel("training step + 1 (log)")
    ax.set_ylabel("training loss (log; mean of the last 10 % of steps)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="lower left")


def model_change_plot(lrs, errors: dict, statuses: dict, *, rescue: tuple, traces: dict,
                      title: str = ""):
    """Figure 4: two models' sweeps (top); their training loss at a low and a high rate.

    ``errors`` / ``statuses``: model label -> [[per lr] per seed] (standard
    first, changed second); ``rescue`` = ``(lr, errors per seed, statuses per
    seed, warmup_steps)`` of the changed model with warmup; ``traces``: lr ->
    {label: per-step loss}, the two rates of the bottom panels.
    """
    fig = Figure(figsize=(11.0, 8.0), dpi=100, layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1.15, 1])
    top = fig.add_subplot(grid[0, :])
    labels = list(errors)
    colours = {label: style.colour(i) for i, label in enumerate(labels)}
    for label in labels:
        sweep_series(top, lrs, errors[label], statuses[label], colour=colours[label],
                     label=label)
    lr, r_err, r_st, warmup = rescue
    ok = [st == TrialStatus.COMPLETE for st in r_st]
    rescue_label = f"changed + {warmup}-step warmup"
    colours[rescue_label] = "tab:green"
    top.plot([lr] * len(r_err), r_err, "s", color="tab:green", ms=8, mec="black",
             label=f"{rescue_label} at lr {lr:g}" + ("" if all(ok) else " (some infeasible)"))
    _finish_sweep_axes(top, len(next(iter(errors.values()))), title)
    for j, (rate, tr) in enumerate(sorted(traces.items())):
        ax = fig.add_subplot(grid[1, j])
        _loss_panel(ax, tr, colours, f"training at learning rate {rate:g}")
        top.axvline(rate, color="0.6", lw=0.8, ls=":")
    return fig


def warmup_effect_plot(lrs, series: dict, *, title: str = ""):
    """Figure 8: validation error vs base learning rate, with and without warmup, per model.

    ``series``: label -> ``(errors [[per lr] per seed], statuses, colour, linestyle)``.
    """
    fig, ax = style.new_figure(9.5, 5.6)
    n_seeds = 1
    for label, (errs, sts, colour, ls) in series.items():
        sweep_series(ax, lrs, errs, sts, colour=colour, label=label, ls=ls)
        n_seeds = len(errs)
    _finish_sweep_axes(ax, n_seeds, title)
    return fig


def frequent_evals_plot(coarse: dict, dense: dict, *, coarse_every: int, lr: float,
                        title: str = ""):
    """Figure 5: each model's validation loss every ``coarse_every`` steps (left) and at every
    step early on (right). ``coarse``/``dense``: label -> ``(steps, losses)``."""
    fig, (ax, bx) = style.new_figure(11.5, 4.6, ncols=2)
    for i, label in enumerate(coarse):
        c = style.colour(i)
        ax.plot(*coarse[label], "o-", color=c, lw=1.5, ms=3.5, label=label)
        steps, loss = dense[label]
        bx.plot(steps, loss, "-", color=c, lw=1.5, marker=".", ms=4, label=label)
        k = int(np.nanargmax(loss))
        if loss[k] > 1.5 * loss[0]:
            bx.annotate(f"{loss[k] / loss[0]:.1f}× the step-0 loss", (steps[k], loss[k]),
                        xytext=(8, -4), textcoords="offset points", fontsize=8, color=c)
    ax.set_title(f"evaluated every {coarse_every} steps", fontsize=10)
    bx.set_title(f"evaluated every step, first {dense[next(iter(dense))][0][-1]} steps",
                 fontsize=10)
    for a in (ax, bx):
        a.set_xlabel("training step")
        a.set_ylabel("validation loss (cross-entropy)")
        a.set_ylim(bottom=0)
        a.grid(alpha=0.25)
        a.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{title} (lr = {lr:g}, no warmup)", fontsize=11)
    return fig
