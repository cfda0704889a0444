"""The one shape every dataset reader returns, and the registry readers register into."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dait_edge.registry import Registry

# name -> reader(root: Path) -> DatasetSpec
DATASETS: Registry[Callable[[Path], DatasetSpec]] = Registry("dataset")
register_dataset = DATASETS.register

Sample = tuple[Path, int]  # (image path, 0-based class index)


@dataclass
class DatasetSpec:
    """A fine-grained dataset as read from disk: class names and labelled image lists per split.

    `splits` always has "train" and "test"; some datasets also have "val".
    `crop_bottom` is a number of pixel rows to cut from the bottom of every image
    (FGVC-Aircraft's 20 px copyright banner).
    `prompt_templates` are the dataset's default OpenCLIP prompt templates (method.md).
    """

    name: str
    root: Path
    classes: list[str]
    splits: dict[str, list[Sample]]
    crop_bottom: int = 0
    prompt_templates: tuple[str, ...] = ("a photo of a {}.",)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> list[Sample]:
        from dait_edge.errors import UserError

        if name not in self.splits:
            raise UserError(
                f"dataset {self.name!r} has no split {name!r}; it has {', '.join(sorted(self.splits))}."
            )
        return self.splits[name]
