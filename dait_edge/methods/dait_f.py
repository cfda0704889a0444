"""DAIT-F: the frozen intermediate teacher teaches the student through its final feature map.

L2 = alpha * CE + (1 - alpha) * SRA(phi(F_S), F_M), phi a 1x1 conv (training only). SRA is the paper's MSE
on the raw maps (`sra_form` "paper"), or, by default, the MSE of the maps standardised per channel
("pearson"): the raw form rewards shrinking the student map, which kills its channels (README).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dait_edge.losses import sra_loss
from dait_edge.methods.base import Distiller, MethodContext, register_method
from dait_edge.methods.batch import Batch, Step
from dait_edge.methods.teacher_input import TeacherInput
from dait_edge.records.config import DEFAULT_SRA_FORM


@register_method(
    "dait_f", "DAIT-F: intermediate teacher -> student on feature maps (1x1 adapter, --sra-form) + CE"
)
class DAITFeature(Distiller):
    needs = frozenset({"teacher"})
    own_settings = frozenset({"sra_form"})

    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__(student, context)
        self.teacher = self.freeze(context.teacher)
        self.teacher_input = TeacherInput(context, self.teacher)
        self.adapter = nn.Conv2d(student.feature_channels, self.teacher.feature_channels, kernel_size=1)
        self.sra_form = str(context.options.get("sra_form", DEFAULT_SRA_FORM))

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        images, labels, alpha = batch.images, batch.labels, step.alpha
        if not self.distils(alpha):
            return self.labels_only(self.student(images), labels)
        with torch.no_grad():
            teacher_map = self.teacher.forward_features(self.teacher_input(images))
        out = self.student.forward_all(images)
        student_map = self.adapter(out["feature_map"])
        if student_map.shape[-2:] != teacher_map.shape[-2:]:
            student_map = F.interpolate(
                student_map, size=teacher_map.shape[-2:], mode="bilinear", align_corners=False
            )
        loss_sra = sra_loss(student_map, teacher_map, self.sra_form)
        loss_ce = self.ce(out["logits"], labels)
        loss = alpha * loss_ce + (1.0 - alpha) * loss_sra
        return {"loss": loss, "logits": out["logits"], "loss_ce": loss_ce, "loss_sra": loss_sra}
