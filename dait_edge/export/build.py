"""Building one ONNX artifact from its recipe: fp32 from the student, fp16 converted from fp32, int8 quantised
within its accuracy budget; and `Int8Judge`, what every int8 recipe of one export is judged with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dait_edge.errors import UserError
from dait_edge.export.artifacts import write_layer_table
from dait_edge.export.images import ImageBatch
from dait_edge.export.parity import latency_ms, ort_logits, top1_of
from dait_edge.export.recipes import Recipe
from dait_edge.utils.io import temp_path_beside

MIN_OPSET = 9  # torch.onnx exports nothing older
FP32_FORMAT = "onnx-fp32"  # what every int8 artifact is judged against


def check_opset(opset: int | None) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= newest:
        raise UserError(
            f"opset {opset} is outside what the installed onnx knows ({MIN_OPSET} to {newest}); pass one in"
            " that range (the recipes use 17 or 18).",
            setting="opset",
        )


def onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def accuracy_settings(recipe: Recipe, budget: float | None, method: str | None) -> tuple[float, str]:
    """(top-1 budget, calibration method): the call's, else the recipe's [accuracy] table, else 1.0 / minmax."""
    from dait_edge.export.quantize import calibration_name

    table = recipe.accuracy
    recipe_method = calibration_name(str(recipe.quantize.get("calibrate_method", "MinMax"))) or "minmax"
    return (
        float(budget if budget is not None else table.get("max_top1_drop", 1.0)),
        str(method or table.get("calibration", recipe_method)),
    )


class Built(dict):
    """format -> where its file is now (final or temp), each source's graph prepared for the quantiser, and
    each QAT format's fine-tuned weights as a float graph (what its QOperator conversion quantises)."""

    def __init__(self):
        super().__init__()
        self.prepared: dict[str, Path] = {}
        self.qat_float: dict[str, Path] = {}
        self.qat_reference: dict[str, Any] = {}  # its PyTorch logits on the parity images


@dataclass
class Int8Built:
    record: Any  # Int8Accuracy
    layers: list
    plain: Path | None  # plain int8 (a temp file) when it differs from the artifact kept
    reference: Any = None  # what parity compares with, when not the fp32 student: QAT's fake-quantised model
    qat: dict | None = None  # what QAT did (the sidecar's quantization.qat)
    qat_state: Path | None = None  # its resume state: removed once the artifact is final


@dataclass
class Int8Judge:
    """What every int8 recipe of one export is judged with (validation images, the budget and the search's
    settings, the test images the plain form is compared on), and the fp32 validation logits per source (both
    int8 variants of a source compare against the same fp32 run)."""

    validation: ImageBatch | None
    num_classes: int
    budget: float | None
    method: str | None
    max_fallback: int | None
    test: ImageBatch
    measure_speed: bool
    input_size: list[int]
    log: Any
    fp32_logits: dict[str, Any] = field(default_factory=dict)
    training: ImageBatch | None = None  # QAT's fine-tuning images (training split, not validation)
    qat: dict[str, Any] = field(default_factory=dict)  # QAT settings given on the command line, the run's tau
    qat_teacher: Any = None  # the run's intermediate teacher, where QAT learns from it
    student_sha256: str = ""  # the trained weights QAT starts from (part of its resume key)
    progress: bool = True

    def fp32(self, source: str, path: Path):
        """The fp32 artifact's logits on the validation images (None without labelled ones)."""
        if self.validation is None or self.validation.labels is None or len(self.validation.images) == 0:
            return None
        if source not in self.fp32_logits:
            self.fp32_logits[source] = ort_logits(path, self.validation.images)
        return self.fp32_logits[source]

    def finish(self, accuracy: Int8Built, final: Path, logits, name: str, latency: float | None) -> None:
        """Side by side with plain int8 (test top-1, latency), the layer table beside the artifact, a log."""
        record = accuracy.record
        record.latency_ms = None if latency is None else round(latency, 3)
        if accuracy.plain is not None:  # layers went back to float: measure plain int8 on the same images
            record.plain_test_top1 = top1_of(ort_logits(accuracy.plain, self.test.images), self.test.labels)
            if self.measure_speed:
                record.plain_latency_ms = round(latency_ms(accuracy.plain, self.input_size), 3)
        else:
            record.plain_test_top1 = top1_of(logits, self.test.labels)
            record.plain_latency_ms = record.latency_ms
        record.layers_csv = str(write_layer_table(final, accuracy.layers))
        if record.checked:
            verdict = "within" if record.budget_met else "OVER"
            self.log(
                f"{name}: validation top-1 {record.val_top1:.2f}% vs fp32 {record.fp32_val_top1:.2f}% (plain int8"
                f" {record.plain_val_top1:.2f}%), agreement with fp32 {record.val_agreement:.1f}%,"
                f" {len(record.nodes_in_float)} node(s) in float; drop {record.drop:.2f} {verdict} the"
                f" {record.budget:g}-point budget"
            )
            if record.diagnosis:
                self.log(f"{name}: {record.diagnosis}")


