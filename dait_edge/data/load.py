"""`load_dataset`: a dataset by its registered name, read from its root by its layout's reader; every
problem is one UserError naming the dataset, its expected layout and the fix."""

from __future__ import annotations

from pathlib import Path

from dait_edge.data import aircraft, cars, cub, dogs, imagefolder, nabirds
from dait_edge.data.base import DATASETS, DatasetSpec
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
