"""int8 that keeps its accuracy: choose the calibration, then return the layers int8 hurts most to float
until the validation top-1 is within the budget of fp32 (OpenVINO's accuracy control, Polygraphy's
precision debugging, with ONNX Runtime's quantiser and its `nodes_to_exclude`).

1. Calibrate (minmax, entropy, percentile; `search` tries each on the validation images, keeps the best).
2. Quantise everything quantisable ("plain" int8); rank the quantised activations by their own error
   (`layer_error`), worst first.
3. While the validation drop exceeds the budget: keep the worst 1, 2, 3, 4, 6, 8, 12, ... activations in
   float (their producer and the consumers that would quantise them), re-quantise, re-measure, up to the
   cap (default 20% of the quantisable nodes). The best artifact found is kept, and every step recorded.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dait_edge.errors import UserError
from dait_edge.export.layer_error import LayerError, layer_errors, layer_table_csv, quantisable_nodes
from dait_edge.export.parity import ImageBatch, ort_logits
from dait_edge.export.quantize import CALIBRATION_METHODS, quantize_int8
from dait_edge.records import FallbackStep, Int8Accuracy

MIN_VALIDATION_IMAGES = 50  # below this (or below the class count) a top-1 drop says nothing
DEFAULT_FALLBACK_SHARE = 0.2
CALIBRATION_CHOICES = (*CALIBRATION_METHODS, "search")


def check_settings(calibration: str, budget: float) -> None:
    if calibration not in CALIBRATION_CHOICES:
        raise UserError(
            f"unknown calibration method {calibration!r}; use one of {', '.join(CALIBRATION_CHOICES)}.",
            setting="calibration",
        )
    if not 0.0 <= budget <= 100.0:
        raise UserError(
            f"the top-1 budget must be between 0 and 100 points, not {budget:g}.", setting="max_top1_drop"
        )


def top1(path: Path, images: ImageBatch) -> float:
    logits = ort_logits(path, images.images)
    return round(float((logits.argmax(1) == images.labels).mean() * 100), 3)


def _fallback_counts():
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ...: one at a time first, then a few."""
    yield from (1, 2, 3)
    k = 4
    while True:
        yield k
        yield k * 3 // 2
        k *= 2


def build_int8(
    prepared: Path,
    dst: Path,
    calibration: np.ndarray,
    options: dict[str, Any],
    *,
    validation: ImageBatch | None,
    fp32_val_top1: float | None,
    num_classes: int,
    budget: float,
    method: str,
    max_fallback: int | None = None,
    plain_copy: Path | None = None,
    log=print,
) -> tuple[Int8Accuracy, list[LayerError]]:
    """Quantise `prepared` (the fp32 graph after ORT's pre-processing) into `dst` within `budget`; returns
    what happened and the per-layer errors of the artifact kept (its nodes in float marked). `plain_copy`
    receives plain int8 when layers went back to float (to compare the two side by side)."""
    started = time.perf_counter()
    check_settings(method, budget)
    total = quantisable_nodes(prepared)
    if total == 0:
        raise UserError(
            f"{prepared.name}: the model has nothing int8 can quantise; export fp32 or fp16 instead."
        )
    usable, reason = _usable(validation, num_classes)
    if not usable:
        log(f"warning: int8 accuracy {reason}; the artifact is plain int8, budget not checked")

    with tempfile.TemporaryDirectory(prefix="dait-int8-") as tmp:
        folder = Path(tmp)
        tried: dict[str, float] = {}
        if method == "search" and usable:
            candidates = {}
            for name in CALIBRATION_METHODS:
                path = quantize_int8(
                    prepared, folder / f"{name}.onnx", calibration, _with(options, name), prepared
                )
                tried[name] = top1(path, validation)
                candidates[name] = path
            chosen = max(
                CALIBRATION_METHODS, key=lambda name: tried[name]
            )  # ties: the earlier (minmax first)
            plain = candidates[chosen]
        else:
            chosen = "minmax" if method == "search" else method
            plain = quantize_int8(
                prepared, folder / "plain.onnx", calibration, _with(options, chosen), prepared
            )
        chosen_options = _with(options, chosen)
        layers = layer_errors(prepared, calibration, chosen_options)
        cap = max_fallback if max_fallback is not None else max(1, math.ceil(DEFAULT_FALLBACK_SHARE * total))
        record = Int8Accuracy(
            budget=budget,
            checked=usable,
            calibration=chosen,
            reason=None if usable else reason,
            val_images=0 if validation is None else len(validation.images),
            val_source=None if validation is None else validation.source,
            calibration_tried=tried,
            fp32_val_top1=fp32_val_top1 if usable else None,
            quantised_nodes=total,
            max_fallback_nodes=cap,
        )
        best_path, best_nodes = plain, []
        if usable:
            record.plain_val_top1 = top1(plain, validation) if chosen not in tried else tried[chosen]
            best_top1 = record.plain_val_top1
            if _over(fp32_val_top1, best_top1, budget):
                best_path, best_nodes, best_top1 = _fall_back(
                    prepared,
                    folder,
                    calibration,
                    chosen_options,
                    layers,
                    cap,
                    validation,
                    fp32_val_top1,
                    budget,
                    record,
                    (plain, [], best_top1),
                    log,
                )
            record.val_top1 = best_top1
            record.drop = round(fp32_val_top1 - best_top1, 3)
            record.budget_met = record.drop <= budget
        shutil.copyfile(best_path, dst)
        if plain_copy is not None and best_nodes:
            shutil.copyfile(plain, plain_copy)
    record.nodes_in_float = best_nodes
    in_float = set(best_nodes)
    for row in layers:
        row.in_float = row.node in in_float
    record.seconds = round(time.perf_counter() - started, 3)
    return record, layers


