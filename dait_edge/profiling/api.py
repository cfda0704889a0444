"""`profile_artifacts`: one row per artifact x mode x batch size, saved beside the run it came from.

The profile's runtime picks the runner, and only that runner's module is imported: ONNX artifacts
need numpy and onnxruntime, TensorRT engines tensorrt and cuda-python, and only the torch runtime
imports torch. Every runner offers the same small surface:

    require(profile) -> versions       module function: a one-line UserError when something is missing
    Runner(artifact, profile)          .artifact (the file measured), .sidecar (preprocessing, format,
                                       precision, parity), .providers, .note, .versions, .modes
    runner.timed(batch, mode) -> Timed a request ready for `measure` (device input, sync, backend name)
    runner(images) -> logits           for top-1 on the test split
    runner.close()
"""

from __future__ import annotations

import gc
import importlib
import json
import time
from pathlib import Path

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.artifacts import find_artifacts, run_summary_of
from dait_edge.profiling.hardware import hardware
from dait_edge.profiling.memory import peak_rss_mb, reset_peak
from dait_edge.profiling.profiles import Profile
from dait_edge.profiling.timing import measure
from dait_edge.utils.io import write_json_atomic

__all__ = ["find_artifacts", "profile_artifacts", "read_result", "run_summary_of", "runner_module"]

RUNNERS = {
    "onnxruntime": ("dait_edge.profiling.ort_runner", "OrtRunner"),
    "tensorrt": ("dait_edge.profiling.trt_runner", "TrtRunner"),
    "torch": ("dait_edge.profiling.torch_runner", "TorchRunner"),
}
TIMING = (
    "single stream: one request at a time after warm-up, random inputs of the artifact's shape; on a GPU the"
    " input stays in device memory and the clock stops after the device synchronises"
)


def runner_module(runtime: str):
    """The runner module for a runtime, imported now (so torch / tensorrt load only when chosen)."""
    return importlib.import_module(RUNNERS[runtime][0])


def _test_top1(runner, sidecar: dict, dataset: str, data_root: str, limit: int | None) -> tuple[float, str]:
    """Top-1 in % on the test split, and which images it was measured on (rows compare only like with like)."""
    from dait_edge.data import load_dataset
    from dait_edge.data.images import load_rgb
    from dait_edge.data.splits import evenly_spread
    from dait_edge.export.predict import preprocess

    spec = load_dataset(dataset, data_root)
    _check_classes(spec, sidecar, runner.artifact, data_root)
    samples = evenly_spread(spec.split("test"), limit) if limit else spec.split("test")
    correct = 0
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        batch = np.stack([preprocess(load_rgb(path, spec.crop_bottom), sidecar) for path, _ in chunk])
        predicted = runner(batch.astype(np.float32)).argmax(axis=1)
        correct += int(sum(int(p) == label for p, (_, label) in zip(predicted, chunk, strict=True)))
    where = f"{dataset} test split of {Path(data_root).expanduser().resolve()}, {len(samples)} images"
    return 100.0 * correct / max(len(samples), 1), where


def _check_classes(spec, sidecar: dict, artifact, data_root: str) -> None:
    # Labels are class indices: another dataset (or a folder with one class more) scores silently wrong.
    trained = sidecar.get("classes")
    if trained and list(trained) != list(spec.classes):
        differ = next(
            (f"{a!r} vs {b!r}" for a, b in zip(spec.classes, trained, strict=False) if a != b),
            f"{len(spec.classes)} vs {len(trained)} classes",
        )
        raise UserError(
            f"the classes of {data_root} are not those {artifact} was trained on ({differ});"
            " pass the dataset and root the run was trained on."
        )


def _row(runner, profile: Profile, timed, batch: int, latency: dict, summary: dict, top1, top1_data) -> dict:
    device_mem = runner.device_memory_mb() if hasattr(runner, "device_memory_mb") else None
    sidecar = runner.sidecar
    return {
        "artifact": str(Path(runner.artifact).resolve()),
        "profile": profile.name,
        "format": sidecar.get("format"),
        "student": sidecar.get("student"),
        # Which trained weights the file holds: report compares the formats of one model with each other.
        "model": (sidecar.get("source_checkpoint") or {}).get("sha256") or sidecar.get("config_hash"),
        "dataset": sidecar.get("dataset"),
        "method": sidecar.get("method"),
        "backend": timed.backend,
        "providers": runner.providers,
        "precision": sidecar.get("precision"),
        "batch": batch,
        "latency_ms": latency,
        "throughput_ips": 1e3 * batch / latency["mean"],
        "peak_mem_mb": peak_rss_mb(),
        "device_mem_mb": device_mem,
        "size_mb": Path(runner.artifact).stat().st_size / 1e6,
        "params": summary.get("params"),
        "macs": summary.get("macs"),
        "top1": top1,
        "top1_data": top1_data,
        # The PyTorch top-1 the run recorded: the reference where no fp32 artifact was scored (engines only).
        "torch_top1": summary.get("student_top1", sidecar.get("student_top1")),
        "parity_passed": (sidecar.get("parity") or {}).get("passed"),
        "within_budget": None
        if profile.latency_budget_ms is None
        else latency["p99"] <= profile.latency_budget_ms,
        "note": "; ".join(n for n in (runner.note, timed.note) if n),
    }


