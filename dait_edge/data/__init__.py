"""Dataset readers (one module per on-disk layout), image loading and labelled/unlabelled splits.

Importing this package is cheap: torch and torchvision are imported only when a reader runs. `load.py`
holds `load_dataset` (and imports every reader, which registers itself in `base.DATASETS`).
"""

from dait_edge.data.base import DATASETS, DatasetSpec, Sample, register_dataset
from dait_edge.data.load import LAYOUTS, load_dataset

__all__ = ["DATASETS", "LAYOUTS", "DatasetSpec", "Sample", "load_dataset", "register_dataset"]
