"""The run an export (or the PyTorch profile runner) starts from: a run folder, a checkpoint inside one, or
the latest run; its records, the checkpoint chosen, and the trained student itself."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dait_edge.errors import UserError
from dait_edge.records import (
    DataConfig,
    RunManifest,
    RunSummary,
    Sidecar,
    SourceCheckpoint,
    find_run,
)
from dait_edge.records.layout import RUNS_ROOT, find_latest_run
from dait_edge.utils.io import sha256_file, sha256_json

CHECKPOINTS = {"last": "student", "best": "student_best"}  # --checkpoint -> the summary's checkpoint


@dataclass
class RunInfo:
    """A run as export (and the PyTorch profile runner) need it: its records and the checkpoint chosen."""

    run_dir: Path
    summary: RunSummary
    manifest: RunManifest | None
    checkpoint: Path
    checkpoint_sha256: str
    data_config: DataConfig  # the student's normalisation, at the size it was trained at
    dataset: str | None
    data_root: str | None

    @property
    def student(self) -> str:
        return str(self.summary.student)

    @property
    def config_hash(self) -> str | None:
        return sha256_json(dataclasses.asdict(self.manifest.config)) if self.manifest else None

    def sidecar(self, *, format: str, runtime: str, precision: str, **fields: Any) -> Sidecar:
        """The sidecar of an artifact made from this run's checkpoint (`fields`: the format's own)."""
        dc = self.data_config
        return Sidecar(
            format=format,
            runtime=runtime,
            precision=precision,
            variant=fields.pop("variant", None),
            input_name=fields.pop("input_name", "input"),
            output_name=fields.pop("output_name", "logits"),
            output="logits",
            input_size=list(dc.input_size),
            mean=list(dc.mean),
            std=list(dc.std),
            interpolation=dc.interpolation,
            crop_pct=dc.crop_pct,
            preprocessing=dc.source,
            classes=list(self.summary.classes) or [str(i) for i in range(self.summary.num_classes)],
            opset=fields.pop("opset", None),
            dynamic_batch=fields.pop("dynamic_batch", True),
            student=self.student,
            dataset=self.dataset,
            method=self.summary.method,
            source_checkpoint=SourceCheckpoint(self.checkpoint_sha256, str(self.checkpoint)),
            config_hash=self.config_hash,
            student_top1=self.summary.student_top1,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **fields,
        )


def latest_run(runs_root: str | Path = RUNS_ROOT) -> Path:
    """The run under `runs_root` whose summary.json changed last."""
    found = find_latest_run(runs_root)
    if found is None:
        raise UserError(
            f"no finished run under {Path(runs_root)}/ (no */summary.json); pass a run directory or run"
            " `dait-edge distill` first."
        )
    return found


def resolve_run(
    path: str | Path | None,
    *,
    checkpoint: str = "last",
    runs_root: str | Path = RUNS_ROOT,
    data_root: str | None = None,
) -> RunInfo:
    """A run dir, a checkpoint inside one, or (None) the latest run -> everything export needs."""
    given_checkpoint = None
    if path is None:
        run_dir = latest_run(runs_root)
    else:
        path = Path(path)
        if not path.exists():
            raise UserError(
                f"{path} does not exist; pass a run directory (holding summary.json) or a .safetensors checkpoint."
            )
        if path.is_file():
            if path.suffix != ".safetensors":
                raise UserError(
                    f"{path} is not a .safetensors checkpoint; pass a run directory or a student .safetensors file."
                )
            run_dir = find_run(path)
            if run_dir is None:
                raise UserError(
                    f"no summary.json in any folder above {path}; export needs the run's summary (classes, input size,"
                    " normalisation): pass the checkpoint inside its run directory."
                )
            given_checkpoint = path
        else:
            run_dir = path
    if not RunSummary.path_in(run_dir).is_file():
        raise UserError(
            f"{run_dir} holds no summary.json; pass the directory `dait-edge distill` wrote (or let it finish)."
        )
    summary = RunSummary.read(run_dir)
    if not summary.has_student:
        raise UserError(
            f"{run_dir} has no trained student (stage 2 did not finish); run `dait-edge distill --stages 2` first."
        )
    if checkpoint not in CHECKPOINTS:
        raise UserError(
            f"the checkpoint to export must be last or best, not {checkpoint!r}.", setting="checkpoint"
        )
    if given_checkpoint is None:
        given_checkpoint = summary.checkpoint(CHECKPOINTS[checkpoint], run_dir)
        if given_checkpoint is None:
            raise UserError(
                f"{run_dir}/summary.json names no {checkpoint} checkpoint; export the last one.",
                setting="checkpoint",
            )
    if not given_checkpoint.is_file():
        raise UserError(
            f"checkpoint {given_checkpoint} is missing; restore it or export the other one (last or best).",
            setting="checkpoint",
        )

    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(
            f"data root {data_root} does not exist or is not a folder; pass the dataset's folder, or leave it"
            " out to use the run's own.",
            setting="data_root",
        )
    manifest = RunManifest.read(run_dir) if RunManifest.path_in(run_dir).is_file() else None
    img_size = summary.img_size or (manifest.config.img_size if manifest else 224)
    # the resolution the student was trained at
    data_config = dataclasses.replace(
        summary.data_config or DataConfig([3, img_size, img_size]), input_size=[3, img_size, img_size]
    )
    return RunInfo(
        run_dir=run_dir,
        summary=summary,
        manifest=manifest,
        checkpoint=given_checkpoint,
        checkpoint_sha256=sha256_file(given_checkpoint),
        data_config=data_config,
        dataset=summary.dataset or (manifest.config.dataset if manifest else None),
        data_root=data_root or (manifest.config.data_root if manifest else None),
    )


def load_student(info: RunInfo):
    """The run's trained student as it predicts, with its head (DHO's two and their combination, RISE's
    projection)."""
    from dait_edge.models.heads import load_student as load_with_head

    return load_with_head(info.summary.student_head, info.student, info.summary.num_classes, info.checkpoint)
