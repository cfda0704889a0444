"""The contract between modules: every file dait-edge writes and reads back is a typed record here.

Each record knows its file name and schema version, reads itself with a one-line error naming the file
and the field that is missing or malformed, and writes itself atomically. Nothing else in the package
reads these files by key. The files and their producers:

    RunSummary     RUN/summary.json             distill        -> export, profile, report, sweep, demo
    RunManifest    RUN/manifest.json            distill        -> export (data root, config)
    TeacherInfo    RUN/stage1/teacher.json      distill        -> distill (resume, teacher cache)
    EpochMetrics   RUN/metrics.jsonl (lines)    distill        -> distill (resume)
    Sidecar        ARTIFACT.json                export         -> profile, predict, report
    ExportSummary  RUN/export/summary.json      export         -> sweep
    ProfileResult  RUN/profile/PROFILE.json     profile        -> profile (merge), report
    Report         REPORT/report.json           report         -> (users, tests)
    SweepState     SWEEP/sweep.json             sweep          -> sweep (resume)
    SweepJob       SWEEP/jobs/RUN.json          sweep          -> sweep worker (one run's process or job)
    VLMCacheInfo   CACHE/vlm_embeddings/KEY/cache.json  distill -> distill, cache list/verify/clear
    Comparison     COMPARE/compare.json         compare, report, sweep -> (users, tests)

Where those files sit in a run and a sweep is `layout.py`'s (`RunLayout`, `SweepLayout`, `find_run`);
`DistillConfig` (config.py, held by the manifest) and `DataConfig` (data_config.py, a model's input) are
plain records that the lower layers import on their own.

Importing this package needs no torch (a device with the light install reads sidecars and rows).
"""

from dait_edge.records._base import Record, RecordError, check_fields
from dait_edge.records.cache import VLMCacheInfo
from dait_edge.records.compare import Comparison, ComparisonCell, ComparisonRow, ComparisonTable
from dait_edge.records.config import DistillConfig
from dait_edge.records.data_config import DataConfig
from dait_edge.records.export import (
    ArtifactEntry,
    ExportSummary,
    FallbackStep,
    Int8Accuracy,
    Parity,
    Sidecar,
    SourceCheckpoint,
    TensorRTBuild,
)
from dait_edge.records.layout import RunLayout, SweepLayout, find_latest_run, find_run
from dait_edge.records.profile import Hardware, Latency, Measured, ProfileResult, ProfileRow, read_result
from dait_edge.records.report import BestChoice, Candidate, Report, ReportSettings
from dait_edge.records.run import (
    Checkpoints,
    EpochMetrics,
    RunManifest,
    RunSummary,
    TeacherInfo,
    TrainingHardware,
    append_metrics,
    read_metrics,
    write_metrics,
)
from dait_edge.records.sweep import StudentProgress, SweepJob, SweepState

# Every record that is a file of its own and had an unversioned shape before (the round-trip and legacy
# tests loop over these); VLMCacheInfo and Comparison were born versioned and are tested where they are made.
FILE_RECORDS = (
    RunSummary,
    RunManifest,
    TeacherInfo,
    Sidecar,
    ExportSummary,
    ProfileResult,
    Report,
    SweepState,
)

__all__ = [
    "FILE_RECORDS",
    "ArtifactEntry",
    "BestChoice",
    "Candidate",
    "Checkpoints",
    "Comparison",
    "ComparisonCell",
    "ComparisonRow",
    "ComparisonTable",
    "DataConfig",
    "DistillConfig",
    "EpochMetrics",
    "ExportSummary",
    "FallbackStep",
    "Int8Accuracy",
    "Hardware",
    "Latency",
    "Measured",
    "Parity",
    "ProfileResult",
    "ProfileRow",
    "Record",
    "RecordError",
    "Report",
    "ReportSettings",
    "RunLayout",
    "RunManifest",
    "RunSummary",
    "Sidecar",
    "SourceCheckpoint",
    "StudentProgress",
    "SweepLayout",
    "SweepJob",
    "SweepState",
    "TeacherInfo",
    "TensorRTBuild",
    "TrainingHardware",
    "VLMCacheInfo",
    "append_metrics",
    "check_fields",
    "find_latest_run",
    "find_run",
    "read_metrics",
    "read_result",
    "write_metrics",
]
