"""DAIT-L: the frozen intermediate teacher teaches the student through its logits.

L2 = alpha * CE + (1 - alpha) * tau^2 KL(softmax(z_M / tau) || softmax(z_S / tau)).
"""

from __future__ import annotations

import torch
from torch import nn

from dait_edge.losses import kd_loss
from dait_edge.methods.base import Distiller, MethodContext, register_method
from dait_edge.methods.batch import Batch, Step
from dait_edge.methods.teacher_input import TeacherInput


@register_method("dait_l", "DAIT-L: intermediate teacher -> student on logits (tau^2 KL) + CE")
class DAITLogit(Distiller):
    needs = frozenset({"teacher"})

    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__(student, context)
        self.teacher = self.freeze(context.teacher)
        self.teacher_input = TeacherInput(context, self.teacher)

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        images, labels, alpha = batch.images, batch.labels, step.alpha
        logits = self.student(images)
        if not self.distils(alpha):
            return self.labels_only(logits, labels)
        with torch.no_grad():
            teacher_logits = self.teacher(self.teacher_input(images))
        loss_kd = kd_loss(logits, teacher_logits, tau=self.context_tau)
        loss_ce = self.ce(logits, labels)
        loss = alpha * loss_ce + (1.0 - alpha) * loss_kd
        return {"loss": loss, "logits": logits, "loss_ce": loss_ce, "loss_kd": loss_kd}
