"""Shared test builders and fixtures: tiny datasets in each benchmark's real on-disk layout, a tiny OpenCLIP
model, fake runs written through the typed records, and the one-line-error assertion.

Nothing can be downloaded here, so every test builds what it reads. Builders are plain functions exposed
through fixtures (`layouts`, `tiny_vlm_files`, `fake_run`, `assert_user_error`); expensive things that many
modules read (a tiny CUB tree, a tiny VLM checkpoint, an exported run) are session fixtures, built once.
Images are small JPEGs whose colour depends on the class, so a model can learn them.
"""

from __future__ import annotations

import colorsys
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

SIZE = (32, 24)  # width, height


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Caches (class-text and VLM image embeddings) in a temp folder, never in the user's ~/.cache: a
    run that does not name --cache-dir must not read or leave anything there."""
    import os

    before = os.environ.get("DAIT_EDGE_CACHE")
    os.environ["DAIT_EDGE_CACHE"] = str(tmp_path_factory.mktemp("dait_edge_cache"))
    yield
    if before is None:
        os.environ.pop("DAIT_EDGE_CACHE", None)
    else:
        os.environ["DAIT_EDGE_CACHE"] = before


@dataclass
class Fixture:
    root: Path  # what to pass as --data-root
    classes: list[str]  # expected class names, index = label
    train: int
    test: int
    val: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def class_colour(label: int, num_classes: int) -> tuple[int, int, int]:
    """Evenly spaced, saturated hues: easy to tell apart for a tiny model."""
    r, g, b = colorsys.hsv_to_rgb(label / max(1, num_classes), 0.9, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def write_jpeg(
    path: Path,
    colour: tuple[int, int, int],
    size: tuple[int, int] = SIZE,
    mode: str = "RGB",
    seed: int = 0,
    banner_rows: int = 0,
) -> Path:
    """A JPEG of `colour` plus mild noise; `banner_rows` white rows at the bottom (Aircraft's banner)."""
    width, height = size
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, np.int16) + rng.integers(-12, 13, (height, width, 3)), 0, 255)
    if banner_rows:
        pixels[height - banner_rows :] = 255
    img = Image.fromarray(pixels.astype(np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=95)
    return path


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


# ---------------------------------------------------------------------------------------- CUB

CUB_FOLDERS = [
    "Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani",
    "Crested_Auklet", "Least_Auklet", "Parakeet_Auklet", "Rhinoceros_Auklet",
]  # fmt: skip


def make_cub(
    root: Path,
    classes: int = 3,
    train_per_class: int = 2,
    test_per_class: int = 1,
    size: tuple[int, int] = SIZE,
) -> Fixture:
    """CUB_200_2011 layout in `root`. Class 0's first image is greyscale, class 1's first is CMYK."""
    root = Path(root)
    names, lines = [], {"images": [], "labels": [], "split": [], "classes": []}
    extra: dict = {}
    image_id = 0
    for c in range(classes):
        base = CUB_FOLDERS[c] if c < len(CUB_FOLDERS) else f"Species_{c}"
        folder = f"{c + 1:03d}.{base}"
        names.append(base.replace("_", " "))
        lines["classes"].append(f"{c + 1} {folder}")
        for k in range(train_per_class + test_per_class):
            image_id += 1
            rel = f"{folder}/{base}_{k + 1:04d}_{image_id}.jpg"
            mode = "RGB"
            if k == 0 and c == 0:
                mode, extra["greyscale"] = "L", root / "images" / rel
            elif k == 0 and c == 1:
                mode, extra["cmyk"] = "CMYK", root / "images" / rel
            write_jpeg(root / "images" / rel, class_colour(c, classes), size, mode, seed=image_id)
            lines["images"].append(f"{image_id} {rel}")
            lines["labels"].append(f"{image_id} {c + 1}")
            lines["split"].append(f"{image_id} {1 if k < train_per_class else 0}")
    _write_lines(root / "images.txt", lines["images"])
    _write_lines(root / "image_class_labels.txt", lines["labels"])
    _write_lines(root / "train_test_split.txt", lines["split"])
    _write_lines(root / "classes.txt", lines["classes"])
    return Fixture(root, names, classes * train_per_class, classes * test_per_class, extra=extra)


# ----------------------------------------------------------------------------------- Aircraft

AIRCRAFT_VARIANTS = ["707-320", "A300B4", "F/A-18", "Cessna 172", "DHC-8-100", "Boeing 717"]


def make_aircraft(
    root: Path,
    classes: int = 3,
    train_per_class: int = 2,
    val_per_class: int = 1,
    test_per_class: int = 1,
    size: tuple[int, int] = (32, 48),
) -> Fixture:
    """fgvc-aircraft-2013b/data/ in `root`; every image has a white 20 px banner at the bottom."""
    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    variants = [AIRCRAFT_VARIANTS[c] if c < len(AIRCRAFT_VARIANTS) else f"Model-{c}" for c in range(classes)]
    split_lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    image_id = 1000000
    for c, variant in enumerate(variants):
        for split, n in (("train", train_per_class), ("val", val_per_class), ("test", test_per_class)):
            for _ in range(n):
                image_id += 1
                write_jpeg(
                    data / "images" / f"{image_id:07d}.jpg",
                    class_colour(c, classes),
                    size,
                    seed=image_id,
                    banner_rows=20,
                )
                split_lines[split].append(f"{image_id:07d} {variant}")
    split_lines["trainval"] = split_lines["train"] + split_lines["val"]
    _write_lines(data / "variants.txt", variants)
    for split, lines in split_lines.items():
        _write_lines(data / f"images_variant_{split}.txt", lines)
    return Fixture(
        Path(root),
        variants,
        train=classes * (train_per_class + val_per_class),  # our train split is trainval
        test=classes * test_per_class,
        val=classes * val_per_class,
    )


# --------------------------------------------------------------------------------------- Cars

CAR_MODELS = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012", "BMW M3 Coupe 2012"]


def _cars_annotations(entries: list[tuple[str, int]]) -> np.ndarray:
    """A 1xN MATLAB struct array as the devkit's *_annos.mat hold it (class is 1-based)."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    arr = np.zeros((1, len(entries)), dtype=[(f, "O") for f in fields])
    for i, (fname, label) in enumerate(entries):
        box = [np.array([[v]], np.uint16) for v in (1, 1, SIZE[0], SIZE[1])]
        arr[0, i] = (*box, np.array([[label + 1]], np.uint8), np.array([fname]))
    return arr


def make_cars(root: Path, classes: int = 3, train_per_class: int = 2, test_per_class: int = 1) -> Fixture:
    """stanford_cars/ (devkit layout torchvision's StanfordCars reads) in `root`."""
    import scipy.io

    base = Path(root) / "stanford_cars"
    models = [CAR_MODELS[c] if c < len(CAR_MODELS) else f"Car Model {c} 2012" for c in range(classes)]
    entries: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c in range(classes):
            for _ in range(n):
                fname = f"{len(entries[split]) + 1:05d}.jpg"
                write_jpeg(base / f"cars_{split}" / fname, class_colour(c, classes), seed=len(entries[split]))
                entries[split].append((fname, c))
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([models], dtype=object)})
    scipy.io.savemat(
        base / "devkit" / "cars_train_annos.mat", {"annotations": _cars_annotations(entries["train"])}
    )
    scipy.io.savemat(
        base / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(entries["test"])}
    )
    return Fixture(Path(root), models, classes * train_per_class, classes * test_per_class)


