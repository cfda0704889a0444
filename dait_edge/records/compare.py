"""compare.json: the Table-1-style comparison of methods x students that `dait-edge compare` writes."""

from __future__ import annotations

from dataclasses import dataclass, field

from dait_edge.records._base import Record


@dataclass
class ComparisonCell(Record):
    """One method on one student: test top-1 over the runs (one per seed)."""

    mean: float
    std: float | None  # None with a single run
    runs: int
    seeds: list[int]
    run_dirs: list[str]
    best: bool = False  # the best mean of its column


@dataclass
class ComparisonRow(Record):
    """One method (KD and RKD once per teacher they were taught by)."""

    method: str
    label: str  # what the table shows, e.g. "kd (T: VLM)"
    teacher: str  # what taught it: "VLM", "regnety_016 (stage 1)", "resnet152 checkpoint", "-"
    seconds: float  # mean training seconds of its runs (stage 1 counted once where this run trained it)
    cells: dict[str, ComparisonCell] = field(default_factory=dict)  # student -> cell
    recipe: str = "shared"  # the training protocol its runs used (--recipe)


@dataclass
class ComparisonTable(Record):
    """One dataset at one labelled fraction."""

    dataset: str
    labelled_fraction: float
    students: list[str]
    rows: list[ComparisonRow]
    unlabelled: bool = True  # the images outside the labelled fraction were trained on (no --no-unlabelled)


@dataclass
class Comparison(Record):
    FILE = "compare.json"
    KIND = "method-comparison"
    WHAT = "method comparison"
    FIX = "run `dait-edge compare` again"

    sources: list[str]
    runs: int
    tables: list[ComparisonTable]
    created: str
    note: str = ""
    warnings: list[str] = field(default_factory=list)  # runs of one table that differ in more than seed
