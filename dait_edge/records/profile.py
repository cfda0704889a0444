"""What `dait-edge profile` measures: one row per artifact x backend x batch, and how it was measured.

Saved in RUN/profile/PROFILE.json (rows of that run's artifacts) and printed by `profile --json`;
`dait-edge report` reads both.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from dait_edge.records._base import Record, RecordError

# The host facts `hardware()` writes; every other key of an unversioned file's hardware block is a
# runtime version (onnxruntime, torch, tensorrt, cuda).
_HOST_KEYS = ("machine", "processor", "cpu", "cpu_count", "platform", "gpu")


@dataclass
class Latency(Record):
    """Milliseconds per request (single stream, after warm-up)."""

    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    samples: int
    values: list[float] = field(default_factory=list)  # every sample (ms, 4 decimals): the noise test's data


@dataclass
class Hardware(Record):
    """The machine a profile ran on, in the words a reader needs to compare figures."""

    machine: str
    processor: str
    cpu: str
    cpu_count: int | None
    platform: str
    gpu: str | None = None
    versions: dict[str, str] = field(default_factory=dict)  # the runtime's and its libraries' versions


@dataclass
class Measured(Record):
    """How every row of a result was measured: profile settings, timing rule, machine, when."""

    profile: str
    profile_file: str
    runtime: str
    threads: int | str  # a count, or "runtime default"
    warmup: int
    iterations: int
    duration_s: float
    latency_budget_ms: float | None
    timing: str
    memory: str
    hardware: Hardware
    created: str

    def settings(self) -> dict[str, Any]:
        """Everything but when: rows measured with equal settings can be merged."""
        return {k: v for k, v in self.to_dict().items() if k != "created"}


@dataclass
class ProfileRow(Record):
    """One artifact, run by one backend, at one batch size."""

    artifact: str
    profile: str
    format: str
    student: str | None
    model: str | None  # the trained weights' SHA-256: the formats of one model are compared with each other
    dataset: str | None
    method: str | None
    backend: str  # onnxruntime, onnxruntime-cudagraph, tensorrt, torch-eager, torch-compiled, ...
    label: str  # how tables name it: the format, plus the backend where one file is measured several ways
    reference: bool  # the PyTorch model itself: what export parity compares against, so it needs none
    providers: list[str]
    precision: str
    batch: int
    latency_ms: Latency
    throughput_ips: float
    peak_mem_mb: float | None
    device_mem_mb: float | None
    size_mb: float
    params: int | None
    macs: int | None
    top1: float | None
    top1_data: str | None  # which test images the top-1 was measured on
    torch_top1: float | None  # the run's PyTorch top-1: the reference where no fp32 artifact was scored
    parity_passed: bool | None
    within_budget: bool | None
    note: str = ""
    # Which test images it classified correctly (base64 of packed bits, in test-list order) and the identity
    # of that list: two rows with the same `test_images` are paired image by image (report/stats.py).
    correct: str | None = None
    test_images: str | None = None
    # The same on validation images (the run's held-out split, else training images its int8 calibration
    # did not use): what `dait-edge report` chooses by, so that no choice sees the test labels. None in
    # rows measured before they were scored.
    val_top1: float | None = None
    val_data: str | None = None
    val_correct: str | None = None
    val_images: str | None = None
    # Filled by `dait-edge report` from where the row was found; `profile` leaves them null.
    run_dir: str | None = None
    hardware: str | None = None
    latency_budget_ms: float | None = None


@dataclass
class ProfileResult(Record):
    """RUN/profile/PROFILE.json, or what `dait-edge profile --json` prints: rows and how they were measured."""

    KIND = "profile-result"
    LEGACY_KEY = "measured"
    WHAT = "profile result"
    FIX = "profile again with `dait-edge profile ARTIFACTS --profile NAME`"

    measured: Measured
    rows: list[ProfileRow]
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        # Version 0 kept runtime versions beside the host facts and had no row labels.
        data["measured"] = legacy_measured(data.get("measured"))
        profile = data["measured"].get("profile") if isinstance(data["measured"], dict) else None
        if isinstance(data.get("rows"), list):
            data["rows"] = [legacy_row(row, profile) for row in data["rows"]]
        return data


def read_result(path: str | os.PathLike) -> ProfileResult | None:
    """The profile result in `path`; None when the file is missing, not JSON, or holds something else
    (a damaged result is replaced by the next measurement, never merged)."""
    try:
        return ProfileResult.read_if_present(path)
    except RecordError:
        return None


# ---------------------------------------------------------------------- ProfileRow.correct / test_images


def encode_correct(correct) -> str:
    """Which test images were classified correctly, as base64 of the packed bits (1 bit per image)."""
    import numpy as np

    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def decode_correct(text: str, count: int):
    """The bool array `encode_correct` packed (`count` images)."""
    import numpy as np

    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    return bits[:count].astype(bool)


def images_key(samples) -> str:
    """The identity of a list of test images (file names and labels, in order): correctness bitmaps are
    paired only when measured on the same list."""
    digest = hashlib.sha256()
    for path, label in samples:
        digest.update(f"{str(path).replace(chr(92), '/').rsplit('/', 2)[-2:]}:{label}\n".encode())
    return digest.hexdigest()[:16]


# Fields that version 0 gained over its life: files from before a field existed read it as this.
_LEGACY_MEASURED = {"runtime": "onnxruntime", "latency_budget_ms": None}
_LEGACY_ROW = {
    "model": None,
    "dataset": None,
    "method": None,
    "device_mem_mb": None,
    "top1_data": None,
    "torch_top1": None,
    "within_budget": None,
    "note": "",
}


def legacy_measured(measured: Any) -> Any:
    """A version-0 measured block in the current shape: runtime versions move into hardware.versions."""
    if not isinstance(measured, dict) or not isinstance(measured.get("hardware"), dict):
        return measured
    hardware = measured["hardware"]
    host = {k: v for k, v in hardware.items() if k in _HOST_KEYS}
    host.setdefault("cpu", hardware.get("processor") or hardware.get("machine") or "")
    return (
        _LEGACY_MEASURED
        | dict(measured)
        | {"hardware": host | {"versions": {k: str(v) for k, v in hardware.items() if k not in _HOST_KEYS}}}
    )


def legacy_row(row: Any, profile: str | None = None) -> Any:
    """A version-0 row in the current shape: its label and whether it is the PyTorch reference."""
    if not isinstance(row, dict):
        return row
    backend, fmt = str(row.get("backend") or ""), row.get("format")
    several_ways = backend.startswith("torch") or backend == "onnxruntime-cudagraph"  # version 0's rule
    label = f"{fmt} ({backend})" if several_ways else fmt
    return _LEGACY_ROW | {"profile": profile, "label": label, "reference": fmt == "checkpoint"} | row
