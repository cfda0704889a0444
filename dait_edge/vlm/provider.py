"""Where a method's VLM outputs come from: the live frozen VLM, or the cache of its image embeddings.

A method asks its provider for "the VLM image embedding of these samples' views" and for the class-text
embeddings; it does not know which provider answered. Both are nn.Modules so that `Distiller.freeze`
and `.to(device)` treat them like any frozen teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CACHED_IMAGE_KEY = "vlm_image"  # the Batch.extra entry a cache reader fills
ZERO_SHOT_SCALE = 100.0  # CLIP's learned logit scale at the end of training: z_vlm = 100 v T^T


class VLMProvider(nn.Module):
    """The class-text embeddings T (C x E, L2-normalised) and the image embeddings of a batch's views."""

    def __init__(self, text_embeddings: torch.Tensor):
        super().__init__()
        self.register_buffer("text_embeddings", text_embeddings.detach().float().clone())

        # the per-class Gaussian over templates (BorLan), when set
        self.register_buffer("text_mean", None)
        self.register_buffer("text_var", None)
        # (C, A, E): "a {anchor phrase} of a {class}" for RISE's relational term, when set
        self.register_buffer("text_anchors", None)

    @property
    def embed_dim(self) -> int:
        return int(self.text_embeddings.shape[1])

    def set_text_gaussian(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """The per-class mean and diagonal variance of the template embeddings (C x E each)."""
        self.text_mean = mean.detach().float().clone()
        self.text_var = var.detach().float().clone()

    def set_text_anchors(self, anchors: torch.Tensor) -> None:
        """The embeddings of each class's anchor prompts (C x A x E, L2-normalised)."""
        self.text_anchors = anchors.detach().float().clone()

    def zero_shot_logits(self, batch) -> torch.Tensor:
        """(B, C) fp32: the VLM's zero-shot logits 100 v T^T, the teacher of KD, RISE and DHO."""
        image = self.image_embeddings(batch).float()
        # fp32 even under autocast: at scale 100, bf16 would round logits near 30 to steps of 0.125-0.25
        with torch.autocast(image.device.type, enabled=False):
            return ZERO_SHOT_SCALE * image @ self.text_embeddings.float().t()

    def image_embeddings(self, batch) -> torch.Tensor:
        """(B, E) fp32, L2-normalised: the VLM's embedding of each sample's view in `batch` (a Batch)."""
        raise NotImplementedError


class LiveVLM(VLMProvider):
    """Runs the frozen VLM's image tower on the batch's pixels (resized and normalised its own way)."""

    def __init__(
        self,
        vlm: nn.Module,
        text_embeddings: torch.Tensor,
        input_mean: Sequence[float],
        input_std: Sequence[float],
    ):
        super().__init__(text_embeddings)
        self.vlm = vlm  # a VLMTeacher
        self.input_mean, self.input_std = tuple(input_mean), tuple(input_std)

    def image_embeddings(self, batch) -> torch.Tensor:
        # outside the training autocast: the VLM runs in its own dtype, as when the cache is built
        with torch.inference_mode(), torch.autocast(batch.images.device.type, enabled=False):
            embeddings = self.vlm.encode_images(batch.images, self.input_mean, self.input_std)
        return embeddings.clone()  # a normal tensor again: the losses may save it for backward


class CachedVLM(VLMProvider):
    """Reads the embeddings the data loader took from the cache (`Batch.extra["vlm_image"]`, fp16)."""

    def image_embeddings(self, batch) -> torch.Tensor:
        cached = batch.extra.get(CACHED_IMAGE_KEY)
        if cached is None:
            raise RuntimeError(
                "this batch carries no cached VLM embeddings: the training views were built without the cache"
                " reader"
            )
        return F.normalize(cached.float(), dim=-1, eps=1e-10)  # re-normalised after fp16 storage
