"""int8 that keeps its accuracy: choose the calibration, then return the layers int8 hurts most to float
until the validation top-1 is within the budget of fp32 (OpenVINO's accuracy control, Polygraphy's
precision debugging, with ONNX Runtime's quantiser and its `nodes_to_exclude`).

1. Calibrate (minmax, entropy, percentile; `search` tries each on the validation images, keeps the best).
2. Quantise everything quantisable ("plain" int8); rank the quantised activations by their own error
   (`layer_error`), worst first.
3. While the validation drop exceeds the budget: keep the worst 1, 2, 3, 4, 6, 8, 12, ... activations in
   float (their producer and the consumers that would quantise them), re-quantise, re-measure, up to the
   cap (default 20% of the quantisable nodes). The best artifact found is kept, and every step recorded.

"Best" (`_Judge.key`): within the budget first, then the highest agreement with fp32's predictions, then
top-1, then fewer nodes in float. When the budget is still missed, `diagnose` compares int8's logit error
with fp32's decision margins to say whether more fallback could help at all.
"""

from __future__ import annotations

import functools
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dait_edge.errors import UserError
from dait_edge.export.images import ImageBatch
from dait_edge.export.layer_error import LayerError, layer_errors, quantisable_nodes
from dait_edge.export.parity import ort_logits, top1_of
from dait_edge.export.quantize import (
    CALIBRATION_METHODS,
    DEFAULT_PERCENTILE,
    calibration_name,
    quantize_int8,
)
from dait_edge.export.sensitivity import compare, median_margin
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
    return top1_of(ort_logits(path, images.images), images.labels)


@dataclass
class Candidate:
    """One int8 graph the search built, as the validation images judge it."""

    path: Any  # the file (or, for ExecuTorch and LiteRT, the quantised PyTorch graph) judged
    nodes: list[str]  # kept in float
    top1: float
    agreement: float  # % of validation images predicted as fp32 predicts them
    logits: np.ndarray


