"""DHO's student: one backbone, two linear heads, and the combination that makes its prediction.

The CE head is the backbone's own classifier (it learns from labels); the KD head learns from the VLM.
`forward` returns log p, p = a softmax(z_ce) + (1 - a) softmax(z_kd / b) (`losses.dho_combine`), with
(a, b) buffers chosen after training and saved with the weights: the exported ONNX graph, the parity
check, the predictor and top-1 all see DHO's real prediction. The combination is the submodule
`combine`, so its ONNX nodes are named `/combine/...` and int8 export keeps them in float.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from dait_edge.losses.dual_head import dho_combine
from dait_edge.models.builders import ClassifierWithFeatures

COMBINE_SCOPE = "/combine/"  # the ONNX node-name prefix of the combination (kept out of quantisation)
DEFAULT_A, DEFAULT_B = 0.5, 1.0  # used until (a, b) is chosen on a validation split


class HeadCombination(nn.Module):
    def __init__(self, a: float = DEFAULT_A, b: float = DEFAULT_B):
        super().__init__()
        self.register_buffer("a", torch.tensor(float(a)))
        self.register_buffer("b", torch.tensor(float(b)))

    def set(self, a: float, b: float) -> None:
        self.a.fill_(float(a))
        self.b.fill_(float(b))

    def forward(self, z_ce: torch.Tensor, z_kd: torch.Tensor) -> torch.Tensor:
        return dho_combine(z_ce, z_kd, self.a, self.b)


class DualHeadClassifier(ClassifierWithFeatures):
    """A `ClassifierWithFeatures` whose logits are DHO's combined log-probabilities."""

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
        self.source = f"{base.source}+dual-head"
        self.head_kd = nn.Linear(base.num_features, base.num_classes)
        self.combine = HeadCombination()

    @property
    def model(self) -> nn.Module:
        return self.base.model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.forward_features(x)

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.base.pool(feature_map)

    def heads(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_ce, z_kd): the CE head's and the KD head's logits."""
        return self.base.classify(pooled), self.head_kd(pooled)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.combine(*self.heads(pooled))

    @classmethod
    def from_file(
        cls, name: str, num_classes: int, path: str | os.PathLike, setting: str = "checkpoint"
    ) -> DualHeadClassifier:
        """A trained DHO student from its weights file (both heads and the chosen (a, b))."""
        from dait_edge.errors import UserError
        from dait_edge.models.factory import build_model
        from dait_edge.models.weights import load_state_dict_file

        model = cls(build_model(name, num_classes, pretrained=False))
        state = load_state_dict_file(path)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            keys = [*missing, *unexpected]
            raise UserError(
                f"weights file {path} is not a dual-head (DHO) {name}: {len(missing)} missing and"
                f" {len(unexpected)} unexpected tensors (e.g. {', '.join(keys[:2])}); pass the file a DHO run"
                " wrote.",
                setting=setting,
            )
        return model
