"""refplay.report: the per-study report (Markdown, self-contained HTML, PNGs).

``write(frame, out_dir)`` reports any :class:`~refplay.analysis.TrialsFrame`
(stored, imported from Optuna or a CSV, or built in memory);
``write_report(store, name, out_dir)`` loads a stored study first. The
report answers the study's question on one page and goes through the
playbook's checklist ("Extracting insight from experimental results");
``refplay study report NAME`` calls it.
"""

from refplay.report.build import Report, build_report, summary_table, write, write_report

__all__ = ["Report", "write", "write_report", "build_report", "summary_table"]
