"""DHO's student: one backbone, two linear heads, and the combination that makes its prediction.

The CE head is the backbone's own classifier (it learns from labels); the KD head learns from the VLM.
`forward` returns log p, p = a softmax(z_ce) + (1 - a) softmax(z_kd / b) (`losses.dho_combine`), with
(a, b) buffers chosen after training and saved with the weights: the exported ONNX graph, the parity
check, the predictor and top-1 all see DHO's real prediction. The combination is the submodule
`combine`, so its ONNX nodes are named `/combine/...` and int8 export keeps them in float.
"""

from __future__ import annotations

import torch
from torch import nn

from dait_edge.losses.dual_head import dho_combine
from dait_edge.models.builders import ClassifierWithFeatures
from dait_edge.models.wrapped import WrappedStudent

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


class DualHeadClassifier(WrappedStudent):
    """A student whose logits are DHO's combined log-probabilities of its two heads."""

    head_name = "dual"
    source_tag = "dual-head"
    head_words = "dual-head (DHO)"
    classes_key = "head_kd.weight"
    marker_key = "head_kd.weight"

    def __init__(self, base: ClassifierWithFeatures):
        super().__init__(base)
        self.head_kd = nn.Linear(base.num_features, base.num_classes)
        self.combine = HeadCombination()

    def heads(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_ce, z_kd): the CE head's and the KD head's logits."""
        return self.base.classify(pooled), self.head_kd(pooled)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.combine(*self.heads(pooled))
