"""Reporting: the SQL views live in the migrations (schema `reporting`, docs/reporting.md); this package
holds the queries `qgjob report`, `qgjob top` and the reports API read them with."""

from qualgent.server.reporting.queries import REPORTS, ReportFilter, ReportName, recent_results, run_report

__all__ = ["REPORTS", "ReportFilter", "ReportName", "recent_results", "run_report"]
