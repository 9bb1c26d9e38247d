"""refplay.report: the per-study report (Markdown, self-contained HTML, PNGs).

``write_report(store, name, out_dir)`` answers the study's question on one
page and goes through the playbook's checklist ("Extracting insight from
experimental results"); ``refplay study report NAME`` calls it.
"""

from refplay.report.build import Report, build_report, summary_table, write_report

__all__ = ["Report", "write_report", "build_report", "summary_table"]
