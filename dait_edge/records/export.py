"""What `dait-edge export` writes: a sidecar beside every artifact, and export/summary.json listing them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dait_edge.records._base import Record
from dait_edge.records.data_config import DataConfig


@dataclass
class Parity(Record):
    """How an artifact agrees with the PyTorch student on the same preprocessed images."""

    samples: int
    agreement: float  # % of images whose top-1 class is PyTorch's
    max_abs_diff: float
    top1_pytorch: float | None  # None on random inputs (no labels)
    top1_artifact: float | None
    threshold: float
    passed: bool
    data: str  # "test split", "train split" or "random"
    note: str | None = None


@dataclass
class SourceCheckpoint(Record):
    sha256: str
    path: str | None = None


@dataclass
class TensorRTBuild(Record):
    """How an engine was built (it runs only with that TensorRT version on that GPU)."""

    tensorrt: str
    profile: dict[str, list[int]]  # min / opt / max input shapes
    strongly_typed: bool = True
    timing_cache: str | None = None
    # int8 engines: "explicit: N QuantizeLinear nodes from the graph" (never calibrated by TensorRT)
    quantization: str | None = None


@dataclass
class Sidecar(Record):
    """The JSON beside an artifact: everything a deployment needs to feed it and read its output.

    Its file is the artifact's with `.json` (student-onnx-fp32.onnx -> student-onnx-fp32.json); its
    version key stays `sidecar_version`, the name device code already reads.
    """

    KIND = "sidecar"
    VERSION_KEY = "sidecar_version"
    LEGACY_KEY = "input_size"
    WHAT = "sidecar"
    FIX = "re-export the artifact with `dait-edge export`"

    format: str
    runtime: str
    precision: str
    variant: str | None
    input_name: str
    output_name: str
    output: str
    input_size: list[int]
    mean: list[float]
    std: list[float]
    interpolation: str
    crop_pct: float
    classes: list[str]
    opset: int | None
    dynamic_batch: bool
    student: str
    dataset: str | None
    method: str | None
    source_checkpoint: SourceCheckpoint
    config_hash: str | None
    # The reference an artifact's measured top-1 is judged against, also where only export/ is copied.
    student_top1: float | None = None
    parity: Parity | None = None
    recipe: str | None = None  # the export recipe file it was made with
    quantization: dict[str, Any] | None = None  # int8: the quantiser's settings, calibration, graph counts
    tensorrt: TensorRTBuild | None = None
    gpu: str | None = None  # engines: the GPU it was built on
    onnx_source: str | None = None  # engines: the ONNX format it was built from
    # ExecuTorch / LiteRT: the delegate, its partitions, and the ops it did not take (they run on the
    # runtime's own portable / builtin kernels, much slower)
    delegation: dict[str, Any] | None = None
    created: str = ""
    # The artifact file's SHA-256 when it was exported: profile and predict refuse a file that differs
    # (changed, truncated, half-copied). None in sidecars written before it was recorded.
    artifact_sha256: str | None = None
    # "run": the resize, crop and normalisation above are the run's one pipeline, which its training views
    # and its evaluation used; None (sidecars written before it was recorded): the model's upstream config
    preprocessing: str | None = None

    @staticmethod
    def path_for(artifact: str | os.PathLike) -> Path:
        return Path(artifact).with_suffix(".json")

    @classmethod
    def read_for(cls, artifact: str | os.PathLike) -> Sidecar:
        path = cls.path_for(artifact)
        if not path.is_file():
            from dait_edge.errors import UserError

            raise UserError(f"{artifact} has no sidecar {path.name}; export it with `dait-edge export`.")
        return cls.read(path)

    def write_for(self, artifact: str | os.PathLike) -> Path:
        """Written last, after the artifact is in place: a sidecar means the artifact is finished. It
        records the artifact's SHA-256."""
        from dait_edge.utils.io import sha256_file

        self.artifact_sha256 = sha256_file(artifact)
        return self.write(self.path_for(artifact))

    @classmethod
    def verified_for(cls, artifact: str | os.PathLike) -> Sidecar:
        """The sidecar of `artifact`, after checking that the file is the one it describes: a file whose
        SHA-256 differs from the recorded one is refused, never run."""
        from dait_edge.errors import UserError
        from dait_edge.utils.io import sha256_file

        sidecar = cls.read_for(artifact)
        if sidecar.artifact_sha256 is not None and sha256_file(artifact) != sidecar.artifact_sha256:
            raise UserError(
                f"{artifact} does not match its sidecar {cls.path_for(artifact).name} (its SHA-256 differs from"
                " the one recorded at export: the file was changed, truncated or not copied whole); copy it"
                " again, or export it again with `dait-edge export`."
            )
        return sidecar

    @property
    def data_config(self) -> DataConfig:
        return DataConfig(
            list(self.input_size),
            list(self.mean),
            list(self.std),
            self.interpolation,
            self.crop_pct,
            self.preprocessing,
        )

    @property
    def model(self) -> str | None:
        """Which trained weights the file holds: the checkpoint's SHA-256 (the config hash before that)."""
        return self.source_checkpoint.sha256 or self.config_hash


