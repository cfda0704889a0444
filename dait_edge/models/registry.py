"""Student and intermediate-teacher registries, filled by the decorators in `zoo.py`.

Kept free of torch/timm imports so `dait-edge list students` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

from dait_edge.registry import Registry

# name -> builder(num_classes, *, pretrained, weights, role) -> ClassifierWithFeatures
STUDENTS: Registry[Callable] = Registry("student")
TEACHERS: Registry[Callable] = Registry("teacher")

register_student = STUDENTS.register
register_teacher = TEACHERS.register

# The paper's intermediate teacher M (888-d pooled features, 888 x 7 x 7 map at 224 px).
DEFAULT_TEACHER = "regnety_016"
