"""The study report: the study's answer and the playbook's checklist, on one page.

The playbook ("Extracting insight from experimental results"): before reading
a study's answer, ask *"Is the search space large enough? Have we sampled
enough points? What fraction of the trials are infeasible? Does the model
exhibit optimization issues? What can we learn from the training curves of
the best trials?"*; and ("Automate generically useful plots"): *"At a
minimum, we automatically generate basic hyperparameter axis plots for all
hyperparameters that we vary in an experiment. Additionally, we
automatically produce training curves for all trials and make it as easy as
possible to find the best few trials of each study"*.

``write(frame, out_dir)`` writes ``report.md``, a self-contained
``report.html`` (images embedded) and the PNGs of any
:class:`~refplay.analysis.TrialsFrame` (a stored study, an imported one, one
built in memory); ``write_report(store, name)`` loads a stored study first.
Every number comes from a ``refplay.analysis`` function and is formatted by
:func:`fmt`; the report recomputes nothing. The report is a list of blocks
(heading, paragraph, list, table, image), one function per section, each
block rendered to Markdown (:mod:`refplay.report.render`) and HTML.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from refplay import analysis, io, plots
from refplay.analysis.uncertainty import is_error_rate
from refplay.plots.style import save_png
from refplay.report.render import html_page, markdown
from refplay.search.space import Choice, Discrete, Float, Int
from refplay.train.result import TrialStatus

__all__ = ["Report", "build_report", "write", "write_report", "summary_table", "fmt",
           "fmt_position", "fmt_se", "answer_line"]


def fmt(x) -> str:
    """How every number appears in the report: 4 significant digits, NaN as "-"."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def fmt_position(u: float) -> str:
    """A position on a parameter's range, 0 (lower edge) to 1 (upper): two decimals."""
    return f"{u:.2f}"


def fmt_se(x) -> str:
    """How an uncertainty appears: 2 significant digits (0.078 ± 0.012, not ± 0.01199)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2g}"


@dataclass(frozen=True)
class Report:
    """What ``write`` wrote, and the numbers it printed."""

    markdown: Path
    html: Path
    images: dict
    numbers: dict = field(repr=False)


# ------------------------------------------------------------ the numbers
def _best_rows(frame) -> list[dict]:
    """Per scientific value: the best trial, its uncertainty and the trial counts."""
    best = analysis.best(frame)
    counts = analysis.infeasible_fraction(frame)
    spread = analysis.repeat_spread(frame) if frame.repeats > 1 else None
    rows = []
    for value, count in counts.items():
        b = best.get(value)
        se = None if b is None else analysis.metric_se(frame.metric, b.objective,
                                                        frame.n_validation)
        repeat_std = None
        if b is not None and spread is not None:
            repeat_std = spread.per_config.get(frame.row(b.trial).config_index)
        parts = [s for s in (se, repeat_std) if s is not None]
        total = math.sqrt(sum(s * s for s in parts)) if parts else None
        nuisance = {} if b is None else {
            k: v for k, v in frame.row(b.trial).active.items() if k in frame.nuisance}
        rows.append({"value": value, "label": frame.label(value), "best": b, "se": se,
                     "repeat_std": repeat_std, "uncertainty": total, "nuisance": nuisance,
                     "count": count})
    return rows


def _unknown_uncertainty(frame) -> str:
    """Why the uncertainty of the answer is unknown, and what would give it."""
    if is_error_rate(frame.metric) and frame.n_validation is None:
        return ("n_validation unknown: give the validation set size (`refplay study report "
                "--n-validation N`) for the binomial standard error, or repeats")
    return "the metric is not an error rate and the spec has no repeats"


def answer_line(frame, rows: list[dict]) -> str:
    """One line: the study's answer, with the comparison against 2 standard errors."""
    ranked = sorted((r for r in rows if r["best"] is not None),
                    key=lambda r: (1.0 if frame.mode == "min" else -1.0) * r["best"].objective)
    if not ranked:
        return "No trial completed: the study has no answer yet (see the infeasible trials)."

    def show(r):
        u = r["uncertainty"]
        return f"{r['label']} {fmt(r['best'].objective)}" + ("" if u is None else f" ± {fmt_se(u)}")

    where = (f" on {frame.n_validation} validation examples"
             if analysis.metric_se(frame.metric, 0.5, frame.n_validation) is not None else "")
    if len(ranked) == 1:
        lone = "" if len(rows) == 1 else " (the only value with a complete trial)"
        return f"Best {frame.metric}: {show(ranked[0])}{where}, trial {ranked[0]['best'].trial}{lone}."
    a, b = ranked[0], ranked[1]
    c = analysis.compare(b["best"].objective, b["uncertainty"], a["best"].objective,
                         a["uncertainty"])
    head = f"{show(a)} vs {show(b)}{where}: "
    if c.significant is None:
        return head + (f"{a['label']} is ahead by {fmt(abs(c.difference))}, with unknown "
                       f"uncertainty ({_unknown_uncertainty(frame)}), so the difference cannot "
                       f"be judged.")
    verdict = "larger" if c.significant else "not larger"
    return head + (f"the difference ({fmt(abs(c.difference))}) is {verdict} than 2 standard "
                   f"errors (2 × {fmt_se(c.se)} = {fmt_se(2 * c.se)}).")


