"""Where a run and a sweep keep their files: the one module that spells their folder and file names.

    RUN/                              a distill run (`RunLayout`)
      manifest.json  summary.json  metrics.jsonl       RunManifest, RunSummary, EpochMetrics
      stage1/  teacher.safetensors  teacher_best.safetensors  teacher.json  state.pt
      stage2/  student_last.safetensors  student_best.safetensors  state.pt
      export/  student-<format>.onnx + <same>.json sidecars, summary.json (ExportSummary)
      profile/<profile>.json                           ProfileResult, one file per target profile
    RUN/../teachers/<key>/            the stage-1 teacher cache shared by runs side by side (default)

    SWEEP/                            a sweep (`SweepLayout`)
      sweep.json  runs/<student>-<method>/  runs/teachers/  report/  compare/

A record knows its own file's name (`RunSummary.FILE`); this module knows where each file sits. Every
other module asks it for a path, and finds a run through `find_run` / `find_latest_run` / `runs_under`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dait_edge.records.run import EpochMetrics, RunSummary

RUNS_ROOT = Path("runs")  # where runs go when no folder is given, and where the latest one is looked for
TEACHER_FILE = "teacher.safetensors"  # the stage-1 teacher's weights, in a run and in a teacher-cache entry
_EXPORT, _PROFILE, _TEACHERS = "export", "profile", "teachers"
_CHECKPOINTS = {  # the summary's checkpoint names -> where they sit in the run
    "teacher": ("stage1", TEACHER_FILE),
    "teacher_best": ("stage1", "teacher_best.safetensors"),
    "student": ("stage2", "student_last.safetensors"),
    "student_best": ("stage2", "student_best.safetensors"),
}


@dataclass(frozen=True)
class RunLayout:
    """The files of the run in `root`. Paths only: nothing is read or created."""

    root: Path  # a str is taken too

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # ------------------------------------------------------------------ training
    def stage(self, stage: int) -> Path:
        """The folder of training stage 1 (the intermediate teacher) or 2 (the student)."""
        return self.root / f"stage{stage}"

    def state(self, stage: int) -> Path:
        """The stage's resume state (optimiser, RNG, epoch), written after every epoch."""
        return self.stage(stage) / "state.pt"

    def weights(self, name: str) -> Path:
        """A trained model's weights by checkpoint name: teacher, teacher_best, student, student_best."""
        folder, file = _CHECKPOINTS[name]
        return self.root / folder / file

    @property
    def teacher(self) -> Path:
        return self.weights("teacher")

    @property
    def student_last(self) -> Path:
        return self.weights("student")

    @property
    def student_best(self) -> Path:
        return self.weights("student_best")

    def relative(self, path: Path) -> str:
        """`path` as the run summary records it: from the run folder, with forward slashes."""
        return Path(path).relative_to(self.root).as_posix()

    @property
    def metrics(self) -> Path:
        return EpochMetrics.path_in(self.root)

    @property
    def default_teacher_cache(self) -> Path:
        """Trained teachers shared by the runs beside this one."""
        return self.root.parent / _TEACHERS

    # ------------------------------------------------------------------ deployment
    @property
    def export(self) -> Path:
        """The exported artifacts, their sidecars and the export summary."""
        return self.root / _EXPORT

    @property
    def profiles(self) -> Path:
        """Profile results of the run's artifacts, one file per target profile."""
        return self.root / _PROFILE

    def profile(self, name: str) -> Path:
        return self.profiles / f"{name}.json"

    @staticmethod
    def run_of_profile_result(path: Path) -> Path | None:
        """RUN for a result saved as RUN/profile/PROFILE.json; None for a file kept anywhere else."""
        path = Path(path)
        run = path.parent.parent
        return run if path.parent.name == _PROFILE and is_run(run) else None


def default_run_dir(dataset: str, student: str, method: str, root: str | os.PathLike = RUNS_ROOT) -> Path:
    """runs/<dataset>-<student>-<method>-<time>: a new folder per run."""
    return Path(root) / f"{dataset}-{student}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"


def default_sweep_dir(dataset: str, label: str) -> Path:
    """runs/sweep-<dataset>-<method, or "methods">: a sweep's folder when none is given."""
    return RUNS_ROOT / f"sweep-{dataset}-{label}"


DEMO_DIR = RUNS_ROOT / "demo"  # `dait-edge demo`'s folder when none is given


# ---------------------------------------------------------------------- finding runs


def is_run(folder: str | os.PathLike) -> bool:
    """Does `folder` hold a run's summary.json? An export's summary.json (another record) does not count; a
    damaged one does, so that reading it reports the damage."""
    path = RunSummary.path_in(folder)
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True
    return RunSummary.matches(data)


def find_run(path: str | os.PathLike) -> Path | None:
    """The run a path belongs to: `path` itself when it is a run folder, else the nearest folder above it
    that is one (an artifact in RUN/export/, a checkpoint in RUN/stage2/); None outside any run."""
    path = Path(path).resolve()
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        if is_run(folder):
            return folder
    return None


def run_summary_of(path: str | os.PathLike) -> tuple[Path | None, RunSummary | None]:
    """The distill run a file (artifact, checkpoint) lives in, and its summary; (None, None) outside one
    or where its summary is not valid JSON (a summary with a malformed field raises RecordError)."""
    run_dir = find_run(path)
    summary = RunSummary.read_if_present(run_dir) if run_dir is not None else None
    return (run_dir, summary) if summary is not None else (None, None)


def find_latest_run(runs_root: str | os.PathLike = RUNS_ROOT) -> Path | None:
    """The run right under `runs_root` whose summary.json changed last; None when there is none."""
    root = Path(runs_root)
    summaries = [p for p in root.glob(f"*/{RunSummary.FILE}") if p.is_file()] if root.is_dir() else []
    return max(summaries, key=lambda p: p.stat().st_mtime).parent if summaries else None


def runs_under(source: Path) -> list[Path]:
    """The summary.json files of the runs in `source`, its children and its grandchildren (a sweep's
    runs/), export summaries left out."""
    found: list[Path] = []
    for pattern in ("", "*/", "*/*/"):
        found += sorted(p for p in source.glob(pattern + RunSummary.FILE) if p.parent.name != _EXPORT)
    return found


PROFILE_RESULTS = tuple(f"{up}{_PROFILE}/*.json" for up in ("", "*/", "*/*/"))


def profile_results_under(source: Path) -> list[Path]:
    """The saved profile results of the runs in `source`, its children and its grandchildren; a profile/
    folder given itself contributes its files."""
    found = {path for pattern in PROFILE_RESULTS for path in source.glob(pattern) if path.is_file()}
    if source.name == _PROFILE:
        found |= {path for path in source.glob("*.json") if path.is_file()}
    return sorted(found)


# ---------------------------------------------------------------------- sweeps


@dataclass(frozen=True)
class SweepLayout:
    """The folders of the sweep in `root` (sweep.json is `SweepState`'s own file)."""

    root: Path  # a str is taken too

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def teachers(self) -> Path:
        """The teacher cache every run of the sweep shares."""
        return self.runs / _TEACHERS

    def run(self, student: str, method: str) -> Path:
        return self.runs / f"{student}-{method}"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def compare(self) -> Path:
        return self.root / "compare"