# --------------------------------------------------------------------------------------- Dogs

DOG_BREEDS = ["Chihuahua", "Japanese_spaniel", "Mexican_hairless", "Maltese_dog", "Pekinese"]


def _dogs_list(files: list[str], labels: list[int]) -> dict:
    """train_list.mat / test_list.mat contents: Nx1 cells of paths and an Nx1 double of 1-based labels."""
    cells = np.empty((len(files), 1), dtype=object)
    annos = np.empty((len(files), 1), dtype=object)
    for i, f in enumerate(files):
        cells[i, 0] = np.array([f])
        annos[i, 0] = np.array([f.removesuffix(".jpg")])
    return {"file_list": cells, "annotation_list": annos, "labels": np.array(labels, float).reshape(-1, 1)}


def make_dogs(root: Path, classes: int = 3, train_per_class: int = 2, test_per_class: int = 1) -> Fixture:
    """Images/<wnid-breed>/ and lists/{train,test}_list.mat in `root`."""
    import scipy.io

    root = Path(root)
    folders = [
        f"n020856{20 + c:02d}-{DOG_BREEDS[c] if c < len(DOG_BREEDS) else f'Breed_{c}'}"
        for c in range(classes)
    ]
    lists: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for c, folder in enumerate(folders):
        wnid = folder.split("-")[0]
        for k in range(train_per_class + test_per_class):
            rel = f"{folder}/{wnid}_{k + 1}.jpg"
            write_jpeg(root / "Images" / rel, class_colour(c, classes), seed=c * 100 + k)
            files, labels = lists["train" if k < train_per_class else "test"]
            files.append(rel)
            labels.append(c + 1)
    (root / "lists").mkdir(parents=True, exist_ok=True)
    for split, (files, labels) in lists.items():
        scipy.io.savemat(root / "lists" / f"{split}_list.mat", _dogs_list(files, labels))
    names = [f.split("-", 1)[1].replace("_", " ") for f in folders]
    return Fixture(root, names, classes * train_per_class, classes * test_per_class)


