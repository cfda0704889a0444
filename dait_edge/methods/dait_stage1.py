"""DAIT stage 1 (= VL2Lite's objective): the frozen VLM teaches a trainable intermediate teacher.

L1 = alpha * CE + (1 - alpha) / 2 * (SIA + IRA)   (method.md)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dait_edge.losses import ira_loss, sia_loss
from dait_edge.methods.base import Distiller, MethodContext, register_method


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
        self.vlm = self.freeze(context.vlm)
        self.input_mean, self.input_std = tuple(context.input_mean), tuple(context.input_std)
        self.register_buffer("text_embeddings", context.text_embeddings.detach().float().clone())
        embed_dim, width = self.text_embeddings.shape[1], student.num_features
        self.mlp_img = condensation_mlp(embed_dim, width)
        self.mlp_txt = condensation_mlp(embed_dim, width)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
        if not self.distils(alpha):
            return self.labels_only(self.student(images), labels)
        with torch.no_grad():
            vlm_img = self.vlm.encode_images(images, self.input_mean, self.input_std)  # same view, own size
        out = self.student.forward_all(images)
        f_model = F.normalize(out["pooled"].float(), dim=-1, eps=1e-10)
        f_img = F.normalize(self.mlp_img(vlm_img), dim=-1, eps=1e-10)
        f_txt = F.normalize(self.mlp_txt(self.text_embeddings), dim=-1, eps=1e-10)
        loss_sia = sia_loss(vlm_img, self.text_embeddings, f_model, f_txt, tau=self.context_tau)
        loss_ira = ira_loss(f_model, f_img)
        loss_ce = F.cross_entropy(out["logits"].float(), labels)
        loss = alpha * loss_ce + (1.0 - alpha) / 2.0 * (loss_sia + loss_ira)
        return {
            "loss": loss,
            "logits": out["logits"],
            "loss_ce": loss_ce,
            "loss_sia": loss_sia,
            "loss_ira": loss_ira,
        }
