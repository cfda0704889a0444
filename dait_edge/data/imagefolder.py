"""Any class-per-folder tree with train/ and test/ (or val/), discovered the way torchvision's ImageFolder does."""

from __future__ import annotations

import os
from pathlib import Path

from dait_edge.data._common import finish, pretty
from dait_edge.data.base import DatasetSpec, Sample, register_dataset
from dait_edge.errors import UserError

TITLE = "ImageFolder"
LAYOUT = "train/<class>/*.jpg plus test/<class>/ (or val/<class>/ when there is no test/), same class folders"


def _folder_scanners():
    """torchvision's ImageFolder scanners; on a light install (no torch, e.g. profiling on the device)
    the same walk done here: sorted class folders, files by lower-case extension, symlinks followed."""
    try:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        return IMG_EXTENSIONS, find_classes, make_dataset
    except ModuleNotFoundError:
        pass
    extensions = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

    def find_classes(directory):
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
        if not classes:
            raise FileNotFoundError(f"no class folders in {directory}")
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(directory, class_to_idx, extensions, allow_empty=True):
        found = []
        for cls in sorted(class_to_idx):
            for dirpath, _, files in sorted(os.walk(Path(directory) / cls, followlinks=True)):
                found += [
                    (os.path.join(dirpath, f), class_to_idx[cls])
                    for f in sorted(files)
                    if f.lower().endswith(extensions)
                ]
        return found

    return extensions, find_classes, make_dataset


@register_dataset("imagefolder", description="any train/ + test/ (or val/) class-per-folder tree")
def read_imagefolder(root: Path) -> DatasetSpec:
    IMG_EXTENSIONS, find_classes, make_dataset = _folder_scanners()
    root = Path(root)
    # test/ is the evaluation split; when only val/ exists it plays that role.
    names = ["train", "test", "val"] if (root / "test").is_dir() else ["train", "val"]
    present = [n for n in names if (root / n).is_dir()]
    if "train" not in present or len(present) < 2:
        raise UserError(
            f"{TITLE} layout not found under {root}: need train/ and test/ (or val/); found "
            f"{', '.join(p + '/' for p in present) or 'neither'}; expected {LAYOUT}; point the data root at it",
            setting="data_root",
        )

    folders: dict[str, list[str]] = {}
    for name in present:
        try:
            folders[name], _ = find_classes(root / name)
        except FileNotFoundError:
            raise UserError(
                f"{root / name} has no class folders; expected {LAYOUT}; point the data root at it",
                setting="data_root",
            ) from None
    for name in present[1:]:
        if folders[name] != folders["train"]:
            only_train = sorted(set(folders["train"]) - set(folders[name]))
            only_other = sorted(set(folders[name]) - set(folders["train"]))
            raise UserError(
                f"{root}: train/ and {name}/ have different class folders (only in train/: "
                f"{', '.join(only_train) or 'none'}; only in {name}/: {', '.join(only_other) or 'none'}); "
                f"make both hold the same class folders"
            )

    class_to_idx = {c: i for i, c in enumerate(folders["train"])}
    splits: dict[str, list[Sample]] = {}
    for name in present:
        # allow_empty: a class without images is reported by `data inspect`, not fatal here.
        found = make_dataset(root / name, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        split = "test" if name == "val" and "test" not in present else name
        splits[split] = [(Path(p), y) for p, y in found]

    return finish(
        "imagefolder",
        TITLE,
        root,
        [pretty(c) for c in folders["train"]],
        splits,
        prompt_templates=("a photo of a {}.",),
        extra={"class_folders": folders["train"], "test_folder": "test" if "test" in present else "val"},
    )
