"""How data reaches the training loops: one `make_loader` for the DataLoaders of training, evaluation, the
VLM cache build and calibration, and the samplers the training loader draws with."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from dait_edge.engine.distributed import DistInfo
from dait_edge.engine.paired import PairedBatchSampler
from dait_edge.utils.signals import ignore_stop_signals


def make_loader(
    dataset,
    *,
    workers: int = 0,
    device: torch.device | str | None = None,
    batch_size: int | None = 1,
    sampler=None,
    batch_sampler=None,
    collate_fn=None,
    drop_last: bool = False,
    seed: int | None = 0,
    persistent: bool = True,
) -> DataLoader:
    """A DataLoader as every loop here wants one: workers leave SIGINT / SIGTERM to the main process, memory
    is pinned for a CUDA device, workers persist between epochs (`persistent`), and the loader has its own
    generator seeded with `seed`, so the workers' base seed is not drawn from the global RNG and a resumed
    run's RNG stays where an uninterrupted run's is (`seed=None`: drawn from it, for callers in a forked
    RNG)."""
    on_cuda = device is not None and torch.device(device).type == "cuda"
    options = {
        "num_workers": workers,
        "pin_memory": on_cuda,
        "worker_init_fn": ignore_stop_signals,  # the main process handles SIGINT / SIGTERM
        "persistent_workers": persistent and workers > 0,
        "generator": None if seed is None else torch.Generator().manual_seed(seed),
    }
    if collate_fn is not None:
        options["collate_fn"] = collate_fn
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **options)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **options)


class EpochSampler(Sampler):
    """Yields (item, epoch) pairs: the epoch travels with each index, so dataset copies in persistent
    workers draw the current epoch's views without being told `set_epoch`."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        epoch = self.sampler.epoch
        return ((j, epoch) for j in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def paired_sampler(method, train_views, per_rank: int, seed: int, dist_info: DistInfo):
    """DHO's one-labelled-one-unlabelled batches, when the method asks for them and there are both."""
    labelled_set = getattr(train_views, "labelled", None)
    if not getattr(method, "paired_batches", False) or labelled_set is None:
        return None
    positions = range(len(train_views.indices))
    labelled = [j for j in positions if train_views.indices[j] in labelled_set]
    unlabelled = [j for j in positions if train_views.indices[j] not in labelled_set]
    if not labelled or not unlabelled:
        return None
    return PairedBatchSampler(
        labelled, unlabelled, per_rank, seed=seed, rank=dist_info.rank, world_size=dist_info.world_size
    )


def train_loader(method, train_views, plan, dist_info: DistInfo, device) -> DataLoader:
    """The training loader of a stage (`plan`: an engine.plan.StagePlan): DHO's paired batches, else a
    distributed shuffle of (item, epoch) keys in per-rank batches."""
    from dait_edge.errors import UserError
    from dait_edge.methods.batch import Batch

    if plan.batch_size % dist_info.world_size:
        raise UserError(
            f"batch size {plan.batch_size} must be divisible by the number of processes"
            f" ({dist_info.world_size}).",
            setting="batch_size",
        )
    per_rank_batch = plan.batch_size // dist_info.world_size
    paired = paired_sampler(method, train_views, per_rank_batch, plan.seed, dist_info)
    shared = {"workers": plan.workers, "device": device, "collate_fn": Batch.collate, "seed": plan.seed}
    if paired is not None:
        return make_loader(train_views, batch_sampler=paired, **shared)
    sampler = DistributedSampler(
        train_views, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=plan.seed
    )
    # Drop a ragged last batch only when there is more than one: BatchNorm cannot train on one image.
    loader = make_loader(
        train_views,
        batch_size=per_rank_batch,
        sampler=EpochSampler(sampler),
        drop_last=len(sampler) > per_rank_batch,
        **shared,
    )
    if len(loader) == 0:
        raise UserError(
            "the training split is empty; check the data root and the labelled fraction.", setting="data_root"
        )
    return loader


def keyed_loader(train_views, keys, plan, device) -> DataLoader:
    """The training views of `keys` ((position, epoch) pairs), in order, in evaluation-sized batches (what
    `Distiller.before_epoch` reads); its workers' seed is drawn from the (forked) global RNG."""
    from dait_edge.methods.batch import Batch

    return make_loader(
        train_views,
        batch_size=plan.eval_batch_size,
        sampler=list(keys),
        collate_fn=Batch.collate,
        workers=plan.workers,
        device=device,
        seed=None,
        persistent=False,
    )
