"""Distillation methods, one per file, registered by name (`dait-edge list methods`)."""

from dait_edge.methods import dait_f, dait_l, dait_stage1  # noqa: F401  (register the methods)
from dait_edge.methods.base import METHODS, Distiller, MethodContext, register_method

__all__ = ["METHODS", "Distiller", "MethodContext", "register_method"]
