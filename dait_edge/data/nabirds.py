"""NABirds (Van Horn et al. 2015): North American birds, classified at the 555 leaves of its hierarchy."""

from __future__ import annotations

from pathlib import Path

from dait_edge.data._common import finish, locate, read_int_map, read_pairs, require_layout, split_of
from dait_edge.data.base import DatasetSpec, Sample, register_dataset
from dait_edge.errors import UserError

TITLE = "NABirds"
LAYOUT = (
    "images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, hierarchy.txt and images/ "
    "(the extracted nabirds folder)"
)
_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "hierarchy.txt")


@register_dataset("nabirds", description="NABirds, 555 leaf classes of North American birds")
def read_nabirds(root: Path) -> DatasetSpec:
    root = locate(Path(root), _FILES, subfolders=("nabirds",))
    require_layout(root, TITLE, LAYOUT, files=_FILES, dirs=("images",))

    names = {int(i): n.strip() for i, n in read_pairs(root / "classes.txt")}
    parents = {int(p) for _, p in read_pairs(root / "hierarchy.txt")}
    # Images carry leaf ids; internal nodes (parents) are coarser groupings that get no class index.
    leaves = sorted(i for i in names if i not in parents)
    index = {leaf: k for k, leaf in enumerate(leaves)}

    labels = read_int_map(root / "image_class_labels.txt")
    is_train = read_int_map(root / "train_test_split.txt")
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    not_leaf: list[str] = []
    for image_id, rel in read_pairs(root / "images.txt"):
        if image_id not in labels or image_id not in is_train:
            raise UserError(
                f"image id {image_id} of images.txt has no entry in image_class_labels.txt or "
                f"train_test_split.txt under {root}; re-extract NABirds"
            )
        if labels[image_id] not in index:
            not_leaf.append(image_id)
            continue
        split = split_of(is_train[image_id], image_id, root / "train_test_split.txt", "NABirds")
        splits[split].append((root / "images" / rel, index[labels[image_id]]))
    if not_leaf:
        raise UserError(
            f"{len(not_leaf)} NABirds images are labelled with a class that is not a leaf of hierarchy.txt "
            f"(first: image {not_leaf[0]}); classes.txt, hierarchy.txt and image_class_labels.txt do not match, "
            f"re-extract NABirds"
        )

    return finish(
        "nabirds",
        TITLE,
        root,
        [names[leaf] for leaf in leaves],
        splits,
        prompt_templates=("a photo of {}, a type of bird.",),
        extra={"class_ids": leaves},
    )
