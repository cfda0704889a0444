"""Hand the teacher the student's batch in the teacher's own normalisation (each converts its own)."""

from __future__ import annotations

import torch
from torch import nn

from dait_edge.methods.base import MethodContext


class TeacherInput(nn.Module):
    """Identity when both normalise alike (the common case: ImageNet mean/std); else re-normalise."""

    def __init__(self, context: MethodContext, teacher: nn.Module):
        super().__init__()
        config = getattr(teacher, "data_config", None)  # a records.DataConfig (models of this package)
        source_mean, source_std = tuple(context.input_mean), tuple(context.input_std)
        target_mean = tuple(config.mean) if config is not None else source_mean
        target_std = tuple(config.std) if config is not None else source_std
        self.identity = source_mean == target_mean and source_std == target_std
        # x_teacher = (x * s_std + s_mean - t_mean) / t_std = x * scale + shift
        scale = torch.tensor(source_std) / torch.tensor(target_std)
        shift = (torch.tensor(source_mean) - torch.tensor(target_mean)) / torch.tensor(target_std)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return images
        return images * self.scale.to(images.dtype) + self.shift.to(images.dtype)
