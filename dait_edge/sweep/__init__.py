"""One command for the whole comparison: distill each student, export, profile, report."""

from dait_edge.sweep.run import STUDENTS_ALL, resolve_students, run_sweep

__all__ = ["STUDENTS_ALL", "resolve_students", "run_sweep"]
