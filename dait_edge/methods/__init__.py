"""Distillation methods, one per file, registered by name (`dait-edge list methods`)."""

from dait_edge.methods import (  # noqa: F401  (register the methods)
    borlan,
    dait_f,
    dait_l,
    dait_stage1,
    dho,
    kd,
    none,
    rise,
    rkd,
    vl2lite,
)
from dait_edge.methods.base import METHODS, Distiller, MethodContext, register_method, validation_fraction

__all__ = ["METHODS", "Distiller", "MethodContext", "register_method", "validation_fraction"]
