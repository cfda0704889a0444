"""How a model wants its input: a leaf record that models, training and export all import (nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dait_edge.records._base import Record

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataConfig(Record):
    """How a model wants its input: size (C, H, W), normalisation, resize interpolation, centre-crop share."""

    input_size: list[int]
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    @property
    def img_size(self) -> int:
        return int(self.input_size[-1])
