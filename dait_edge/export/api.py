"""`export_run`: a distill run's student -> verified ONNX / TensorRT artifacts + sidecars + summary.

Every artifact is built at a hidden temp path beside its final name, checked (onnx.checker, parity
against PyTorch), renamed into place, and only then gets its sidecar. A killed export leaves at
most `.*.tmp` files, never an artifact with a sidecar that was not verified.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dait_edge.errors import UserError
from dait_edge.export.recipes import Recipe, expand_formats, plan_recipes
from dait_edge.records import (
    ArtifactEntry,
    DataConfig,
    ExportSummary,
    Parity,
    RunManifest,
    RunSummary,
    Sidecar,
    SourceCheckpoint,
)
from dait_edge.utils.io import sha256_file, sha256_json, temp_path_beside
from dait_edge.utils.signals import check_stop

ARTIFACT_STEM = "student"
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


# ------------------------------------------------------------------------------ the run


def latest_run(runs_root: str | Path = "runs") -> Path:
    """The run under `runs_root` whose summary.json changed last."""
    root = Path(runs_root)
    summaries = [p for p in root.glob(f"*/{RunSummary.FILE}") if p.is_file()] if root.is_dir() else []
    if not summaries:
        raise UserError(
            f"no finished run under {root}/ (no */summary.json); pass a run directory or run `dait-edge distill` first."
        )
    return max(summaries, key=lambda p: p.stat().st_mtime).parent


def resolve_run(
    path: str | Path | None,
    *,
    checkpoint: str = "last",
    runs_root: str | Path = "runs",
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
            run_dir = next((p for p in path.resolve().parents if RunSummary.path_in(p).is_file()), None)
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
    """The run's trained student as it predicts: DHO's with both heads and their combination."""
    from dait_edge.models import build_model

    if info.summary.student_head == "dual":
        from dait_edge.models.dual_head import DualHeadClassifier

        return DualHeadClassifier.from_file(info.student, info.summary.num_classes, info.checkpoint).eval()
    model = build_model(info.student, info.summary.num_classes, pretrained=False, weights=info.checkpoint)
    return model.eval()


# ------------------------------------------------------------------------------ export


def _onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


MIN_OPSET = 9  # torch.onnx exports nothing older


def _check_opset(opset: int | None) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= newest:
        raise UserError(
            f"opset {opset} is outside what the installed onnx knows ({MIN_OPSET} to {newest}); pass one in"
            " that range (the recipes use 17 or 18).",
            setting="opset",
        )


def export_run(
    path: str | Path | None = None,
    *,
    formats: str | list[str] | None = None,
    fp16: bool = False,
    int8: bool = False,
    trt: bool = False,
    out: str | Path | None = None,
    checkpoint: str = "last",
    calib_samples: int = 256,
    parity_samples: int = 512,
    data_root: str | None = None,
    opset: int | None = None,
    runs_root: str | Path = "runs",
    measure_speed: bool = True,
    max_top1_drop: float | None = None,
    calibration_method: str | None = None,
    max_fallback_nodes: int | None = None,
    val_samples: int = 500,
    log=print,
) -> ExportSummary:
    """Export one run's student; returns the export summary (also written to OUT/summary.json).

    int8 artifacts keep their accuracy: `max_top1_drop` (None: the recipe's [accuracy] value) is the top-1
    budget on validation images, `calibration_method` minmax / entropy / percentile / search (None: the
    recipe's), `max_fallback_nodes` the most nodes returned to float (None: 20% of the quantisable ones)."""
    from dait_edge.export import parity as P
    from dait_edge.export.int8_search import check_settings

    requested = expand_formats(formats, fp16=fp16, int8=int8, trt=trt)
    recipes, wanted = plan_recipes(requested)
    # given settings are checked even where no format uses them: a typo never passes silently
    check_settings(calibration_method or "minmax", 1.0 if max_top1_drop is None else max_top1_drop)
    _check_opset(opset)
    for recipe in recipes:  # bad settings fail before anything is built
        if recipe.precision == "int8" and recipe.kind == "onnx":
            budget, method = _accuracy_settings(recipe, max_top1_drop, calibration_method)
            check_settings(method, budget)
    if max_fallback_nodes is not None and max_fallback_nodes < 0:
        raise UserError(
            f"max fallback nodes must be 0 or more, not {max_fallback_nodes}.", setting="max_fallback_nodes"
        )
    if opset is not None:
        for r in recipes:
            r.opset = opset
    for setting, value in (("calib_samples", calib_samples), ("parity_samples", parity_samples)):
        if value < 1:
            raise UserError(f"{setting.replace('_', ' ')} must be at least 1, not {value}.", setting=setting)
    info = resolve_run(path, checkpoint=checkpoint, runs_root=runs_root, data_root=data_root)
    out_dir = Path(out) if out else info.run_dir / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    input_size = info.data_config.input_size

    model = load_student(info)
    test = P.load_images(info.dataset, info.data_root, "test", parity_samples, info.data_config)
    if test.note:
        log(f"parity: {test.note}")
    reference = P.torch_logits(model, test.images)
    calibration = None
    search = None
    if any(r.precision == "int8" and r.kind == "onnx" for r in recipes):
        calibration, validation = P.int8_images(info, calib_samples, val_samples)
        if calibration.note:
            log(f"calibration: {calibration.note}")
        search = _Int8Search(
            validation=validation,
            num_classes=info.summary.num_classes,
            budget=max_top1_drop,
            method=calibration_method,
            max_fallback=max_fallback_nodes,
            test=test,
            measure_speed=measure_speed,
            input_size=input_size,
            log=log,
        )

    built = _Built()
    temps: list[Path] = []
    artifacts: list[ArtifactEntry] = []
    skipped: list[str] = []
    latencies: dict[str, float] = {}
    try:
        for recipe in recipes:
            check_stop(f"export stopped before {recipe.name}", f"the finished artifacts are in {out_dir}")
            final = out_dir / f"{ARTIFACT_STEM}-{recipe.name}.onnx"
            if recipe.kind == "trt":
                record = _export_trt(recipe, info, built, out_dir, skipped, log)
                if record:
                    artifacts.append(record)
                continue
            if recipe.name in wanted:
                # An older artifact of this format must not pass for the new one while this one is built.
                Sidecar.path_for(final).unlink(missing_ok=True)
                final.with_suffix(LAYERS_SUFFIX).unlink(missing_ok=True)
                final.unlink(missing_ok=True)
            tmp = temp_path_beside(final)
            temps.append(tmp)
            accuracy = _build_onnx(recipe, model, tmp, built, input_size, calibration, search, temps)
            result = P.ort_logits(tmp, test.images)
            check = P.compare(reference, result, test, recipe.threshold)
            if not check.passed and recipe.parity_fatal:
                raise UserError(
                    f"{recipe.name} disagrees with PyTorch: top-1 agreement {check.agreement:.2f}% <"
                    f" {recipe.threshold}% on {check.samples} {check.data} inputs (max |logit diff|"
                    f" {check.max_abs_diff:.3g}); artifact removed; try another opset, or another exporter in"
                    " the recipe.",
                    setting="opset",
                )
            if measure_speed:
                latencies[recipe.name] = P.latency_ms(tmp, input_size)
            if recipe.name not in wanted:
                built[recipe.name] = tmp  # only a source for another format; removed at the end
                continue
            os.replace(tmp, final)
            temps.remove(tmp)
            built[recipe.name] = final
            if accuracy is not None:
                search.finish(accuracy, final, result, recipe.name, latencies.get(recipe.name))
            sidecar = _sidecar(recipe, info, check, "onnxruntime", opset=_onnx_opset(final))
            sidecar.quantization = _quantization(recipe, final, calibration, accuracy)
            sidecar.write_for(final)
            entry = _entry(recipe, final, check)
            entry.accuracy = accuracy.record if accuracy is not None else None
            artifacts.append(entry)
            if not check.passed:
                cost = ""
                if check.top1_pytorch is not None:
                    cost = f", top-1 {check.top1_artifact:.2f}% vs {check.top1_pytorch:.2f}% in PyTorch"
                log(
                    f"warning: {recipe.name} agrees with PyTorch on {check.agreement:.2f}% of inputs"
                    f" (< {recipe.threshold}%){cost}; kept with parity.passed = false."
                )
    finally:
        for tmp in [*temps, *built.prepared.values()]:
            tmp.unlink(missing_ok=True)

    notes = []
    fp32_ms = latencies.get("onnx-fp32")
    for name, ms in latencies.items():
        if name != "onnx-fp32" and fp32_ms and name in wanted:
            notes.append(P.speed_note(name, ms, fp32_ms))
    for entry in artifacts:
        if entry.format in latencies:
            entry.latency_ms_batch1 = round(latencies[entry.format], 3)
    summary = ExportSummary(
        run_dir=str(info.run_dir),
        out=str(out_dir),
        student=info.student,
        checkpoint=str(info.checkpoint),
        checkpoint_sha256=info.checkpoint_sha256,
        input_size=list(input_size),
        artifacts=artifacts,
        skipped=skipped,
        performance=notes,
        performance_how="ONNX Runtime CPUExecutionProvider, batch 1, median of 20 runs after 3 warm-up",
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    summary.write(out_dir)
    return summary


class _Built(dict):
    """format -> where its file is now (final or temp), and each source's graph prepared for the quantiser."""

    def __init__(self):
        super().__init__()
        self.prepared: dict[str, Path] = {}


LAYERS_SUFFIX = ".layers.csv"  # the per-layer int8 error table beside an int8 artifact


def _accuracy_settings(recipe: Recipe, budget: float | None, method: str | None) -> tuple[float, str]:
    """(top-1 budget, calibration method): the call's, else the recipe's [accuracy] table, else 1.0 / minmax."""
    from dait_edge.export.quantize import calibration_name

    table = recipe.accuracy
    recipe_method = calibration_name(str(recipe.quantize.get("calibrate_method", "MinMax"))) or "minmax"
    return (
        float(budget if budget is not None else table.get("max_top1_drop", 1.0)),
        str(method or table.get("calibration", recipe_method)),
    )


@dataclass
class _Int8Search:
    """What every int8 recipe of one export is judged with, and the fp32 validation logits per source (both
    int8 variants of a source compare against the same fp32 run)."""

    validation: Any
    num_classes: int
    budget: float | None
    method: str | None
    max_fallback: int | None
    test: Any
    measure_speed: bool
    input_size: list[int]
    log: Any
    fp32_logits: dict[str, Any] = field(default_factory=dict)

    def fp32(self, source: str, path: Path):
        """The fp32 artifact's logits on the validation images (None without labelled ones)."""
        from dait_edge.export.parity import ort_logits

        if self.validation is None or self.validation.labels is None or len(self.validation.images) == 0:
            return None
        if source not in self.fp32_logits:
            self.fp32_logits[source] = ort_logits(path, self.validation.images)
        return self.fp32_logits[source]

    def finish(self, accuracy: _Int8Built, final: Path, logits, name: str, latency: float | None) -> None:
        """Side by side with plain int8 (test top-1, latency), the layer table beside the artifact, a log."""
        from dait_edge.export import parity as P
        from dait_edge.export.int8_search import write_layer_table

        record = accuracy.record
        record.latency_ms = None if latency is None else round(latency, 3)
        if accuracy.plain is not None:  # layers went back to float: measure plain int8 on the same images
            record.plain_test_top1 = P._top1(P.ort_logits(accuracy.plain, self.test.images), self.test.labels)
            if self.measure_speed:
                record.plain_latency_ms = round(P.latency_ms(accuracy.plain, self.input_size), 3)
        else:
            record.plain_test_top1 = P._top1(logits, self.test.labels)
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


@dataclass
class _Int8Built:
    record: Any  # Int8Accuracy
    layers: list
    plain: Path | None  # plain int8 (a temp file) when it differs from the artifact kept


def _build_int8(
    recipe: Recipe, tmp: Path, built: _Built, calibration, search: _Int8Search, temps
) -> _Int8Built:
    from dait_edge.export.int8_search import build_int8
    from dait_edge.export.quantize import prepare_for_quantization

    if recipe.source not in built.prepared:  # shared by the int8 variants of one source
        prepared = temp_path_beside(tmp.parent / f"{recipe.source}-prepared.onnx")
        temps.append(prepared)  # removed at the end, also when preparing fails
        built.prepared[recipe.source] = prepare_for_quantization(built[recipe.source], prepared)
    budget, method = _accuracy_settings(recipe, search.budget, search.method)
    plain = temp_path_beside(tmp.parent / f"{recipe.name}-plain.onnx")
    temps.append(plain)
    record, layers = build_int8(
        built.prepared[recipe.source],
        tmp,
        calibration.images,
        recipe.quantize,
        validation=search.validation,
        fp32_val_logits=search.fp32(recipe.source, built[recipe.source]),
        num_classes=search.num_classes,
        budget=budget,
        method=method,
        max_fallback=search.max_fallback,
        plain_copy=plain,
        log=search.log,
    )
    return _Int8Built(record, layers, plain if record.nodes_in_float else None)


def _build_onnx(
    recipe: Recipe, model, tmp: Path, built: _Built, input_size, calibration, search=None, temps=None
) -> _Int8Built | None:
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
        return _build_int8(recipe, tmp, built, calibration, search, temps if temps is not None else [])
    else:
        raise UserError(
            f"recipe {recipe.name}: an ONNX recipe converted from {recipe.source} must be fp16 or int8."
        )


def _sidecar(recipe: Recipe, info: RunInfo, parity: Parity | None, runtime: str, **fields) -> Sidecar:
    fields = {"opset": recipe.opset, "dynamic_batch": recipe.dynamic_batch, "recipe": recipe.path} | fields
    return info.sidecar(
        format=recipe.name,
        runtime=runtime,
        precision=recipe.precision,
        variant=recipe.variant,
        parity=parity,
        **fields,
    )


def _quantization(recipe: Recipe, path: Path, calibration, accuracy=None) -> dict[str, Any] | None:
    if recipe.precision != "int8":
        return None
    from dait_edge.export.quantize import graph_stats

    stats = graph_stats(path)
    settings = dict(recipe.quantize)
    if accuracy is not None:
        from dait_edge.export.quantize import CALIBRATION_METHODS

        settings["calibrate_method"] = CALIBRATION_METHODS[accuracy.record.calibration]
        if accuracy.record.percentile is not None:
            settings["percentile"] = accuracy.record.percentile
    return {
        **settings,
        "calibration": {"samples": int(len(calibration.images)), "data": calibration.source},
        "graph": {k: v for k, v in stats.items() if k != "ops"},
        "accuracy": accuracy.record.to_dict() if accuracy is not None else None,
    }


def _entry(recipe: Recipe, path: Path, parity: Parity | None) -> ArtifactEntry:
    return ArtifactEntry(
        format=recipe.name,
        precision=recipe.precision,
        variant=recipe.variant,
        path=str(path),
        sidecar=str(Sidecar.path_for(path)),
        size_mb=round(path.stat().st_size / 1e6, 3),
        parity=parity,
    )


def _export_trt(recipe: Recipe, info: RunInfo, built: dict[str, Path], out_dir: Path, skipped: list, log):
    from dait_edge.export import tensorrt as T

    available = T.trt_availability()
    if not available.ok:
        message = T.skip_message([recipe.name], available.reason)
        log(message)
        skipped.append(message)
        return None
    input_size = info.data_config.input_size
    final = out_dir / T.engine_name(ARTIFACT_STEM, recipe.name, available.version, available.gpu)
    Sidecar.path_for(final).unlink(missing_ok=True)
    tmp = temp_path_beside(final)
    try:
        facts = T.build_engine(
            built[recipe.source],
            tmp,
            input_name="input",
            input_size=input_size,
            batch_range=recipe.batch_range,
            workspace_mb=int(recipe.trt.get("workspace_mb", 2048)),
            timing_cache=out_dir / recipe.trt.get("timing_cache", "trt-timing.cache"),
        )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    # No parity here: `dait-edge profile --dataset` measures its top-1 on the GPU, and until then the
    # best-artifact rule does not choose it.
    sidecar = _sidecar(
        recipe,
        info,
        None,
        "tensorrt",
        dynamic_batch=True,
        tensorrt=facts,
        gpu=available.gpu,
        onnx_source=recipe.source,
    )
    sidecar.write_for(final)
    return _entry(recipe, final, None)
