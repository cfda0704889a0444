"""The two stages of a run: stage 1 (the intermediate teacher: given, finished earlier, cached, or trained
from the VLM) and stage 2 (the student), then the inference settings a method fits after training (DHO's
(a, b)). Each fills in its part of the run summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dait_edge.distill.teacher_cache import cached_teacher, restore_teacher, stage1_key
from dait_edge.distill.teachers import store_teacher_locked
from dait_edge.engine.checkpoint import seed_everything, stage_seed
from dait_edge.engine.distributed import check_stop_together, on_main
from dait_edge.engine.evaluate import evaluate
from dait_edge.errors import UserError
from dait_edge.methods import METHODS, Distiller, MethodContext
from dait_edge.models import build_model, count_macs, count_params
from dait_edge.records import RunSummary, TeacherInfo
from dait_edge.utils.faults import fault_point
from dait_edge.utils.io import sha256_file

if TYPE_CHECKING:
    from dait_edge.distill.context import RunContext

STAGE1_METHOD = "dait_stage1"


def stage1(
    run: RunContext, summary: RunSummary, stop_after: int | None
) -> tuple[Path | None, TeacherInfo | None]:
    """The intermediate teacher: given, finished earlier in this run, cached, or trained now. Returns its
    weights and info (None, None when training stopped early)."""
    config, layout = run.config, run.layout
    stage_dir = layout.stage(1)
    if config.teacher_checkpoint:
        path = Path(config.teacher_checkpoint)  # RunContext checked that it exists
        summary.checkpoints.teacher = str(path.resolve())
        summary.stage1_seconds = 0.0
        return path, None  # its top-1 is measured in stage 2, on this run's test split

    stage1_cls = METHODS.get(STAGE1_METHOD)
    key = stage1_key(
        config,
        run.all_train,
        run.spec.classes,
        run.vlm.source,
        run.templates,
        method_cls=stage1_cls,
        method_options=run.stage1_options(),
        views=run.views_for(1, vlm_taught=True),
    )
    summary.stage1_key = key
    summary.checkpoints.teacher = layout.relative(layout.teacher)
    summary.checkpoints.state_stage1 = layout.relative(layout.state(1))

    def where():
        """Rank 0 decides where the teacher comes from, every rank follows (files appear meanwhile)."""
        if TeacherInfo.path_in(stage_dir).is_file():
            return "run", None  # finished earlier in this run (resume)
        # read without the lock: a teacher stored meanwhile shows as damaged (hash) and is trained again
        found = cached_teacher(run.teacher_cache, key)
        return ("cache", restore_teacher(found, stage_dir)) if found is not None else ("train", None)

    source, restored = on_main(run.dist, where)
    trained_here = False
    if source == "run":
        info = TeacherInfo.read(stage_dir)
        trained_here = info.reused_from is None
    elif source == "cache":
        info = restored
    elif 1 not in run.stages:
        raise UserError(
            "stage 2 needs a trained intermediate teacher and none matches these settings; run stage 1 too"
            " (stages 1,2) or give a teacher checkpoint.",
            setting="teacher_checkpoint",
        )
    else:
        info = _train_teacher(run, summary, key, stop_after)
        if info is None:
            return None, None
        trained_here = True
        on_main(run.dist, lambda: store_teacher_locked(run.teacher_cache, key, stage_dir))
    summary.stage1_seconds = info.seconds if trained_here else 0.0
    summary.cache_seconds = info.cache_seconds if trained_here else 0.0
    summary.teacher_seconds = info.seconds
    summary.teacher_reused = not trained_here
    return layout.teacher, info


def _train_teacher(
    run: RunContext, summary: RunSummary, key: str, stop_after: int | None
) -> TeacherInfo | None:
    config = run.config
    seed_everything(stage_seed(config.seed, 1, run.dist.rank))
    teacher = build_model(
        config.teacher,
        run.spec.num_classes,
        pretrained=config.pretrained,
        weights=config.teacher_weights,
        role="teacher",
    )
    context = MethodContext(
        num_classes=run.spec.num_classes,
        input_mean=teacher.data_config.mean,
        input_std=teacher.data_config.std,
        tau=config.temperature,
        options=run.stage1_options(),
    )
    stage1_cls = METHODS.get(STAGE1_METHOD)
    context.vlm, extra = run.vlm_teaching(teacher, summary, stage1_cls)
    method = stage1_cls(teacher, context)
    datasets = run.datasets(teacher, run.views_for(1, vlm_taught=True), extra, stage1_cls)
    plan = run.plan(1)
    files = run.stage_files(1)
    result = run.fit(method, datasets, plan, files, {"role": "teacher", "model": config.teacher}, stop_after)
    if result is None:
        return None
    info = TeacherInfo(
        key=key,
        teacher=teacher.name,
        num_classes=run.spec.num_classes,
        classes=run.spec.classes,
        data_config=run.preprocessing(teacher),
        img_size=config.img_size,
        epochs=plan.epochs,
        top1=result.last.top1,
        top5=result.last.top5,
        top1_best=result.best_top1,
        seconds=result.seconds,
        vlm=config.vlm,
        vlm_pretrained=config.vlm_pretrained,
        templates=run.templates,
        vlm_views=run.cached_views(),
        cache_seconds=summary.cache_seconds,
        weights_sha256=sha256_file(files.last_weights),
    )
    on_main(run.dist, lambda: info.write(run.layout.stage(1)))
    return info


def stage2(run: RunContext, summary: RunSummary, teacher_path: Path | None, stop_after: int | None) -> bool:
    """The student, taught by the intermediate teacher, a task teacher, the VLM or labels alone; False when
    training stopped early."""
    config, layout = run.config, run.layout
    num_classes = run.spec.num_classes
    fault_point("stage-start:2")
    check_stop_together("stopped before stage 2", "every finished stage is saved", run.dist, run.device)
    # Reseeded from (seed, stage, rank) alone: the student's initial weights and adapter are the same whether
    # the teacher was trained in this process, read from the cache or given.
    seed_everything(stage_seed(config.seed, 2, run.dist.rank))
    student = build_model(
        config.student,
        num_classes,
        pretrained=config.pretrained,
        weights=config.student_weights,
        role="student",
    )
    context = MethodContext(
        num_classes=num_classes,
        input_mean=student.data_config.mean,
        input_std=student.data_config.std,
        tau=config.temperature,
        options=run.options,
    )
    vlm_taught = "vlm" in run.requirements
    extra = None
    if teacher_path is not None:
        context.teacher = run.load_teacher(teacher_path)
    if run.task_teacher_model is not None:
        context.teacher = run.task_teacher_model
    if vlm_taught:
        context.vlm, extra = run.vlm_teaching(student, summary)
    student = run.method_cls.wrap_student(student, context)  # the model trained and exported, with its head
    datasets = run.datasets(student, run.views_for(2, vlm_taught), extra)
    method = run.method_cls(student, context)
    if context.teacher is not None and summary.teacher_top1 is None:
        # a given checkpoint: measure it on the same test split (in a forked RNG: training draws stay the same)
        teacher_test = run.eval_set(context.teacher, run.spec.split("test"))
        with torch.random.fork_rng(devices=[]):
            summary.teacher_top1 = evaluate(
                context.teacher.to(run.device), teacher_test, device=run.device, dist_info=run.dist
            )["top1"]

    files = run.stage_files(2)
    plan = run.plan(2)
    metadata = {"role": "student", "model": student.name, "method": config.method}
    result = run.fit(method, datasets, plan, files, metadata, stop_after)
    if result is None:
        return False
    if run.method_cls.calibrate is not Distiller.calibrate:  # fitted at every epoch (engine.trainer)
        summary.calibration = _calibration(run, method)
    student_cpu = student.to("cpu").eval()
    summary.student = student.name
    summary.student_top1, summary.student_top5 = result.last.top1, result.last.top5
    summary.student_top1_best, summary.student_best_epoch = result.best_top1, result.best_epoch
    summary.student_val_top1, summary.student_val_top1_best = result.last.val_top1, result.best_val_top1
    summary.stage2_seconds = result.seconds
    summary.params = count_params(student_cpu)
    summary.macs = count_macs(student_cpu, (3, config.img_size, config.img_size))
    summary.img_size = config.img_size
    summary.data_config = run.preprocessing(student)
    summary.student_sha256 = sha256_file(files.last_weights) if files.last_weights.is_file() else None
    summary.checkpoints.student = layout.relative(files.last_weights)
    # no validation images, no best epoch: then there is no best file to point at
    summary.checkpoints.student_best = (
        layout.relative(files.best_weights) if result.best_epoch is not None else None
    )
    summary.checkpoints.state_stage2 = layout.relative(files.state)
    return True


def _calibration(run: RunContext, method) -> dict[str, float]:
    """The inference settings the last weights hold (DHO's (a, b), fitted on the validation images at every
    epoch); none where no images were held out, which is said."""
    if run.val_indices:
        return method.calibration()
    if run.dist.is_main:
        print(
            f"{run.config.method}: no validation images to calibrate on (raise --val-fraction or"
            " --labelled-fraction); its default inference settings are kept.",
            file=sys.stderr,
        )
    return {}