@dataclass
class _Judge:
    """Scores candidates against fp32 on the validation images. Within the budget, the one that agrees with
    fp32 most wins: on a small split a top-1 difference inside the budget is a handful of net flips either
    way, while agreement counts every flip (the demo's ShuffleNet-V2 with its classifier quantised, 60
    validation images: 95.0% agreement there, 95.0% on the test split and 0.3 points above fp32; the higher
    validation top-1 agreed on 86.7% and lost 1.3 test points)."""

    validation: ImageBatch
    fp32_logits: np.ndarray
    fp32_top1: float
    budget: float
    logits_of: Callable[[Any, np.ndarray], np.ndarray] = ort_logits  # an ONNX file's, by default

    def score(self, path: Any, nodes: list[str]) -> Candidate:
        logits = self.logits_of(path, self.validation.images)
        agreement = compare(self.fp32_logits, logits)[1]
        return Candidate(path, nodes, top1_of(logits, self.validation.labels), agreement, logits)

    def within(self, candidate: Candidate) -> bool:
        return not _over(self.fp32_top1, candidate.top1, self.budget)

    def key(self, candidate: Candidate) -> tuple:
        """Within the budget first, then agreement, top-1, and fewer nodes in float."""
        return (self.within(candidate), candidate.agreement, candidate.top1, -len(candidate.nodes))

    def record_kept(self, record: Int8Accuracy, kept: Candidate) -> None:
        """What `record` says of the artifact kept: its top-1, agreement and drop, the verdict, the margins."""
        record.val_top1, record.val_agreement = kept.top1, kept.agreement
        record.drop = round(self.fp32_top1 - kept.top1, 3)
        record.budget_met = self.within(kept)
        record.fp32_margin_median, record.logit_error_rms = self.sensitivity(kept)

    def sensitivity(self, candidate: Candidate) -> tuple[float, float]:
        """(fp32's median top-two logit margin, the candidate's logit error as rms over every logit)."""
        return median_margin(self.fp32_logits), compare(self.fp32_logits, candidate.logits)[0]


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
    fp32_val_logits: np.ndarray | None,
    num_classes: int,
    budget: float,
    method: str,
    max_fallback: int | None = None,
    plain_copy: Path | None = None,
    log=print,
) -> tuple[Int8Accuracy, list[LayerError]]:
    """Quantise `prepared` (the fp32 graph after ORT's pre-processing) into `dst` within `budget`; returns
    what happened and the per-layer errors of the artifact kept (its nodes in float marked). `plain_copy`
    receives plain int8 when layers went back to float (to compare the two side by side).
    `fp32_val_logits`: the fp32 artifact's logits on `validation`, which top-1 and agreement are judged
    against (measured on `prepared` when None)."""
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
        judge = fp32_val_top1 = None
        if usable:
            if fp32_val_logits is None:  # not measured by the caller: the prepared graph is the same model
                fp32_val_logits = ort_logits(prepared, validation.images)
            fp32_val_top1 = top1_of(fp32_val_logits, validation.labels)
            judge = _Judge(validation, fp32_val_logits, fp32_val_top1, budget)
        tried: dict[str, float] = {}
        agreed: dict[str, float] = {}
        plain_scored = None
        if method == "search" and usable:
            scored = []
            for label, settings in search_candidates(options):
                stem = label.replace(" ", "-")
                ranges = folder / f"ranges-{stem}.json"
                path = quantize_int8(
                    prepared, folder / f"{stem}.onnx", calibration, settings, prepared, ranges=ranges
                )
                candidate = judge.score(path, [])
                tried[label], agreed[label] = candidate.top1, candidate.agreement
                scored.append((settings, ranges, candidate))
            # max keeps the first of equals: minmax, entropy, then the percentiles in the recipe's order
            chosen_options, ranges, plain_scored = max(scored, key=lambda item: judge.key(item[2]))
            plain = plain_scored.path
        else:
            chosen_options = _with(options, "minmax" if method == "search" else method)
            ranges = folder / "ranges.json"
            plain = quantize_int8(
                prepared, folder / "plain.onnx", calibration, chosen_options, prepared, ranges=ranges
            )
            plain_scored = judge.score(plain, []) if usable else None
        chosen = calibration_name(chosen_options["calibrate_method"])
        layers = layer_errors(prepared, calibration, chosen_options, ranges=ranges)
        cap = max_fallback if max_fallback is not None else max(1, math.ceil(DEFAULT_FALLBACK_SHARE * total))
        record = Int8Accuracy(
            budget=budget,
            checked=usable,
            calibration=chosen,
            percentile=float(chosen_options.get("percentile", DEFAULT_PERCENTILE))
            if chosen == "percentile"
            else None,
            reason=None if usable else reason,
            val_images=0 if validation is None else len(validation.images),
            val_source=None if validation is None else validation.source,
            calibration_tried=tried,
            calibration_agreement=agreed,
            fp32_val_top1=fp32_val_top1,
            quantised_nodes=total,
            max_fallback_nodes=cap,
        )
        best = plain_scored
        if usable:
            record.plain_val_top1, record.plain_val_agreement = best.top1, best.agreement
            if not judge.within(best):
                quantise = functools.partial(
                    quantize_int8,
                    prepared,
                    calibration=calibration,
                    options=chosen_options,
                    prepared=prepared,
                    ranges=ranges,
                )
                best = _fall_back(folder, quantise, layers, cap, judge, best, record, log)
            judge.record_kept(record, best)
            if not record.budget_met:
                record.diagnosis = diagnose(record)
        best_path, best_nodes = (best.path, best.nodes) if best is not None else (plain, [])
        shutil.copyfile(best_path, dst)
        if plain_copy is not None and best_nodes:
            shutil.copyfile(plain, plain_copy)
    record.nodes_in_float = best_nodes
    in_float = set(best_nodes)
    for row in layers:
        row.in_float = row.node in in_float
    record.seconds = round(time.perf_counter() - started, 3)
    return record, layers


def judged_accuracy(
    path: Path,
    validation: ImageBatch | None,
    fp32_val_logits: np.ndarray | None,
    before_logits: np.ndarray | None,
    budget: float,
    num_classes: int,
    logits_of: Callable[[Any, np.ndarray], np.ndarray] = ort_logits,
    quantised_nodes: int | None = None,
) -> Int8Accuracy:
    """A QAT artifact (or an ExecuTorch / LiteRT file, `logits_of` running it) judged as post-training int8 is: top-1 and agreement with the fp32 artifact on the
    validation images against `budget`. `before_logits`: the calibrated fake-quantised model before its
    fine-tuning (what calibration alone gives: the record's `plain_val_*`; its `plain_test_top1` and
    `plain_latency_ms`, filled by export, are the artifact's own, there being no plain file). No layer
    returns to float."""
    from dait_edge.export.quantize import graph_stats

    usable, reason = _usable(validation, num_classes)
    if usable and fp32_val_logits is None:
        usable, reason = False, "has no fp32 artifact to be compared with"
    record = Int8Accuracy(
        budget=budget,
        checked=usable,
        calibration="minmax",
        reason=None if usable else reason,
        val_images=0 if validation is None else len(validation.images),
        val_source=None if validation is None else validation.source,
        quantised_nodes=graph_stats(path)["QuantizeLinear"] if quantised_nodes is None else quantised_nodes,
    )
    if not usable:
        return record
    fp32_top1 = top1_of(fp32_val_logits, validation.labels)
    judge = _Judge(validation, fp32_val_logits, fp32_top1, budget, logits_of)
    kept = judge.score(path, [])
    record.fp32_val_top1 = fp32_top1
    if before_logits is not None:
        record.plain_val_top1 = top1_of(before_logits, validation.labels)
        record.plain_val_agreement = compare(fp32_val_logits, before_logits)[1]
    judge.record_kept(record, kept)
    if not record.budget_met:
        record.diagnosis = (
            f"after QAT int8 still changes fp32's prediction on {100.0 - kept.agreement:.0f}% of the validation"
            f" images (logit error rms {record.logit_error_rms:.3g}, fp32's median top-two margin"
            f" {record.fp32_margin_median:.3g}); train longer (--qat-epochs), or ship fp32 or fp16"
        )
    return record