def _not_finished(count) -> int:
    return count.n_infeasible + count.n_failed + count.n_pruned


def summary_table(frame) -> str:
    """The per-scientific-value table as plain text (printed by ``refplay study run``)."""
    rows = _best_rows(frame)
    lines = [f"{'value':24} {'best ' + frame.metric:>30} {'± SE':>8} {'trial':>6} "
             f"{TrialStatus.INFEASIBLE:>11} {TrialStatus.FAILED:>7} {TrialStatus.PRUNED:>7}"]
    for r in rows:
        b, c = r["best"], r["count"]
        lines.append(f"{r['label'][:24]:24} {fmt(None if b is None else b.objective):>30} "
                     f"{fmt_se(r['uncertainty']):>8} {fmt(None if b is None else b.trial):>6} "
                     f"{c.n_infeasible:>5}/{c.n_trials:<5} {c.n_failed:>7} {c.n_pruned:>7}")
    lines.append(answer_line(frame, rows))
    return "\n".join(lines)


def _numeric(space, name) -> bool:
    p = space[name]
    return isinstance(p, (Float, Int)) or (isinstance(p, Discrete) and len(p.values) > 1)


def _axis_params(frame) -> list[tuple[str, str | None]]:
    """(param or config key, by) for every searched numeric parameter: one plot per key."""
    out, seen = [], set()
    for name in frame.searched():
        if not _numeric(frame.space, name):
            continue
        key = name.rsplit("/", 1)[-1]
        names = [n for n in frame.searched() if n.rsplit("/", 1)[-1] == key]
        param = key if len(names) > 1 else name
        if param in seen:
            continue
        seen.add(param)
        out.append((param, None if name in frame.scientific else "scientific"))
    return out


# ------------------------------------------------------------ the sections
def _header(frame, numbers: dict) -> list:
    """Title, question, description, where an imported study came from, the trials line."""
    spec = frame.spec
    question = spec.goal if spec is not None and spec.goal else "(no goal recorded in the spec)"
    blocks = [("h1", f"Study report: {frame.name}"), ("p", f"**Question.** {question}")]
    if spec is not None and spec.description:
        blocks.append(("p", f"**Description.** {spec.description}"))
    if frame.source:
        blocks.append(("p", f"**Imported** ({frame.source}); sampler: "
                            f"{frame.sampler or 'unknown'}."))
    counts = frame.counts()
    numbers["counts"] = counts
    pruned = counts[TrialStatus.PRUNED]
    hollow = ": hollow circles on the axis plots, left out of every count below" if pruned else ""
    blocks.append(("p", f"**Trials.** {len(frame)} recorded: {counts[TrialStatus.COMPLETE]} "
                        f"complete, {counts[TrialStatus.INFEASIBLE]} infeasible (diverged), "
                        f"{counts[TrialStatus.FAILED]} failed (crashed), {pruned} pruned "
                        f"(stopped early on purpose{hollow}). "
                        f"Metric: `{frame.metric}` ({frame.mode}), the value at each trial's "
                        f"best checkpoint; max_train_steps = {frame.max_train_steps}."))
    return blocks


def _roles(frame) -> list:
    """The hyperparameters by role."""
    if frame.space is None:
        return []
    items = [f"scientific: {', '.join(frame.scientific) or '(none: a tuning study)'}",
             f"nuisance (tuned away): {', '.join(frame.nuisance) or '(none)'}",
             f"fixed: {', '.join(frame.fixed) or '(none)'}"]
    return [("h2", "Hyperparameters and their roles"), ("ul", items)]