# ------------------------------------------------------------------------------------ NABirds

# (id, name); ids chosen so numeric and text order differ (95 < 295 < 1000, but "1000" < "295" < "95")
NABIRDS_LEAVES = [
    (295, "Red-tailed Hawk (Adult)"),
    (95, "Wood Duck"),
    (1000, "American Robin"),
    (313, "Mallard (Female/Juvenile)"),
    (446, "Blue Jay"),
]
NABIRDS_INTERNAL = [(0, "Birds", None), (1, "Perching Birds", 0), (2, "Waterfowl", 0), (22, "Ducks", 2)]


def make_nabirds(root: Path, leaves: int = 3, train_per_class: int = 2, test_per_class: int = 1) -> Fixture:
    """NABirds layout in `root`: a 3-level hierarchy whose leaves carry all the images."""
    root = Path(root)
    chosen = NABIRDS_LEAVES[:leaves] + [(2000 + k, f"Bird {k}") for k in range(leaves - len(NABIRDS_LEAVES))]
    classes = [f"{i} {n}" for i, n, _ in NABIRDS_INTERNAL] + [f"{i} {n}" for i, n in chosen]
    hierarchy = [f"{i} {p}" for i, _, p in NABIRDS_INTERNAL if p is not None]
    hierarchy += [f"{i} {1 if k % 2 else 22}" for k, (i, _) in enumerate(chosen)]
    order = sorted(i for i, _ in chosen)
    lines: dict[str, list[str]] = {"images": [], "labels": [], "split": []}
    for leaf_id, _ in chosen:
        label = order.index(leaf_id)
        for k in range(train_per_class + test_per_class):
            image_uuid = uuid.UUID(int=leaf_id * 1000 + k)
            rel = f"{leaf_id:04d}/{image_uuid.hex}.jpg"
            write_jpeg(root / "images" / rel, class_colour(label, leaves), seed=leaf_id + k)
            lines["images"].append(f"{image_uuid} {rel}")
            lines["labels"].append(f"{image_uuid} {leaf_id}")
            lines["split"].append(f"{image_uuid} {1 if k < train_per_class else 0}")
    _write_lines(root / "classes.txt", sorted(classes, key=lambda s: int(s.split()[0])))
    _write_lines(root / "hierarchy.txt", hierarchy)
    _write_lines(root / "images.txt", lines["images"])
    _write_lines(root / "image_class_labels.txt", lines["labels"])
    _write_lines(root / "train_test_split.txt", lines["split"])
    names = dict(chosen)
    return Fixture(
        root,
        [names[i] for i in order],
        leaves * train_per_class,
        leaves * test_per_class,
        extra={"leaf_ids": order},
    )


