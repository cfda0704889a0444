"""Does an artifact compute what the PyTorch student computes? And how fast, on this CPU?

Images are preprocessed once (the run's eval transform) into one array; the PyTorch logits are
computed once; every artifact is then run by ONNX Runtime on the same array.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dait_edge.records import DataConfig, Parity

TEST_SPLIT = "test split"
RANDOM = "random"
RUN_VALIDATION = "run validation split"
TRAIN_NOT_CALIBRATION = "train split, not calibration"


@dataclass
class ImageBatch:
    """Preprocessed images (N,C,H,W float32), their labels (None for random inputs) and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str  # TEST_SPLIT / "train split" / RANDOM
    note: str = ""


def load_images(
    dataset: str | None,
    data_root: str | None,
    split: str,
    limit: int,
    data_config: DataConfig,
    seed: int = 0,
) -> ImageBatch:
    """Up to `limit` images of `split`, evenly spread over it; seeded random inputs when unreachable."""
    from dait_edge.errors import UserError

    c, h, w = data_config.input_size
    note = ""
    if dataset and data_root:
        try:
            return _dataset_images(dataset, data_root, split, limit, data_config)
        except UserError as err:
            note = f"data unreachable ({err}); used seeded random inputs"
    else:
        note = "no dataset recorded in the run; used seeded random inputs"
    rng = np.random.default_rng(seed)
    # Standard-normal inputs look like normalised images to the network (mean 0, std 1 per channel).
    images = rng.standard_normal((max(1, limit), c, h, w), dtype=np.float32)
    return ImageBatch(images, None, RANDOM, note)


def _dataset_images(dataset, data_root, split, limit, data_config: DataConfig) -> ImageBatch:
    from dait_edge.data import load_dataset
    from dait_edge.data.splits import evenly_spread
    from dait_edge.errors import UserError

    spec = load_dataset(dataset, data_root)
    samples = spec.split(split)
    if not samples:
        raise UserError(f"the {split} split of {data_root} is empty")
    return sample_images(evenly_spread(samples, limit), data_config, spec.crop_bottom, f"{split} split")


def sample_images(samples, data_config: DataConfig, crop_bottom: int, source: str) -> ImageBatch:
    """`samples` (path, label) preprocessed as the run's eval transform does it."""
    import torch

    from dait_edge.data.images import ImageListDataset
    from dait_edge.data.transforms import eval_transform_for
    from dait_edge.errors import UserError

    data = ImageListDataset(samples, eval_transform_for(data_config), crop_bottom)
    try:
        images = torch.stack([data[i][0] for i in range(len(data))]).numpy()
    except OSError as err:
        raise UserError(f"cannot read an image: {err}") from err
    labels = np.array([label for _, label in samples], dtype=np.int64)
    return ImageBatch(images.astype(np.float32), labels, source)


def int8_images(info, calib_samples: int, val_samples: int) -> tuple[ImageBatch, ImageBatch | None]:
    """(calibration, validation) images for int8, never from the test split and never overlapping:

    - validation: the run's own validation split (recomputed from its manifest with the seeded functions
      distill used, and trusted only when it has the size the run's summary records), else training images
      the calibration does not use; class-balanced, seeded, at most `val_samples`; None when the dataset
      cannot be read (an empty batch when the calibration takes every training image);
    - calibration: `calib_samples` training images evenly spread over what validation left (seeded random
      inputs when the dataset cannot be read)."""
    from dait_edge.data import load_dataset
    from dait_edge.data.splits import balanced_subset, evenly_spread, labelled_split
    from dait_edge.errors import UserError
    from dait_edge.methods import validation_fraction

    if not (info.dataset and info.data_root):
        return load_images(None, None, "train", calib_samples, info.data_config, seed=1), None
    try:
        spec = load_dataset(info.dataset, info.data_root)
    except UserError:
        return load_images(
            info.dataset, info.data_root, "train", calib_samples, info.data_config, seed=1
        ), None
    train = spec.split("train")
    config = info.manifest.config if info.manifest else None
    seed = config.seed if config is not None else 0
    held = []
    if info.summary.val_images and config is not None:  # the images distill held out, recomputed
        fraction = validation_fraction(config.method, config.val_fraction)
        held = labelled_split(train, config.labelled_fraction, fraction, config.seed)[1]
    if held and len(held) == info.summary.val_images:
        validation_indices, source = balanced_subset(train, held, val_samples, seed), RUN_VALIDATION
        kept = set(held)
        calibration = evenly_spread([s for i, s in enumerate(train) if i not in kept], calib_samples)
    else:
        calibration = evenly_spread(train, calib_samples)
        taken = {tuple(s) for s in calibration}
        rest = [i for i, sample in enumerate(train) if tuple(sample) not in taken]
        validation_indices, source = balanced_subset(train, rest, val_samples, seed), TRAIN_NOT_CALIBRATION
    calibration_batch = sample_images(calibration, info.data_config, spec.crop_bottom, "train split")
    if not validation_indices:  # calibration takes every training image: nothing left to judge on
        c, h, w = info.data_config.input_size
        empty = ImageBatch(np.zeros((0, c, h, w), np.float32), np.zeros(0, np.int64), source)
        return calibration_batch, empty
    validation = sample_images(
        [train[i] for i in validation_indices], info.data_config, spec.crop_bottom, source
    )
    return calibration_batch, validation


def torch_logits(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    import torch

    model = model.eval().cpu()
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            outs.append(model(torch.from_numpy(images[i : i + batch])).float().numpy())
    return np.concatenate(outs)


def ort_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT's warnings about unused initialisers are not the user's concern
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_logits(path: str | Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
    session = ort_session(path)
    name = session.get_inputs()[0].name
    return np.concatenate(
        [
            session.run(None, {name: images[i : i + batch]})[0].astype(np.float32)
            for i in range(0, len(images), batch)
        ]
    )


def _top1(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return round(float((logits.argmax(1) == labels).mean() * 100), 3)


def compare(reference: np.ndarray, artifact: np.ndarray, batch: ImageBatch, threshold: float) -> Parity:
    """The sidecar's `parity` block: agreement of the top-1 class, logit drift, accuracy of each."""
    agreement = float((reference.argmax(1) == artifact.argmax(1)).mean() * 100)
    return Parity(
        samples=int(len(reference)),
        agreement=round(agreement, 3),
        max_abs_diff=float(np.abs(reference - artifact).max()),
        top1_pytorch=_top1(reference, batch.labels),
        top1_artifact=_top1(artifact, batch.labels),
        threshold=threshold,
        passed=agreement >= threshold,
        data=batch.source,
        note=batch.note or None,
    )


def latency_ms(
    path: str | Path, input_size: list[int] | tuple[int, ...], runs: int = 20, warmup: int = 3
) -> float:
    """Median ORT CPU latency at batch 1: a quick relative measure for the summary, not a benchmark."""
    session = ort_session(path)
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, *input_size), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def speed_note(name: str, ms: float, fp32_ms: float) -> str:
    ratio = fp32_ms / ms if ms > 0 else float("inf")
    if ratio >= 1.05:
        verdict = f"{ratio:.1f}x faster than fp32"
    elif ratio <= 0.95:
        verdict = f"{1 / ratio:.1f}x slower than fp32"
    else:
        verdict = "as fast as fp32"
    return f"{name} {verdict} on this CPU (ORT, batch 1: {ms:.2f} ms vs {fp32_ms:.2f} ms)"
