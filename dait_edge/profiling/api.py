"""`profile_artifacts`: one row per artifact x mode x batch size, saved beside the run it came from.

The profile's runtime picks the runner (`dait_edge.profiling.runner`), and only that runner imports
its runtime: ONNX artifacts need numpy and onnxruntime, TensorRT engines tensorrt and cuda-python, and
only the torch runtime imports torch.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.artifacts import find_artifacts
from dait_edge.profiling.hardware import hardware
from dait_edge.profiling.memory import peak_rss_mb, reset_peak
from dait_edge.profiling.runner import Runner, runner_for
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed, measure
from dait_edge.records import Measured, ProfileResult, ProfileRow, RunLayout, RunSummary, Sidecar, read_result
from dait_edge.records.profile import encode_correct, images_key

__all__ = ["find_artifacts", "profile_artifacts"]

TIMING = (
    "single stream: one request at a time after warm-up, random inputs of the artifact's shape; on a GPU the"
    " input stays in device memory and the clock stops after the device synchronises"
)


@dataclass
class TestScore:
    """Top-1 on a set of images (the test split, or validation images), which images (rows compare only like
    with like), and image by image."""

    top1: float
    where: str
    correct: str  # records.profile.encode_correct of the per-image correctness
    images: str  # records.profile.images_key of the image list


def _score(runner: Runner, samples, crop_bottom: int, where: str) -> TestScore:
    """Top-1 in % of the artifact on `samples`, each preprocessed only as its sidecar says."""
    from dait_edge.data.images import load_rgb
    from dait_edge.export.predict import preprocess

    correct: list[bool] = []
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        batch = np.stack([preprocess(load_rgb(path, crop_bottom), runner.sidecar) for path, _ in chunk])
        predicted = runner.infer(batch.astype(np.float32)).argmax(axis=1)
        correct += [int(p) == label for p, (_, label) in zip(predicted, chunk, strict=True)]
    top1 = 100.0 * sum(correct) / max(len(samples), 1)
    return TestScore(top1, where, encode_correct(np.array(correct, bool)), images_key(samples))


def _top1s(
    runner: Runner, dataset: str, data_root: str, limit: int | None, run_dir: Path | None, summary
) -> tuple[TestScore, TestScore | None]:
    """(top-1 on the test split: what is reported, top-1 on validation images: what the report chooses by).
    Validation images are the run's held-out split (else training images int8 calibration did not use),
    found from the run the artifact lives in; None outside a run."""
    from dait_edge.data import load_dataset
    from dait_edge.data.splits import evenly_spread
    from dait_edge.export.images import validation_samples
    from dait_edge.records import RunManifest

    spec = load_dataset(dataset, data_root)
    _check_classes(spec, runner.sidecar, runner.artifact, data_root)
    root = Path(data_root).expanduser().resolve()
    samples = evenly_spread(spec.split("test"), limit) if limit else spec.split("test")
    test = _score(runner, samples, spec.crop_bottom, f"{dataset} test split of {root}, {len(samples)} images")
    if run_dir is None or not RunManifest.path_in(run_dir).is_file():
        return test, None
    _, held, source = validation_samples(spec, summary, RunManifest.read(run_dir).config)
    if not held:
        return test, None
    return test, _score(runner, held, spec.crop_bottom, f"{dataset} {source} of {root}, {len(held)} images")


def _check_classes(spec, sidecar: Sidecar, artifact, data_root: str) -> None:
    # Labels are class indices: another dataset (or a folder with one class more) scores silently wrong.
    trained = sidecar.classes
    if trained and list(trained) != list(spec.classes):
        differ = next(
            (f"{a!r} vs {b!r}" for a, b in zip(spec.classes, trained, strict=False) if a != b),
            f"{len(spec.classes)} vs {len(trained)} classes",
        )
        raise UserError(
            f"the classes of {data_root} are not those {artifact} was trained on ({differ});"
            " pass the dataset and root the run was trained on.",
            setting="data_root",
        )


def _row(
    runner: Runner,
    profile: Profile,
    timed: Timed,
    batch: int,
    latency,
    summary: RunSummary | None,
    score: TestScore | None,
    val: TestScore | None = None,
) -> ProfileRow:
    sidecar = runner.sidecar
    return ProfileRow(
        artifact=str(Path(runner.artifact).resolve()),
        profile=profile.name,
        format=sidecar.format,
        student=sidecar.student,
        model=sidecar.model,
        dataset=sidecar.dataset,
        method=sidecar.method,
        backend=timed.backend,
        label=runner.label(timed.backend),
        reference=runner.reference,
        providers=list(runner.providers),
        precision=sidecar.precision,
        batch=batch,
        latency_ms=latency,
        throughput_ips=1e3 * batch / latency.mean,
        peak_mem_mb=peak_rss_mb(),
        device_mem_mb=runner.device_memory_mb(),
        size_mb=Path(runner.artifact).stat().st_size / 1e6,
        params=summary.params if summary else None,
        macs=summary.macs if summary else None,
        top1=score.top1 if score else None,
        top1_data=score.where if score else None,
        correct=score.correct if score else None,
        test_images=score.images if score else None,
        val_top1=val.top1 if val else None,
        val_data=val.where if val else None,
        val_correct=val.correct if val else None,
        val_images=val.images if val else None,
        torch_top1=summary.student_top1 if summary else sidecar.student_top1,
        parity_passed=sidecar.parity.passed if sidecar.parity else None,
        within_budget=None if profile.latency_budget_ms is None else latency.p99 <= profile.latency_budget_ms,
        note="; ".join(n for n in (runner.note, timed.note) if n),
    )


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
) -> ProfileResult:
    """Measure every artifact on `profile`; rows of artifacts from a run are saved in RUN/profile/."""
    if (dataset is None) != (data_root is None):
        raise UserError(
            "top-1 on the test split needs both the dataset and its data root.",
            setting="dataset" if dataset is None else "data_root",
        )
    runner_cls = runner_for(profile.runtime)
    versions = runner_cls.require(profile)  # a missing runtime or GPU is reported before any artifact is read
    batches = list(batch_sizes or profile.batch_sizes)
    rows: list[ProfileRow] = []
    skipped: list[str] = []
    by_run: dict[Path, list[ProfileRow]] = {}
    per_artifact_memory = True
    score_said = False
    for artifact in find_artifacts(paths, profile):
        gc.collect()  # the previous artifact's session and buffers go before the peak restarts
        per_artifact_memory &= reset_peak()  # peak_mem_mb: this artifact's load and timing only
        with runner_cls(artifact, profile) as runner:
            run_dir, summary = runner.run_of()
            score, val = (
                _top1s(runner, dataset, data_root, limit, run_dir, summary) if dataset else (None, None)
            )
            if score is not None and not score_said:
                score_said = True
                log(f"top-1 preprocessing: {runner.sidecar.data_config.describe()}")
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
                    row = _row(runner, profile, timed, batch, latency, summary, score, val)
                    rows.append(row)
                    log(
                        f"{artifact.name} {timed.backend} batch {batch}: p50 {latency.p50:.2f} ms,"
                        f" p99 {latency.p99:.2f} ms, {row.throughput_ips:.1f} img/s"
                    )
                    if run_dir is not None:
                        by_run.setdefault(run_dir, []).append(row)
            timed = None  # its buffers belong to the runner that is going
    measured = Measured(
        profile=profile.name,
        profile_file=profile.source,
        runtime=profile.runtime,
        threads=profile.threads or "runtime default",
        warmup=profile.warmup,
        iterations=profile.iterations,
        duration_s=profile.duration_s,
        latency_budget_ms=profile.latency_budget_ms,
        timing=TIMING,
        memory=(
            "peak resident set size of the profiling process in MB, from loading the artifact to the end of"
            " the row's timing"
            if per_artifact_memory
            else "peak resident set size of the profiling process in MB since it started (ru_maxrss)"
        )
        + "; device_mem_mb on a GPU (TensorRT, torch)",
        hardware=hardware(versions),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if save:
        for run_dir, run_rows in by_run.items():
            try:
                _save_rows(RunLayout(run_dir).profile(profile.name), measured, run_rows, log)
            except UserError as err:  # a read-only copy of a run on a device: keep the measurements
                log(f"warning: rows not saved in the run ({err}); print them as JSON to keep them")
    return ProfileResult(measured=measured, rows=rows, skipped=skipped)


def _save_rows(path: Path, measured: Measured, rows: list[ProfileRow], log) -> None:
    """Write the run's rows, keeping earlier rows measured the same way that were not measured again
    (another artifact, another batch size, an fp32 top-1 the reference needs)."""
    kept: list[ProfileRow] = []
    earlier = read_result(path)
    if earlier and earlier.measured.settings() == measured.settings():
        fresh = {_saved_key(row) for row in rows}
        models = {row.model for row in rows}
        scored_on = {row.top1_data for row in rows if row.top1 is not None}
        # Rows of a file since removed, of another model (the run re-distilled), or with a top-1 from other
        # test images (another root, another --limit) are not kept: the report compares top-1 within a run.
        kept = [
            row
            for row in earlier.rows
            if _saved_key(row) not in fresh
            and row.model in models
            and Path(row.artifact).is_file()
            and (row.top1 is None or not scored_on or row.top1_data in scored_on)
        ]
    elif earlier:
        log(f"{path}: replacing rows measured another way (another machine, runtime or profile settings)")
    ProfileResult(measured=measured, rows=kept + rows).write(path)


def _saved_key(row: ProfileRow) -> tuple:
    return (row.artifact, row.backend, row.batch)