# -------------------------------------------------------------------------------- ImageFolder

FOLDER_CLASSES = ["golden_retriever", "husky", "pug", "tabby_cat", "zebra"]


def make_imagefolder(
    root: Path,
    classes: int = 3,
    train_per_class: int = 2,
    test_per_class: int = 1,
    test_dir: str = "test",
) -> Fixture:
    """train/<class>/ and `test_dir`/<class>/ in `root` (folder names sort in label order)."""
    root = Path(root)
    folders = [FOLDER_CLASSES[c] if c < len(FOLDER_CLASSES) else f"zz_class_{c:03d}" for c in range(classes)]
    for c, folder in enumerate(folders):
        for split, n in (("train", train_per_class), (test_dir, test_per_class)):
            for k in range(n):
                write_jpeg(root / split / folder / f"{k}.jpg", class_colour(c, classes), seed=c * 100 + k)
    return Fixture(
        root, [f.replace("_", " ") for f in folders], classes * train_per_class, classes * test_per_class
    )


def make_textures(
    root: Path,
    classes: int = 6,
    train_per_class: int = 24,
    test_per_class: int = 20,
    size: int = 80,
    seed: int = 0,
) -> Fixture:
    """An ImageFolder tree of fine stripes under noise, one orientation per class (period 3.5 px, random
    phase and contrast): data where the resize interpolation matters, because bilinear and bicubic
    downsampling keep different amounts of the stripes' contrast."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    names = [f"stripes_{round(180 * c / classes):03d}deg" for c in range(classes)]
    for c, name in enumerate(names):
        theta = np.pi * c / classes
        for split, n in (("train", train_per_class), ("test", test_per_class)):
            for k in range(n):
                phase, contrast = rng.uniform(0, 2 * np.pi), rng.uniform(40, 90)
                wave = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / 3.5 + phase)
                grey = 128 + contrast * wave + rng.normal(0, 30, (size, size))
                tint = rng.uniform(0.8, 1.2, 3)
                pixels = np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)
                (root / split / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / split / name / f"{k}.png")
    return Fixture(root, names, classes * train_per_class, classes * test_per_class)


# name in the DATASETS registry -> the builder of its on-disk layout (the contract test checks every
# registered dataset has one)
LAYOUT_BUILDERS = {
    "cub": make_cub,
    "aircraft": make_aircraft,
    "cars": make_cars,
    "dogs": make_dogs,
    "nabirds": make_nabirds,
    "imagefolder": make_imagefolder,
}


@pytest.fixture(scope="session")
def layouts():
    """The layout builders: layouts.cub(root, classes=3, ...), ..., layouts.by_name["cub"]."""
    return SimpleNamespace(
        **LAYOUT_BUILDERS, by_name=LAYOUT_BUILDERS, write_jpeg=write_jpeg, class_colour=class_colour
    )


@pytest.fixture(scope="session")
def tiny_cub(tmp_path_factory) -> Fixture:
    """3 classes, 4 training and 3 test images each: what export, profile and the contracts read."""
    return make_cub(
        tmp_path_factory.mktemp("tiny_cub") / "CUB", classes=3, train_per_class=4, test_per_class=3
    )


# ------------------------------------------------------------------------------- a tiny VLM

TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_tiny_config(folder: Path, name: str = "tiny_test_clip", **overrides) -> Path:
    config = json.loads(json.dumps(TINY_CLIP_CONFIG))
    config.update(overrides)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def build_tiny_model(config_path: Path, seed: int = 0):
    import open_clip
    import torch

    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model, _, _ = open_clip.create_model_and_transforms(config_path.stem, pretrained=None)
    return model


def write_tiny_checkpoint(config_path: Path, out: Path, seed: int = 0) -> dict:
    """Save a seeded tiny model as .safetensors or .pt (by suffix); returns its state dict."""
    import torch
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in build_tiny_model(config_path, seed).state_dict().items()}
    if out.suffix == ".safetensors":
        save_file(state, str(out))
    else:
        torch.save({"state_dict": state}, out)
    return state


@dataclass
class TinyVLM:
    config: Path  # an OpenCLIP model-config JSON
    weights: Path  # a .safetensors checkpoint of it


@pytest.fixture(scope="session")
def tiny_vlm_files():
    """The tiny-VLM builders: .config(folder), .checkpoint(config, out, seed), .model(config, seed), .CONFIG."""
    return SimpleNamespace(
        config=write_tiny_config,
        checkpoint=write_tiny_checkpoint,
        model=build_tiny_model,
        CONFIG=TINY_CLIP_CONFIG,
    )


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> TinyVLM:
    """One tiny VLM (config + seeded checkpoint) every module that only needs 'a VLM' shares."""
    folder = tmp_path_factory.mktemp("tiny_vlm")
    config = write_tiny_config(folder)
    write_tiny_checkpoint(config, folder / "vlm.safetensors", seed=7)
    return TinyVLM(config, folder / "vlm.safetensors")


# ------------------------------------------------------------------------- tiny distill runs


# What every tiny offline CPU run shares: timm's test models, 32 px, batch 4, on the CPU, no workers.
TINY_RUN = dict(
    dataset="cub",
    student="test_efficientnet",
    teacher="test_resnet",
    img_size=32,
    batch_size=4,
    workers=0,
    device="cpu",
)


def _tiny_values(data_root, vlm_config, vlm_weights, folder: Path) -> dict:
    folder = Path(folder)
    return TINY_RUN | dict(
        data_root=str(data_root),
        vlm=str(vlm_config),
        vlm_pretrained=str(vlm_weights),
        out=str(folder / "run"),
        teacher_cache=str(folder / "teachers"),
        cache_dir=str(folder / "cache"),
    )


def make_tiny_config(data_root, vlm_config, vlm_weights, folder: Path, **overrides):
    """A `DistillConfig` for a tiny offline CPU run on a fixture tree (`TINY_RUN`), random init, no progress
    bars; the run, teacher cache and text/VLM caches under `folder`. Epochs and the rest come in `overrides`."""
    from dait_edge.config import DistillConfig

    values = _tiny_values(data_root, vlm_config, vlm_weights, folder) | dict(pretrained=False, progress=False)
    return DistillConfig(**(values | {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()}))


def make_tiny_args(data_root, vlm_config, vlm_weights, folder: Path, *flags: str, **options) -> list[str]:
    """The same run as `dait-edge distill` arguments (one epoch unless given, --no-pretrained, --json);
    `options` override, None drops one."""
    values = _tiny_values(data_root, vlm_config, vlm_weights, folder) | {"epochs": 1} | options
    args = ["distill"]
    for name, value in values.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return [*args, "--no-pretrained", "--json", *flags]


@pytest.fixture(scope="session")
def tiny_config():
    """`tiny_config(data_root, vlm_config, vlm_weights, folder, **overrides) -> DistillConfig`."""
    return make_tiny_config


@pytest.fixture(scope="session")
def tiny_args():
    """`tiny_args(data_root, vlm_config, vlm_weights, folder, *flags, **options) -> distill CLI arguments`."""
    return make_tiny_args


# ------------------------------------------------------------------------- fake runs (records)


def make_fake_run(
    folder: Path,
    student: str,
    data: Fixture,
    *,
    img_size: int = 32,
    seed: int = 0,
    dataset: str = "cub",
    **summary,
) -> Path:
    """A run directory as `dait-edge distill` writes it (summary and manifest records, seeded student
    weights as last and best), without training; method "dait_f" and a PyTorch top-1 of 0 unless given."""
    from dait_edge.distill.untrained import write_untrained_run

    fields = {"method": "dait_f", "student_top1": 0.0, "teacher": "regnety_016"} | summary
    return write_untrained_run(
        folder / f"run-{student}",
        student,
        dataset=dataset,
        data_root=data.root,
        classes=data.classes,
        train_images=data.train,
        img_size=img_size,
        seed=seed,
        **fields,
    )


@pytest.fixture(scope="session")
def fake_run():
    """`fake_run(folder, student, data, img_size=32, seed=0, **summary_fields) -> run dir`."""
    return make_fake_run


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory, tiny_cub):
    """A run of timm's tiny `test_efficientnet` (depthwise convolutions and squeeze-excite, like the real
    students, at a tenth of the export time) on `tiny_cub`, exported to ONNX fp32 and int8 u8s8 (and
    executorch-fp32 and litert-int8 where those extras are installed, see MOBILE_EXTRAS): what
    profile, the light install and the runner contracts measure. Tests must not change it (copy it first).
    The registered students go through export and profile in the demo test."""
    from dait_edge.export.api import export_run

    run = make_fake_run(
        tmp_path_factory.mktemp("exported"), "test_efficientnet", tiny_cub, params=123, macs=456
    )
    formats = ["onnx", "onnx-int8-u8s8"] + [
        f for kind in MOBILE_EXTRAS if mobile_extra(kind) for f in MOBILE_EXTRAS[kind]
    ]
    export_run(run, formats=formats, calib_samples=8, measure_speed=False, log=lambda m: None)
    return run


# The on-device runtimes' files exported into `exported_run` where their optional packages are installed
# (`make test` installs them; a plain `pip install -e .[full,dev]` does not, and their tests then skip):
# one per runtime and precision, each lowering costs seconds. executorch-int8 is built (with its fallback)
# in test_mobile_runtimes' synthetic-model test, litert-fp32 by the bench tool's test.
MOBILE_EXTRAS = {
    "executorch": ("executorch-fp32",),
    "litert": ("litert-int8",),
}
_MOBILE_MODULES = {"executorch": ("executorch",), "litert": ("ai_edge_litert", "litert_torch")}


def mobile_extra(kind: str) -> bool:
    """Are the packages of `kind`'s extra installed (both its runtime and its exporter)?"""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in _MOBILE_MODULES[kind])


