"""Students and intermediate teachers behind one factory (timm / torchvision).

Importing this package only fills the registries; torch and timm load on first use of the
factory, so `dait-edge list` stays fast.
"""

from __future__ import annotations

from typing import Any

from dait_edge.models import zoo  # noqa: F401  (registers the entries)
from dait_edge.models.registry import DEFAULT_TEACHER, STUDENTS, TEACHERS, register_student, register_teacher

_LAZY = {
    "ClassifierWithFeatures": "dait_edge.models.builders",
    "build_model": "dait_edge.models.factory",
    "check_model_name": "dait_edge.models.factory",
    "resolve_model_name": "dait_edge.models.factory",
    "count_macs": "dait_edge.models.complexity",
    "count_params": "dait_edge.models.complexity",
    "load_state_dict_file": "dait_edge.models.weights",
}

__all__ = [
    "DEFAULT_TEACHER",
    "STUDENTS",
    "TEACHERS",
    "ClassifierWithFeatures",
    "build_model",
    "check_model_name",
    "count_macs",
    "count_params",
    "load_state_dict_file",
    "register_student",
    "register_teacher",
    "resolve_model_name",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
