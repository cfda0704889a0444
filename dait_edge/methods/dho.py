"""DHO (dual-head optimisation, Kang et al. 2025): a shared backbone with a CE head that learns from labels
and a KD head that learns from the VLM, combined at inference.

L = 0.5 * CE(z_ce, y)_labelled + 0.5 * (KD_l + KD_u),  KD = tau^2 KL(softmax(z_vlm / tau) || softmax(z_kd / tau))
with z_vlm = 100 v T^T and tau 2; one labelled and one unlabelled batch per step, each its own forward pass
(DHO's train_others.py). p = a softmax(z_ce) + (1 - a) softmax(z_kd / b), (a, b) chosen after training on a
validation split held out of the labelled images (`calibrate`), stored in the student's weights.
"""

from __future__ import annotations

import torch
from torch import nn

from dait_edge.losses import choose_combination, kd_loss
from dait_edge.methods.base import Distiller, MethodContext, register_method
from dait_edge.methods.batch import Batch, Step
from dait_edge.models.dual_head import DualHeadClassifier


@register_method(
    "dho", "DHO: dual heads (CE on labels, KD from the VLM), combined at inference; semi-supervised"
)
class DualHeadOptimisation(Distiller):
    needs = frozenset({"vlm"})
    paired_batches = True
    student_head = "dual"
    default_val_fraction = 0.1  # of the labelled images, per class, for choosing (a, b)

    @classmethod
    def wrap_student(cls, student: nn.Module) -> nn.Module:
        return student if isinstance(student, DualHeadClassifier) else DualHeadClassifier(student)

    def __init__(self, student: nn.Module, context: MethodContext):
        if not isinstance(student, DualHeadClassifier):
            raise TypeError("DHO trains a DualHeadClassifier: build the student with DHO.wrap_student")
        super().__init__(student, context)
        self.vlm = self.freeze(context.vlm)

    def _part(self, batch: Batch, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.student.pool(self.student.forward_features(batch.images[mask]))
        z_ce, z_kd = self.student.heads(pooled)
        return {"z_ce": z_ce, "z_kd": z_kd}

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        z_vlm = self.vlm.zero_shot_logits(batch)
        labelled = batch.labelled
        parts = [mask for mask in (labelled, ~labelled) if mask.any()]  # a forward pass each, as DHO's code
        outputs = [self._part(batch, mask) for mask in parts]
        tau = self.context_tau
        zero = z_vlm.new_zeros(())
        loss_ce, loss_kd_l, loss_kd_u = zero, zero, zero
        logits = z_vlm.new_empty(z_vlm.shape)
        for mask, out in zip(parts, outputs, strict=True):
            if mask is labelled:
                loss_ce = self.ce(out["z_ce"], batch.labels[mask])
                loss_kd_l = kd_loss(out["z_kd"], z_vlm[mask], tau=tau)
            else:
                loss_kd_u = kd_loss(out["z_kd"], z_vlm[mask], tau=tau)
            logits[mask] = self.student.combine(out["z_ce"], out["z_kd"]).detach().float()
        loss = 0.5 * loss_ce + 0.5 * (loss_kd_l + loss_kd_u)
        return {
            "loss": loss,
            "logits": logits,
            "loss_ce": loss_ce,
            "loss_kd_labelled": loss_kd_l,
            "loss_kd_unlabelled": loss_kd_u,
        }

    @torch.no_grad()
    def calibrate(self, validation, device: torch.device) -> dict[str, float]:
        """Choose (a, b) on the validation batches and store them in the student."""
        student = self.student.eval()
        z_ce, z_kd, labels = [], [], []
        for images, targets, *_ in validation:
            heads = student.heads(student.pool(student.forward_features(images.to(device))))
            z_ce.append(heads[0].float().cpu())
            z_kd.append(heads[1].float().cpu())
            labels.append(targets)
        if not labels:
            return {}
        a, b, top1 = choose_combination(torch.cat(z_ce), torch.cat(z_kd), torch.cat(labels))
        student.combine.set(a, b)
        return {"dho_a": a, "dho_b": b, "dho_val_top1": round(top1, 4)}
