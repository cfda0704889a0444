"""Where KD and RKD take their teacher: the VLM ("T: CLIP") or a checkpoint fine-tuned on the task
("T: R-152"), chosen by the `kd_teacher` option (`--kd-teacher vlm|FILE`)."""

from __future__ import annotations

from typing import Any

VLM_TEACHER = "vlm"


def kd_teacher_setting(options: dict[str, Any]) -> str:
    return str(options.get("kd_teacher") or VLM_TEACHER)


def teacher_requirement(options: dict[str, Any]) -> frozenset[str]:
    return frozenset({"vlm"}) if kd_teacher_setting(options) == VLM_TEACHER else frozenset({"task_teacher"})
