"""`run_distill`: both stages of DAIT (or a baseline's one stage) into a run directory.

data + VLM --stage 1--> intermediate teacher (saved, cached for later students)
           --stage 2--> student (last / best weights, no adapter)   -> summary.json
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch

from dait_edge.config import DistillConfig
from dait_edge.data import load_dataset
from dait_edge.data.base import DatasetSpec
from dait_edge.data.images import ImageListDataset
from dait_edge.data.splits import split_labelled
from dait_edge.data.transforms import SeededViews, eval_transform_for, train_transform_for
from dait_edge.distill.run_dir import default_run_dir, write_manifest
from dait_edge.distill.teacher_cache import (
    TEACHER_FILE,
    cached_teacher,
    restore_teacher,
    stage1_key,
    store_teacher,
)
from dait_edge.engine.distributed import DistInfo, barrier, broadcast_object, init_distributed, local_device
from dait_edge.engine.evaluate import evaluate
from dait_edge.engine.trainer import StageFiles, StagePlan, fit
from dait_edge.errors import UserError
from dait_edge.methods import METHODS, MethodContext
from dait_edge.models import build_model, check_model_name, count_macs, count_params
from dait_edge.records import RunManifest, RunSummary, TeacherInfo
from dait_edge.utils.device import resolve_device
from dait_edge.utils.io import sha256_file

STAGE1_METHOD = "dait_stage1"


class _Run:
    """What both stages share: config, data, devices, paths."""

    def __init__(self, config: DistillConfig, resume: bool):
        self.config = config
        self.resume = resume
        self.method_cls = METHODS.get(config.method)
        self.stages = config.stage_list()
        check_model_name(config.student, "student")
        check_model_name(config.teacher, "teacher")
        if config.teacher_checkpoint and not Path(config.teacher_checkpoint).is_file():
            # checked before the run directory exists, so the same --out works once the path is fixed
            raise UserError(
                f"teacher checkpoint {config.teacher_checkpoint} does not exist; pass a teacher.safetensors"
                " from a run.",
                setting="teacher_checkpoint",
            )
        device = resolve_device(config.device)
        self.dist: DistInfo = init_distributed(device)
        self.device = local_device(device, self.dist)
        self.spec: DatasetSpec = load_dataset(config.dataset, config.data_root)
        train = self.spec.split("train")
        if config.labelled_fraction < 1.0:
            # DAIT trains on the labelled part (the paper's data-shortage setting).
            train, _ = split_labelled(train, config.labelled_fraction, config.seed)
        self.train_samples = train
        self.templates = list(config.templates or self.spec.prompt_templates)
        run_dir = Path(config.out) if config.out else default_run_dir(config)
        self.run_dir = Path(broadcast_object(str(run_dir), self.dist))
        self.teacher_cache = (
            Path(config.teacher_cache) if config.teacher_cache else self.run_dir.parent / "teachers"
        )
        self.metrics = self.run_dir / "metrics.jsonl"

    def prepare_dir(self) -> None:
        manifest = RunManifest.path_in(self.run_dir)
        if self.dist.is_main:
            if manifest.is_file() and not self.resume:
                raise UserError(
                    f"{self.run_dir} already holds a run; resume it, or pass a new run directory.",
                    setting="resume",
                )
            if self.resume and not manifest.is_file():
                raise UserError(
                    f"{self.run_dir} holds no run to resume; start a new run there instead.", setting="resume"
                )
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not manifest.is_file():
                write_manifest(self.run_dir, self.config, self.device, self.dist.world_size)
        barrier(self.dist)

    def plan(self, stage: int) -> StagePlan:
        c = self.config
        return StagePlan(
            stage=stage,
            epochs=c.stage1_epochs if stage == 1 else c.stage2_epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            weight_decay=c.weight_decay,
            lr_step=c.lr_step,
            lr_gamma=c.lr_gamma,
            alpha_rate=c.alpha_rate,
            alpha_bias=c.alpha_bias,
            seed=c.seed,
            workers=c.workers,
        )

    def datasets(self, model) -> tuple[SeededViews, ImageListDataset]:
        """Training views and the test set, in `model`'s normalisation at --img-size."""
        size = self.config.img_size
        train = SeededViews(
            ImageListDataset(self.train_samples, crop_bottom=self.spec.crop_bottom),
            train_transform_for(model.data_config, size),
            seed=self.config.seed,
        )
        test = ImageListDataset(
            self.spec.split("test"), eval_transform_for(model.data_config, size), self.spec.crop_bottom
        )
        return train, test

    def fit(
        self, method, train, test, plan: StagePlan, files: StageFiles, metadata: dict, stop_after: int | None
    ):
        """Train one stage in this run; None when it stopped early (as if killed)."""
        result = fit(
            method,
            train,
            test,
            plan,
            files,
            device=self.device,
            metrics_path=self.metrics,
            dist_info=self.dist,
            resume=self.resume,
            progress=self.config.progress,
            weights_metadata=metadata,
            stop_after_epoch=stop_after,
        )
        return result if result.last is not None and result.last.epoch == plan.epochs - 1 else None

    def load_vlm_and_text(self):
        from dait_edge.vlm import load_vlm, text_classifier

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            vlm = load_vlm(self.config.vlm, self.config.vlm_pretrained, device=self.device)
        text = text_classifier(vlm, self.spec.classes, self.templates, cache_dir=self.config.cache_dir)
        return vlm, text