@dataclass
class FallbackStep(Record):
    """One step of the int8 accuracy search: this many nodes in float gave this validation top-1, and
    predicted what fp32 predicts on this share of the validation images."""

    nodes: int
    val_top1: float
    val_agreement: float | None = None


@dataclass
class Int8Accuracy(Record):
    """How an int8 artifact was made to keep its accuracy (`dait-edge export --max-top1-drop`).

    Validation images are never the test split: the run's own validation split, else training images the
    calibration did not use. With too few of them the budget is not checked (`checked` false, `reason`)."""

    budget: float  # top-1 points int8 may lose against fp32 on the validation images
    checked: bool
    calibration: str  # the calibration method used: minmax, entropy or percentile
    percentile: float | None = None  # percentile's cut, when that was the method
    reason: str | None = None  # why the budget was not checked
    val_images: int = 0
    val_source: str | None = None  # "run validation split" / "train split, not calibration" / None
    # --calibration search: "minmax", "entropy", "percentile 99.99", ... -> validation top-1, agreement with fp32
    calibration_tried: dict[str, float] = field(default_factory=dict)
    calibration_agreement: dict[str, float] = field(default_factory=dict)
    fp32_val_top1: float | None = None
    plain_val_top1: float | None = None  # int8 with every quantisable node quantised
    val_top1: float | None = None  # the artifact kept
    # % of validation images on which int8 predicts the class fp32 predicts: what chooses between candidates
    # within the budget (a top-1 difference inside the budget is a few net flips; agreement counts them all)
    plain_val_agreement: float | None = None
    val_agreement: float | None = None
    drop: float | None = None  # fp32_val_top1 - val_top1
    budget_met: bool | None = None
    nodes_in_float: list[str] = field(default_factory=list)
    quantised_nodes: int = 0
    max_fallback_nodes: int = 0
    steps: list[FallbackStep] = field(default_factory=list)
    # how sensitive the model is, on the validation images: fp32's median top-two logit margin against the
    # kept int8 artifact's logit error (rms over logits); `diagnosis` says what it means when the budget is missed
    fp32_margin_median: float | None = None
    logit_error_rms: float | None = None
    diagnosis: str | None = None
    layers_csv: str | None = None  # the per-layer error table beside the artifact
    seconds: float = 0.0
    # side by side, filled by export once both were measured: plain int8 vs the artifact kept
    plain_test_top1: float | None = None
    plain_latency_ms: float | None = None
    latency_ms: float | None = None  # the artifact kept, measured the same way (ORT, batch 1, this CPU)

    @staticmethod
    def table_for(artifact: str | os.PathLike) -> Path:
        """The per-layer error table beside an int8 artifact: `<artifact stem>.layers.csv`."""
        return Path(artifact).with_suffix(".layers.csv")


@dataclass
class ArtifactEntry(Record):
    """One artifact in export/summary.json."""

    format: str
    precision: str
    variant: str | None
    path: str
    sidecar: str
    size_mb: float
    parity: Parity | None
    latency_ms_batch1: float | None = None
    accuracy: Int8Accuracy | None = None  # int8 only: the accuracy search and its outcome


@dataclass
class ExportSummary(Record):
    """export/summary.json: every artifact of one export, what was skipped, and CPU speed notes."""

    FILE = "summary.json"
    KIND = "export-summary"
    LEGACY_KEY = "artifacts"
    WHAT = "export summary"
    FIX = "export again with `dait-edge export RUN`"

    run_dir: str
    out: str
    student: str
    checkpoint: str
    checkpoint_sha256: str
    input_size: list[int]
    artifacts: list[ArtifactEntry]
    skipped: list[str] = field(default_factory=list)
    performance: list[str] = field(default_factory=list)
    performance_how: str = ""
    created: str = ""

    def formats(self) -> set[str]:
        return {artifact.format for artifact in self.artifacts}

    def by_format(self, name: str) -> ArtifactEntry:
        """The artifact of format `name` (a KeyError naming the formats there when it is absent)."""
        for artifact in self.artifacts:
            if artifact.format == name:
                return artifact
        raise KeyError(f"no {name} artifact in this export (it has {', '.join(sorted(self.formats()))})")
