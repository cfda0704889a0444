"""Top-1 / top-5 of a classifier on a split; sharded across DDP ranks and summed."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from dait_edge.engine.distributed import DistInfo, all_reduce_sum
from dait_edge.engine.loaders import make_loader


def eval_loader(
    dataset, *, batch_size: int = 64, workers: int = 0, dist_info: DistInfo = DistInfo(), device=None
) -> DataLoader:
    """This rank's shard of `dataset` (every world_size-th image), in order. Built once per stage, so its
    workers persist from one epoch's evaluation to the next."""
    shard = Subset(dataset, range(dist_info.rank, len(dataset), dist_info.world_size))
    return make_loader(shard, batch_size=batch_size, workers=workers, device=device, seed=0)


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
    """Each rank scores every world_size-th image; counts are summed, so no image counts twice.

    `dataset` may be a DataLoader from `eval_loader`. Counts stay on the device until the end: one host
    synchronisation per evaluation, not one per batch."""
    loader = (
        dataset
        if isinstance(dataset, DataLoader)
        else eval_loader(dataset, batch_size=batch_size, workers=workers, dist_info=dist_info, device=device)
    )
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64, device=device)  # top-1 hits, top-5 hits, images
    for images, labels, _ in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(images)
        k = min(5, logits.shape[1])
        topk = logits.float().topk(k, dim=1).indices
        counts[0] += (topk[:, 0] == labels).sum()
        counts[1] += (topk == labels[:, None]).any(dim=1).sum()
        counts[2] += labels.numel()
    model.train(was_training)
    correct1, correct5, seen = all_reduce_sum(counts.tolist(), dist_info, device)
    return {
        "top1": 100.0 * correct1 / max(seen, 1),
        "top5": 100.0 * correct5 / max(seen, 1),
        "images": int(seen),
    }