def diagnose(record: Int8Accuracy) -> str:
    """Why the budget was missed, in the terms a user can act on."""
    margin, error = record.fp32_margin_median, record.logit_error_rms
    flipped = 100.0 - (record.val_agreement or 0.0)
    if margin is not None and error is not None and error > margin:
        return (
            f"int8 changes fp32's prediction on {flipped:.0f}% of the validation images: its logit error (rms"
            f" {error:.3g}) exceeds fp32's median top-two margin ({margin:.3g}), so 8-bit activations flip"
            f" decisions throughout the model, not at a few layers; ship fp32 or fp16, or raise"
            f" --max-fallback-nodes (the cap was {record.max_fallback_nodes} of {record.quantised_nodes} nodes)"
        )
    return (
        f"int8 changes fp32's prediction on {flipped:.0f}% of the validation images, with a logit error (rms"
        f" {error:.3g}) under fp32's median top-two margin ({margin:.3g}): the loss sits in layers the cap did not"
        f" reach; raise --max-fallback-nodes (the cap was {record.max_fallback_nodes} of {record.quantised_nodes}"
        " nodes)"
    )


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


def search_candidates(options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What `--calibration search` tries: minmax, entropy, and percentile at each cut of the recipe's
    `search_percentiles` (NVIDIA's pytorch-quantization tries 99.9 / 99.99 / 99.999 the same way; one cut
    does not suit every model: with its classifier quantised, the demo's ShuffleNet-V2 agreed with fp32 on
    95.0% of its validation images at 99.99 and on 86.7% at ORT's default 99.999), labelled as the record's
    `calibration_tried` names them."""
    cuts = options.get("search_percentiles") or [options.get("percentile", DEFAULT_PERCENTILE)]
    candidates = [("minmax", _with(options, "minmax")), ("entropy", _with(options, "entropy"))]
    for cut in cuts:
        candidates.append(
            (f"percentile {float(cut):g}", {**_with(options, "percentile"), "percentile": float(cut)})
        )
    return candidates


def _fall_back(folder, quantise, layers, cap, judge: _Judge, plain: Candidate, record, log) -> Candidate:
    """Return the worst activations to float in growing steps until the drop is within the budget or the
    cap is reached; the best by `_Judge.key` (plain int8 included) is kept. `quantise(dst, exclude=...)`
    quantises with the chosen calibration, its ranges computed once."""
    best = plain
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
        path = quantise(folder / f"fallback-{len(nodes)}.onnx", exclude=nodes)
        candidate = judge.score(path, nodes)
        record.steps.append(
            FallbackStep(nodes=len(nodes), val_top1=candidate.top1, val_agreement=candidate.agreement)
        )
        log(
            f"int8 accuracy: {len(nodes)} node(s) in float -> validation top-1 {candidate.top1:.2f}% (fp32"
            f" {judge.fp32_top1:.2f}%), agreement with fp32 {candidate.agreement:.1f}%"
        )
        if judge.key(candidate) > judge.key(best):
            best = candidate
        if judge.within(candidate) or count >= len(layers):
            break
    return best


def _within_cap(layers: list[LayerError], cap: int) -> list[str]:
    """The worst activations whose fallbacks fit in `cap` nodes together."""
    nodes: list[str] = []
    for row in layers:
        extra = [n for n in row.fallback if n not in nodes]
        if len(nodes) + len(extra) > cap:
            break
        nodes += extra
    return nodes
