"""Hinton's KD: the student matches the teacher's softened class distribution.

L = w_CE * CE + w_KD * tau^2 KL(softmax(z_T / tau) || softmax(z_S / tau)); the teacher is the VLM's
zero-shot logits 100 v T^T ("T: CLIP") or a checkpoint fine-tuned on the task ("T: R-152").
The weights are constant, as Hinton et al. ran KD (`kd_weights` "constant": 1 and 1, or "W_CE,W_KD"), or
follow DAIT's alpha schedule (`kd_weights` "alpha": w_CE = alpha, w_KD = 1 - alpha).
"""

from __future__ import annotations

import torch

from dait_edge.losses import kd_loss
from dait_edge.methods.base import register_method
from dait_edge.methods.batch import Batch, Step
from dait_edge.methods.task_teacher import TeacherChoiceDistiller
from dait_edge.records.config import DEFAULT_KD_WEIGHTS, term_weights


@register_method("kd", "KD (Hinton): logits of the VLM (--kd-teacher vlm) or of a task checkpoint + CE")
class KnowledgeDistillation(TeacherChoiceDistiller):
    own_settings = frozenset({"kd_weights"})

    def __init__(self, student, context):
        super().__init__(student, context)
        self.weights = term_weights(context.options.get("kd_weights", DEFAULT_KD_WEIGHTS))

    def teacher_logits(self, batch: Batch) -> torch.Tensor:
        if self.uses_vlm:
            return self.vlm.zero_shot_logits(batch)
        with torch.no_grad():
            return self.teacher(self.teacher_input(batch.images))

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        logits = self.student(batch.images)
        if self.weights is None and not self.distils(step.alpha):
            return self.labels_only(logits, batch.labels)
        w_ce, w_kd = self.weights or (step.alpha, 1.0 - step.alpha)
        loss_kd = kd_loss(logits, self.teacher_logits(batch), tau=self.context_tau)
        loss_ce = self.ce(logits, batch.labels)
        loss = w_ce * loss_ce + w_kd * loss_kd
        return {"loss": loss, "logits": logits, "loss_ce": loss_ce, "loss_kd": loss_kd}
