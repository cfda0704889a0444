"""BorLan (Ma et al., ICCV 2023, "Borrowing Knowledge From Pre-trained Language Model"): the student's
projected embedding is aligned with a per-class Gaussian of text embeddings.

Each class c is N(mu_c, diag(sigma_c^2)) over the embeddings of several prompt templates (here the VLM's
text tower; BorLan used BERT). With q = norm(MLP(f_S)) and T = 0.07, BorLan's released loss is the expected
contrastive loss over text embeddings drawn from those Gaussians, in closed form:
    logit_k = q . mu_k / T + sum_d q_d^2 sigma_{k,d}^2 / (2 T^2)
    L_align(q, y) = CE(logit, y) + sum_d q_d^2 sigma_{y,d}^2 / (2 T^2)
L = CE + L_align(labelled, their labels) + L_align(unlabelled, the student classifier's own argmax),
weights 1, 1, 1 as in BorLan's code (which recomputes the pseudo-labels over the whole unlabelled set
periodically; here they come from the current batch). Inference uses the classifier alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dait_edge.methods.base import Distiller, MethodContext, register_method
from dait_edge.methods.batch import Batch, Step

BORLAN_TEMPERATURE = 0.07


def borlan_alignment(
    q: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over the batch of L_align(q_i, targets_i); q (B, E) normalised, mean/var (C, E)."""
    logits = q @ mean.t() / temperature + (q * q) @ var.t() / (2 * temperature**2)
    spread = ((q * q) * var[targets]).sum(dim=-1) / (2 * temperature**2)
    return F.cross_entropy(logits, targets, reduction="none").add(spread).mean()


@register_method(
    "borlan", "BorLan: projected embedding aligned to per-class Gaussians of text embeddings + CE"
)
class LanguageGaussianAlignment(Distiller):
    needs = frozenset({"vlm"})
    text_gaussian = True

    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__(student, context)
        self.vlm = self.freeze(context.vlm)
        if self.vlm.text_mean is None:
            raise ValueError("BorLan needs the class-text Gaussian (provider.set_text_gaussian)")
        self.temperature = float(context.options.get("borlan_temperature", BORLAN_TEMPERATURE))
        width, embed_dim = student.num_features, self.vlm.embed_dim
        self.projection = nn.Sequential(  # training only
            nn.Linear(width, embed_dim), nn.ReLU(inplace=True), nn.Linear(embed_dim, embed_dim)
        )

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        out = self.student.forward_all(batch.images)
        logits, labels = out["logits"], batch.labels
        labelled = labels >= 0
        # fp32 throughout: the variance term (~0.01) is below bf16's spacing at logits of ~14
        with torch.autocast(logits.device.type, enabled=False):
            q = F.normalize(self.projection(out["pooled"].float()), dim=-1, eps=1e-10)
            mean, var = self.vlm.text_mean.float(), self.vlm.text_var.float()
            zero = q.new_zeros(()) + 0.0 * q.sum()
            loss_align = zero
            if labelled.any():
                loss_align = borlan_alignment(q[labelled], mean, var, labels[labelled], self.temperature)
            loss_pseudo = zero
            if (~labelled).any():
                pseudo = logits[~labelled].detach().argmax(dim=-1)
                loss_pseudo = borlan_alignment(q[~labelled], mean, var, pseudo, self.temperature)
        loss_ce = self.ce(logits, labels)
        loss = loss_ce + loss_align + loss_pseudo
        return {
            "loss": loss,
            "logits": logits,
            "loss_ce": loss_ce,
            "loss_align": loss_align,
            "loss_align_unlabelled": loss_pseudo,
        }
