"""Cross-entropy over the labelled samples of a batch (unlabelled ones carry label -1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

UNLABELLED = -1


def labelled_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the samples whose label is not -1; 0 (with a gradient path) when a batch
    holds none, so a batch of unlabelled images trains only the distillation terms. With every sample
    labelled it is `F.cross_entropy(logits, labels)`. In fp32 whatever the autocast dtype."""
    with torch.autocast(logits.device.type, enabled=False):
        total = F.cross_entropy(logits.float(), labels, ignore_index=UNLABELLED, reduction="sum")
        count = (labels != UNLABELLED).sum().clamp(min=1)
        return total / count
