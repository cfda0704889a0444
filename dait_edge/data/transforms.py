"""Train / eval transforms, and augmented views that are a pure function of (seed, image, epoch).

A view that depends only on (seed, image index, epoch) makes runs resumable bit for bit and lets
a later stage cache the VLM's embedding of each view instead of recomputing it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from dait_edge.data.images import ImageListDataset


def _interpolation(name: str):
    from torchvision.transforms import InterpolationMode

    return (
        InterpolationMode(name) if name in ("bilinear", "bicubic", "nearest") else InterpolationMode.BILINEAR
    )


def _resize_crop_normalise(img_size, mean, std, crop_pct, interpolation, crop_ops):
    """Resize the short side to img_size / crop_pct, apply `crop_ops`, then tensor + normalise."""
    from torchvision import transforms as T

    resize = T.Resize(int(round(img_size / crop_pct)), interpolation=_interpolation(interpolation))
    return T.Compose([resize, *crop_ops, T.ToTensor(), T.Normalize(mean, std)])


def train_transform(
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
):
    """The FGVC recipe: resize, random crop, horizontal flip."""
    from torchvision import transforms as T

    crops = [T.RandomCrop(img_size), T.RandomHorizontalFlip()]
    return _resize_crop_normalise(img_size, mean, std, crop_pct, interpolation, crops)


def eval_transform(
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
):
    """Resize, centre crop (the timm / torchvision eval recipe)."""
    from torchvision import transforms as T

    return _resize_crop_normalise(img_size, mean, std, crop_pct, interpolation, [T.CenterCrop(img_size)])


def train_transform_for(data_config, img_size: int | None = None):
    """`train_transform` in a model's normalisation (a records.DataConfig), at `img_size` or the config's."""
    dc = data_config
    return train_transform(img_size or dc.img_size, dc.mean, dc.std, dc.crop_pct, dc.interpolation)


def eval_transform_for(data_config, img_size: int | None = None):
    """`eval_transform` in a model's normalisation (a records.DataConfig), at `img_size` or the config's."""
    dc = data_config
    return eval_transform(img_size or dc.img_size, dc.mean, dc.std, dc.crop_pct, dc.interpolation)


def view_seed(seed: int, index: int, epoch: int) -> int:
    """A 63-bit seed for one augmented view; stable across processes, workers and Python runs."""
    digest = hashlib.blake2b(f"{seed}/{index}/{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class SeededViews(Dataset):
    """Wraps (path, label) samples; item i at epoch e is always the same augmented view.

    Call `set_epoch(e)` before iterating (as with DistributedSampler). The global RNGs are
    forked, so drawing a view never disturbs the training RNG.
    """

    def __init__(self, images: ImageListDataset, transform: Callable, seed: int):
        self.images = images
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, label, _ = self.images[index]
        seed = view_seed(self.seed, index, self.epoch)
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                view = self.transform(image)
            finally:
                random.setstate(python_state)
        return view, label, index
