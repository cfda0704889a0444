"""Students whose head is built around a plain student's backbone: DHO's two heads (`models.dual_head`) and
RISE's projection to the text width (`models.projected`).

A wrapped student keeps the plain one as `base` (its backbone and pooling), adds its own head, and is saved
and exported whole. Which head a run's student has is recorded (`RunSummary.student_head`), and
`models.heads.load_student` rebuilds it from a weights file.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from dait_edge.models.builders import ClassifierWithFeatures


class WrappedStudent(ClassifierWithFeatures):
    """A `ClassifierWithFeatures` around `base`: the backbone and pooling are the base's."""

    head_name = ""  # as RunSummary.student_head records it
    source_tag = ""  # appended to the base's source ("timm+dual-head")
    head_words = ""  # what the head is, for error messages
    classes_key = ""  # the state-dict tensor whose rows are the classes
    marker_key = ""  # a state-dict tensor only this head has

    def __init__(self, base: ClassifierWithFeatures):
        super().__init__(
            nn.Identity(),
            name=base.name,
            num_classes=base.num_classes,
            feature_channels=base.feature_channels,
            num_features=base.num_features,
            data_config=base.data_config,
            weights_from=base.weights_from,
        )
        del self.model  # the upstream model lives in `base`
        self.base = base
        self.source = f"{base.source}+{self.source_tag}"

    @property
    def model(self) -> nn.Module:
        return self.base.model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.forward_features(x)

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.base.pool(feature_map)

    @classmethod
    def around(cls, base: ClassifierWithFeatures, state: dict[str, torch.Tensor]) -> WrappedStudent:
        """An untrained student of this kind shaped to hold `state` (a weights file's tensors)."""
        return cls(base)

    @classmethod
    def from_file(
        cls, name: str, num_classes: int, path: str | os.PathLike, setting: str = "checkpoint"
    ) -> WrappedStudent:
        """A trained student of this kind from its weights file."""
        from dait_edge.errors import UserError
        from dait_edge.models.factory import build_model
        from dait_edge.models.weights import load_state_dict_file

        state = load_state_dict_file(path)
        model = cls.around(build_model(name, num_classes, pretrained=False), state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            keys = [*missing, *unexpected]
            raise UserError(
                f"weights file {path} is not a {cls.head_words} {name}: {len(missing)} missing and"
                f" {len(unexpected)} unexpected tensors (e.g. {', '.join(keys[:2])}); pass the file such a run"
                " wrote.",
                setting=setting,
            )
        return model