def _over(fp32: float, top1: float, budget: float) -> bool:
    """Is the drop over the budget, as the record states it (3 decimals): exactly the budget is within it."""
    return round(fp32 - top1, 3) > budget + 1e-9


def _usable(validation: ImageBatch | None, num_classes: int) -> tuple[bool, str]:
    if validation is None or validation.labels is None:
        return False, "has no labelled validation images (the dataset is unreachable)"
    count = len(validation.images)
    if count < MIN_VALIDATION_IMAGES or count < num_classes:
        hint = " (the calibration takes the other training images: calibrate on fewer)" if count == 0 else ""
        return False, (
            f"cannot be checked on {count} validation images (at least {max(MIN_VALIDATION_IMAGES, num_classes)}"
            f" needed){hint}"
        )
    return True, ""


def _with(options: dict[str, Any], method: str) -> dict[str, Any]:
    return {**options, "calibrate_method": CALIBRATION_METHODS[method]}


def _fall_back(
    prepared, folder, calibration, options, layers, cap, validation, fp32, budget, record, best, log
):
    """Return the worst activations to float in growing steps until the drop is within the budget or the
    cap is reached; the best (highest top-1, then fewest nodes) is kept."""
    best_path, best_nodes, best_top1 = best
    previous: list[str] = []
    for count in _fallback_counts():
        nodes: list[str] = []
        for row in layers[:count]:
            nodes += [n for n in row.fallback if n not in nodes]
        capped = len(nodes) > cap
        if capped:
            nodes = _within_cap(layers, cap)
        if nodes == previous:  # these layers' fallbacks were already in float
            if capped or count >= len(layers):
                break  # the cap, or the end of the ranking, is reached
            continue
        previous = nodes
        path = quantize_int8(
            prepared, folder / f"fallback-{len(nodes)}.onnx", calibration, options, prepared, nodes
        )
        value = top1(path, validation)
        record.steps.append(FallbackStep(nodes=len(nodes), val_top1=value))
        log(
            f"int8 accuracy: {len(nodes)} node(s) in float -> validation top-1 {value:.2f}% (fp32 {fp32:.2f}%)"
        )
        if value > best_top1:
            best_path, best_nodes, best_top1 = path, nodes, value
        if not _over(fp32, value, budget) or count >= len(layers):
            break
    return best_path, best_nodes, best_top1


def _within_cap(layers: list[LayerError], cap: int) -> list[str]:
    """The worst activations whose fallbacks fit in `cap` nodes together."""
    nodes: list[str] = []
    for row in layers:
        extra = [n for n in row.fallback if n not in nodes]
        if len(nodes) + len(extra) > cap:
            break
        nodes += extra
    return nodes


def write_layer_table(artifact: Path, layers: list[LayerError]) -> Path:
    """`<artifact stem>.layers.csv` beside the artifact, written atomically."""
    from dait_edge.utils.io import write_text_atomic

    path = artifact.with_suffix(".layers.csv")
    write_text_atomic(path, layer_table_csv(layers))
    return path
