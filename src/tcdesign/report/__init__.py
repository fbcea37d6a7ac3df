"""``tcdesign report``: the paper's figures and a self-contained HTML report of any run folder."""

from tcdesign.report.build import FIGURES_DIR, REPORT_HTML, write_report

__all__ = ["FIGURES_DIR", "REPORT_HTML", "write_report"]