def needs_mobile(kind: str):
    """A skip mark naming the extra to install."""
    extra = "executorch" if kind == "executorch" else "litert,litert-export"
    return pytest.mark.skipif(
        not mobile_extra(kind),
        reason=f"needs the {kind} extra: pip install -e '.[{extra}]' (make test installs it)",
    )


# ---------------------------------------------------------------------------------- tools

REPO = Path(__file__).resolve().parent.parent


def _run_tool(script: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / script), *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def run_tool():
    """`run_tool(script, *args, timeout=600)`: `python tools/SCRIPT ARGS` from the repository root, with this
    checkout's dait_edge, output captured (the benchmarks and the GPU check run as users run them)."""
    return _run_tool


# ---------------------------------------------------------------------------------- assertions


def _assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture(scope="session")
def assert_user_error():
    """`assert_user_error(click_result, *fragments)`: exit 2, one `error:` line holding every fragment."""
    return _assert_user_error


def make_sidecar(**fields):
    """A complete sidecar record with placeholder values; `fields` override (format, precision, ...)."""
    from dait_edge.records import Sidecar, SourceCheckpoint

    values = dict(
        format="onnx-fp32",
        runtime="onnxruntime",
        precision="fp32",
        variant=None,
        input_name="input",
        output_name="logits",
        output="logits",
        input_size=[3, 32, 32],
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        interpolation="bilinear",
        crop_pct=0.875,
        classes=["a", "b", "c"],
        opset=18,
        dynamic_batch=True,
        student="s",
        dataset=None,
        method=None,
        source_checkpoint=SourceCheckpoint(sha256="0" * 64),
        config_hash=None,
    )
    return Sidecar(**(values | fields))


