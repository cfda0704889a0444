"""What `dait-edge report` decides and writes: the best artifact per trained model, profile and machine,
every other candidate with the reason it lost, and report.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dait_edge.records._base import INTERNAL, Record
from dait_edge.records.profile import Measured, ProfileRow, legacy_measured, legacy_row


@dataclass
class Candidate(Record):
    """One artifact (as one backend runs it) competing in a `BestChoice`."""

    artifact: str
    format: str
    backend: str
    label: str
    precision: str
    batch: int
    run_dir: str | None
    latency_p50: float | None
    top1: float | None  # as judged: on validation images (`BestChoice.judged_on`)
    top1_drop: float | None  # points below the reference top-1, as judged
    status: str = ""  # "chosen" or "lost"
    reason: str = ""
    # the paired 95% interval of top1_drop (exact, on the images only one of the two got right), where both
    # were scored image by image on the same test images; and whether it settles the budget either way
    top1_drop_low: float | None = None
    top1_drop_high: float | None = None
    drop_resolved: bool | None = None
    test_images: int | None = None  # how many images judged it (validation images where judged on them)
    test_top1: float | None = None  # its top-1 on the test split: reported, never chosen by
    judged_on: str | None = None  # what top1 / top1_drop were measured on: "validation images" / "test split"
    # Kept while choosing, not written: why it fails the accuracy gate, the latency budget, its parity.
    accuracy_failures: list[str] = field(default_factory=list, metadata=INTERNAL)
    over_budget: str | None = field(default=None, metadata=INTERNAL)
    parity_passed: bool | None = field(default=None, metadata=INTERNAL)
    bits: int = field(default=32, metadata=INTERNAL)
    latency_values: list[float] = field(default_factory=list, metadata=INTERNAL)


@dataclass
class BestChoice(Record):
    """The choice among the formats of one trained model on one profile and machine."""

    student: str | None
    profile: str
    model: str | None
    run_dir: str | None
    hardware: str | None
    where: str  # "resnet18 on x86-ort-cpu-int8", plus the run and machine where one student has several
    batch: int
    chosen: str | None  # the chosen artifact's path
    chosen_format: str | None
    chosen_backend: str | None
    reference_top1: float | None
    reference: str | None  # what the reference top-1 is: "onnx-fp32 artifact" or "PyTorch checkpoint"
    max_top1_drop: float
    note: str
    candidates: list[Candidate]
    judged_on: str | None = None  # "validation images", or "test split" for rows profiled before they were

    @property
    def winner(self) -> Candidate | None:
        return next((c for c in self.candidates if c.status == "chosen"), None)

    @property
    def group(self) -> tuple:
        """The same key `report.best.group_key` gives the rows this choice was made among."""
        return (self.student, self.profile, self.model or self.run_dir, self.hardware)


@dataclass
class ReportSettings(Record):
    sources: list[str]
    files: list[str]  # the profile results read
    max_top1_drop: float
    batch: int
    created: str


@dataclass
class Report(Record):
    """report.json: every row compared, how each profile was measured, and the choices with reasons."""

    FILE = "report.json"
    KIND = "report"
    LEGACY_KEY = "best"
    WHAT = "report"
    FIX = "write it again with `dait-edge report SOURCES`"

    settings: ReportSettings
    measured: dict[str, list[Measured]]  # profile name -> the distinct ways it was measured
    rows: list[ProfileRow]
    best: list[BestChoice]

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        # Version 0: measured blocks and rows in their version-0 shapes (see ProfileResult).
        if isinstance(data.get("measured"), dict):
            data["measured"] = {
                name: [legacy_measured(m) for m in blocks] if isinstance(blocks, list) else blocks
                for name, blocks in data["measured"].items()
            }
        if isinstance(data.get("rows"), list):
            data["rows"] = [legacy_row(row) for row in data["rows"]]  # report rows name their profile
        return data
