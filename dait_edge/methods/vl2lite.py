"""VL2Lite (CVPR 2025): DAIT's stage-1 objective applied to the student directly, with no intermediate
teacher. L = alpha * CE + (1 - alpha) / 2 * (w_SIA * SIA + IRA)."""

from __future__ import annotations

from dait_edge.methods.base import register_method
from dait_edge.methods.dait_stage1 import VLMAlignment


@register_method("vl2lite", "VL2Lite: the VLM teaches the student directly (stage 1's SIA + IRA + CE)")
class VL2Lite(VLMAlignment):
    stage = 2