def _build_int8(recipe: Recipe, tmp: Path, built: Built, calibration, judge: Int8Judge, temps) -> Int8Built:
    from dait_edge.export.int8_search import build_int8
    from dait_edge.export.quantize import prepare_for_quantization

    # a QAT source: quantise its fine-tuned weights (their float graph), judged against the fp32 artifact
    graph = built.qat_float.get(recipe.source, built[recipe.source])
    fp32_source = FP32_FORMAT if recipe.source in built.qat_float else recipe.source
    if recipe.source not in built.prepared:  # shared by the int8 variants of one source
        prepared = temp_path_beside(tmp.parent / f"{recipe.source}-prepared.onnx")
        temps.append(prepared)  # removed at the end, also when preparing fails
        built.prepared[recipe.source] = prepare_for_quantization(graph, prepared)
    budget, method = accuracy_settings(recipe, judge.budget, judge.method)
    plain = temp_path_beside(tmp.parent / f"{recipe.name}-plain.onnx")
    temps.append(plain)
    record, layers = build_int8(
        built.prepared[recipe.source],
        tmp,
        calibration.images,
        recipe.quantize,
        validation=judge.validation,
        fp32_val_logits=judge.fp32(fp32_source, built[fp32_source]),
        num_classes=judge.num_classes,
        budget=budget,
        method=method,
        max_fallback=judge.max_fallback,
        plain_copy=plain,
        log=judge.log,
    )
    # a QAT source's conversion is checked against the fine-tuned weights it quantised, not the student
    reference = built.qat_reference.get(recipe.source)
    return Int8Built(record, layers, plain if record.nodes_in_float else None, reference=reference)


def _build_qat(
    recipe: Recipe, model, tmp: Path, built: Built, input_size, calibration, judge: Int8Judge, temps: list
):
    """QAT's int8 (export/qat.py): calibrated and fine-tuned from the fp32 student, exported as Q/DQ, judged
    on the validation images against the fp32 artifact like post-training int8 (no layer returns to float:
    the budget is checked and reported)."""
    import time

    from dait_edge.export.int8_search import judged_accuracy
    from dait_edge.export.layer_error import qat_layer_errors
    from dait_edge.export.parity import torch_logits
    from dait_edge.export.qat import (
        QATResume,
        QATSettings,
        export_float,
        export_qdq,
        fake_quantised,
        fine_tune,
        float_layers,
        state_key,
    )

    settings = QATSettings(**{**recipe.qat, **judge.qat})
    settings.check(recipe.path or recipe.name)
    started = time.perf_counter()
    quantised = fake_quantised(model, calibration.images, settings.batch_size)
    validation = judge.validation
    has_val = validation is not None and validation.labels is not None and len(validation.images) > 0
    before = torch_logits(quantised, validation.images) if has_val else None
    training = judge.training
    if training is None or training.labels is None or len(training.images) == 0:
        raise UserError("QAT needs labelled training images; export from a run whose dataset can be read.")
    teacher = judge.qat_teacher if settings.teacher == "teacher" else model
    # saved after each epoch beside the artifact: a killed or stopped export continues from there
    key = state_key(settings, judge.student_sha256, calibration.images, training.images, training.labels)
    resume = QATResume(tmp.parent / f".{recipe.name}.qat-state.pt", key, judge.log)
    history = fine_tune(
        quantised, teacher, training.images, training.labels, settings, progress=judge.progress, resume=resume
    )
    export_qdq(quantised, tmp, input_size, recipe.dynamic_batch, recipe.opset)
    # the fine-tuned weights without their quantisers, for a QOperator conversion (onnx-int8-qat-u8s8)
    weights_only = temp_path_beside(tmp.parent / f"{recipe.name}-float.onnx")
    temps.append(weights_only)
    export_float(quantised, weights_only, input_size, recipe.dynamic_batch, recipe.opset)
    built.qat_float[recipe.name] = weights_only
    built.qat_reference[recipe.name] = ort_logits(weights_only, judge.test.images)
    budget, _ = accuracy_settings(recipe, judge.budget, "minmax")
    fp32 = judge.fp32(recipe.source, built[recipe.source]) if recipe.source else None
    record = judged_accuracy(tmp, validation, fp32, before, budget, judge.num_classes)
    record.seconds = round(time.perf_counter() - started, 2)
    qat = {
        **{k: getattr(settings, k) for k in ("epochs", "lr", "batch_size", "temperature", "teacher")},
        "train_images": int(len(training.images)),
        "float_layers": float_layers(quantised),
        "losses": history,
        "seconds": record.seconds,
        "tool": "nvidia-modelopt INT8_DEFAULT_CFG",
    }
    layers = qat_layer_errors(tmp, weights_only, calibration.images)
    reference = torch_logits(quantised, judge.test.images)
    return Int8Built(record, layers, None, reference=reference, qat=qat, qat_state=resume.path)


def build_onnx(
    recipe: Recipe, model, tmp: Path, built: Built, input_size, calibration, judge=None, temps=None
) -> Int8Built | None:
    """Write `recipe`'s artifact to `tmp`: exported from `model`, or converted from the `built` source."""
    if recipe.qat:
        return _build_qat(recipe, model, tmp, built, input_size, calibration, judge, temps)
    if recipe.source is None:
        from dait_edge.export.onnx_export import export_onnx

        export_onnx(
            model,
            tmp,
            input_size,
            opset=recipe.opset,
            exporter=recipe.exporter,
            dynamic_batch=recipe.dynamic_batch,
        )
    elif recipe.precision == "fp16":
        from dait_edge.export.precision import DEFAULT_BLOCK_LIST, convert_fp16

        convert_fp16(
            built[recipe.source],
            tmp,
            op_block_list=recipe.fp16.get("op_block_list", DEFAULT_BLOCK_LIST),
            keep_io_types=recipe.fp16.get("keep_io_types", True),
        )
    elif recipe.precision == "int8":
        return _build_int8(recipe, tmp, built, calibration, judge, temps if temps is not None else [])
    else:
        raise UserError(
            f"recipe {recipe.name}: an ONNX recipe converted from {recipe.source} must be fp16 or int8."
        )
