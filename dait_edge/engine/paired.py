"""One labelled and one unlabelled batch per step (DHO's semi-supervised loop), as a batch sampler.

An epoch is one pass over the larger of the two sets (the unlabelled images in the few-label settings DHO
is made for); the smaller set is cycled: a continuous stream of permutations, cycle c drawn from (seed, c),
so its "epoch" advances with each cycle and each pass shows new views. Every position is a pure function
of (seed, epoch, step, rank): a resumed run draws exactly the batches an uninterrupted one would, with no
loader state to save.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

_LABELLED, _UNLABELLED = 1, 2  # salts of the two streams' permutations


def _permutation(items: Sequence[int], seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]


class PairedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields batches of (position, view epoch): `per_rank` labelled items then `per_rank` unlabelled ones.

    `labelled` / `unlabelled` are positions in the training views. Each rank takes every world-th item of
    the shared permutations (as DistributedSampler does); the last incomplete batch of the larger set is
    dropped (BatchNorm and the 1:1 ratio both want full batches) unless it is the only one.
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
        self.streams = {_LABELLED: list(labelled), _UNLABELLED: list(unlabelled)}
        self.per_rank, self.seed, self.rank, self.world_size = per_rank, seed, rank, world_size
        self.epoch = 0
        # the larger set drives the epoch (ties: the unlabelled one)
        self.driver = _UNLABELLED if len(unlabelled) >= len(labelled) else _LABELLED
        share = len(self.streams[self.driver]) // world_size
        self.steps = max(1, share // per_rank)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def _pass(self, stream: int, cycle: int) -> list[int]:
        """This rank's share of pass `cycle` over one set."""
        salt = self.seed * 1_000_003 + 4 * cycle + stream
        return _permutation(self.streams[stream], salt)[self.rank :: self.world_size]

    def _stream_items(self, stream: int, start: int, cache: dict) -> list[tuple[int, int]]:
        """`per_rank` items of the cycled set from position `start` of its endless stream: (item, cycle)."""
        length = len(self._cached(cache, stream, 0))
        items = []
        for position in range(start, start + self.per_rank):
            cycle, within = divmod(position, length)
            items.append((self._cached(cache, stream, cycle)[within], cycle))
        return items

    def _cached(self, cache: dict, stream: int, cycle: int) -> list[int]:
        if (stream, cycle) not in cache:
            cache[(stream, cycle)] = self._pass(stream, cycle)
        return cache[(stream, cycle)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, per_rank = self.epoch, self.per_rank
        driver = self._pass(self.driver, epoch)
        cycled = _LABELLED if self.driver == _UNLABELLED else _UNLABELLED
        cache: dict = {}
        for step in range(self.steps):
            # one pass of the driver per epoch; the other set continues where the previous step ended
            own = [(item, epoch) for item in driver[step * per_rank : (step + 1) * per_rank]]
            other = self._stream_items(cycled, (epoch * self.steps + step) * per_rank, cache)
            labelled, unlabelled = (other, own) if cycled == _LABELLED else (own, other)
            yield labelled + unlabelled
