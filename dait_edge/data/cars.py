"""Stanford Cars (Krause et al. 2013): 196 car models, parsed by torchvision from the devkit layout."""

from __future__ import annotations

from pathlib import Path

from dait_edge.data._common import finish, require_layout, torchvision_root
from dait_edge.data.base import DatasetSpec, Sample, register_dataset
from dait_edge.errors import UserError

TITLE = "Stanford Cars"
FOLDER = "stanford_cars"  # torchvision looks for exactly this folder name under its root
LAYOUT = (
    f"{FOLDER}/ with devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat, "
    f"cars_train/ and cars_test/ (the data root may be {FOLDER} or its parent)"
)
_FILES = ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat")


@register_dataset("cars", description="Stanford Cars, 196 models", aliases=("stanford_cars",))
def read_cars(root: Path) -> DatasetSpec:
    from scipy.io.matlab import MatReadError
    from torchvision.datasets import StanfordCars  # heavy; only when this dataset is used

    tv_root = torchvision_root(Path(root), FOLDER, "devkit/", TITLE, LAYOUT)
    data_root = tv_root / FOLDER
    require_layout(data_root, TITLE, LAYOUT, files=_FILES, dirs=("cars_train", "cars_test"))

    splits: dict[str, list[Sample]] = {}
    classes: list[str] = []
    for split in ("train", "test"):
        try:
            ds = StanfordCars(tv_root, split=split)
        except MatReadError as err:
            raise UserError(
                f"a Stanford Cars .mat file under {data_root} cannot be read ({err}); re-download the devkit "
                f"and cars_test_annos_withlabels.mat"
            ) from None
        # torchvision keeps the parsed list privately; reading it avoids decoding every image.
        splits[split] = [(Path(p), int(y)) for p, y in ds._samples]
        classes = [str(c) for c in ds.classes]
    if not classes:
        raise UserError(f"{data_root / 'devkit/cars_meta.mat'} lists no class_names; re-extract the devkit")

    return finish(
        "cars",
        TITLE,
        data_root,
        classes,
        splits,
        prompt_templates=("a photo of {}, which is the model name of car.",),
    )
