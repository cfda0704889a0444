"""`export_run`: a distill run's student -> verified ONNX / TensorRT artifacts + sidecars + summary.

Every artifact is built at a hidden temp path beside its final name, checked (onnx.checker, parity
against PyTorch), renamed into place, and only then gets its sidecar. A killed export leaves at
most `.*.tmp` files, never an artifact with a sidecar that was not verified.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dait_edge.errors import UserError
from dait_edge.export.recipes import Recipe, expand_formats, plan_recipes
from dait_edge.utils.io import sha256_file, sha256_json, temp_path_beside, write_json_atomic

ARTIFACT_STEM = "student"
SUMMARY_FILE = "summary.json"


@dataclass
class RunInfo:
    run_dir: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    checkpoint: Path
    checkpoint_sha256: str
    data_config: dict[str, Any]
    dataset: str | None
    data_root: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "student": self.summary["student"],
            "dataset": self.dataset,
            "method": self.summary.get("method"),
            "classes": self.summary.get("classes") or [str(i) for i in range(self.summary["num_classes"])],
            "data_config": self.data_config,
            "checkpoint": str(self.checkpoint),
            "checkpoint_sha256": self.checkpoint_sha256,
            "config_hash": sha256_json(self.config) if self.config else None,
            "student_top1": self.summary.get("student_top1"),
        }


# ------------------------------------------------------------------------------ the run


def latest_run(runs_root: str | Path = "runs") -> Path:
    """The run under `runs_root` whose summary.json changed last."""
    root = Path(runs_root)
    summaries = [p for p in root.glob("*/summary.json") if p.is_file()] if root.is_dir() else []
    if not summaries:
        raise UserError(
            f"no finished run under {root}/ (no */summary.json); pass RUN_DIR or run `dait-edge distill` first."
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
            run_dir = next((p for p in path.resolve().parents if (p / SUMMARY_FILE).is_file()), None)
            if run_dir is None:
                raise UserError(
                    f"no summary.json in any folder above {path}; export needs the run's summary (classes, input size,"
                    " normalisation): pass the checkpoint inside its run directory."
                )
            given_checkpoint = path
        else:
            run_dir = path
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise UserError(
            f"{run_dir} holds no summary.json; pass the directory `dait-edge distill` wrote (or let it finish)."
        )
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {summary_path}: {err}; re-run or repair the distill run.") from err
    if not summary.get("student") or not summary.get("checkpoints", {}).get("student"):
        raise UserError(
            f"{run_dir} has no trained student (stage 2 did not finish); run `dait-edge distill --stages 2` first."
        )
    if checkpoint not in ("last", "best"):
        raise UserError(f"--checkpoint must be last or best, not {checkpoint!r}.")
    if given_checkpoint is None:
        key = "student" if checkpoint == "last" else "student_best"
        rel = summary["checkpoints"].get(key)
        if not rel:
            raise UserError(f"{run_dir}/summary.json names no {key} checkpoint; use --checkpoint last.")
        given_checkpoint = Path(rel) if Path(rel).is_absolute() else run_dir / rel
    if not given_checkpoint.is_file():
        raise UserError(
            f"checkpoint {given_checkpoint} is missing; restore it or pick the other with --checkpoint last|best."
        )

    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    config = manifest.get("config") or {}
    img_size = int(summary.get("img_size") or config.get("img_size") or 224)
    data_config = dict(summary.get("data_config") or {})
    data_config.setdefault("mean", (0.485, 0.456, 0.406))
    data_config.setdefault("std", (0.229, 0.224, 0.225))
    data_config["input_size"] = [3, img_size, img_size]  # the resolution the student was trained at
    data_config["interpolation"] = data_config.get("interpolation") or "bilinear"
    data_config["crop_pct"] = data_config.get("crop_pct") or 0.875
    return RunInfo(
        run_dir=run_dir,
        summary=summary,
        config=config,
        checkpoint=given_checkpoint,
        checkpoint_sha256=sha256_file(given_checkpoint),
        data_config=data_config,
        dataset=summary.get("dataset") or config.get("dataset"),
        data_root=data_root or config.get("data_root"),
    )


def load_student(info: RunInfo):
    from dait_edge.models import build_model

    model = build_model(
        info.summary["student"], int(info.summary["num_classes"]), pretrained=False, weights=info.checkpoint
    )
    return model.eval()


# ------------------------------------------------------------------------------ export


def _onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


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
    log=print,
) -> dict[str, Any]:
    """Export one run's student; returns the export summary (also written to OUT/summary.json)."""
    from dait_edge.export import parity as P
    from dait_edge.export.sidecar import build_sidecar, sidecar_path, write_sidecar

    requested = expand_formats(formats, fp16=fp16, int8=int8, trt=trt)
    recipes, wanted = plan_recipes(requested)
    if opset is not None:
        for r in recipes:
            r.opset = opset
    if calib_samples < 1 or parity_samples < 1:
        raise UserError("--calib-samples and --parity-samples must be at least 1.")
    info = resolve_run(path, checkpoint=checkpoint, runs_root=runs_root, data_root=data_root)
    out_dir = Path(out) if out else info.run_dir / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    run = info.as_dict()
    input_size = info.data_config["input_size"]
    img_size = input_size[-1]

    model = load_student(info)
    test = P.load_images(info.dataset, info.data_root, "test", parity_samples, info.data_config, img_size)
    if test.note:
        log(f"parity: {test.note}")
    reference = P.torch_logits(model, test.images)
    calibration = None
    if any(r.precision == "int8" and r.kind == "onnx" for r in recipes):
        calibration = P.load_images(
            info.dataset, info.data_root, "train", calib_samples, info.data_config, img_size, seed=1
        )
        if calibration.note:
            log(f"calibration: {calibration.note}")

    built: dict[str, Path] = {}  # format -> where its file is now (final or temp)
    temps: list[Path] = []
    artifacts: list[dict[str, Any]] = []
    skipped: list[str] = []
    latencies: dict[str, float] = {}
    try:
        for recipe in recipes:
            final = out_dir / f"{ARTIFACT_STEM}-{recipe.name}.onnx"
            if recipe.kind == "trt":
                record = _export_trt(recipe, info, run, built, out_dir, skipped, log)
                if record:
                    artifacts.append(record)
                continue
            if recipe.name in wanted:
                # An older artifact of this format must not pass for the new one while this one is built.
                sidecar_path(final).unlink(missing_ok=True)
                final.unlink(missing_ok=True)
            tmp = temp_path_beside(final)
            temps.append(tmp)
            _build_onnx(recipe, model, tmp, built, input_size, calibration)
            result = P.ort_logits(tmp, test.images)
            check = P.compare(reference, result, test, recipe.threshold)
            if not check["passed"] and recipe.parity_fatal:
                raise UserError(
                    f"{recipe.name} disagrees with PyTorch: top-1 agreement {check['agreement']:.2f}% <"
                    f" {recipe.threshold}% on {check['samples']} {check['data']} inputs (max |logit diff|"
                    f" {check['max_abs_diff']:.3g}); artifact removed; try another --opset or exporter in the recipe."
                )
            if measure_speed:
                latencies[recipe.name] = P.latency_ms(tmp, input_size)
            if recipe.name not in wanted:
                built[recipe.name] = tmp  # only a source for another format; removed at the end
                continue
            os.replace(tmp, final)
            temps.remove(tmp)
            built[recipe.name] = final
            sidecar = build_sidecar(
                recipe=recipe,
                run=run,
                parity=check,
                runtime="onnxruntime",
                extra={"opset": _onnx_opset(final)} | _extra_for(recipe, final, calibration),
            )
            write_sidecar(final, sidecar)
            artifacts.append(_record(recipe, final, check))
            if not check["passed"]:
                cost = ""
                if check["top1_pytorch"] is not None:
                    cost = f", top-1 {check['top1_artifact']:.2f}% vs {check['top1_pytorch']:.2f}% in PyTorch"
                log(
                    f"warning: {recipe.name} agrees with PyTorch on {check['agreement']:.2f}% of inputs"
                    f" (< {recipe.threshold}%){cost}; kept with parity.passed = false."
                )
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)

    notes = []
    fp32_ms = latencies.get("onnx-fp32")
    for name, ms in latencies.items():
        if name != "onnx-fp32" and fp32_ms and name in wanted:
            notes.append(P.speed_note(name, ms, fp32_ms))
    for record in artifacts:
        if record["format"] in latencies:
            record["latency_ms_batch1"] = round(latencies[record["format"]], 3)
    summary = {
        "run_dir": str(info.run_dir),
        "out": str(out_dir),
        "student": info.summary["student"],
        "checkpoint": str(info.checkpoint),
        "checkpoint_sha256": info.checkpoint_sha256,
        "input_size": input_size,
        "artifacts": artifacts,
        "skipped": skipped,
        "performance": notes,
        "performance_how": "ONNX Runtime CPUExecutionProvider, batch 1, median of 20 runs after 3 warm-up",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def _build_onnx(recipe: Recipe, model, tmp: Path, built: dict[str, Path], input_size, calibration) -> None:
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
        from dait_edge.export.quantize import quantize_int8

        quantize_int8(built[recipe.source], tmp, calibration.images, recipe.quantize)
    else:
        raise UserError(
            f"recipe {recipe.name}: an ONNX recipe converted from {recipe.source} must be fp16 or int8."
        )


def _extra_for(recipe: Recipe, path: Path, calibration) -> dict[str, Any]:
    extra: dict[str, Any] = {"recipe": recipe.path}
    if recipe.precision == "int8":
        from dait_edge.export.quantize import graph_stats

        stats = graph_stats(path)
        extra["quantization"] = {
            **recipe.quantize,
            "calibration": {"samples": int(len(calibration.images)), "data": calibration.source},
            "graph": {k: v for k, v in stats.items() if k != "ops"},
        }
    return extra


def _record(recipe: Recipe, path: Path, parity: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": recipe.name,
        "precision": recipe.precision,
        "variant": recipe.variant,
        "path": str(path),
        "sidecar": str(path.with_suffix(".json")),
        "size_mb": round(path.stat().st_size / 1e6, 3),
        "parity": parity,
    }


def _export_trt(
    recipe: Recipe, info: RunInfo, run: dict, built: dict[str, Path], out_dir: Path, skipped: list, log
):
    from dait_edge.export import tensorrt as T
    from dait_edge.export.sidecar import build_sidecar, write_sidecar

    available = T.trt_availability()
    if not available.ok:
        message = T.skip_message([recipe.name], available.reason)
        log(message)
        skipped.append(message)
        return None
    input_size = info.data_config["input_size"]
    final = out_dir / T.engine_name(ARTIFACT_STEM, recipe.name, available.version, available.gpu)
    final.with_suffix(".json").unlink(missing_ok=True)
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
    sidecar = build_sidecar(
        recipe=recipe,
        run=run,
        parity=None,  # not checked here: `dait-edge profile --dataset` measures its top-1 on the GPU, and
        # until then the best-artifact rule does not choose it
        runtime="tensorrt",
        extra={"tensorrt": facts, "gpu": available.gpu, "onnx_source": recipe.source},
    )
    sidecar["dynamic_batch"] = True
    write_sidecar(final, sidecar)
    return _record(recipe, final, None)
