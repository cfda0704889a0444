"""One command for the whole comparison: distill each student, export, profile, report."""

from dait_edge.sweep.run import all_students, resolve_students, run_sweep

__all__ = ["all_students", "resolve_students", "run_sweep"]
