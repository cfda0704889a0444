"""How good is the teacher before any distillation: the VLM's zero-shot accuracy on a split."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dait_edge.vlm.teacher import VLMTeacher
from dait_edge.vlm.text_embeddings import text_classifier

ZERO_SHOT_SCALE = 100.0  # z_vlm = 100 * v T^T (CLIP's learned logit scale, rounded; method.md)


def zero_shot_logits(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    return ZERO_SHOT_SCALE * image_embeddings @ text_embeddings.t()


def vlm_eval_transform(vlm: VLMTeacher):
    """The VLM's own test-time preprocessing (open_clip's transform for its preprocess config)."""
    import open_clip

    return open_clip.image_transform(
        vlm.image_size,
        is_train=False,
        mean=tuple(vlm.mean.flatten().tolist()),
        std=tuple(vlm.std.flatten().tolist()),
        interpolation=vlm.interpolation,
        resize_mode=vlm.resize_mode,
    )


@torch.no_grad()
def evaluate_zero_shot(
    vlm: VLMTeacher,
    dataset,
    split: str = "test",
    templates: Sequence[str] | None = None,
    batch_size: int = 64,
    workers: int = 0,
    limit: int | None = None,
    cache_dir=None,
    progress: bool = True,
    run_preprocessing=None,
) -> dict:
    """Top-1 / top-5 of the VLM's zero-shot classifier on `dataset` (a DatasetSpec).

    Images are preprocessed as the VLM's own test-time transform does, or, given `run_preprocessing` (a
    records.DataConfig: a run's size, interpolation and crop), cut as that run cuts its images and then
    brought to the VLM's size, as the VLM sees the run's training views: the same split scored the same way
    as the run's students."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from dait_edge.data.images import ImageListDataset
    from dait_edge.data.splits import evenly_spread

    templates = tuple(templates or dataset.prompt_templates)
    classes_text = text_classifier(vlm, dataset.classes, templates, cache_dir=cache_dir)
    # every class is reached even when the split is sorted by class (the first N would score a few)
    samples = evenly_spread(dataset.split(split), limit) if limit else dataset.split(split)
    unit = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # pixels in [0, 1]: to_vlm_input normalises them
    if run_preprocessing is not None:
        from dait_edge.data.transforms import eval_transform

        rp = run_preprocessing
        transform = eval_transform(rp.img_size, *unit, crop_pct=rp.crop_pct, interpolation=rp.interpolation)
    else:
        transform = vlm_eval_transform(vlm)
    loader = DataLoader(
        ImageListDataset(samples, transform=transform, crop_bottom=dataset.crop_bottom),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=vlm.mean.device.type == "cuda",
    )
    k = min(5, dataset.num_classes)
    device = vlm.mean.device
    counts = torch.zeros(3, dtype=torch.float64, device=device)  # top-1, top-5, images: read once at the end
    for images, labels, _ in tqdm(loader, desc=f"zero-shot {split}", disable=not progress, unit="batch"):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if run_preprocessing is not None:
            images = vlm.to_vlm_input(images, *unit)
        logits = zero_shot_logits(vlm.encode_images(images), classes_text)
        topk = logits.topk(k, dim=1).indices
        counts[0] += (topk[:, 0] == labels).sum()
        counts[1] += (topk == labels[:, None]).any(dim=1).sum()
        counts[2] += labels.numel()
    correct1, correct5, seen = counts.tolist()
    seen = int(seen)
    return {
        "dataset": dataset.name,
        "split": split,
        "images": seen,
        "num_classes": dataset.num_classes,
        "templates": list(templates),
        "vlm": vlm.source.model_name,
        "vlm_weights": vlm.source.weights_id,
        "top1": 100.0 * correct1 / max(seen, 1),
        "top5": 100.0 * correct5 / max(seen, 1),
        "chance_top1": 100.0 / dataset.num_classes,
        "preprocessing": "the VLM's own" if run_preprocessing is None else run_preprocessing.describe(),
    }
