"""Hinton's KD: the student matches the teacher's softened class distribution.

L = alpha * CE + (1 - alpha) * tau^2 KL(softmax(z_T / tau) || softmax(z_S / tau)); the teacher is the VLM's
zero-shot logits 100 v T^T ("T: CLIP") or a checkpoint fine-tuned on the task ("T: R-152").
"""

from __future__ import annotations

import torch

from dait_edge.losses import kd_loss
from dait_edge.methods.base import register_method
from dait_edge.methods.batch import Batch, Step
from dait_edge.methods.task_teacher import TeacherChoiceDistiller


@register_method("kd", "KD (Hinton): logits of the VLM (--kd-teacher vlm) or of a task checkpoint + CE")
class KnowledgeDistillation(TeacherChoiceDistiller):
    def teacher_logits(self, batch: Batch) -> torch.Tensor:
        if self.uses_vlm:
            return self.vlm.zero_shot_logits(batch)
        with torch.no_grad():
            return self.teacher(self.teacher_input(batch.images))

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        logits = self.student(batch.images)
        if not self.distils(step.alpha):
            return self.labels_only(logits, batch.labels)
        loss_kd = kd_loss(logits, self.teacher_logits(batch), tau=self.context_tau)
        loss_ce = self.ce(logits, batch.labels)
        loss = step.alpha * loss_ce + (1.0 - step.alpha) * loss_kd
        return {"loss": loss, "logits": logits, "loss_ce": loss_ce, "loss_kd": loss_kd}
