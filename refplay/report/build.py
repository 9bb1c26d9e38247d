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

``write_report(store, name, out_dir)`` writes ``report.md``, a
self-contained ``report.html`` (images embedded) and the PNGs. Every number
comes from a ``refplay.analysis`` function and is formatted by :func:`fmt`;
the report recomputes nothing. The report is built as a list of blocks
(heading, paragraph, list, table, image), each rendered to Markdown and HTML.
"""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from refplay import analysis, io, plots
from refplay.search.space import Choice, Discrete, Float, Int

__all__ = ["Report", "build_report", "write_report", "summary_table", "fmt", "answer_line"]


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
    """What ``write_report`` wrote, and the numbers it printed."""

    markdown: Path
    html: Path
    images: dict
    numbers: dict = field(repr=False)


# ------------------------------------------------------------ the numbers
def _best_rows(frame) -> list[dict]:
    """Per scientific value: the best trial, its uncertainty and the infeasible count."""
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
            k: v for k, v in frame.row(b.trial).active.items()
            if k in frame.nuisance}
        rows.append({"value": value, "label": frame.label(value), "best": b, "se": se,
                     "repeat_std": repeat_std, "uncertainty": total, "nuisance": nuisance,
                     "count": count})
    return rows


def answer_line(frame, rows: list[dict]) -> str:
    """One line: the study's answer, with the comparison against 2 standard errors."""
    ranked = [r for r in rows if r["best"] is not None]
    sign = 1.0 if frame.mode == "min" else -1.0
    ranked.sort(key=lambda r: sign * r["best"].objective)
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
                       f"uncertainty (the metric is not an error rate and the spec has no "
                       f"repeats), so the difference cannot be judged.")
    verdict = "larger" if c.significant else "not larger"
    return head + (f"the difference ({fmt(abs(c.difference))}) is {verdict} than 2 standard "
                   f"errors (2 × {fmt_se(c.se)} = {fmt_se(2 * c.se)}).")


def summary_table(frame) -> str:
    """The per-scientific-value table as plain text (printed by ``refplay study run``)."""
    rows = _best_rows(frame)
    lines = [f"{'value':24} {'best ' + frame.metric:>30} {'± SE':>8} {'trial':>6} "
             f"{'infeasible':>11}"]
    for r in rows:
        b = r["best"]
        lines.append(f"{r['label'][:24]:24} {fmt(None if b is None else b.objective):>30} "
                     f"{fmt_se(r['uncertainty']):>8} {fmt(None if b is None else b.trial):>6} "
                     f"{r['count'].n_infeasible + r['count'].n_failed:>5}/{r['count'].n_trials:<5}")
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
        by = None if name in frame.scientific else "scientific"
        out.append((param, by))
    return out