def run_distill(
    config: DistillConfig, *, resume: bool = False, stop_after_epoch: dict | None = None
) -> RunSummary:
    """Train the stages `config.stages` asks for; returns the summary (also written to summary.json).

    `stop_after_epoch` ({stage: epoch}) ends a stage early as if the process were killed (tests).
    """
    config.validate()
    run = _Run(config, resume)
    run.prepare_dir()
    stop_after_epoch = stop_after_epoch or {}
    torch.manual_seed(config.seed + run.dist.rank)

    summary = RunSummary(
        run_dir=str(run.run_dir),
        dataset=config.dataset,
        method=config.method,
        student=None,
        teacher=config.teacher,
        num_classes=run.spec.num_classes,
        classes=run.spec.classes,
        train_images=len(run.train_samples),
        labelled_fraction=config.labelled_fraction,
    )

    teacher_path = None
    if "teacher" in run.method_cls.needs or 1 in run.stages:
        teacher_path, teacher_info = _stage1(run, summary, stop_after_epoch.get(1))
        if teacher_path is None:  # interrupted
            return summary
        summary.teacher_top1 = teacher_info.top1 if teacher_info else None
    if 2 in run.stages:
        if not _stage2(run, summary, teacher_path, stop_after_epoch.get(2)):
            return summary
    summary.completed = True
    if run.dist.is_main:
        summary.write(run.run_dir)
    barrier(run.dist)
    return summary


def _stage1(run: _Run, summary: RunSummary, stop_after: int | None) -> tuple[Path | None, TeacherInfo | None]:
    """The intermediate teacher: given, finished earlier in this run, cached, or trained now."""
    from dait_edge.vlm import resolve_vlm_source

    config, stage_dir = run.config, run.run_dir / "stage1"
    if config.teacher_checkpoint:
        path = Path(config.teacher_checkpoint)  # _Run checked that it exists
        summary.checkpoints.teacher = str(path.resolve())
        summary.stage1_seconds = 0.0
        return path, None  # its top-1 is measured in stage 2, on this run's test split

    vlm_source = resolve_vlm_source(config.vlm, config.vlm_pretrained)
    key = stage1_key(config, run.train_samples, run.spec.classes, vlm_source.weights_id, run.templates)
    summary.stage1_key = key
    summary.checkpoints.teacher = f"stage1/{TEACHER_FILE}"
    summary.checkpoints.state_stage1 = "stage1/state.pt"

    if TeacherInfo.path_in(stage_dir).is_file():  # finished earlier in this run (resume)
        info = TeacherInfo.read(stage_dir)
    elif (cached := cached_teacher(run.teacher_cache, key)) is not None:
        info = restore_teacher(cached, stage_dir) if run.dist.is_main else None
        info = broadcast_object(info, run.dist)
    elif 1 not in run.stages:
        raise UserError(
            "stage 2 needs a trained intermediate teacher and none matches these settings; run stage 1 too"
            " (stages 1,2) or give a teacher checkpoint.",
            setting="teacher_checkpoint",
        )
    else:
        info = _train_teacher(run, stage_dir, key, stop_after)
        if info is None:
            return None, None
        if run.dist.is_main:
            store_teacher(run.teacher_cache, key, stage_dir)
    summary.stage1_seconds = info.seconds
    summary.teacher_reused = info.reused_from is not None
    return stage_dir / TEACHER_FILE, info


