"""Hinton's knowledge distillation on logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """tau^2 * KL(softmax(teacher / tau) || softmax(student / tau)), averaged over the batch.

    The tau^2 factor keeps the gradient scale independent of the temperature (Hinton et al.).
    """
    with torch.autocast(student_logits.device.type, enabled=False):  # fp32 whatever the autocast dtype
        log_p_student = F.log_softmax(student_logits.float() / tau, dim=1)
        log_p_teacher = F.log_softmax(teacher_logits.float() / tau, dim=1)
        return tau**2 * F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
