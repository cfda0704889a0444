"""Stage-1 (VLM -> intermediate teacher) and stage-2 feature alignment terms of DAIT."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dait_edge.losses.kd import kd_loss
from dait_edge.records.config import PAPER_SRA_FORM, SRA_FORMS

CLIP_LOGIT_SCALE = 1.0 / 0.07


def sia_loss(
    vlm_img: torch.Tensor,
    vlm_txt: torch.Tensor,
    img: torch.Tensor,
    txt: torch.Tensor,
    tau: float = 2.0,
    scale: float = CLIP_LOGIT_SCALE,
) -> torch.Tensor:
    """Semantic image alignment: the VLM's image-to-class-text distribution is the target.

    All inputs are L2-normalised: vlm_img (B, E), vlm_txt (C, E), img (B, D), txt (C, D).
    L = tau^2 * KL(softmax(s v T^T / tau) || softmax(s f F^T / tau)), batch mean.
    The similarity logits are computed in fp32 even under autocast: at scale 1/0.07, bf16's 8-bit mantissa
    would move them by up to ~0.05, the size of the differences the KL compares.
    """
    with torch.autocast(img.device.type, enabled=False):
        student = scale * img.float() @ txt.float().t()
        target = scale * vlm_img.float() @ vlm_txt.float().t()
        return kd_loss(student, target, tau=tau)


def ira_loss(img: torch.Tensor, vlm_img: torch.Tensor) -> torch.Tensor:
    """Image representation alignment: mean absolute difference of the normalised embeddings."""
    return F.l1_loss(img.float(), vlm_img.float())


def standardise_channels(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each channel of (B, C, H, W) maps to zero mean and unit variance over the batch and positions; a
    channel that is constant in the batch (a ReLU map's dead channel) becomes zeros."""
    mean = maps.mean((0, 2, 3), keepdim=True)
    std = maps.std((0, 2, 3), keepdim=True, unbiased=False)
    return (maps - mean) / (std + eps)


def sra_pair(
    student_map: torch.Tensor, teacher_map: torch.Tensor, form: str = PAPER_SRA_FORM
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two maps SRA's MSE compares under `form`, in fp32."""
    student_map, teacher_map = student_map.float(), teacher_map.float()
    if form == "paper":
        return student_map, teacher_map
    if form == "standardised":
        return student_map, standardise_channels(teacher_map)
    if form == "pearson":
        return standardise_channels(student_map), standardise_channels(teacher_map)
    raise ValueError(f"unknown SRA form {form!r}; use one of {', '.join(SRA_FORMS)}")


def sra_loss(
    student_map: torch.Tensor, teacher_map: torch.Tensor, form: str = PAPER_SRA_FORM
) -> torch.Tensor:
    """Spatial representation alignment: MSE between the adapted student map and the teacher map (B, C, H, W),
    compared as `form` says (SRA_FORMS); pearson halves it, as PKD does, so that it lies in [0, 2]."""
    student, teacher = sra_pair(student_map, teacher_map, form)
    loss = F.mse_loss(student, teacher)
    return loss / 2 if form == "pearson" else loss
