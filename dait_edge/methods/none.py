"""No distillation: the student learns from the labels alone (the paper's "w/o KD" row)."""

from __future__ import annotations

import torch

from dait_edge.methods.base import Distiller, register_method
from dait_edge.methods.batch import Batch, Step


@register_method("none", "no KD: cross-entropy on the labels alone (the w/o-KD baseline)", aliases=("no_kd",))
class NoDistillation(Distiller):
    learns_from_unlabelled = False  # nothing to learn from an image without its label

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        logits = self.student(batch.images)
        loss_ce = self.ce(logits, batch.labels)
        return {"loss": loss_ce, "logits": logits, "loss_ce": loss_ce}
