"""What `dait-edge distill` writes into a run directory: summary, manifest, the stage-1 teacher's info,
and one metrics line per epoch."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dait_edge.records._base import Record, RecordError
from dait_edge.records.config import PAPER_SRA_FORM, DistillConfig
from dait_edge.records.data_config import DataConfig
from dait_edge.records.recipe import SHARED, SHARED_RECIPE
from dait_edge.utils.io import write_text_atomic


@dataclass
class Checkpoints(Record):
    """Files of the run, relative to the run directory (a given teacher checkpoint: absolute)."""

    teacher: str | None = None
    state_stage1: str | None = None
    student: str | None = None
    student_best: str | None = None
    state_stage2: str | None = None


@dataclass
class RunSummary(Record):
    """summary.json of a distill run: what was trained and how well. Written when the run completes."""

    FILE = "summary.json"
    KIND = "run-summary"
    LEGACY_KEY = "checkpoints"
    WHAT = "run summary"
    FIX = "resume the run with `dait-edge distill --resume --out RUN` to rewrite it, or distil again"

    run_dir: str
    dataset: str
    method: str
    student: str | None
    teacher: str
    num_classes: int
    classes: list[str]
    train_images: int
    labelled_fraction: float = 1.0
    stage1_seconds: float | None = None  # this run's stage-1 training (0: the teacher was reused or given)
    stage2_seconds: float | None = None
    teacher_top1: float | None = None
    student_top1: float | None = None
    student_top5: float | None = None
    student_top1_best: float | None = (
        None  # the test top-1 of the epoch best on validation (None: no validation)
    )
    params: int | None = None
    macs: int | None = None
    student_sha256: str | None = None
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    completed: bool = False
    stage1_key: str | None = None
    teacher_reused: bool | None = None
    student_best_epoch: int | None = None  # chosen on the validation images, never on the test split
    student_val_top1: float | None = None  # the last epoch's top-1 on the validation images
    student_val_top1_best: float | None = None  # the best epoch's
    img_size: int | None = None
    data_config: DataConfig | None = None
    teacher_seconds: float | None = None  # the teacher's training time, in whichever run trained it
    vlm_views: int | None = None  # views per image the VLM embedding cache holds; 0: the live VLM
    cache_seconds: float | None = None  # building the VLM embedding cache in this run (0: reused)
    labelled_images: int | None = None  # training images with their labels (validation excluded)
    unlabelled_images: int | None = None  # training images seen without labels (distillation terms only)
    val_images: int | None = None  # labelled images held out for the method's calibration
    skipped_images: int = 0  # images left out because they cannot be decoded (--skip-bad-images)
    calibration: dict[str, float] = field(default_factory=dict)  # inference settings fitted after training
    kd_teacher: str | None = None  # KD / RKD: "vlm", or the model name of the task checkpoint used
    taught_by: str | None = None  # what taught the student, in words ("VLM convnext_xxlarge", ...)
    student_head: str = "linear"  # "dual": DHO's two heads and their combination
    seed: int | None = None
    recipe: str | None = None  # the training protocol (--recipe, resolved); None: runs made before it

    @property
    def has_student(self) -> bool:
        return bool(self.student and self.checkpoints.student)

    def checkpoint(self, which: str, run_dir: str | os.PathLike) -> Path | None:
        """A checkpoint of `Checkpoints` by name ("student", "student_best", ...), as a path from `run_dir`."""
        rel = getattr(self.checkpoints, which)
        if not rel:
            return None
        return Path(rel) if Path(rel).is_absolute() else Path(run_dir) / rel


@dataclass
class TrainingHardware(Record):
    platform: str
    python: str
    cpu: str
    cpu_count: int
    device: str
    world_size: int
    gpu: str | None = None


@dataclass
class RunManifest(Record):
    """manifest.json: how a run was made (the resolved config, versions, machine). Written when it starts."""

    FILE = "manifest.json"
    KIND = "run-manifest"
    LEGACY_KEY = "config"
    WHAT = "run manifest"
    FIX = "start the run again in a new run directory"
    # 2: config.sra_form recorded (runs before used the paper's form); 3: config.kd_weights (before: alpha);
    # 4: config.recipe, optimizer and train_crop (before: the shared recipe's AdamW and resize crop); RISE's
    # weights and temperature (before: the alpha schedule and tau 2)
    VERSION = 4

    config: DistillConfig
    seed: int
    versions: dict[str, str | None]
    git_commit: str | None
    hardware: TrainingHardware
    created: str
    # images left out as unreadable (--skip-bad-images); None in manifests written before it was recorded
    skipped_images: list[str] | None = None

    @classmethod
    def upgrade(cls, data: dict, version: int) -> dict:
        config = data.get("config")
        if isinstance(config, dict):
            # settings that did not exist yet, as those runs trained: DAIT-F's paper form, KD on the alpha schedule
            old = {}
            if version < 2:
                old["sra_form"] = PAPER_SRA_FORM
            if version < 3:
                old["kd_weights"] = "alpha"
            if version < 4:  # before --recipe: the shared protocol's values for whatever a run did not record
                shared = {k: v for k, v in SHARED.settings(1).items() if k != "lr_step"}
                old.update(recipe=SHARED_RECIPE, **shared)
                old.update(rise_weights="alpha", rise_temperature=2.0)  # RISE's weights and tau of then
            data["config"] = {**old, **config}
        return data


@dataclass
class TeacherInfo(Record):
    """stage1/teacher.json beside a trained intermediate teacher (in the run and in the teacher cache)."""

    FILE = "teacher.json"
    KIND = "teacher-info"
    LEGACY_KEY = "teacher"
    WHAT = "teacher info"
    FIX = "delete the teacher folder so stage 1 trains it again"

    key: str
    teacher: str
    num_classes: int
    classes: list[str]
    data_config: DataConfig
    img_size: int
    epochs: int
    top1: float
    top5: float
    top1_best: float | None  # the test top-1 of the epoch best on validation; None: no validation images
    seconds: float
    vlm: str
    vlm_pretrained: str
    templates: list[str]
    reused_from: str | None = None
    vlm_views: int = 0  # views per image of the VLM embedding cache it was taught from; 0: the live VLM
    cache_seconds: float = 0.0  # building that cache in the run that trained it (0: the cache was there)
    weights_sha256: str | None = None  # teacher.safetensors': a cached copy that differs is trained again


@dataclass
class EpochMetrics(Record):
    """One line of metrics.jsonl: an epoch of a stage. The loss terms (loss, loss_ce, ...) are
    flattened into the line, so the file reads as a table (pandas.read_json(lines=True))."""

    FILE = "metrics.jsonl"
    WHAT = "metrics line"
    FIX = "delete the line, or resume the run to rewrite the stage's lines"

    stage: int
    epoch: int
    alpha: float
    lr: float
    losses: dict[str, float]
    top1: float  # on the test split: reported, never chosen by
    top5: float
    seconds: float
    val_top1: float | None = None  # on the validation images held out of training (None: the run holds none)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        losses = body.pop("losses")
        return (
            {k: body[k] for k in ("stage", "epoch", "alpha", "lr")}
            | losses
            | (
                {"val_top1": body["val_top1"]} if body["val_top1"] is not None else {}
            )  # runs without validation
            | {k: body[k] for k in ("top1", "top5", "seconds")}
        )

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "") -> EpochMetrics:
        if isinstance(data, dict):
            losses = {k: v for k, v in data.items() if k.startswith("loss")}
            data = {k: v for k, v in data.items() if k not in losses} | {"losses": losses}
        return super().from_dict(data, source)


def read_metrics(path: str | os.PathLike) -> list[EpochMetrics]:
    """Every line of a metrics.jsonl (none when the file does not exist)."""
    path = Path(path)
    if path.is_dir():
        path = EpochMetrics.path_in(path)
    if not path.is_file():
        return []
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(
                f"{path} line {number} is not valid JSON ({err}); {EpochMetrics.FIX}."
            ) from None
        lines.append(EpochMetrics.from_dict(data, f"{path} line {number}"))
    return lines


def write_metrics(path: str | os.PathLike, lines: list[EpochMetrics]) -> None:
    write_text_atomic(path, "".join(json.dumps(m.to_dict()) + "\n" for m in lines))


def append_metrics(path: str | os.PathLike, line: EpochMetrics) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(line.to_dict()) + "\n")
