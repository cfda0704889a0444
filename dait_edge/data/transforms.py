"""The evaluation transform in a model's normalisation (training views are cut in `data.views`)."""

from __future__ import annotations

from collections.abc import Sequence


def _interpolation(name: str):
    from torchvision.transforms import InterpolationMode

    return (
        InterpolationMode(name) if name in ("bilinear", "bicubic", "nearest") else InterpolationMode.BILINEAR
    )


def eval_transform(
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
):
    """Resize the short side to img_size / crop_pct, centre crop (the timm / torchvision eval recipe)."""
    from torchvision import transforms as T

    resize = T.Resize(int(round(img_size / crop_pct)), interpolation=_interpolation(interpolation))
    return T.Compose([resize, T.CenterCrop(img_size), T.ToTensor(), T.Normalize(mean, std)])


def eval_transform_for(data_config, img_size: int | None = None):
    """`eval_transform` in a model's normalisation (a records.DataConfig), at `img_size` or the config's."""
    dc = data_config
    return eval_transform(img_size or dc.img_size, dc.mean, dc.std, dc.crop_pct, dc.interpolation)
