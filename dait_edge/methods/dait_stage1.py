"""DAIT stage 1 (= VL2Lite's objective): the frozen VLM teaches a trainable intermediate teacher.

L1 = alpha * CE + (1 - alpha) / 2 * (w_SIA * SIA + IRA)   (method.md; w_SIA = `sia_weight`, 0.5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dait_edge.losses import ira_loss, sia_loss
from dait_edge.methods.base import Distiller, MethodContext, register_method
from dait_edge.methods.batch import Batch, Step

# VL2Lite's released criterion takes the KL's element mean times C / 2: half of tau^2 x batch-mean KL.
# The paper's numbers were obtained with it, so that is the default weight (method.md).
DEFAULT_SIA_WEIGHT = 0.5


def condensation_mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear(E, D) -> ReLU -> Linear(D, D): condenses the VLM's embedding to the model's width."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(inplace=True), nn.Linear(out_dim, out_dim))


@register_method("dait_stage1", "DAIT stage 1: VLM -> intermediate teacher (SIA + IRA + CE)")
class VLMAlignment(Distiller):
    """Aligns a model's pooled features with the VLM's image embedding and class-text distribution."""

    needs = frozenset({"vlm"})
    stage = 1

    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__(student, context)
        self.vlm = self.freeze(context.vlm)  # a VLMProvider: live VLM or its embedding cache
        self.sia_weight = float(context.options.get("sia_weight", DEFAULT_SIA_WEIGHT))
        embed_dim, width = self.vlm.embed_dim, student.num_features
        self.mlp_img = condensation_mlp(embed_dim, width)
        self.mlp_txt = condensation_mlp(embed_dim, width)

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        if not self.distils(step.alpha):
            return self.labels_only(self.student(batch.images), batch.labels)
        vlm_img = self.vlm.image_embeddings(batch)  # the same view, seen at the VLM's own size
        vlm_txt = self.vlm.text_embeddings
        out = self.student.forward_all(batch.images)
        f_model = F.normalize(out["pooled"].float(), dim=-1, eps=1e-10)
        f_img = F.normalize(self.mlp_img(vlm_img).float(), dim=-1, eps=1e-10)
        f_txt = F.normalize(self.mlp_txt(vlm_txt).float(), dim=-1, eps=1e-10)
        loss_sia = sia_loss(vlm_img, vlm_txt, f_model, f_txt, tau=self.context_tau)
        loss_ira = ira_loss(f_model, f_img)
        loss_ce = self.ce(out["logits"], batch.labels)
        alpha = step.alpha
        loss = alpha * loss_ce + (1.0 - alpha) / 2.0 * (self.sia_weight * loss_sia + loss_ira)
        return {
            "loss": loss,
            "logits": out["logits"],
            "loss_ce": loss_ce,
            "loss_sia": loss_sia,
            "loss_ira": loss_ira,
        }