def _answer(frame, rows: list[dict], numbers: dict) -> list:
    """The best trial per scientific value, its uncertainty, and the answer line."""
    numbers["best"] = {r["label"]: r for r in rows}
    numbers["answer"] = answer = answer_line(frame, rows)
    table = []
    for r in rows:
        b, c = r["best"], r["count"]
        table.append([r["label"], fmt(None if b is None else b.objective), fmt_se(r["uncertainty"]),
                      fmt(None if b is None else b.trial), fmt(None if b is None else b.step),
                      ", ".join(f"{k}={fmt(v)}" for k, v in r["nuisance"].items()) or "-",
                      f"{c.n_trials - _not_finished(c)}/{c.n_trials}", fmt(c.fraction),
                      f"{c.n_failed}/{c.n_pruned}"])
    head = ["value", f"best {frame.metric}", "± uncertainty", "trial", "step",
            "its nuisance values", TrialStatus.COMPLETE, "infeasible fraction (of finished)",
            "failed/pruned"]
    basis = []
    if analysis.metric_se(frame.metric, 0.5, frame.n_validation) is not None:
        basis.append(f"binomial standard error √(p(1−p)/n) on n = {frame.n_validation} "
                     f"validation examples")
    if frame.repeats > 1:
        basis.append(f"the spread (std) of the {frame.repeats} repeats of the best "
                     f"configuration, added in quadrature")
    unknown = f"unknown ({_unknown_uncertainty(frame)})"
    return [("h2", "The answer: best trial per scientific value"), ("table", head, table),
            ("p", "Uncertainty: " + ("; ".join(basis) if basis else unknown) + "."),
            ("p", f"**{answer}**")]


def _boundary(frame, numbers: dict, warnings: list) -> list:
    """Is the search space large enough? The boundary check of every numeric parameter."""
    boundary = {param: analysis.boundary_check(frame, param, by=by)
                for param, by in _axis_params(frame)}
    numbers["boundary"] = boundary
    rows = []
    for param, rep in boundary.items():
        for check in rep.checks.values():
            if check.decision != "ok":
                warnings.append(f"Search space ({param}): {check.message}.")
            rows.append([param, frame.label(check.value) if check.value else "all trials",
                         ", ".join(fmt_position(u) for u in check.positions) or "-",
                         fmt(check.divergence_threshold), f"{check.n_good}/{check.n_complete}",
                         check.decision, "-" if check.suggested_range is None else
                         f"[{fmt(check.suggested_range[0])}, {fmt(check.suggested_range[1])}]"])
    if not rows:
        return []
    return [("p", "**Is the search space large enough?** Positions of the top 3 trials on "
                  "each parameter's scale (0 = lower boundary, 1 = upper); 'near' means the "
                  "outer 0.2. Good region: trials within 2 SE of the best (5% of the best "
                  "when the SE is unknown)."),
            ("table", ["parameter", "value", "top-3 positions", "divergence threshold",
                       "trials in the good region", "decision", "suggested range"], rows)]


def _status_warnings(frame, numbers: dict) -> list[str]:
    """Too many infeasible trials (the search space), and crashed trials (a bug), apart."""
    infeasible = analysis.infeasible_fraction(frame)
    numbers["infeasible"] = infeasible
    warnings = [f"{frame.label(value)}: {fmt(c.fraction)} of the finished trials are "
                f"infeasible (diverged; more than half): adjust or reparameterize the search "
                f"space." for value, c in infeasible.items() if c.warning]
    failed = [r for r in frame.rows if r.status == TrialStatus.FAILED]
    if failed:
        lines = failed[0].reason.strip().splitlines()
        why = f" (trial {failed[0].trial}: {lines[-1][:120]})" if lines else ""
        rerun = ("" if frame.source else
                 f", then rerun them (`refplay study resume {frame.name} --retry-failed`)")
        warnings.append(f"{len(failed)} trial{'s' if len(failed) != 1 else ''} crashed "
                        f"(failed){why}: look for a bug{rerun}; crashes say nothing about the "
                        f"search space and are not counted as infeasible.")
    return warnings


