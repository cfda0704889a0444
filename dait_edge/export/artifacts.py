"""What export writes beside each artifact: its name, its sidecar (what a device needs to feed it and read
its output), its entry in export/summary.json, and an int8 artifact's per-layer error table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dait_edge.export.recipes import Recipe
from dait_edge.export.source import RunInfo
from dait_edge.records import ArtifactEntry, Int8Accuracy, Parity, Sidecar

ARTIFACT_STEM = "student"


def artifact_path(out_dir: Path, recipe_name: str, suffix: str = ".onnx") -> Path:
    """OUT/student-<format><suffix>."""
    return out_dir / f"{ARTIFACT_STEM}-{recipe_name}{suffix}"


def sidecar(recipe: Recipe, info: RunInfo, parity: Parity | None, runtime: str, **fields) -> Sidecar:
    """The sidecar of `recipe`'s artifact from `info`'s checkpoint (`fields`: the format's own)."""
    fields = {"opset": recipe.opset, "dynamic_batch": recipe.dynamic_batch, "recipe": recipe.path} | fields
    return info.sidecar(
        format=recipe.name,
        runtime=runtime,
        precision=recipe.precision,
        variant=recipe.variant,
        parity=parity,
        **fields,
    )


def quantization(recipe: Recipe, path: Path, calibration, accuracy=None) -> dict[str, Any] | None:
    """An int8 sidecar's `quantization` block: the quantiser's settings (the calibration the accuracy
    search chose), the calibration images, graph counts and the accuracy record; None for other precisions."""
    if recipe.precision != "int8":
        return None
    from dait_edge.export.quantize import CALIBRATION_METHODS, graph_stats

    stats = graph_stats(path)
    settings = dict(recipe.quantize)
    if accuracy is not None:
        settings["calibrate_method"] = CALIBRATION_METHODS[accuracy.record.calibration]
        if accuracy.record.percentile is not None:
            settings["percentile"] = accuracy.record.percentile
    return {
        **settings,
        "calibration": {"samples": int(len(calibration.images)), "data": calibration.source},
        "graph": {k: v for k, v in stats.items() if k != "ops"},
        "accuracy": accuracy.record.to_dict() if accuracy is not None else None,
    }


def entry(recipe: Recipe, path: Path, parity: Parity | None) -> ArtifactEntry:
    """The artifact's line in export/summary.json."""
    return ArtifactEntry(
        format=recipe.name,
        precision=recipe.precision,
        variant=recipe.variant,
        path=str(path),
        sidecar=str(Sidecar.path_for(path)),
        size_mb=round(path.stat().st_size / 1e6, 3),
        parity=parity,
    )


def write_layer_table(artifact: Path, layers: list) -> Path:
    """The per-layer int8 error table (`layer_error.LayerError` rows) beside the artifact, atomically."""
    from dait_edge.export.layer_error import layer_table_csv
    from dait_edge.utils.io import write_text_atomic

    path = Int8Accuracy.table_for(artifact)
    write_text_atomic(path, layer_table_csv(layers))
    return path


def remove_artifact(final: Path) -> None:
    """An older artifact of this format must not pass for the new one while this one is built: its sidecar
    first (a sidecar means finished), then its layer table and the file."""
    Sidecar.path_for(final).unlink(missing_ok=True)
    Int8Accuracy.table_for(final).unlink(missing_ok=True)
    final.unlink(missing_ok=True)