# ------------------------------------------------------------ the blocks
def build_report(frame, figures_wanted: bool = True):
    """``(blocks, figures, numbers)`` for ``frame``; ``write_report`` renders them."""
    blocks, figures, numbers = [], {}, {}
    spec = frame.spec
    blocks.append(("h1", f"Study report: {frame.name}"))
    question = (spec.goal if spec is not None and spec.goal else
                "(no goal recorded in the spec)")
    blocks.append(("p", f"**Question.** {question}"))
    if spec is not None and spec.description:
        blocks.append(("p", f"**Description.** {spec.description}"))
    statuses = frame.statuses()
    blocks.append(("p", f"**Trials.** {len(frame)} recorded: {statuses.count('complete')} complete, "
                        f"{statuses.count('infeasible')} infeasible, {statuses.count('failed')} "
                        f"failed. Metric: `{frame.metric}` ({frame.mode}), the value at each "
                        f"trial's best checkpoint; max_train_steps = {frame.max_train_steps}."))
    numbers["counts"] = {s: statuses.count(s) for s in analysis.frame.STATUSES}

    # Roles
    if frame.space is not None:
        items = [f"scientific: {', '.join(frame.scientific) or '(none: a tuning study)'}",
                 f"nuisance (tuned away): {', '.join(frame.nuisance) or '(none)'}",
                 f"fixed: {', '.join(frame.fixed) or '(none)'}"]
        blocks += [("h2", "Hyperparameters and their roles"), ("ul", items)]

    # The answer
    rows = _best_rows(frame)
    answer = answer_line(frame, rows)
    numbers["best"] = {r["label"]: r for r in rows}
    numbers["answer"] = answer
    blocks.append(("h2", "The answer: best trial per scientific value"))
    unc_head = "± uncertainty"
    table = []
    for r in rows:
        b, c = r["best"], r["count"]
        table.append([r["label"], fmt(None if b is None else b.objective), fmt_se(r["uncertainty"]),
                      fmt(None if b is None else b.trial), fmt(None if b is None else b.step),
                      ", ".join(f"{k}={fmt(v)}" for k, v in r["nuisance"].items()) or "-",
                      f"{c.n_trials - c.n_infeasible - c.n_failed}/{c.n_trials}",
                      fmt(c.fraction)])
    blocks.append(("table", ["value", f"best {frame.metric}", unc_head, "trial", "step",
                             "its nuisance values", "complete", "infeasible fraction"], table))
    basis = []
    if analysis.metric_se(frame.metric, 0.5, frame.n_validation) is not None:
        basis.append(f"binomial standard error √(p(1−p)/n) on n = {frame.n_validation} "
                     f"validation examples")
    if frame.repeats > 1:
        basis.append(f"the spread (std) of the {frame.repeats} repeats of the best "
                     f"configuration, added in quadrature")
    blocks.append(("p", "Uncertainty: " + ("; ".join(basis) if basis else
                                           "unknown (not an error rate, no repeats)") + "."))
    blocks.append(("p", f"**{answer}**"))

    # Checklist
    blocks.append(("h2", "Before trusting the answer: the playbook's checklist"))
    warnings = []
    boundary = {}
    for param, by in _axis_params(frame):
        rep = analysis.boundary_check(frame, param, by=by)
        boundary[param] = rep
        for check in rep.checks.values():
            if check.decision != "ok":
                warnings.append(f"Search space ({param}): {check.message}.")
    numbers["boundary"] = boundary
    if boundary:
        brows = []
        for param, rep in boundary.items():
            for check in rep.checks.values():
                brows.append([param, frame.label(check.value) if check.value else "all trials",
                              ", ".join(fmt_position(u) for u in check.positions) or "-",
                              fmt(check.divergence_threshold), f"{check.n_good}/{check.n_complete}",
                              check.decision,
                              "-" if check.suggested_range is None else
                              f"[{fmt(check.suggested_range[0])}, {fmt(check.suggested_range[1])}]"])
        blocks.append(("p", "**Is the search space large enough?** Positions of the top 3 "
                            "trials on each parameter's scale (0 = lower boundary, 1 = upper); "
                            "'near' means the outer 0.2. Good region: trials within 2 SE of "
                            "the best (5% of the best when the SE is unknown)."))
        blocks.append(("table", ["parameter", "value", "top-3 positions", "divergence threshold",
                                 "trials in the good region", "decision", "suggested range"],
                       brows))
    infeasible = analysis.infeasible_fraction(frame)
    numbers["infeasible"] = infeasible
    for value, c in infeasible.items():
        if c.warning:
            warnings.append(f"{frame.label(value)}: {fmt(c.fraction)} of the trials are "
                            f"infeasible (more than half): adjust or reparameterize the search "
                            f"space, or look for a bug.")
    lint = analysis.role_lint(frame.space)
    numbers["lint"] = lint
    warnings += [f"Roles: {w.message}." for w in lint]
    steps = analysis.best_step_fractions(frame)
    numbers["best_steps"] = steps
    if steps.decision not in ("ok", "no_data"):
        warnings.append(f"max_train_steps: {steps.message}.")
    blocks.append(("p", "**Warnings**" if warnings else "**Warnings:** none."))
    if warnings:
        blocks.append(("ul", warnings))

    # Conclusions hold only for
    fixed = []
    if frame.space is not None:
        for name in frame.fixed:
            p = frame.space[name]
            when = "" if p.when is None else " (when " + ", ".join(
                f"{k}={'/'.join(map(str, v))}" for k, v in p.when.items()) + ")"
            fixed.append(f"{name} = {p.value!r}{when}")
    fixed.append(f"max_train_steps = {frame.max_train_steps}")
    if spec is not None:
        fixed.append(f"workload = {spec.workload or 'custom trial function'}"
                     + (f" with {spec.workload_options}" if spec.workload_options else ""))
    blocks += [("p", "**These conclusions hold only for** the fixed hyperparameters:"),
               ("ul", fixed)]

    # Diagnostics of the best trials
    diag_rows, diagnostics = [], {}
    for r in rows:
        b = r["best"]
        if b is None:
            continue
        d = analysis.curve_diagnostics(frame.result(b.trial), frame.metric,
                                       n_validation=frame.n_validation,
                                       max_train_steps=frame.row(b.trial).steps_done,
                                       mode=frame.mode)
        diagnostics[r["label"]] = d
        raised = d.raised
        diag_rows.append([r["label"], fmt(b.trial),
                          "; ".join(f"{f.name}: {f.message}" for f in raised) or "none"])
    numbers["diagnostics"] = diagnostics
    if diag_rows:
        blocks.append(("p", f"**What do the best trials' curves say?** Thresholds in units of "
                            f"{next(iter(diagnostics.values())).se_basis}."))
        blocks.append(("table", ["value", "best trial", "flags raised"], diag_rows))
    imp = analysis.importance(frame) if frame.space is not None and len(frame) else ()
    numbers["importance"] = imp
    if imp:
        blocks.append(("p", "**Which hyperparameters mattered?** Range of the best objective "
                            "over 5 slices of each axis (largest first):"))
        blocks.append(("table", ["parameter", "spread of the bucketed best", "slices"],
                       [[i.param, fmt(i.spread), fmt(i.n_slices)] for i in imp]))

    # Figures
    if figures_wanted:
        blocks.append(("h2", "Figures"))
        for param, by in _axis_params(frame):
            key = f"axis_{param.replace('/', '_')}"
            figures[key] = plots.axis_plot(frame, param, by=by)
            blocks.append(("img", key, f"Basic axis plot of {param}"))
        for name in frame.scientific:
            p = frame.space[name]
            distinct = {v for v in frame.values(name, numeric=False) if v is not None}
            buckets = 5 if isinstance(p, (Float, Int)) and len(distinct) > 8 else None
            if isinstance(p, (Choice, Discrete, Float, Int)) and len(distinct) >= 2:
                iso = analysis.isolation(frame, name, buckets=buckets)
                numbers[f"isolation_{name}"] = iso
                key = f"isolation_{name.replace('/', '_')}"
                figures[key] = plots.isolation_plot(iso)
                blocks.append(("img", key, f"Isolation plot of {name}"))
        objectives = frame.objectives()
        if len(frame) >= 4 and any(math.isfinite(v) for v in objectives):
            budgets = range(2, min(20, len(frame)) + 1)
            bon = analysis.best_of_n(objectives, budgets, mode=frame.mode)
            numbers["best_of_n"] = bon
            figures["best_of_n"] = plots.best_of_n_plot(bon, metric=frame.metric)
            blocks.append(("img", "best_of_n", "Best of N trials"))
        if any(r["best"] is not None for r in rows):
            figures["training_curves"] = plots.training_curves(frame)
            blocks.append(("img", "training_curves", "Training curves of the top trials"))
            overall = analysis.best(frame, by=None)[()]
            g = frame.grad_norms(overall.trial)
            if g.size:
                summary = analysis.grad_norm_summary(g)
                numbers["grad_norms"] = summary
                figures["grad_norms"] = plots.grad_norm_plot(
                    g, summary, title=f"Gradient norms of the best trial ({overall.trial}): "
                                      f"where would clipping bite?")
                blocks.append(("img", "grad_norms", "Gradient norms of the best trial"))
            figures["best_steps"] = plots.best_step_histogram(steps)
            blocks.append(("img", "best_steps", "Best step fractions"))
    return blocks, figures, numbers


