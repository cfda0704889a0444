"""How a model wants its input: a leaf record that models, training and export all import (nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dait_edge.records._base import Record

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataConfig(Record):
    """How a model is fed: size (C, H, W), normalisation, resize interpolation, centre-crop share. A run's
    summary and every sidecar hold the run's one pipeline (`source` "run"); a model's own holds its
    upstream config, of which a run takes only the normalisation."""

    input_size: list[int]
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    # "run": the run chose it, and its training views, its evaluation and its exports all used it; None
    # (records written before runs chose their preprocessing): the model's upstream config, which the run's
    # evaluation used while its training views were cut bilinear at 0.875
    source: str | None = None

    @property
    def img_size(self) -> int:
        return int(self.input_size[-1])

    def describe(self) -> str:
        """The pipeline in words, and whose it is (for logs and notes)."""
        size = self.img_size
        how = (
            f"{self.interpolation} resize of the short side to {int(round(size / self.crop_pct))} px, centre crop"
            f" {size} (crop_pct {self.crop_pct:g})"
        )
        if self.source == "run":
            return f"{how}: the run's own, as its training views were cut"
        return (
            f"{how}: the model's upstream config, assumed for a run recorded before runs chose their"
            " preprocessing (its training views were cut bilinear at 0.875; train again to match)"
        )
