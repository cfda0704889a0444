"""RKD (Park et al., 2019): the student's pooled embeddings keep the teacher's distances and angles.

L = CE + 25 * distance term + 50 * angle term (mdistiller's and the paper's weights), on the student's
pooled features against the VLM's image embeddings ("T: CLIP") or a task checkpoint's pooled features
("T: R-152"). Widths may differ: only relations within each space are compared.
"""

from __future__ import annotations

import torch
from torch import nn

from dait_edge.losses import rkd_loss
from dait_edge.methods.base import MethodContext, register_method
from dait_edge.methods.batch import Batch, Step
from dait_edge.methods.task_teacher import TeacherChoiceDistiller


@register_method(
    "rkd", "RKD: distances and angles of pooled embeddings vs the VLM's (or a task teacher's) + CE"
)
class RelationalDistillation(TeacherChoiceDistiller):
    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__(student, context)
        self.w_dist = float(context.options.get("rkd_distance_weight", 25.0))
        self.w_angle = float(context.options.get("rkd_angle_weight", 50.0))

    def teacher_embeddings(self, batch: Batch) -> torch.Tensor:
        if self.uses_vlm:
            return self.vlm.image_embeddings(batch)
        with torch.no_grad():
            return self.teacher.forward_all(self.teacher_input(batch.images))["pooled"]

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        out = self.student.forward_all(batch.images)
        loss_rkd = rkd_loss(out["pooled"], self.teacher_embeddings(batch), self.w_dist, self.w_angle)
        loss_ce = self.ce(out["logits"], batch.labels)
        return {"loss": loss_ce + loss_rkd, "logits": out["logits"], "loss_ce": loss_ce, "loss_rkd": loss_rkd}
