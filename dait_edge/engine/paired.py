"""One labelled and one unlabelled batch per step (DHO's semi-supervised loop), as a batch sampler.

An epoch is one pass over the unlabelled images; the labelled images are cycled: a continuous stream of
permutations, cycle c drawn from (seed, c), so the labelled "epoch" advances with each cycle and each
pass shows new views. Every position is a pure function of (seed, epoch, step, rank): a resumed run
draws exactly the batches an uninterrupted one would, with no loader state to save.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def _permutation(items: Sequence[int], seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]


class PairedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields batches of (position, view epoch): `per_rank` labelled items then `per_rank` unlabelled ones.

    `labelled` / `unlabelled` are positions in the training views. Each rank takes every world-th item of
    the shared permutations (as DistributedSampler does); the last incomplete unlabelled batch is dropped
    (BatchNorm and the 1:1 ratio both want full batches) unless it is the only one.
    """

    def __init__(
        self,
        labelled: Sequence[int],
        unlabelled: Sequence[int],
        per_rank: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not labelled or not unlabelled:
            raise ValueError("a paired sampler needs labelled and unlabelled items")
        self.labelled, self.unlabelled = list(labelled), list(unlabelled)
        self.per_rank, self.seed, self.rank, self.world_size = per_rank, seed, rank, world_size
        self.epoch = 0
        share = len(self.unlabelled) // world_size
        self.steps = max(1, share // per_rank)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def _labelled_cycle(self, cycle: int) -> list[int]:
        return _permutation(self.labelled, self.seed * 1_000_003 + 2 * cycle + 1)[
            self.rank :: self.world_size
        ]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, per_rank = self.epoch, self.per_rank
        unlabelled = _permutation(self.unlabelled, self.seed * 1_000_003 + 2 * epoch)[
            self.rank :: self.world_size
        ]
        cycles: dict[int, list[int]] = {}
        for step in range(self.steps):
            batch = []
            start = (epoch * self.steps + step) * per_rank  # where this step starts in the labelled stream
            for position in range(start, start + per_rank):
                length = len(self._cycle(cycles, 0))
                cycle, within = divmod(position, length)
                batch.append((self._cycle(cycles, cycle)[within], cycle))
            chunk = unlabelled[step * per_rank : (step + 1) * per_rank]
            batch.extend((item, epoch) for item in chunk)
            yield batch

    def _cycle(self, cache: dict[int, list[int]], cycle: int) -> list[int]:
        if cycle not in cache:
            cache[cycle] = self._labelled_cycle(cycle)
        return cache[cycle]
