"""RISE (Huang et al., ICCV 2023, "A Sentence Speaks a Thousand Images"): KD from the VLM's zero-shot
logits plus an absolute-distance term that pulls a projection of the student's embedding onto the text
embedding of its class.

L = alpha * CE + (1 - alpha) * tau^2 KL(p_vlm || p_S) + w_text * mean_{labelled} (1 - cos(proj(f_S), t_y))

From RISE's released code: the cosine-embedding term (its "AD") with a learnt linear projection to the VLM
width; its relative-distance term needs domain-phrase anchors that fine-grained datasets lack and is left
out. w_text = 1 (`rise_text_weight`; RISE's sweep used 0.5, 1, 2). Unlabelled images get the KD term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dait_edge.losses import kd_loss
from dait_edge.methods.base import Distiller, MethodContext, register_method
from dait_edge.methods.batch import Batch, Step


@register_method(
    "rise", "RISE: KD from the VLM's zero-shot logits + cosine to the label's text embedding + CE"
)
class SentenceDistillation(Distiller):
    needs = frozenset({"vlm"})

    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__(student, context)
        self.vlm = self.freeze(context.vlm)
        self.text_weight = float(context.options.get("rise_text_weight", 1.0))
        self.projection = nn.Linear(student.num_features, self.vlm.embed_dim)  # training only

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        out = self.student.forward_all(batch.images)
        logits, labels = out["logits"], batch.labels
        # the KD term weighs (1 - alpha): at alpha = 1 the VLM's image tower is skipped; the text term stays
        loss_kd = logits.new_zeros((), dtype=torch.float32)
        if self.distils(step.alpha):
            loss_kd = kd_loss(logits, self.vlm.zero_shot_logits(batch), tau=self.context_tau)
        labelled = labels >= 0
        # projected for every sample and masked, so the projection is in the graph even in a batch without
        # labels (DDP expects a gradient for every trainable parameter)
        embedding = F.normalize(self.projection(out["pooled"]).float(), dim=-1, eps=1e-10)
        text = self.vlm.text_embeddings[labels.clamp(min=0)].float()
        cosine = (embedding * text).sum(dim=-1)
        # the mean over labelled samples; 0 when the batch has none
        loss_text = ((1.0 - cosine) * labelled).sum() / labelled.sum().clamp(min=1)
        loss_ce = self.ce(logits, labels)
        loss = step.alpha * loss_ce + (1.0 - step.alpha) * loss_kd + self.text_weight * loss_text
        return {
            "loss": loss,
            "logits": logits,
            "loss_ce": loss_ce,
            "loss_kd": loss_kd,
            "loss_text": loss_text,
        }
