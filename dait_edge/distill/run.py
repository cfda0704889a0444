"""`run_distill`: both stages of DAIT (or a baseline's one stage) into a run directory.

data + VLM --stage 1--> intermediate teacher (saved, cached for later students)
           --stage 2--> student (last / best weights, no adapter)   -> summary.json

Read top to bottom: the config is resolved (`resolve_config`), the run's context is read
(`context.RunContext`), a finished run is recognised (`resume.finished_run`), then the stages run in
order (`stages.stage1`, `stages.stage2`) and the summary is written.
"""

from __future__ import annotations

import sys

from dait_edge.distill.context import RunContext
from dait_edge.distill.resume import finished_run, prepare_dir
from dait_edge.distill.stages import stage1, stage2
from dait_edge.distill.vlm_teaching import CacheBuildStopped
from dait_edge.engine.distributed import barrier, on_main, shutdown
from dait_edge.errors import Interrupted
from dait_edge.methods import METHODS
from dait_edge.methods.base import training_recipe
from dait_edge.models import resolve_model_name
from dait_edge.records import DistillConfig, RunSummary


def resolve_config(config: DistillConfig) -> DistillConfig:
    """Check every value, then resolve names once through the registries: aliases become the canonical
    model and method names that the run folder, the summary and the sweep all use. The recipe is checked
    here and applied by `run_distill` (a sweep resolves one config and gives each method its own copy)."""
    config.validate()
    config.student = resolve_model_name(config.student, "student")
    config.teacher = resolve_model_name(config.teacher, "teacher")
    config.method = METHODS.resolve(config.method)
    training_recipe(config.recipe, config.method)
    return config


def run_distill(
    config: DistillConfig, *, resume: bool = False, stop_after_epoch: dict | None = None
) -> RunSummary:
    """Train the stages `config.stages` asks for; returns the summary (also written to summary.json).

    `stop_after_epoch` ({stage: epoch}, or {"cache": chunks}) ends a stage, or the VLM embedding cache's
    build, early as if the process were killed (tests).
    """
    resolve_config(config)
    config.apply_recipe(training_recipe(config.recipe, config.method))
    stops = stop_after_epoch or {}
    run = RunContext(config, resume, stop_cache_after=stops.get("cache"))
    try:
        finished = on_main(run.dist, lambda: finished_run(run)) if resume else None
        if finished is not None:
            return finished
        return _run_stages(run, stops)
    except Interrupted as err:
        err.folder = run.run_dir  # what --out --resume continues
        raise
    finally:
        run.locks.close()
        shutdown(run.dist)


def _new_summary(run: RunContext) -> RunSummary:
    config = run.config
    return RunSummary(
        run_dir=str(run.run_dir),
        dataset=config.dataset,
        method=config.method,
        student=None,
        teacher=config.teacher,
        num_classes=run.spec.num_classes,
        classes=run.spec.classes,
        train_images=len(run.training_indices(run.method_cls)[0]),
        labelled_fraction=config.labelled_fraction,
        vlm_views=run.cached_views() if run.vlm_taught() else 0,
        cache_seconds=0.0,
        labelled_images=len(run.labelled),
        unlabelled_images=len(run.unlabelled) if run.method_cls.learns_from_unlabelled else 0,
        val_images=len(run.val_indices),
        skipped_images=run.skipped_images,
        kd_teacher=run.kd_teacher_label(),
        taught_by=run.taught_by(),
        student_head=run.method_cls.student_head,
        seed=config.seed,
        recipe=config.recipe,
    )


def _run_stages(run: RunContext, stop_after_epoch: dict) -> RunSummary:
    config = run.config
    prepare_dir(run)
    summary = _new_summary(run)
    teacher_path = None
    if not run.two_stage and 1 in run.stages and run.dist.is_main:
        print(
            f"{config.method} is a single-stage method: no stage 1 (intermediate teacher); the student"
            f" trains for {config.stage2_epochs} epochs (--stage2-epochs).",
            file=sys.stderr,
        )
    try:
        if run.two_stage:
            teacher_path, teacher_info = stage1(run, summary, stop_after_epoch.get(1))
            if teacher_path is None:  # interrupted
                return summary
            summary.teacher_top1 = teacher_info.top1 if teacher_info else None
        if 2 in run.stages:
            if not stage2(run, summary, teacher_path, stop_after_epoch.get(2)):
                return summary
    except CacheBuildStopped:
        return summary
    summary.completed = True
    if run.dist.is_main:
        summary.write(run.run_dir)
    barrier(run.dist)
    return summary
