"""sweep.json: a sweep's recipe and each student's progress, rewritten after every step (resume reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dait_edge.records._base import Record


@dataclass
class StudentProgress(Record):
    run_dir: str
    method: str | None = None
    student_top1: float | None = None
    teacher_top1: float | None = None
    teacher_reused: bool | None = None
    distilled: bool = False
    exported: bool = False
    profiled: list[str] = field(default_factory=list)


@dataclass
class SweepState(Record):
    FILE = "sweep.json"
    KIND = "sweep"
    LEGACY_KEY = "recipe"
    WHAT = "sweep state"
    FIX = "use a new sweep folder, or delete this one to start over"

    recipe: dict[str, Any]  # the distill settings every run of the sweep shares
    students: dict[str, StudentProgress]  # by run folder name, <student>-<method>
    profiles: list[str]
    formats: list[str]
    created: str
    report: str | None = None
    seconds: float | None = None
    methods: list[str] = field(default_factory=list)  # empty: the recipe's method alone (older sweeps)
    compare: str | None = None  # the method comparison's folder
