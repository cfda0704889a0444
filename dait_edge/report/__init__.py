"""Compare profiled artifacts: tables, a top-1 vs latency figure, and the best artifact per student.

Nothing here imports torch; matplotlib is imported only when the figure is drawn.
"""

from dait_edge.report.api import build_report
from dait_edge.report.best import choose_best
from dait_edge.report.collect import collect, collect_rows
from dait_edge.report.reasons import describe_best

__all__ = ["build_report", "choose_best", "collect", "collect_rows", "describe_best"]
