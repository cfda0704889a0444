"""DHO (dual-head optimisation, Kang et al. 2025): a shared backbone with a CE head that learns from labels
and a KD head that learns from the VLM, combined at inference.

L = 0.5 * CE(z_ce, y)_labelled + 0.5 * (KD_l + KD_u),  KD = tau^2 KL(softmax(z_vlm / tau) || softmax(z_kd / tau))
with z_vlm = 100 v T^T and tau 2; one labelled and one unlabelled batch per step, each its own forward pass
(erjui/DHO train_others.py). p = a softmax(z_ce) + (1 - a) softmax(z_kd / b): (a, b) searched on the
validation images at every epoch's end (its loop order: b outer, a inner, strictly better only), stored in
the student's weights, and the epoch then judged by the validation top-1 with them, as train_others.py
keeps its checkpoint. An epoch follows the larger of the labelled and unlabelled sets (train_imgnet.py's
epoch; train_others.py's zip ends with the labelled loader): at a small labelled fraction an epoch here
holds more steps than one of train_others.py. `--recipe dho` trains with its released recipe (`recipe`).
"""

from __future__ import annotations

import torch
from torch import nn

from dait_edge.losses import choose_combination, kd_loss
from dait_edge.methods.base import Distiller, MethodContext, register_method
from dait_edge.methods.batch import Batch, Step
from dait_edge.models.dual_head import DualHeadClassifier
from dait_edge.records.recipe import TrainingRecipe


@register_method(
    "dho", "DHO: dual heads (CE on labels, KD from the VLM), combined at inference; semi-supervised"
)
class DualHeadOptimisation(Distiller):
    needs = frozenset({"vlm"})
    paired_batches = True
    student_head = DualHeadClassifier.head_name
    default_val_fraction = 0.1  # of the labelled images, per class, for choosing (a, b)
    recipe = TrainingRecipe(
        name="dho",
        source="erjui/DHO train_others.py, scripts_others.sh (AdamW lr 1e-3 with PyTorch's weight decay 0.01,"
        " get_linear_schedule_with_warmup: 10% warm-up then linear decay per step, 64 labelled + 64 unlabelled"
        " images per step, RandomResizedCrop(scale=(0.5, 1)) and a flip)",
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.01,
        batch_size=64,
        lr_schedule="linear",
        warmup_share=0.1,
        train_crop="rrc:0.5",
    )

    @classmethod
    def wrap_student(cls, student: nn.Module, context: MethodContext) -> nn.Module:
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
        """Choose (a, b) on the validation batches and store them in the student (DHO's code searches at
        every epoch, then keeps the epoch best on validation with its (a, b))."""
        student = self.student.eval()
        z_ce, z_kd, labels = [], [], []
        for images, targets, *_ in validation:
            heads = student.heads(student.pool(student.forward_features(images.to(device))))
            z_ce.append(heads[0].float().cpu())
            z_kd.append(heads[1].float().cpu())
            labels.append(targets)
        if not labels:
            return {}
        a, b, _ = choose_combination(torch.cat(z_ce), torch.cat(z_kd), torch.cat(labels))
        student.combine.set(a, b)
        return self.calibration()

    def calibration(self) -> dict[str, float]:
        combine = self.student.combine
        return {"dho_a": round(float(combine.a), 4), "dho_b": round(float(combine.b), 4)}
