"""CUB-200-2011 (Wah et al. 2011): 200 bird species, the official train/test split."""

from __future__ import annotations

from pathlib import Path

from dait_edge.data._common import finish, locate, pretty, read_int_map, read_pairs, require_layout, split_of
from dait_edge.data.base import DatasetSpec, Sample, register_dataset
from dait_edge.errors import UserError

TITLE = "CUB-200-2011"
LAYOUT = (
    "images.txt, image_class_labels.txt, train_test_split.txt, classes.txt and images/ "
    "(the extracted CUB_200_2011 folder)"
)
_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


def class_name(folder: str) -> str:
    """ "001.Black_footed_Albatross" -> "Black footed Albatross"."""
    prefix, dot, rest = folder.partition(".")
    return pretty(rest if dot and prefix.isdigit() else folder)


@register_dataset("cub", description="CUB-200-2011 birds, 200 species", aliases=("cub200", "cub_200_2011"))
def read_cub(root: Path) -> DatasetSpec:
    root = locate(Path(root), _FILES, subfolders=("CUB_200_2011",))
    require_layout(root, TITLE, LAYOUT, files=_FILES, dirs=("images",))

    class_rows = sorted(((int(i), n) for i, n in read_pairs(root / "classes.txt")), key=lambda r: r[0])
    ids = [i for i, _ in class_rows]
    if ids != list(range(1, len(ids) + 1)):
        raise UserError(
            f"{root / 'classes.txt'} should number classes 1..N without gaps; re-extract CUB-200-2011"
        )
    classes = [class_name(n) for _, n in class_rows]

    labels = read_int_map(root / "image_class_labels.txt")
    is_train = read_int_map(root / "train_test_split.txt")
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    for image_id, rel in read_pairs(root / "images.txt"):
        if image_id not in labels or image_id not in is_train:
            raise UserError(
                f"image id {image_id} of images.txt has no entry in image_class_labels.txt or "
                f"train_test_split.txt under {root}; re-extract CUB-200-2011"
            )
        split = split_of(is_train[image_id], image_id, root / "train_test_split.txt", "CUB-200-2011")
        splits[split].append((root / "images" / rel, labels[image_id] - 1))  # files are 1-based

    return finish("cub", TITLE, root, classes, splits, prompt_templates=("a photo of {}, a type of bird.",))
