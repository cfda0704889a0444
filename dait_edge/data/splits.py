"""Class-balanced labelled / unlabelled splits of a training set (the semi-supervised settings)."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence

from dait_edge.data.base import Sample
from dait_edge.errors import UserError


def split_labelled(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Keep round(fraction * n_c) images of every class c labelled (at least one), the rest unlabelled.

    Deterministic for a given (samples, fraction, seed); each class draws from its own seeded
    generator, so adding or removing one class does not change the others' picks. Both outputs
    keep the input order.
    """
    chosen = set(labelled_indices(samples, fraction, seed))
    labelled = [s for i, s in enumerate(samples) if i in chosen]
    unlabelled = [s for i, s in enumerate(samples) if i not in chosen]
    return labelled, unlabelled


def labelled_indices(samples: Sequence[Sample], fraction: float, seed: int) -> list[int]:
    """The positions in `samples` that `split_labelled` keeps labelled, ascending: labelled and unlabelled
    images keep their places in one index space (the training split's), which view seeds and the VLM
    embedding cache are keyed by."""
    if not isinstance(fraction, (int, float)) or math.isnan(fraction) or not 0.0 < fraction <= 1.0:
        raise UserError(
            f"labelled fraction {fraction!r} is outside (0, 1]; pass e.g. 0.1 for 10% of each class labelled, "
            f"or 1.0 for all"
        )
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, (_, label) in enumerate(samples):
        by_class[label].append(i)

    chosen: set[int] = set()
    for label, indices in sorted(by_class.items()):
        # half-up rounding (Python's round() sends 2.5 to 2), clamped to [1, n_c]
        k = min(len(indices), max(1, math.floor(fraction * len(indices) + 0.5)))
        rng = random.Random(f"{seed}:{label}")  # str seeds hash stably across runs and platforms
        chosen.update(rng.sample(indices, k))
    return sorted(chosen)


def evenly_spread(samples: Sequence[Sample], limit: int) -> list[Sample]:
    """At most `limit` samples, evenly spaced over the list: every class is reached even when the list is
    sorted by class (taking the first `limit` would score the first few classes only)."""
    if limit >= len(samples):
        return list(samples)
    if limit <= 1:
        return list(samples[:limit])
    step = (len(samples) - 1) / (limit - 1)
    return [samples[round(i * step)] for i in range(limit)]


def held_out_indices(
    samples: Sequence[Sample], indices: Sequence[int], fraction: float, seed: int
) -> list[int]:
    """A validation split of `indices` (positions in `samples`), ascending: round(fraction * n) images in all,
    class-balanced (each class floor(fraction * n_c), the remainder one per class in a seeded order of
    classes), each class's picks seeded. Every class keeps at least one image for training, so in the
    few-label settings (e.g. 3 labelled per class at 10%) some classes give one and a class with a single
    labelled image gives none."""
    if fraction <= 0:
        return []
    by_class: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        by_class[samples[i][1]].append(i)
    room = {label: len(members) - 1 for label, members in by_class.items()}  # one stays for training
    quota = {label: min(room[label], math.floor(fraction * len(m))) for label, m in by_class.items()}
    remaining = math.floor(fraction * len(indices) + 0.5) - sum(quota.values())
    order = sorted(by_class)
    random.Random(f"{seed}:val-order").shuffle(order)
    for label in order:
        if remaining <= 0:
            break
        if quota[label] < room[label]:
            quota[label] += 1
            remaining -= 1
    chosen: list[int] = []
    for label, members in sorted(by_class.items()):
        if quota[label] > 0:
            chosen.extend(random.Random(f"{seed}:val:{label}").sample(sorted(members), quota[label]))
    return sorted(chosen)


def labelled_split(
    samples: Sequence[Sample], labelled_fraction: float, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """(labelled images to train on, validation images held out of the labelled ones), positions ascending:
    what `dait-edge distill` splits a training set into (the rest is unlabelled), and what export recomputes
    to judge int8 on the same held-out images."""
    labelled = labelled_indices(samples, labelled_fraction, seed)
    held = held_out_indices(samples, labelled, val_fraction, seed)
    kept = set(held)
    return [i for i in labelled if i not in kept], held


def balanced_subset(samples: Sequence[Sample], indices: Sequence[int], limit: int, seed: int) -> list[int]:
    """At most `limit` of `indices`, class-balanced (classes take turns, each in a seeded order), ascending:
    validation images drawn from the training split when a run kept none apart."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        by_class[samples[i][1]].append(i)
    queues = []
    for label, members in sorted(by_class.items()):
        members = sorted(members)
        random.Random(f"{seed}:subset:{label}").shuffle(members)
        queues.append(members)
    chosen: list[int] = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop())
    return sorted(chosen)
