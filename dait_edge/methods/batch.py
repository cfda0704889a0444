"""What the trainer hands a method: one `Batch` of samples and the `Step` it is taken at.

A method never sees bare `(images, labels)`: it also gets each sample's global index (its position in
the full training split, so labelled and unlabelled images share one index space), the view the epoch
gave it, a labelled mask, and any teacher outputs read from a cache (`extra`). That is what lets a
teacher output be looked up instead of recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch


@dataclass(frozen=True)
class Step:
    """Where training is: the epoch, the step within it (both 0-based) and the CE weight alpha."""

    epoch: int
    step: int
    alpha: float


@dataclass
class Batch:
    """B samples. `images` are normalised the way the trained model expects (its own mean / std)."""

    images: torch.Tensor  # (B, 3, H, W)
    labels: torch.Tensor  # (B,) int64; -1 where a sample is unlabelled
    index: torch.Tensor  # (B,) int64: global indices into the training split
    view: torch.Tensor  # (B,) int64: which of the sample's views this is
    labelled: torch.Tensor  # (B,) bool
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # cached teacher outputs, by name

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def of(cls, images: torch.Tensor, labels: torch.Tensor, **extra: torch.Tensor) -> Batch:
        """A batch of fully labelled samples 0..B-1 at view 0 (tests, tools, one-off calls)."""
        size = labels.shape[0]
        index = torch.arange(size)
        return cls(images, labels, index, torch.zeros_like(index), torch.ones(size, dtype=torch.bool), extra)

    @classmethod
    def collate(cls, items: Sequence[dict]) -> Batch:
        """DataLoader's `collate_fn` for `TrainViews` items (dicts)."""
        core = {"image", "label", "index", "view", "labelled"}
        extra_keys = [k for k in items[0] if k not in core]
        return cls(
            images=torch.stack([item["image"] for item in items]),
            labels=torch.as_tensor([item["label"] for item in items], dtype=torch.int64),
            index=torch.as_tensor([item["index"] for item in items], dtype=torch.int64),
            view=torch.as_tensor([item["view"] for item in items], dtype=torch.int64),
            labelled=torch.as_tensor([item["labelled"] for item in items], dtype=torch.bool),
            extra={k: torch.stack([torch.as_tensor(item[k]) for item in items]) for k in extra_keys},
        )

    def _map(self, fn) -> Batch:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return Batch(**{k: fn(v) for k, v in values.items()}, extra={k: fn(v) for k, v in self.extra.items()})

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) in its pinning thread."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device, channels_last: bool = False) -> Batch:
        batch = self._map(lambda t: t.to(device, non_blocking=True))
        if channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        return batch
