"""RISE (Huang et al., ICCV 2023, "A Sentence Speaks a Thousand Images"), as its released code trains it
(OoDBag/RISE train_rise.py).

The student classifies in the text space: x_p = projector(pool(x)), logits = fc(x_p), fc initialised from
the class-text embeddings (`models.projected`). With tau 3 and constant weights (w1, w2, w3):

L = w1 tau^2 KL(softmax(z_vlm / tau) || softmax(z_S / tau)) + w2 CE + w3 (AD + RD)
AD = mean_labelled (1 - cos(x_p, t_y))                                    (CosineEmbeddingLoss, target 1)
RD = 10 MSE(softmax_j cos(x_p, a_{y,j}), softmax_j cos(t_y, a_{y,j}))     (mean over samples and anchors)

a_{y,j} embeds "a {phrase_j} of a {class y}" for RISE's generic anchor phrases (bright, corrupted, dark,
good photo: the ones its code uses where a dataset has no domain names, as FGVC datasets have none).
z_vlm = 100 v T^T. Unlabelled images get the KD term only (AD and RD need the label).

Where this differs from the released code, and why (README, "Baselines and their recipes"): T and the
fc initialisation ensemble the dataset's prompt templates (the code: 7 fixed ones), and t_y is the mean of
normalised template embeddings (the code: of unnormalised ones; the cosines do not see the scale).
`--rise-weights alpha` weighs CE by DAIT's alpha schedule (KD 1 - alpha, text terms 1) instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dait_edge.losses import kd_loss
from dait_edge.methods.base import Distiller, MethodContext, register_method
from dait_edge.methods.batch import Batch, Step
from dait_edge.models.projected import ProjectedClassifier
from dait_edge.records.config import DEFAULT_RISE_WEIGHTS, RISE_TEMPERATURE, rise_weights
from dait_edge.records.recipe import TrainingRecipe

RISE_ANCHORS = ("bright photo", "corrupted photo", "dark photo", "good photo")
RD_SCALE = 10.0  # train_rise.py: F.mse_loss(dist_student, dist_teacher) * 10.0


def absolute_distance(embedding: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Per sample 1 - cos(embedding, text): RISE's AD (B,)."""
    return 1.0 - F.cosine_similarity(embedding, text, dim=-1, eps=1e-8)


def relational_distance(embedding: torch.Tensor, text: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """RISE's RD per sample (B,): the squared difference of the student's and the text's softmax over their
    cosines to the sample's class anchors (B, A, E), averaged over the anchors and scaled by 10."""
    student = F.cosine_similarity(embedding[:, None], anchors, dim=-1, eps=1e-8).softmax(dim=-1)
    teacher = F.cosine_similarity(text[:, None], anchors, dim=-1, eps=1e-8).softmax(dim=-1)
    return RD_SCALE * (student - teacher).pow(2).mean(dim=-1)


@register_method(
    "rise", "RISE: text-space classifier, KD from the VLM's zero-shot logits, cosine and relational text terms"
)
class SentenceDistillation(Distiller):
    needs = frozenset({"vlm"})
    student_head = ProjectedClassifier.head_name
    anchor_phrases = RISE_ANCHORS
    own_settings = frozenset({"rise_weights", "rise_temperature"})
    recipe = TrainingRecipe(
        name="rise",
        source="OoDBag/RISE train_rise.py, optimizer/optimizer_helper.py (SGD momentum 0.9, wd 5e-4, lr 1e-3,"
        " StepLR at 80% of the epochs, batch 128, RandomResizedCrop(0.8, 1))",
        optimizer="sgd",
        lr=1e-3,
        weight_decay=5e-4,
        batch_size=128,
        lr_schedule="step",
        lr_step_share=0.8,
        lr_gamma=0.1,
        train_crop="rrc:0.8",
    )

    @classmethod
    def wrap_student(cls, student: nn.Module, context: MethodContext) -> nn.Module:
        if isinstance(student, ProjectedClassifier):
            return student
        return ProjectedClassifier(student, context.vlm.embed_dim, text=context.vlm.text_embeddings.cpu())

    def __init__(self, student: nn.Module, context: MethodContext):
        if not isinstance(student, ProjectedClassifier):
            raise TypeError("RISE trains a ProjectedClassifier: build the student with RISE.wrap_student")
        super().__init__(student, context)
        self.vlm = self.freeze(context.vlm)
        if self.vlm.text_anchors is None:
            raise ValueError("RISE needs the class anchor embeddings (provider.set_text_anchors)")
        self.weights = rise_weights(context.options.get("rise_weights", DEFAULT_RISE_WEIGHTS))
        self.tau = float(context.options.get("rise_temperature", RISE_TEMPERATURE))

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        pooled = self.student.pool(self.student.forward_features(batch.images))
        embedding = self.student.project(pooled)
        logits = self.student.fc(embedding)
        labels = batch.labels
        w_kd, w_ce, w_dist = self.weights or (1.0 - step.alpha, step.alpha, 1.0)
        loss_kd = logits.new_zeros((), dtype=torch.float32)
        if w_kd > 0:  # the VLM's image tower is skipped where KD weighs nothing (alpha 1)
            loss_kd = kd_loss(logits, self.vlm.zero_shot_logits(batch), tau=self.tau)
        labelled = (labels >= 0).float()
        count = labelled.sum().clamp(min=1)
        # computed for every sample and masked, so the projector is in the graph even in a batch without
        # labels (DDP expects a gradient for every trainable parameter); 0 when the batch has none
        classes = labels.clamp(min=0)
        with torch.autocast(logits.device.type, enabled=False):
            x_p, text = embedding.float(), self.vlm.text_embeddings[classes].float()
            loss_ad = (absolute_distance(x_p, text) * labelled).sum() / count
            anchors = self.vlm.text_anchors[classes].float()
            loss_rd = (relational_distance(x_p, text, anchors) * labelled).sum() / count
        loss_ce = self.ce(logits, labels)
        loss = w_kd * loss_kd + w_ce * loss_ce + w_dist * (loss_ad + loss_rd)
        return {
            "loss": loss,
            "logits": logits,
            "loss_ce": loss_ce,
            "loss_kd": loss_kd,
            "loss_ad": loss_ad,
            "loss_rd": loss_rd,
        }
