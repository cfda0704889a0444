"""`profile_artifacts`: one row per artifact x batch size, saved beside the run it came from."""

from __future__ import annotations

import functools
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.profiles import Profile
from dait_edge.profiling.timing import measure
from dait_edge.utils.io import write_json_atomic


def find_artifacts(paths: list[str | Path], profile: Profile) -> list[Path]:
    """Files as given; folders contribute their ONNX artifacts whose format the profile targets."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            for candidate in sorted(path.rglob("*.onnx")):
                sidecar = candidate.with_suffix(".json")
                if not sidecar.is_file():
                    continue
                fmt = json.loads(sidecar.read_text()).get("format")
                if not profile.formats or fmt in profile.formats:
                    found.append(candidate)
        else:
            raise UserError(f"{path} does not exist; pass exported artifacts or the folder that holds them.")
    if not found:
        raise UserError(
            f"no artifacts for profile {profile.name} (formats {', '.join(profile.formats)}) under"
            f" {', '.join(map(str, paths))}; run `dait-edge export` first."
        )
    return found


def run_summary_of(artifact: Path) -> tuple[Path | None, dict]:
    """The distill run an artifact came from (its summary.json), if it lives inside one."""
    for parent in artifact.resolve().parents:
        summary = parent / "summary.json"
        if summary.is_file() and (parent / "manifest.json").is_file():
            return parent, json.loads(summary.read_text())
    return None, {}


def hardware() -> dict:
    import os

    import onnxruntime as ort

    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "onnxruntime": ort.__version__,
    }


def _test_top1(runner, sidecar: dict, dataset: str, data_root: str, limit: int | None) -> float:
    from dait_edge.data import load_dataset
    from dait_edge.data.images import load_rgb
    from dait_edge.export.predict import preprocess

    spec = load_dataset(dataset, data_root)
    samples = spec.split("test")[:limit] if limit else spec.split("test")
    correct = 0
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        batch = np.stack([preprocess(load_rgb(path, spec.crop_bottom), sidecar) for path, _ in chunk])
        predicted = runner(batch.astype(np.float32)).argmax(axis=1)
        correct += int(sum(int(p) == label for p, (_, label) in zip(predicted, chunk, strict=True)))
    return 100.0 * correct / max(len(samples), 1)


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
    from dait_edge.profiling.ort_runner import OrtRunner

    if profile.runtime != "onnxruntime":
        raise UserError(
            f"profile {profile.name} needs the {profile.runtime} runner, which this version does not have yet;"
            " use an onnxruntime profile (x86-ort-cpu-fp32, x86-ort-cpu-int8, arm-ort-cpu-int8, cuda-ort-trt)."
        )
    if (dataset is None) != (data_root is None):
        raise UserError("--dataset and --data-root go together (top-1 on the test split needs both).")
    batches = list(batch_sizes or profile.batch_sizes)
    rows, by_run = [], {}
    for artifact in find_artifacts(paths, profile):
        sidecar_file = artifact.with_suffix(".json")
        if not sidecar_file.is_file():
            raise UserError(
                f"{artifact} has no sidecar {sidecar_file.name}; export it with `dait-edge export`."
            )
        sidecar = json.loads(sidecar_file.read_text())
        runner = OrtRunner(artifact, sidecar, profile.providers, profile.threads)
        run_dir, summary = run_summary_of(artifact)
        top1 = _test_top1(runner, sidecar, dataset, data_root, limit) if dataset else None
        for batch in batches:
            images = runner.random_input(batch)
            latency = measure(
                functools.partial(runner, images),
                warmup=profile.warmup,
                iterations=profile.iterations,
                duration_s=profile.duration_s,
            )
            row = {
                "artifact": str(artifact),
                "format": sidecar.get("format"),
                "student": sidecar.get("student"),
                "backend": runner.backend,
                "providers": runner.providers,
                "precision": sidecar.get("precision"),
                "batch": batch,
                "latency_ms": latency,
                "throughput_ips": 1e3 * batch / latency["mean"],
                "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                "size_mb": artifact.stat().st_size / 1e6,
                "params": summary.get("params"),
                "macs": summary.get("macs"),
                "top1": top1,
                "parity_passed": (sidecar.get("parity") or {}).get("passed"),
                "within_budget": None
                if profile.latency_budget_ms is None
                else latency["p99"] <= profile.latency_budget_ms,
                "note": runner.note,
            }
            rows.append(row)
            log(
                f"{artifact.name} batch {batch}: p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms,"
                f" {row['throughput_ips']:.1f} img/s"
            )
            if run_dir is not None:
                by_run.setdefault(run_dir, []).append(row)
    measured = {
        "profile": profile.name,
        "profile_file": profile.source,
        "threads": profile.threads or "runtime default",
        "warmup": profile.warmup,
        "iterations": profile.iterations,
        "duration_s": profile.duration_s,
        "timing": "single stream: one request at a time after warm-up; random inputs of the sidecar's shape",
        "memory": "peak resident set size of the profiling process (ru_maxrss)",
        "hardware": hardware(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if save:
        for run_dir, run_rows in by_run.items():
            write_json_atomic(
                run_dir / "profile" / f"{profile.name}.json", {"measured": measured, "rows": run_rows}
            )
    return {"measured": measured, "rows": rows}
