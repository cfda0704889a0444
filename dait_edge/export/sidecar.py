"""The sidecar JSON beside every artifact: everything a deployment needs to feed and read it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dait_edge.utils.io import write_json_atomic

SIDECAR_VERSION = 1


def sidecar_path(artifact: str | Path) -> Path:
    return Path(artifact).with_suffix(".json")


def build_sidecar(
    *,
    recipe,
    run: dict[str, Any],
    parity: dict[str, Any] | None,
    runtime: str,
    input_name: str = "input",
    output_name: str = "logits",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`run` is the resolved run info (see api.RunInfo.as_dict): data config, classes, checkpoint, hashes."""
    data_config = run["data_config"]
    return {
        "sidecar_version": SIDECAR_VERSION,
        "format": recipe.name,
        "runtime": runtime,
        "precision": recipe.precision,
        "variant": recipe.variant,
        "input_name": input_name,
        "output_name": output_name,
        "output": "logits",
        "input_size": list(data_config["input_size"]),
        "mean": list(data_config["mean"]),
        "std": list(data_config["std"]),
        "interpolation": data_config.get("interpolation") or "bilinear",
        "crop_pct": data_config.get("crop_pct") or 0.875,
        "classes": list(run["classes"]),
        "opset": recipe.opset,
        "dynamic_batch": recipe.dynamic_batch,
        "student": run["student"],
        "dataset": run.get("dataset"),
        "method": run.get("method"),
        "source_checkpoint": {"path": run["checkpoint"], "sha256": run["checkpoint_sha256"]},
        "config_hash": run["config_hash"],
        # The reference an artifact's measured top-1 is judged against, also where only export/ is copied.
        "student_top1": run.get("student_top1"),
        "parity": parity,
        **(extra or {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_sidecar(artifact: str | Path, sidecar: dict[str, Any]) -> Path:
    """Written last, after the artifact is in place: a sidecar means the artifact is finished."""
    path = sidecar_path(artifact)
    write_json_atomic(path, sidecar)
    return path
