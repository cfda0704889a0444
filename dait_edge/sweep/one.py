"""One run of a sweep: distill (or resume), export, profile. The same code runs in the sweep's own process
(one run after another) and in a fanned-out job's process (`worker.py`), from a `SweepJob`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from dait_edge.records import (
    ExportSummary,
    RunLayout,
    RunManifest,
    RunSummary,
    StudentProgress,
    SweepJob,
)
from dait_edge.utils.signals import check_stop


def expected_formats(job: SweepJob) -> list[str]:
    """What a finished export of this job holds (QAT's formats, or the line saying why --qat-auto did not
    build them)."""
    from dait_edge.export.recipes import expand_formats

    return expand_formats(",".join(job.formats), qat=bool(job.qat))


def export_done(run_dir: Path, formats: list[str]) -> bool:
    exported = ExportSummary.read_if_present(RunLayout(run_dir).export)
    if exported is None:
        return False
    have = exported.formats()
    # formats this machine cannot build (TensorRT without a GPU) were skipped with a message naming them
    have |= {f for f in formats if any(f in message for message in exported.skipped)}
    return set(formats) <= have


def profile_done(run_dir: Path, profile: str) -> bool:
    """A profile of this run's current export: one measured before the artifacts were exported again (a
    sweep extended with formats, or --qat) is stale."""
    layout = RunLayout(run_dir)
    measured, exported = layout.profile(profile), ExportSummary.path_in(layout.export)
    if not measured.is_file():
        return False
    return not exported.is_file() or measured.stat().st_mtime >= exported.stat().st_mtime


def distilled(run_dir: Path) -> RunSummary | None:
    summary = RunSummary.read_if_present(run_dir)
    return summary if summary is not None and summary.student_top1 is not None else None


def finished(job: SweepJob) -> bool:
    """Is everything this job does on disk already (distilled, exported and, where the job measures its
    profiles itself, every profile measured)?"""
    run_dir = Path(job.config.out)
    profiled = not job.profiles_here or all(profile_done(run_dir, p) for p in job.profiles)
    return distilled(run_dir) is not None and export_done(run_dir, expected_formats(job)) and profiled


def progress_from_disk(entry: StudentProgress, job: SweepJob) -> StudentProgress:
    """`entry` brought up to what the run's folder says (a job in another process wrote it)."""
    run_dir = Path(job.config.out)
    summary = distilled(run_dir)
    if summary is not None:
        entry.student_top1, entry.teacher_top1 = summary.student_top1, summary.teacher_top1
        entry.teacher_reused, entry.distilled = summary.teacher_reused, True
    entry.exported = export_done(run_dir, expected_formats(job))
    entry.profiled = sorted(p for p in job.profiles if profile_done(run_dir, p))
    return entry


def run_one(
    job: SweepJob,
    entry: StudentProgress,
    save: Callable[[], None] = lambda: None,
    log: Callable[[str], None] = print,
    profile_limit: int | None = None,
) -> StudentProgress:
    """Distill (resuming an interrupted run), export and profile the job's run, skipping what is done;
    `entry` is updated and `save` called after each step."""
    from dait_edge.distill import run_distill
    from dait_edge.export import export_run
    from dait_edge.profiling.api import profile_artifacts
    from dait_edge.profiling.profiles import load_profile
    from dait_edge.profiling.runner import runner_for

    config = dataclasses.replace(job.config)
    run_dir, tag = Path(config.out), job.tag
    summary = distilled(run_dir)
    if summary is not None:
        log(f"{tag} distill: done earlier, reusing {run_dir}")
    else:
        resume = RunManifest.path_in(run_dir).is_file()
        if resume:  # views as the run started with them (a sweep extended with methods shares another K)
            config = dataclasses.replace(config, vlm_views=RunManifest.read(run_dir).config.vlm_views)
        log(f"{tag} distill{' (resuming)' if resume else ''} -> {run_dir}")
        summary = run_distill(config, resume=resume)
    entry.student_top1, entry.teacher_top1 = summary.student_top1, summary.teacher_top1
    entry.teacher_reused, entry.distilled = summary.teacher_reused, True
    save()
    if int(os.environ.get("RANK", "0")) > 0:  # a multi-GPU job: rank 0 alone exports and profiles
        return entry

    if export_done(run_dir, expected_formats(job)):
        log(f"{tag} export: done earlier")
    else:
        qat_note = {True: " + QAT int8", "auto": " + QAT int8 where post-training int8 misses"}.get(
            job.qat, ""
        )
        log(f"{tag} export {', '.join(job.formats)}{qat_note} (each artifact checked against PyTorch)")
        exported = export_run(
            run_dir,
            formats=job.formats,
            calib_samples=job.calib_samples,
            parity_samples=job.parity_samples,
            measure_speed=False,
            qat=job.qat,
            max_top1_drop=job.max_top1_drop,  # one budget: the int8 search judges by the report's
            progress=False,
            log=lambda *_: None,
        )
        for skipped in exported.skipped:
            log(f"{tag}   {skipped}")
        for artifact in exported.artifacts:
            agreement = artifact.parity.agreement if artifact.parity else float("nan")
            log(f"{tag}   {Path(artifact.path).name}: agrees with PyTorch on {agreement:.1f}% of test images")
    entry.exported = True
    save()

    for name in job.profiles if job.profiles_here else ():
        check_stop(
            f"the sweep stopped before profiling {run_dir.name}", "its progress is in the sweep folder"
        )
        if profile_done(run_dir, name):
            log(f"{tag} profile {name}: done earlier")
            continue
        profile = load_profile(name)
        log(f"{tag} profile {name}")
        profile_artifacts(
            [runner_for(profile.runtime).in_run(run_dir)],  # where the run keeps what it measures
            profile,
            batch_sizes=job.batch_sizes,
            dataset=config.dataset,
            data_root=config.data_root,
            limit=profile_limit,
            log=lambda msg: log(f"{tag}   {msg}"),
        )
    if job.profiles_here:
        entry.profiled = sorted({*entry.profiled, *job.profiles})
    save()
    return entry
