"""The frozen OpenCLIP teacher: loading, prompts, the cached text classifier, zero-shot evaluation.

Names are loaded on first use so that the CLI's option definitions do not import torch.
"""

from __future__ import annotations

import importlib

from dait_edge.vlm.loader import DEFAULT_VLM, DEFAULT_VLM_PRETRAINED, VLMSource, resolve_vlm_source

_LAZY = {
    "VLMTeacher": "dait_edge.vlm.teacher",
    "load_vlm": "dait_edge.vlm.teacher",
    "text_classifier": "dait_edge.vlm.text_embeddings",
    "evaluate_zero_shot": "dait_edge.vlm.zero_shot",
    "zero_shot_logits": "dait_edge.vlm.zero_shot",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dait_edge.vlm' has no attribute {name!r}")


__all__ = [
    "DEFAULT_VLM",
    "DEFAULT_VLM_PRETRAINED",
    "VLMSource",
    "VLMTeacher",
    "evaluate_zero_shot",
    "load_vlm",
    "resolve_vlm_source",
    "text_classifier",
    "zero_shot_logits",
]