def _train_teacher(run: _Run, stage_dir: Path, key: str, stop_after: int | None) -> TeacherInfo | None:
    config = run.config
    teacher = build_model(
        config.teacher,
        run.spec.num_classes,
        pretrained=config.pretrained,
        weights=config.teacher_weights,
        role="teacher",
    )
    vlm, text = run.load_vlm_and_text()
    context = MethodContext(
        num_classes=run.spec.num_classes,
        input_mean=teacher.data_config.mean,
        input_std=teacher.data_config.std,
        tau=config.temperature,
        vlm=vlm,
        text_embeddings=text,
    )
    method = METHODS.get(STAGE1_METHOD)(teacher, context)
    train, test = run.datasets(teacher)
    plan = run.plan(1)
    files = StageFiles(
        stage_dir / "state.pt", stage_dir / TEACHER_FILE, stage_dir / "teacher_best.safetensors"
    )
    result = run.fit(
        method, train, test, plan, files, {"role": "teacher", "model": config.teacher}, stop_after
    )
    if result is None:
        return None
    info = TeacherInfo(
        key=key,
        teacher=teacher.name,
        num_classes=run.spec.num_classes,
        classes=run.spec.classes,
        data_config=teacher.data_config,
        img_size=config.img_size,
        epochs=plan.epochs,
        top1=result.last.top1,
        top5=result.last.top5,
        top1_best=result.best_top1,
        seconds=result.seconds,
        vlm=config.vlm,
        vlm_pretrained=config.vlm_pretrained,
        templates=run.templates,
    )
    if run.dist.is_main:
        info.write(stage_dir)
    barrier(run.dist)
    return info


def _stage2(run: _Run, summary: RunSummary, teacher_path: Path | None, stop_after: int | None) -> bool:
    config, stage_dir = run.config, run.run_dir / "stage2"
    num_classes = run.spec.num_classes
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
        options=dict(config.extra),
    )
    train, test = run.datasets(student)
    if teacher_path is not None:
        context.teacher = build_model(
            config.teacher, num_classes, pretrained=False, weights=teacher_path, role="teacher"
        )
        if summary.teacher_top1 is None:  # a given checkpoint: measure it on the same test split
            teacher_test = run.datasets(context.teacher)[1]
            summary.teacher_top1 = evaluate(
                context.teacher.to(run.device), teacher_test, device=run.device, dist_info=run.dist
            )["top1"]
    if "vlm" in run.method_cls.needs:
        context.vlm, context.text_embeddings = run.load_vlm_and_text()
    method = run.method_cls(student, context)

    files = StageFiles(
        stage_dir / "state.pt", stage_dir / "student_last.safetensors", stage_dir / "student_best.safetensors"
    )
    plan = run.plan(2)
    metadata = {"role": "student", "model": student.name, "method": config.method}
    result = run.fit(method, train, test, plan, files, metadata, stop_after)
    if result is None:
        return False
    student_cpu = student.to("cpu").eval()
    summary.student = student.name
    summary.student_top1, summary.student_top5 = result.last.top1, result.last.top5
    summary.student_top1_best, summary.student_best_epoch = result.best_top1, result.best_epoch
    summary.stage2_seconds = result.seconds
    summary.params = count_params(student_cpu)
    summary.macs = count_macs(student_cpu, (3, config.img_size, config.img_size))
    summary.img_size = config.img_size
    summary.data_config = dataclasses.replace(
        student.data_config, input_size=[3, config.img_size, config.img_size]
    )
    summary.student_sha256 = sha256_file(files.last_weights) if files.last_weights.is_file() else None
    summary.checkpoints.student = "stage2/student_last.safetensors"
    summary.checkpoints.student_best = "stage2/student_best.safetensors"
    summary.checkpoints.state_stage2 = "stage2/state.pt"
    return True
