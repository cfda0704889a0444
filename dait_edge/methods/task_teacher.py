"""Where KD and RKD take their teacher: the VLM ("T: CLIP") or a checkpoint fine-tuned on the task
("T: R-152"), chosen by the `kd_teacher` option (`--kd-teacher vlm|FILE`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from dait_edge.methods.base import Distiller, MethodContext
from dait_edge.methods.teacher_input import TeacherInput

VLM_TEACHER = "vlm"


def kd_teacher_setting(options: dict[str, Any]) -> str:
    return str(options.get("kd_teacher") or VLM_TEACHER)


def teacher_requirement(options: dict[str, Any]) -> frozenset[str]:
    return frozenset({"vlm"}) if kd_teacher_setting(options) == VLM_TEACHER else frozenset({"task_teacher"})


class TeacherChoiceDistiller(Distiller):
    """A method taught by the VLM or by a task checkpoint: freezes whichever the options name, as `self.vlm`
    or as `self.teacher` with its `self.teacher_input`."""

    teacher_choice = True

    @classmethod
    def requirements(cls, options):
        return teacher_requirement(options)

    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__(student, context)
        self.uses_vlm = "vlm" in self.requirements(context.options)
        if self.uses_vlm:
            self.vlm = self.freeze(context.vlm)
        else:
            self.teacher = self.freeze(context.teacher)
            self.teacher_input = TeacherInput(context, self.teacher)