# ------------------------------------------------------------ rendering
def _md(blocks) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}")
        elif kind == "h2":
            out.append(f"## {b[1]}")
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in b[1]))
        elif kind == "table":
            head, rows = b[1], b[2]
            esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
            out.append("\n".join(["| " + " | ".join(head) + " |",
                                  "|" + "---|" * len(head)]
                                 + ["| " + " | ".join(r) + " |" for r in esc]))
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]}.png)")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code` (the only inline markup the report uses)."""
    t = html.escape(text)
    parts = t.split("**")
    t = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = t.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45;"
        "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:90%}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}th{background:#eee}"
        "img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}code{background:#f3f3f3}")


def _html(blocks, images: dict[str, bytes], title: str) -> str:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>"
                           for r in b[2])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode(images[b[1]]).decode("ascii")
            out.append(f"<p><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'>"
                       f"</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(store, name: str, out_dir: str | os.PathLike | None = None) -> Report:
    """Write the report of study ``name`` to ``out_dir`` (default ``WORKSPACE/NAME/report``)."""
    frame = analysis.load(store, name)
    out = Path(out_dir) if out_dir is not None else store.study_dir(name) / "report"
    out.mkdir(parents=True, exist_ok=True)
    blocks, figures, numbers = build_report(frame)
    images, paths = {}, {}
    for key, fig in figures.items():
        path = out / f"{key}.png"
        fig.savefig(path, dpi=100)
        paths[key] = path
        images[key] = path.read_bytes()
    md_path, html_path = out / "report.md", out / "report.html"
    io.write_text(md_path, _md(blocks))
    io.write_text(html_path, _html(blocks, images, f"Study report: {name}"))
    return Report(md_path, html_path, paths, numbers)
