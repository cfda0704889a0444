"""Small helpers every dataset reader shares: finding the layout, parsing id files, final checks."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dait_edge.data.base import DatasetSpec, Sample
from dait_edge.errors import UserError


def locate(root: Path, markers: Iterable[str], subfolders: Iterable[str] = ()) -> Path:
    """`root`, or the first of `root/<subfolder>` holding every marker (users often point at the
    folder the archive was extracted into, one level above the dataset itself)."""
    markers = list(markers)
    for candidate in (root, *(root / sub for sub in subfolders)):
        if all((candidate / m).exists() for m in markers):
            return candidate
    return root


def torchvision_root(root: Path, folder: str, marker: str, title: str, layout: str) -> Path:
    """The parent of `folder` (the name torchvision's reader insists on), given that folder or its parent.

    `marker` is a path inside `folder` that identifies the dataset when the folder was renamed.
    """
    if (root / folder).is_dir():
        return root
    if (root / marker).exists():
        if root.name == folder:
            return root.parent
        raise UserError(
            f"found {title}'s {marker} in {root}, but torchvision reads it only from a folder named "
            f"{folder}; rename {root.name} to {folder} (or move it into a folder of that name)"
        )
    raise UserError(
        f"{title} layout not found under {root}: no {folder}/ folder; expected {layout}; "
        f"point the data root at it",
        setting="data_root",
    )


def require_layout(
    root: Path, title: str, layout: str, files: Iterable[str] = (), dirs: Iterable[str] = ()
) -> None:
    """Raise one UserError naming every expected file or folder that is missing under `root`."""
    missing = [f for f in files if not (root / f).is_file()]
    missing += [f"{d}/" for d in dirs if not (root / d).is_dir()]
    if missing:
        raise UserError(
            f"{title} layout not found under {root}: missing {', '.join(missing)}; expected {layout}; "
            f"point the data root at it",
            setting="data_root",
        )


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Lines of "<key> <value>" (the value may contain spaces); blank lines are skipped."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise UserError(
                    f"malformed line {lineno} in {path}: expected '<id> <value>', got {line!r}; "
                    f"re-extract the dataset archive"
                )
            pairs.append((parts[0], parts[1]))
    return pairs


def read_int_map(path: Path) -> dict[str, int]:
    """A "<key> <integer>" file as a dict."""
    out = {}
    for key, value in read_pairs(path):
        try:
            out[key] = int(value)
        except ValueError:
            raise UserError(
                f"malformed line in {path}: {key} {value!r} is not an integer; re-extract the dataset archive"
            ) from None
    return out


def split_of(is_training: int, image_id: str, split_file: Path, title: str) -> str:
    """ "train" or "test" from a train_test_split.txt value, which must be 1 or 0: any other value means a
    damaged file, not a test image."""
    if is_training not in (0, 1):
        raise UserError(
            f"{split_file} gives image id {image_id} the value {is_training}; it must be 1 (train) or 0 (test):"
            f" the file is damaged, re-extract {title}"
        )
    return "train" if is_training == 1 else "test"


def pretty(name: str) -> str:
    """Folder-style class name -> prompt-friendly text ("Black_footed_Albatross" -> "Black footed Albatross")."""
    return " ".join(name.replace("_", " ").split())


def check_files_exist(title: str, splits: dict[str, list[Sample]]) -> None:
    """Fail early with the first missing image and a count, instead of deep inside a training epoch."""
    seen: set[Path] = set()
    missing: list[Path] = []
    for samples in splits.values():
        for path, _ in samples:
            if path in seen:
                continue
            seen.add(path)
            if not os.path.isfile(path):
                missing.append(path)
    if missing:
        raise UserError(
            f"{len(missing)} of {len(seen)} images listed by {title} are missing, the first is {missing[0]}; "
            f"re-extract the image archive into the dataset folder"
        )


def finish(
    name: str,
    title: str,
    root: Path,
    classes: list[str],
    splits: dict[str, list[Sample]],
    *,
    prompt_templates: tuple[str, ...],
    crop_bottom: int = 0,
    extra: dict | None = None,
) -> DatasetSpec:
    """Check what every reader must guarantee, then build the spec."""
    for split in ("train", "test"):
        if not splits.get(split):
            raise UserError(
                f"{title} under {root} has no {split} images; check the split files and the data root",
                setting="data_root",
            )
    splits = {k: [(Path(p).absolute(), int(y)) for p, y in v] for k, v in splits.items()}
    for split, samples in splits.items():
        bad = [y for _, y in samples if not 0 <= y < len(classes)]
        if bad:
            raise UserError(
                f"{title} under {root}: {len(bad)} {split} labels fall outside the {len(classes)} classes "
                f"(e.g. {bad[0]}); the label and class files do not match, re-extract the dataset"
            )
    check_files_exist(title, splits)
    return DatasetSpec(
        name=name,
        root=root.absolute(),
        classes=classes,
        splits=splits,
        crop_bottom=crop_bottom,
        prompt_templates=prompt_templates,
        extra={"title": title, **(extra or {})},
    )