@pytest.fixture(scope="session")
def sidecar():
    """`sidecar(**fields) -> Sidecar`: a complete sidecar record for artifacts the test writes by hand."""
    return make_sidecar


# ------------------------------------------------------------------------------ profile rows (records)

PROFILE = "x86-ort-cpu-int8"
PRECISIONS = {"onnx-fp32": "fp32", "onnx-fp16": "fp16", "onnx-int8-u8s8": "int8", "onnx-int8-s8s8": "int8"}


def make_measured(profile: str = PROFILE, **fields):
    """How a result was measured: 16-CPU x86 host, ORT 1.32, 10 + 50 iterations, no latency budget."""
    import dataclasses

    from dait_edge.records import Hardware, Measured

    hardware = Hardware(
        machine="x86_64",
        processor="x86_64",
        cpu="",
        cpu_count=16,
        platform="Linux-6.8-x86_64",
        versions={"onnxruntime": "1.32.0"},
    )
    measured = Measured(
        profile=profile,
        profile_file=f"/nowhere/{profile}.toml",
        runtime="onnxruntime",
        threads="runtime default",
        warmup=10,
        iterations=50,
        duration_s=0.0,
        latency_budget_ms=None,
        timing="single stream",
        memory="peak resident set size",
        hardware=hardware,
        created="2025-01-01T12:00:00+0000",
    )
    return dataclasses.replace(measured, **fields)


