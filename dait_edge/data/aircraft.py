"""FGVC-Aircraft (Maji et al. 2013) at the variant level (100 classes), parsed by torchvision."""

from __future__ import annotations

from pathlib import Path

from dait_edge.data._common import finish, require_layout, torchvision_root
from dait_edge.data.base import DatasetSpec, Sample, register_dataset
from dait_edge.errors import UserError

TITLE = "FGVC-Aircraft"
FOLDER = "fgvc-aircraft-2013b"  # torchvision looks for exactly this folder name under its root
LAYOUT = (
    f"{FOLDER}/data/ with variants.txt, images_variant_{{trainval,val,test}}.txt and images/ "
    f"(the data root may be {FOLDER} or its parent)"
)
_FILES = ("data/variants.txt", *(f"data/images_variant_{s}.txt" for s in ("trainval", "val", "test")))
BANNER_ROWS = 20  # every image ends in a 20 px copyright banner


@register_dataset("aircraft", description="FGVC-Aircraft, 100 variants", aliases=("fgvc_aircraft",))
def read_aircraft(root: Path) -> DatasetSpec:
    from torchvision.datasets import FGVCAircraft  # heavy; only when this dataset is used

    tv_root = torchvision_root(Path(root), FOLDER, "data/variants.txt", TITLE, LAYOUT)
    data_root = tv_root / FOLDER
    require_layout(data_root, TITLE, LAYOUT, files=_FILES, dirs=("data/images",))

    # train = the standard trainval split (the protocol of the papers we compare with); val is kept
    # for reference only and is a subset of train.
    splits: dict[str, list[Sample]] = {}
    classes: list[str] = []
    for ours, theirs in (("train", "trainval"), ("val", "val"), ("test", "test")):
        try:
            ds = FGVCAircraft(tv_root, split=theirs, annotation_level="variant")
        except KeyError as err:
            raise UserError(
                f"images_variant_{theirs}.txt under {data_root / 'data'} names variant {err} that is not in "
                f"variants.txt; re-extract FGVC-Aircraft"
            ) from None
        # torchvision keeps the parsed list privately; reading it avoids decoding every image.
        splits[ours] = list(zip(map(Path, ds._image_files), ds._labels, strict=True))
        classes = list(ds.classes)

    return finish(
        "aircraft",
        TITLE,
        data_root,
        classes,
        splits,
        prompt_templates=("a photo of {}, one of the airplane models.",),
        crop_bottom=BANNER_ROWS,
        extra={"val_in_train": True},
    )
