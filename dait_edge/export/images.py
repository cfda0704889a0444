"""Which images an export checks its artifacts on, preprocessed once as the run's eval transform does it:
test images for parity, training images for int8 calibration, held-out images for int8's accuracy budget.
Seeded random inputs stand in where the dataset cannot be read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dait_edge.errors import UserError
from dait_edge.records import DataConfig

# How many images each job takes by default (export, sweep and the CLI share these).
CALIB_SAMPLES = 256  # int8 calibration: training images
PARITY_SAMPLES = 512  # parity against PyTorch: test images
VAL_SAMPLES = 500  # int8's accuracy budget: held-out validation images

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

    data = ImageListDataset(samples, eval_transform_for(data_config), crop_bottom)
    try:
        images = torch.stack([data[i][0] for i in range(len(data))]).numpy()
    except OSError as err:
        raise UserError(f"cannot read an image: {err}") from err
    labels = np.array([label for _, label in samples], dtype=np.int64)
    return ImageBatch(images.astype(np.float32), labels, source)


def validation_samples(
    spec, summary, config, calib_samples: int = CALIB_SAMPLES, val_samples: int = VAL_SAMPLES
) -> tuple[list, list, str]:
    """(calibration samples, validation samples, where validation came from) of a run's training split,
    never from the test split and never overlapping: what int8's budget and the report's choice judge on.

    - validation: the run's own validation split (recomputed from its manifest's `config` with the seeded
      functions distill used, and trusted only when it has the size `summary` records), else training
      images the calibration does not use; class-balanced, seeded, at most `val_samples`;
    - calibration: `calib_samples` training images evenly spread over what validation left."""
    from dait_edge.data.splits import balanced_subset, evenly_spread, labelled_split

    train = spec.split("train")
    seed = config.seed if config is not None else 0
    held = []
    if summary is not None and summary.val_images and config is not None:  # distill's held-out images
        from dait_edge.methods import validation_fraction

        fraction = validation_fraction(config.method, config.val_fraction)
        held = labelled_split(train, config.labelled_fraction, fraction, config.seed)[1]
    if held and len(held) == summary.val_images:
        validation_indices, source = balanced_subset(train, held, val_samples, seed), RUN_VALIDATION
        kept = set(held)
        calibration = evenly_spread([s for i, s in enumerate(train) if i not in kept], calib_samples)
    else:
        calibration = evenly_spread(train, calib_samples)
        taken = {tuple(s) for s in calibration}
        rest = [i for i, sample in enumerate(train) if tuple(sample) not in taken]
        validation_indices, source = balanced_subset(train, rest, val_samples, seed), TRAIN_NOT_CALIBRATION
    return calibration, [train[i] for i in validation_indices], source


def int8_images(info, calib_samples: int, val_samples: int) -> tuple[ImageBatch, ImageBatch | None]:
    """(calibration, validation) images for int8 of a run (`source.RunInfo`), as `validation_samples` picks
    them, preprocessed; validation None when the dataset cannot be read (an empty batch when the calibration
    takes every training image), calibration then seeded random inputs."""
    from dait_edge.data import load_dataset

    if not (info.dataset and info.data_root):
        return load_images(None, None, "train", calib_samples, info.data_config, seed=1), None
    try:
        spec = load_dataset(info.dataset, info.data_root)
    except UserError:
        return load_images(
            info.dataset, info.data_root, "train", calib_samples, info.data_config, seed=1
        ), None
    config = info.manifest.config if info.manifest else None
    calibration, validation, source = validation_samples(
        spec, info.summary, config, calib_samples, val_samples
    )
    calibration_batch = sample_images(calibration, info.data_config, spec.crop_bottom, "train split")
    if not validation:  # calibration takes every training image: nothing left to judge on
        c, h, w = info.data_config.input_size
        empty = ImageBatch(np.zeros((0, c, h, w), np.float32), np.zeros(0, np.int64), source)
        return calibration_batch, empty
    return calibration_batch, sample_images(validation, info.data_config, spec.crop_bottom, source)


def qat_images(info, calib_samples: int = CALIB_SAMPLES, val_samples: int = VAL_SAMPLES) -> ImageBatch:
    """QAT's fine-tuning images (`source.RunInfo`): the run's training images outside the validation ones
    `int8_images` judges on, preprocessed as the sidecar says. Those the run trained without labels carry
    label -1 (they get the KD term only), and are left out when the run did not train on them at all
    (--no-unlabelled, or a method without distillation terms). A run without a manifest counts as fully
    labelled."""
    from dait_edge.data import load_dataset
    from dait_edge.data.splits import labelled_split

    if not (info.dataset and info.data_root):
        raise UserError(
            "QAT needs the run's training images; the run records no dataset.", setting="data_root"
        )
    spec = load_dataset(info.dataset, info.data_root)
    train = spec.split("train")
    config = info.manifest.config if info.manifest else None
    # the images int8_images judges on with the same counts: never trained on here
    judged = {tuple(s) for s in validation_samples(spec, info.summary, config, calib_samples, val_samples)[1]}
    labelled, held_out, keep_unlabelled = set(range(len(train))), set(), True
    if config is not None:  # the run's own split: its labelled images, its held-out ones (never trained on)
        from dait_edge.methods import validation_fraction

        held = validation_fraction(config.method, config.val_fraction)
        chosen_labelled, chosen_held = labelled_split(train, config.labelled_fraction, held, config.seed)
        # unlabelled images only where the run trained on them: --unlabelled and a method that learns from them
        from dait_edge.methods import METHODS

        learns = METHODS.get(config.method).learns_from_unlabelled if config.method in METHODS else False
        keep_unlabelled = config.train_unlabelled and learns
        labelled, held_out = set(chosen_labelled), set(chosen_held)
    chosen = [
        i
        for i, sample in enumerate(train)
        if i not in held_out and tuple(sample) not in judged and (i in labelled or keep_unlabelled)
    ]
    batch = sample_images([train[i] for i in chosen], info.data_config, spec.crop_bottom, "train split")
    batch.labels = np.array([train[i][1] if i in labelled else -1 for i in chosen], dtype=np.int64)
    return batch
