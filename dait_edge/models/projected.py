"""RISE's student: the backbone's pooled features projected to the VLM's text width, then classified there.

logits = fc(projector(pool(x))), projector Linear(F, E) and fc Linear(E, C) with fc's rows initialised from
the class-text embeddings (OoDBag/RISE train_rise.py: `model.fc.weight.data = text_features_ems`), so the
classifier starts as a zero-shot classifier over the projected embedding that RISE's cosine and relational
terms pull towards the text. The upstream classifier is dropped: the projection and fc are the head, trained,
saved and exported with the backbone.
"""

from __future__ import annotations

import torch
from torch import nn

from dait_edge.models.builders import ClassifierWithFeatures
from dait_edge.models.wrapped import WrappedStudent


class ProjectedClassifier(WrappedStudent):
    head_name = "projected"
    source_tag = "text-projection"
    head_words = "text-projected (RISE)"
    classes_key = "fc.weight"
    marker_key = "projector.weight"

    def __init__(self, base: ClassifierWithFeatures, embed_dim: int, text: torch.Tensor | None = None):
        super().__init__(base)
        base.drop_classifier()
        self.projector = nn.Linear(base.num_features, embed_dim)
        self.fc = nn.Linear(embed_dim, base.num_classes)
        if text is not None:  # (C, E): the normalised class-text embeddings
            with torch.no_grad():
                self.fc.weight.copy_(text.float())

    @property
    def embed_dim(self) -> int:
        return self.projector.out_features

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """The embedding in the text space (not normalised), RISE's `x_p`."""
        return self.projector(pooled)

    def classifier(self) -> nn.Module:
        return nn.Sequential(self.projector, self.fc)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.projector(pooled))

    @classmethod
    def around(cls, base: ClassifierWithFeatures, state: dict[str, torch.Tensor]) -> ProjectedClassifier:
        width = state.get("projector.weight")
        return cls(base, int(width.shape[0]) if width is not None else 1)
