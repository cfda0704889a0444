"""sweep.json: a sweep's recipe and each student's progress, rewritten after every step (resume reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dait_edge.records._base import Record
from dait_edge.records.config import DistillConfig


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
    # fanned out (--parallel, --launcher slurm): the job that runs it, and how it went
    status: str | None = None  # queued / running / done / failed / blocked (a run it needs failed)
    job_id: str | None = None  # a process id (local) or a SLURM job id
    launcher: str | None = None
    log: str | None = None  # the job's own log file
    reason: str | None = None  # why it failed or could not start


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

    def unfinished(self) -> dict[str, StudentProgress]:
        """The runs a fanned-out sweep could not finish (failed, or blocked by a run they need)."""
        return {name: e for name, e in self.students.items() if e.status in ("failed", "blocked")}


@dataclass
class SweepJob(Record):
    """One run of a fanned-out sweep, as the process (or SLURM job) that runs it reads it:
    SWEEP/jobs/<run>.json, written by the sweep, read by `python -m dait_edge.sweep.worker`."""

    FILE = "job.json"
    KIND = "sweep-job"
    WHAT = "sweep job"
    FIX = "run the sweep again: it writes its jobs anew"

    config: DistillConfig  # the run's (student, method and out filled in)
    profiles: list[str]
    formats: list[str]
    batch_sizes: list[int] | None = None
    max_top1_drop: float = 1.0
    calib_samples: int = 256
    parity_samples: int = 512
    qat: bool | str = False
    tag: str = ""  # "[2/4 resnet18 dait_f]": how its lines start
    threads: int | None = None  # torch / ONNX Runtime threads (CPU: the cores split between the jobs)
    profiles_here: bool = True  # False: the sweep measures the profiles afterwards, one run at a time