def make_row(
    fmt: str, p50: float, top1=None, *, student="resnet18", profile=PROFILE, batch=1, parity=True, **fields
):
    """A profile row as `profile_artifacts` makes it, with p50 and top-1 chosen by the test; `fields`
    override any other field (p99 sets the latency's p99)."""
    import dataclasses

    from dait_edge.records import Latency, ProfileRow

    p99 = fields.pop("p99", p50 * 1.2)
    backend = fields.get("backend", "onnxruntime")
    row = ProfileRow(
        artifact=f"runs/{student}/export/{student}-{fmt}.onnx",
        profile=profile,
        format=fmt,
        student=student,
        model=None,
        dataset="cub",
        method="dait_f",
        backend=backend,
        label=fmt if backend in ("onnxruntime", "tensorrt") else f"{fmt} ({backend})",
        reference=fmt == "checkpoint",
        providers=["CPUExecutionProvider"],
        precision=PRECISIONS.get(fmt, "fp32"),
        batch=batch,
        latency_ms=Latency(mean=p50, p50=p50, p90=p50 * 1.1, p99=p99, min=p50 * 0.9, samples=50),
        throughput_ips=1e3 * batch / p50,
        peak_mem_mb=120.0,
        device_mem_mb=None,
        size_mb=44.7 if "fp32" in fmt else 11.3,
        params=11_689_512,
        macs=1_824_033_792,
        top1=top1,
        top1_data=None,
        torch_top1=None,
        parity_passed=parity,
        within_budget=None,
    )
    return dataclasses.replace(row, **fields)


@pytest.fixture(scope="session")
def profile_row():
    """`profile_row(fmt, p50, top1=None, student=..., profile=..., batch=1, parity=True, **fields)`."""
    return make_row


@pytest.fixture(scope="session")
def measured():
    """`measured(profile=..., **fields) -> Measured`."""
    return make_measured
