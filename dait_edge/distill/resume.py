"""Starting and resuming a run folder: whether it may be written, whether --resume asks for the run that is
there (the settings that change what it computes must match), and whether it already finished."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dait_edge.distill.manifest import write_manifest
from dait_edge.engine.distributed import barrier, on_main
from dait_edge.errors import UserError
from dait_edge.methods import validation_fraction
from dait_edge.methods.base import settings_of_other_methods
from dait_edge.records import DistillConfig, RunManifest, RunSummary
from dait_edge.utils.lock import exclusive

if TYPE_CHECKING:
    from dait_edge.distill.context import RunContext

# Settings a resumed run may change: where and how it runs, not what it computes.
RESUMABLE_SETTINGS = frozenset({"out", "device", "workers", "progress", "teacher_cache", "cache_dir"})

PATH_SETTINGS = (
    "data_root",
    "vlm",
    "vlm_pretrained",
    "student_weights",
    "teacher_weights",
    "teacher_checkpoint",
)


def prepare_dir(run: RunContext) -> None:
    """Check that the folder may be written (a new run, or --resume of one), then hold its lock until the
    run ends (`run.locks`); every rank waits for rank 0."""
    on_main(run.dist, lambda: _prepare_dir(run))
    barrier(run.dist)


def _prepare_dir(run: RunContext) -> None:
    manifest = RunManifest.path_in(run.run_dir)
    if manifest.is_file() and not run.resume:
        raise UserError(
            f"{run.run_dir} already holds a run; resume it, or pass a new run directory.",
            setting="resume",
        )
    if run.resume and not manifest.is_file():
        raise UserError(
            f"{run.run_dir} holds no run to resume; start a new run there instead.", setting="resume"
        )
    run.run_dir.mkdir(parents=True, exist_ok=True)
    run.locks.enter_context(exclusive(run.run_dir, "run directory"))
    if manifest.is_file() and not run.resume:  # another process made a run here after the check above
        raise UserError(
            f"{run.run_dir} already holds a run; resume it, or pass a new run directory.",
            setting="resume",
        )
    if not manifest.is_file():
        write_manifest(run.run_dir, run.config, run.device, run.dist.world_size, run.skipped_paths)


def comparable(config: DistillConfig, vlm_taught_epochs: int) -> dict:
    """Settings as they act, so that the same run written another way compares equal: paths resolved,
    stages sorted, `auto` views, a method's default validation fraction and the default step decay as numbers,
    without the settings only other methods read."""
    values = dataclasses.asdict(config)
    for name in (*PATH_SETTINGS, "kd_teacher"):
        value = values.get(name)
        if isinstance(value, str) and value and Path(value).exists():
            values[name] = str(Path(value).resolve())
    values["stages"] = config.stage_list()
    values["val_fraction"] = validation_fraction(config.method, config.val_fraction)
    for name in settings_of_other_methods(config.method):  # sra_form cannot change a `none` run
        values.pop(name, None)
    values["lr_step"] = [config.lr_step_for(config.stage1_epochs), config.lr_step_for(config.stage2_epochs)]
    if config.vlm_view_setting() is None:  # auto: as many views as the longest VLM-taught stage's epochs
        values["vlm_views"] = str(vlm_taught_epochs)
    return values


def finished_run(run: RunContext) -> RunSummary | None:
    """The summary of a run that already completed, after checking that --resume asks for the same run."""
    manifest = RunManifest.path_in(run.run_dir)
    if not manifest.is_file():
        return None  # prepare_dir says there is nothing to resume
    recorded = RunManifest.read(manifest)
    if recorded.skipped_images is not None and sorted(recorded.skipped_images) != run.skipped_paths:
        raise UserError(
            f"cannot resume {run.run_dir}: the images that cannot be read are not those of when it started"
            f" ({len(recorded.skipped_images)} then, {len(run.skipped_paths)} now), so its image indices would"
            " shift; restore the dataset as it was, or start a new run.",
            setting="resume",
        )
    before = comparable(recorded.config, run.vlm_taught_epochs())
    now = comparable(run.config, run.vlm_taught_epochs())
    changed = [name for name in now if name not in RESUMABLE_SETTINGS and before.get(name) != now[name]]
    if changed:
        described = ", ".join(
            f"{name} ({before.get(name)!r} in the run, {now[name]!r} now)" for name in changed
        )
        raise UserError(
            f"cannot resume {run.run_dir} with changed settings: {described}; resume with the run's own settings"
            " (give only the run directory and --resume), or start a new run in another folder.",
            setting="resume",
        )
    summary = RunSummary.read_if_present(run.run_dir)
    if summary is None or not summary.completed:
        return None
    print(f"{run.run_dir} is already finished; nothing to resume.", file=sys.stderr)
    return summary
