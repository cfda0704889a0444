"""Stanford Dogs (Khosla et al. 2011): 120 ImageNet dog breeds, the official .mat split lists."""

from __future__ import annotations

from pathlib import Path

from dait_edge.data._common import finish, pretty, require_layout
from dait_edge.data.base import DatasetSpec, Sample, register_dataset
from dait_edge.errors import UserError

TITLE = "Stanford Dogs"
LAYOUT = "Images/<wnid-breed>/*.jpg and lists/train_list.mat, lists/test_list.mat (lists.tar extracted into lists/)"


def breed_name(folder: str) -> str:
    """ "n02085620-Chihuahua" -> "Chihuahua", "n02113978-Mexican_hairless" -> "Mexican hairless"."""
    wnid, dash, breed = folder.partition("-")
    return pretty(breed if dash and wnid.startswith("n") else folder)


def _read_list(path: Path) -> list[tuple[str, int]]:
    """(relative path, 1-based label) pairs from a train_list.mat / test_list.mat."""
    import numpy as np
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except (scipy.io.matlab.MatReadError, ValueError) as err:
        raise UserError(f"{path} cannot be read as a .mat file ({err}); re-extract lists.tar") from None
    if "file_list" not in mat or "labels" not in mat:
        raise UserError(f"{path} has no file_list / labels arrays; re-extract lists.tar from Stanford Dogs")
    # A MATLAB cell of strings loads as an object array of 1-element string arrays.
    files = [str(np.asarray(cell).ravel()[0]) for cell in mat["file_list"].ravel()]
    labels = [int(v) for v in np.asarray(mat["labels"]).ravel()]
    if len(files) != len(labels):
        raise UserError(
            f"{path}: file_list has {len(files)} entries but labels {len(labels)}; re-extract lists.tar"
        )
    return list(zip(files, labels, strict=True))


@register_dataset("dogs", description="Stanford Dogs, 120 breeds", aliases=("stanford_dogs",))
def read_dogs(root: Path) -> DatasetSpec:
    root = Path(root)
    # lists.tar unpacks its .mat files without a folder; accept them beside Images/ too.
    lists = root / "lists" if (root / "lists").is_dir() else root
    require_layout(root, TITLE, LAYOUT, dirs=("Images",))
    require_layout(lists, TITLE, LAYOUT, files=("train_list.mat", "test_list.mat"))

    folders: dict[int, str] = {}  # label -> breed folder, learnt from the lists themselves
    splits: dict[str, list[Sample]] = {}
    for split in ("train", "test"):
        pairs = _read_list(lists / f"{split}_list.mat")
        for rel, label in pairs:
            folder = rel.replace("\\", "/").split("/")[0]
            if folders.setdefault(label, folder) != folder:
                raise UserError(
                    f"{lists / f'{split}_list.mat'}: label {label} is used for both {folders[label]} and "
                    f"{folder}; the lists do not match the Images/ folders, re-extract Stanford Dogs"
                )
        splits[split] = [(root / "Images" / rel, label - 1) for rel, label in pairs]  # 1-based labels

    gaps = sorted(set(range(1, max(folders, default=0) + 1)) - set(folders))
    if gaps:
        raise UserError(
            f"Stanford Dogs lists under {lists} leave labels {gaps[:5]} without any image; re-extract lists.tar"
        )
    classes = [breed_name(folders[label]) for label in sorted(folders)]

    return finish(
        "dogs",
        TITLE,
        root,
        classes,
        splits,
        prompt_templates=("a photo of {}, a type of dog.",),
        extra={"class_folders": [folders[label] for label in sorted(folders)]},
    )