def profile_artifacts(
    paths: list[str | Path],
    profile: Profile,
    *,
    batch_sizes: list[int] | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    limit: int | None = None,
    save: bool = True,
    log=print,
) -> dict:
    """Measure every artifact on `profile`; rows of artifacts from a run are saved in RUN/profile/."""
    if (dataset is None) != (data_root is None):
        raise UserError("--dataset and --data-root go together (top-1 on the test split needs both).")
    module = runner_module(profile.runtime)
    versions = module.require(profile)  # a missing runtime or GPU is reported before any artifact is read
    Runner = getattr(module, RUNNERS[profile.runtime][1])
    batches = list(batch_sizes or profile.batch_sizes)
    rows, skipped, by_run = [], [], {}
    per_artifact_memory = True
    for artifact in find_artifacts(paths, profile):
        timed = runner = None  # the previous artifact's session and buffers go before the peak restarts
        gc.collect()
        per_artifact_memory &= reset_peak()  # peak_mem_mb: this artifact's load and timing only
        runner = Runner(artifact, profile)
        try:
            run_dir, summary = run_summary_of(runner.artifact)
            top1, top1_data = (
                _test_top1(runner, runner.sidecar, dataset, data_root, limit) if dataset else (None, None)
            )
            for mode in runner.modes:
                for batch in batches:
                    timed = runner.timed(batch, mode)
                    if timed.skip:
                        skipped.append(f"{artifact.name} {timed.backend} batch {batch}: {timed.skip}")
                        log(f"skipped {skipped[-1]}")
                        continue
                    latency = measure(
                        timed.run_once,
                        warmup=profile.warmup,
                        iterations=profile.iterations,
                        duration_s=profile.duration_s,
                        sync=timed.sync,
                    )
                    row = _row(runner, profile, timed, batch, latency, summary, top1, top1_data)
                    rows.append(row)
                    log(
                        f"{artifact.name} {timed.backend} batch {batch}: p50 {latency['p50']:.2f} ms,"
                        f" p99 {latency['p99']:.2f} ms, {row['throughput_ips']:.1f} img/s"
                    )
                    if run_dir is not None:
                        by_run.setdefault(run_dir, []).append(row)
        finally:
            runner.close()
    measured = {
        "profile": profile.name,
        "profile_file": profile.source,
        "runtime": profile.runtime,
        "threads": profile.threads or "runtime default",
        "warmup": profile.warmup,
        "iterations": profile.iterations,
        "duration_s": profile.duration_s,
        "latency_budget_ms": profile.latency_budget_ms,
        "timing": TIMING,
        "memory": (
            "peak resident set size of the profiling process in MB, from loading the artifact to the end of"
            " the row's timing"
            if per_artifact_memory
            else "peak resident set size of the profiling process in MB since it started (ru_maxrss)"
        )
        + "; device_mem_mb on a GPU (TensorRT, torch)",
        "hardware": hardware(versions),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if save:
        for run_dir, run_rows in by_run.items():
            try:
                _save_rows(run_dir / "profile" / f"{profile.name}.json", measured, run_rows, log)
            except UserError as err:  # a read-only copy of a run on a device: keep the measurements
                log(f"warning: rows not saved in the run ({err}); use --json to keep them")
    return {"measured": measured, "rows": rows, "skipped": skipped}


def _save_rows(path: Path, measured: dict, rows: list[dict], log) -> None:
    """Write the run's rows, keeping earlier rows measured the same way that were not measured again
    (another artifact, another batch size, an fp32 top-1 the reference needs)."""
    kept: list[dict] = []
    earlier = read_result(path)
    if earlier and _settings(earlier["measured"]) == _settings(measured):
        fresh = {_saved_key(row) for row in rows}
        models = {row.get("model") for row in rows}
        scored_on = {row.get("top1_data") for row in rows if row.get("top1") is not None}
        # Rows of a file since removed, of another model (the run re-distilled), or with a top-1 from other
        # test images (another root, another --limit) are not kept: the report compares top-1 within a run.
        kept = [
            row
            for row in earlier["rows"]
            if _saved_key(row) not in fresh
            and row.get("model") in models
            and Path(str(row.get("artifact") or "")).is_file()
            and (row.get("top1") is None or not scored_on or row.get("top1_data") in scored_on)
        ]
    elif earlier:
        log(f"{path}: replacing rows measured another way (another machine, runtime or profile settings)")
    write_json_atomic(path, {"measured": measured, "rows": kept + rows})


def _settings(measured: dict) -> dict:
    """How rows were measured (machine, runtime versions, profile settings): all but when."""
    return {key: value for key, value in measured.items() if key != "created"}


def read_result(path: Path) -> dict | None:
    """A profile result ({"measured": {...}, "rows": [{...}, ...]}) read from `path`; None if it is not one."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(saved, dict)
        and isinstance(saved.get("measured"), dict)
        and isinstance(saved.get("rows"), list)
        and all(isinstance(row, dict) for row in saved["rows"])
    )
    return saved if ok else None


def _saved_key(row: dict) -> tuple:
    return (row.get("artifact"), row.get("backend"), row.get("batch"))
