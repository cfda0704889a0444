"""Image decoding that always yields RGB, and the Dataset every training/eval loop iterates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from dait_edge.data.base import Sample


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Greyscale, palette, RGBA and CMYK JPEGs all occur in CUB and Stanford Cars."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float greyscale: rescale to 8 bits instead of letting convert() clip to white.
        lo, hi = img.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = img.convert("F").point(lambda v: (v - lo) * scale).convert("L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL warns when palette transparency goes straight to RGB
    return img.convert("RGB")


def load_rgb(path: str | Path, crop_bottom: int = 0) -> Image.Image:
    """Decode `path` fully (so truncated files fail here), as RGB, minus `crop_bottom` bottom rows."""
    with Image.open(path) as img:
        img.load()
        rgb = to_rgb(img)
        if rgb is img:
            rgb = img.copy()  # detach from the file handle closed on leaving the block
    if crop_bottom > 0:
        width, height = rgb.size
        # Never crop an image away entirely; a tiny image keeps at least one row.
        rgb = rgb.crop((0, 0, width, max(1, height - crop_bottom)))
    return rgb


class ImageListDataset:
    """(path, label) samples -> (transform(image), label, index); the index keys per-image caches.

    A map-style dataset (all torch's DataLoader needs) without subclassing torch's Dataset, so that
    decoding images stays torch-free for profiling on a device."""

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable | None = None,
        crop_bottom: int = 0,
    ):
        self.samples = list(samples)
        self.transform = transform
        self.crop_bottom = crop_bottom

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        img = load_rgb(path, self.crop_bottom)
        if self.transform is not None:
            img = self.transform(img)
        return img, label, index

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]
