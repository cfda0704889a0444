"""The frozen VLM as a teacher: normalised image and text embeddings, always in eval mode."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dait_edge.vlm.loader import VLMSource, create_vlm, resolve_vlm_source


class VLMTeacher(nn.Module):
    """Wraps an OpenCLIP model. Never trains: `train()` keeps it in eval mode, no parameter needs grad.

    `encode_images` takes a batch normalised the way the *student* sees it (`input_mean` /
    `input_std`), undoes that normalisation, resizes the same view to the VLM's own input size
    and normalises with the VLM's mean/std: both models see the same augmented view.
    """

    def __init__(self, model: nn.Module, tokenizer, preprocess_cfg: dict, source: VLMSource):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        size = preprocess_cfg.get("size", 224)
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self.interpolation: str = preprocess_cfg.get("interpolation", "bicubic")
        self.resize_mode: str = preprocess_cfg.get("resize_mode", "shortest")
        self.register_buffer("mean", torch.tensor(preprocess_cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocess_cfg["std"]).view(1, 3, 1, 1), persistent=False)
        for param in self.model.parameters():
            param.requires_grad_(False)
        super().train(False)

    @functools.cached_property
    def embed_dim(self) -> int:
        # open_clip's towers expose their width differently (CLIP, CustomTextCLIP, timm towers): ask the model.
        return int(self.encode_texts(["a"]).shape[-1])

    def train(self, mode: bool = True) -> VLMTeacher:
        return super().train(False)  # frozen teacher: BN / dropout stay in inference mode

    def preprocess_cfg(self) -> dict:
        return {
            "size": list(self.image_size),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
        }

    def to_vlm_input(
        self, images: torch.Tensor, input_mean: Sequence[float], input_std: Sequence[float]
    ) -> torch.Tensor:
        """Convert a batch normalised with (input_mean, input_std) to this VLM's size and normalisation."""
        in_mean = torch.as_tensor(input_mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        in_std = torch.as_tensor(input_std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        pixels = images * in_std + in_mean
        if tuple(pixels.shape[-2:]) != self.image_size:
            mode = "bicubic" if self.interpolation == "bicubic" else "bilinear"
            pixels = F.interpolate(
                pixels, size=self.image_size, mode=mode, align_corners=False, antialias=True
            )
            pixels = pixels.clamp(0.0, 1.0)  # bicubic overshoots; real pixels live in [0, 1]
        return (pixels - self.mean.to(pixels.dtype)) / self.std.to(pixels.dtype)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the image tower's weights (bf16 / fp16 when training on a GPU)."""
        return next(self.model.visual.parameters()).dtype

    def free_text_tower(self) -> None:
        """Drop the text tower once the class-text embeddings exist: it is not needed again in training, and
        ConvNeXt-XXLarge's is 354 M parameters of GPU memory."""
        text_parts = (
            "transformer",
            "token_embedding",
            "positional_embedding",
            "ln_final",
            "text_projection",
            "text",
        )
        for name in text_parts:
            if hasattr(self.model, name):
                setattr(self.model, name, None)
        self.text_freed = True

    @torch.no_grad()
    def encode_images(
        self,
        images: torch.Tensor,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """L2-normalised image embeddings (B, E). Without input_mean/std the batch is already in VLM form."""
        if input_mean is not None:
            images = self.to_vlm_input(images.float(), input_mean, input_std)
        embeddings = self.model.encode_image(images.to(self.dtype)).float()
        return F.normalize(embeddings, dim=-1, eps=1e-10)

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised text embeddings (N, E)."""
        if getattr(self, "text_freed", False):
            raise RuntimeError("the text tower was freed after the class-text embeddings were computed")
        device = self.mean.device
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start : start + batch_size]).to(device)
            chunks.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1, eps=1e-10))
        return torch.cat(chunks)


def load_vlm(vlm: str, pretrained: str | None, device: str | torch.device = "cpu") -> VLMTeacher:
    """`--vlm` / `--vlm-pretrained` -> a frozen VLMTeacher on `device`."""
    source = resolve_vlm_source(vlm, pretrained)
    model, tokenizer, preprocess_cfg = create_vlm(source, device=str(device))
    return VLMTeacher(model, tokenizer, preprocess_cfg, source).to(device)
