"""The heads a trained student may have, by the name its run records (`RunSummary.student_head`), and the
one loader that rebuilds any of them from a weights file (export, profile, KD's task teacher)."""

from __future__ import annotations

import os

from dait_edge.models.dual_head import DualHeadClassifier
from dait_edge.models.projected import ProjectedClassifier

LINEAR_HEAD = "linear"  # the upstream model's own classifier
WRAPPED_HEADS = {cls.head_name: cls for cls in (DualHeadClassifier, ProjectedClassifier)}


def load_student(head: str, name: str, num_classes: int, path: str | os.PathLike, setting: str = "checkpoint"):
    """The trained student `name` with its `head` from the weights file `path` (in eval mode)."""
    if head in WRAPPED_HEADS:
        return WRAPPED_HEADS[head].from_file(name, num_classes, path, setting=setting).eval()
    if head != LINEAR_HEAD:
        raise ValueError(f"unknown student head {head!r}")
    from dait_edge.models.factory import build_model

    return build_model(name, num_classes, pretrained=False, weights=path).eval()


def head_classes(head: str, state: dict) -> int | None:
    """How many classes a wrapped head's weights classify (None when the state does not say)."""
    key = WRAPPED_HEADS[head].classes_key if head in WRAPPED_HEADS else None
    tensor = state.get(key) if key else None
    return None if tensor is None else int(tensor.shape[0])


def head_of_state(state: dict) -> str:
    """The head a weights file's tensors hold: a wrapped head's own tensor names it, else the linear one
    (a file's method is no guide: RISE's students had a linear head before it classified in the text space)."""
    for name, cls in WRAPPED_HEADS.items():
        if cls.marker_key in state:
            return name
    return LINEAR_HEAD