def _checklist(frame, numbers: dict) -> list:
    """The playbook's checklist: boundaries, infeasible and crashed trials, roles, steps."""
    warnings: list[str] = []
    blocks = [("h2", "Before trusting the answer: the playbook's checklist")]
    blocks += _boundary(frame, numbers, warnings)
    warnings += _status_warnings(frame, numbers)
    numbers["lint"] = lint = analysis.role_lint(frame.space)
    warnings += [f"Roles: {w.message}." for w in lint]
    numbers["best_steps"] = steps = analysis.best_step_fractions(frame)
    if steps.decision not in ("ok", "no_data"):
        warnings.append(f"max_train_steps: {steps.message}.")
    caveat = analysis.exchangeable_caveat(frame)
    if caveat:
        warnings.append(f"Sampler: {caveat} (best of N, isolation buckets).")
    blocks.append(("p", "**Warnings**" if warnings else "**Warnings:** none."))
    return blocks + ([("ul", warnings)] if warnings else [])


def _defaults_used(frame) -> list[str]:
    """Settings the best trial ran with that the search space does not name (its defaults)."""
    best = analysis.best(frame, by=None).get(())
    if best is None or frame.spec is None or frame.spec.workload is None:
        return []
    resolved = frame.result(best.trial).extras.get("resolved_config") or {}
    named = {n.rsplit("/", 1)[-1] for n in (frame.space or ())}
    return [f"{k} = {v!r} (default)" for k, v in sorted(resolved.items())
            if k not in named and v is not None]


def _scope(frame) -> list:
    """These conclusions hold only for: fixed hyperparameters, defaults, budget, workload."""
    fixed = []
    for name in frame.fixed:
        p = frame.space[name]
        when = "" if p.when is None else " (when " + ", ".join(
            f"{k}={'/'.join(map(str, v))}" for k, v in p.when.items()) + ")"
        fixed.append(f"{name} = {p.value!r}{when}")
    fixed += _defaults_used(frame)
    fixed.append(f"max_train_steps = {frame.max_train_steps}")
    spec = frame.spec
    if spec is not None and frame.source is None:
        fixed.append(f"workload = {spec.workload or 'custom trial function'}"
                     + (f" with {spec.workload_options}" if spec.workload_options else ""))
    return [("p", "**These conclusions hold only for** the fixed hyperparameters and the "
                  "settings every trial used:"), ("ul", fixed)]


def _diagnostics(frame, rows: list[dict], numbers: dict) -> list:
    """What do the best trials' curves say? The curve diagnostics of each value's best."""
    table, diagnostics = [], {}
    for r in rows:
        b = r["best"]
        if b is None:
            continue
        d = analysis.curve_diagnostics(frame.result(b.trial), frame.metric,
                                       n_validation=frame.n_validation,
                                       max_train_steps=frame.row(b.trial).steps_done,
                                       mode=frame.mode)
        diagnostics[r["label"]] = d
        table.append([r["label"], fmt(b.trial),
                      "; ".join(f"{f.name}: {f.message}" for f in d.raised) or "none"])
    numbers["diagnostics"] = diagnostics
    if not table:
        return []
    return [("p", f"**What do the best trials' curves say?** Thresholds in units of "
                  f"{next(iter(diagnostics.values())).se_basis}."),
            ("table", ["value", "best trial", "flags raised"], table)]


def _importance(frame, numbers: dict) -> list:
    """Which hyperparameters mattered? The spread of the bucketed best along each axis."""
    numbers["importance"] = imp = (analysis.importance(frame)
                                   if frame.space is not None and len(frame) else ())
    if not imp:
        return []
    return [("p", "**Which hyperparameters mattered?** Range of the best objective over 5 "
                  "slices of each axis (largest first):"),
            ("table", ["parameter", "spread of the bucketed best", "slices"],
             [[i.param, fmt(i.spread), fmt(i.n_slices)] for i in imp])]


# ------------------------------------------------------------ the figures
def _axis_and_isolation_figures(frame, figures: dict, numbers: dict) -> list:
    """A basic axis plot per numeric parameter, an isolation plot per scientific one."""
    blocks = []
    for param, by in _axis_params(frame):
        key = f"axis_{param.replace('/', '_')}"
        figures[key] = plots.axis_plot(frame, param, by=by)
        blocks.append(("img", key, f"Basic axis plot of {param}"))
    for name in frame.scientific:
        p = frame.space[name]
        distinct = {v for v in frame.values(name, numeric=False) if v is not None}
        if not isinstance(p, (Choice, Discrete, Float, Int)) or len(distinct) < 2:
            continue
        buckets = 5 if isinstance(p, (Float, Int)) and len(distinct) > 8 else None
        numbers[f"isolation_{name}"] = iso = analysis.isolation(frame, name, buckets=buckets)
        key = f"isolation_{name.replace('/', '_')}"
        figures[key] = plots.isolation_plot(iso)
        blocks.append(("img", key, f"Isolation plot of {name}"))
    return blocks


