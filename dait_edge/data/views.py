"""Augmented training views as pure functions of (seed, global image index, view id), model-independent.

A view is decided by a `ViewSpec` (crop size, resize share, interpolation, flip), never by the model that
consumes it: the same (seed, i, k) gives the same pixels to the VLM, the intermediate teacher and the
student, each of which then resizes and normalises them its own way. That is what lets the VLM's
embedding of a view be computed once and cached for every method and student.

Epoch e shows sample i the view `view_order(seed, i, K)[e % K]`: with K >= epochs no view repeats, and a
run that reads cached embeddings of K views sees exactly what a live run sees. Drawing a view never
touches the global random generators.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from dait_edge.data.images import ImageListDataset


@dataclass(frozen=True)
class ViewSpec:
    """How a training view is cut: resize the short side to size / crop_pct, crop size x size at a random
    place, flip left-right with probability 1/2 (the FGVC recipe); or, with `scale`, torchvision's
    RandomResizedCrop keeping `scale` to all of the area (the DHO, RISE and BorLan recipes), then the flip."""

    size: int
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    flip: bool = True
    scale: float | None = None  # RandomResizedCrop's smallest area share; None: resize, then crop

    def __post_init__(self):
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(
                f"interpolation must be bilinear, bicubic or nearest, not {self.interpolation!r}"
            )

    def to_dict(self) -> dict:
        spec = asdict(self)
        if self.scale is None:  # the views cut before the setting existed: their cache keys stay the same
            del spec["scale"]
        return spec


def _digest(*parts) -> int:
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & ((1 << 63) - 1)


def view_seed(seed: int, index: int, view: int) -> int:
    """A 63-bit seed for view `view` of image `index`; stable across processes, workers and Python runs."""
    return _digest(seed, index, view)


def view_order(seed: int, index: int, views: int) -> list[int]:
    """The order in which image `index` goes through its `views` views, epoch after epoch."""
    return np.random.default_rng(_digest("order", seed, index)).permutation(views).tolist()


def view_at(seed: int, index: int, epoch: int, views: int) -> int:
    return view_order(seed, index, views)[epoch % views]


def view_pixels(image, spec: ViewSpec, seed: int):
    """The (3, size, size) float tensor in [0, 1] of one view of a PIL image, drawn from `seed` alone."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    if spec.scale is not None:
        return _random_resized_crop(image, spec, seed)
    image = TF.resize(
        image, int(round(spec.size / spec.crop_pct)), interpolation=InterpolationMode(spec.interpolation)
    )
    width, height = image.size
    generator = torch.Generator().manual_seed(seed)  # its own generator: the global RNGs are untouched
    top = int(torch.randint(0, max(height - spec.size, 0) + 1, (1,), generator=generator))
    left = int(torch.randint(0, max(width - spec.size, 0) + 1, (1,), generator=generator))
    flip = spec.flip and bool(torch.rand((), generator=generator) < 0.5)
    image = TF.crop(image, top, left, spec.size, spec.size)  # pads where the image is smaller
    if flip:
        image = TF.hflip(image)
    return TF.to_tensor(image)


def _random_resized_crop(image, spec: ViewSpec, seed: int):
    """torchvision's RandomResizedCrop (area share in [scale, 1], aspect ratio in [3/4, 4/3]) and a flip, drawn
    in a forked generator seeded from `seed` alone."""
    import torch
    from torchvision.transforms import InterpolationMode, RandomResizedCrop
    from torchvision.transforms import functional as TF

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        top, left, height, width = RandomResizedCrop.get_params(image, [spec.scale, 1.0], [3 / 4, 4 / 3])
        flip = spec.flip and bool(torch.rand(()) < 0.5)
    image = TF.resized_crop(
        image, top, left, height, width, [spec.size, spec.size], InterpolationMode(spec.interpolation)
    )
    if flip:
        image = TF.hflip(image)
    return TF.to_tensor(image)


class TrainViews:
    """The training split as views: item j is image `indices[j]` of the split (its global index) at the
    view epoch e gives it, normalised with (mean, std). Index it with (j, e) (the trainer's sampler does),
    or with j after `set_epoch(e)`.

    Items are dicts: image, label (-1 when unlabelled), index (global), view, labelled (bool), plus
    `extra(index, view)`'s entries (cached teacher outputs, e.g. the VLM embedding of that view).
    """

    def __init__(
        self,
        images: ImageListDataset,
        spec: ViewSpec,
        seed: int,
        views: int,
        mean: Sequence[float],
        std: Sequence[float],
        indices: Sequence[int] | None = None,
        extra=None,
        labelled: Sequence[int] | None = None,
    ):
        if views < 1:
            raise ValueError("views must be at least 1")
        self.images = images
        self.spec = spec
        self.seed = seed
        self.views = views
        self.mean, self.std = tuple(mean), tuple(std)
        self.indices = list(range(len(images))) if indices is None else list(indices)
        self.extra = extra
        self.labelled = None if labelled is None else frozenset(labelled)  # None: every image is labelled
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def pixels(self, index: int, view: int):
        """View `view` of image `index` (global), unnormalised: what every consumer starts from."""
        image, _, _ = self.images[index]
        return view_pixels(image, self.spec, view_seed(self.seed, index, view))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        from torchvision.transforms import functional as TF

        j, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        index = self.indices[j]
        view = view_at(self.seed, index, epoch, self.views)
        _, label = self.images.samples[index]
        labelled = self.labelled is None or index in self.labelled
        item = {
            "image": TF.normalize(self.pixels(index, view), self.mean, self.std),
            "label": label if labelled else -1,
            "index": index,
            "view": view,
            "labelled": labelled,
        }
        if self.extra is not None:
            item.update(self.extra(index, view))
        return item
