"""Dataset readers (one module per on-disk layout), image loading and labelled/unlabelled splits.

Importing this package is cheap: torch and torchvision are imported only when a reader runs.
"""

from __future__ import annotations

from pathlib import Path

from dait_edge.data import aircraft, cars, cub, dogs, imagefolder, nabirds
from dait_edge.data.base import DATASETS, DatasetSpec, Sample, register_dataset
from dait_edge.errors import UserError

# canonical name -> (title, one-line expected layout), for help texts and error messages
LAYOUTS: dict[str, tuple[str, str]] = {
    name: (module.TITLE, module.LAYOUT)
    for name, module in (
        ("cub", cub),
        ("aircraft", aircraft),
        ("cars", cars),
        ("dogs", dogs),
        ("nabirds", nabirds),
        ("imagefolder", imagefolder),
    )
}


def load_dataset(name: str, root: str | Path) -> DatasetSpec:
    """Read dataset `name` (a registered name or alias) from `root`; every problem is a UserError."""
    canonical = DATASETS.resolve(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(
            f"data root {root} does not exist or is not a folder; point the data root at the dataset",
            setting="data_root",
        )
    reader = DATASETS.get(canonical)
    try:
        return reader(root.absolute())
    except UserError:
        raise
    except (OSError, ValueError, KeyError, IndexError, RuntimeError) as err:
        # A malformed file deep in a parser: say which dataset and layout, on one line.
        title, layout = LAYOUTS.get(canonical, (canonical, "its documented layout"))
        detail = " ".join(f"{type(err).__name__}: {err}".split())
        raise UserError(
            f"could not read {title} under {root}: {detail}; expected {layout}; point the data root at it",
            setting="data_root",
        ) from err


__all__ = ["DATASETS", "LAYOUTS", "DatasetSpec", "Sample", "load_dataset", "register_dataset"]