def _best_of_n_figure(frame, figures: dict, numbers: dict) -> list:
    """Best of N trials per scientific value (with the sampler's caveat)."""
    finished = len(frame) - frame.count(TrialStatus.FAILED) - frame.count(TrialStatus.PRUNED)
    if finished < 4:
        return []
    bon = analysis.best_of_n_per_value(frame)
    if not bon:
        return []
    numbers["best_of_n"] = bon
    figures["best_of_n"] = plots.best_of_n_plot({frame.label(v): b for v, b in bon.items()},
                                                metric=frame.metric,
                                                caveat=analysis.exchangeable_caveat(frame))
    return [("img", "best_of_n", "Best of N trials per scientific value")]


def _curve_figures(frame, rows: list[dict], figures: dict, numbers: dict) -> list:
    """Training curves of the top trials, the best trial's gradient norms, best steps."""
    if not any(r["best"] is not None for r in rows):
        return []
    figures["training_curves"] = plots.training_curves(frame)
    blocks = [("img", "training_curves", "Training curves of the top trials")]
    overall = analysis.best(frame, by=None)[()]
    g = frame.grad_norms(overall.trial)
    if g.size:
        numbers["grad_norms"] = summary = analysis.grad_norm_summary(g)
        figures["grad_norms"] = plots.grad_norm_plot(
            g, summary, title=f"Gradient norms of the best trial ({overall.trial}): where "
                              f"would clipping bite?")
        blocks.append(("img", "grad_norms", "Gradient norms of the best trial"))
    if len(numbers["best_steps"].fractions):
        figures["best_steps"] = plots.best_step_histogram(numbers["best_steps"])
        blocks.append(("img", "best_steps", "Best step fractions"))
    return blocks


def build_report(frame, figures_wanted: bool = True):
    """``(blocks, figures, numbers)`` for ``frame``; :func:`write` renders them."""
    figures, numbers = {}, {}
    rows = _best_rows(frame)
    blocks = _header(frame, numbers) + _roles(frame) + _answer(frame, rows, numbers)
    blocks += _checklist(frame, numbers) + _scope(frame)
    blocks += _diagnostics(frame, rows, numbers) + _importance(frame, numbers)
    if figures_wanted:
        blocks.append(("h2", "Figures"))
        blocks += _axis_and_isolation_figures(frame, figures, numbers)
        blocks += _best_of_n_figure(frame, figures, numbers)
        blocks += _curve_figures(frame, rows, figures, numbers)
    return blocks, figures, numbers


# ------------------------------------------------------------ writing
def write(frame, out_dir: str | os.PathLike) -> Report:
    """Write the report of any ``TrialsFrame`` to ``out_dir``: Markdown, HTML and PNGs.

    ``frame`` may come from a store (``analysis.load``), an import
    (``analysis.from_optuna``, ``from_csv``, ``from_records``) or from
    results in memory (``analysis.from_results``).
    """
    if not isinstance(frame, analysis.TrialsFrame):
        raise TypeError(f"frame must be an analysis.TrialsFrame, got {type(frame).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks, figures, numbers = build_report(frame)
    images, paths = {}, {}
    for key, fig in figures.items():
        paths[key] = save_png(fig, out / f"{key}.png")
        images[key] = paths[key].read_bytes()
    md_path, html_path = out / "report.md", out / "report.html"
    io.write_text(md_path, markdown(blocks))
    io.write_text(html_path, html_page(blocks, images, f"Study report: {frame.name}"))
    return Report(md_path, html_path, paths, numbers)


def write_report(store, name: str, out_dir: str | os.PathLike | None = None, *,
                 n_validation: int | None = None) -> Report:
    """Write the report of stored study ``name`` (default ``WORKSPACE/NAME/report``).

    ``n_validation`` overrides the study's validation set size (the binomial
    standard error of an error rate); by default the recorded one is used.
    """
    frame = analysis.load(store, name, n_validation=n_validation)
    return write(frame, store.study_dir(name) / "report" if out_dir is None else out_dir)
