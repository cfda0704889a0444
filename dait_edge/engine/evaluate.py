"""Top-1 / top-5 of a classifier on a split; sharded across DDP ranks and summed."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from dait_edge.engine.distributed import DistInfo, all_reduce_sum


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset,
    *,
    device: torch.device,
    batch_size: int = 64,
    workers: int = 0,
    dist_info: DistInfo = DistInfo(),
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Each rank scores every world_size-th image; counts are summed, so no image counts twice."""
    shard = Subset(dataset, range(dist_info.rank, len(dataset), dist_info.world_size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=workers, shuffle=False)
    was_training = model.training
    model.eval()
    correct1 = correct5 = seen = 0.0
    for images, labels, _ in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(images)
        k = min(5, logits.shape[1])
        topk = logits.float().topk(k, dim=1).indices
        correct1 += (topk[:, 0] == labels).sum().item()
        correct5 += (topk == labels[:, None]).any(dim=1).sum().item()
        seen += labels.numel()
    model.train(was_training)
    correct1, correct5, seen = all_reduce_sum([correct1, correct5, seen], dist_info, device)
    return {
        "top1": 100.0 * correct1 / max(seen, 1),
        "top5": 100.0 * correct5 / max(seen, 1),
        "images": int(seen),
    }
