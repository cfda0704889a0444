"""`RunContext`: what both stages of one run share: the config and method, the device, the dataset and
its splits (labelled, validation, unlabelled), the view spec, the teachers given up front, the VLM side
and the run folder's layout.

Everything a stage will need is read here, before the run folder exists: a missing file, a wrong class
count or an unreadable image fails now, not after an epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import torch

from dait_edge.data import load_dataset
from dait_edge.data.base import DatasetSpec
from dait_edge.data.images import ImageListDataset
from dait_edge.data.splits import labelled_split
from dait_edge.data.transforms import eval_transform_for
from dait_edge.data.views import TrainViews, ViewSpec
from dait_edge.distill.teachers import load_task_teacher, load_teacher, task_teacher_source
from dait_edge.distill.vlm_teaching import VLMTeaching
from dait_edge.engine.distributed import DistInfo, broadcast_object, init_distributed, local_device, on_main
from dait_edge.engine.trainer import StageFiles, StagePlan, fit
from dait_edge.errors import UserError
from dait_edge.methods import METHODS, validation_fraction
from dait_edge.methods.base import owned_settings
from dait_edge.models import build_model
from dait_edge.records import DataConfig, DistillConfig, RunLayout
from dait_edge.records.config import parse_train_crop
from dait_edge.records.layout import default_run_dir
from dait_edge.utils.device import resolve_device


def method_options(config: DistillConfig) -> dict:
    """The options a stage-2 method is built with (its MethodContext.options): every method's own settings
    (`Distiller.own_settings`) and the shared ones methods read."""
    owned = {name: getattr(config, name) for name in sorted(owned_settings())}
    return {"sia_weight": config.sia_weight, "kd_teacher": config.kd_teacher, **owned, **config.extra}


class RunContext:
    """The run's data, splits, devices, teachers given up front, VLM side and folder."""

    def __init__(self, config: DistillConfig, resume: bool, stop_cache_after: int | None = None):
        self.config = config
        self.resume = resume
        self.method_cls = METHODS.get(config.method)
        self.stages = config.stage_list()
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
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)  # pinned-memory threads and new streams follow the current GPU
        self.options = method_options(config)
        self.requirements = self.method_cls.requirements(self.options)
        if self.stages == [1] and "teacher" not in self.requirements:
            raise UserError(
                f"{config.method} trains no intermediate teacher (it has one stage: the student); run stage 2.",
                setting="stages",
            )
        self.task_teacher = (
            task_teacher_source(config.kd_teacher) if "task_teacher" in self.requirements else None
        )
        self.spec: DatasetSpec = load_dataset(config.dataset, config.data_root)
        self.spec, self.skipped_paths = _readable(self.spec, config, self.dist)
        self.skipped_images = len(self.skipped_paths)
        # One index space for the whole training split: view seeds and cached embeddings are keyed by it.
        self.all_train = self.spec.split("train")
        # Labelled (class-balanced, seeded), minus a validation split held out of it; the rest unlabelled.
        held_out = validation_fraction(config.method, config.val_fraction)
        self.labelled, self.val_indices = labelled_split(
            self.all_train, config.labelled_fraction, held_out, config.seed
        )
        outside = {*self.labelled, *self.val_indices}
        self.unlabelled = (
            [i for i in range(len(self.all_train)) if i not in outside] if config.train_unlabelled else []
        )
        # the same views for every model that sees them, cut as the run evaluates and exports
        self.view_spec = ViewSpec(
            size=config.img_size,
            crop_pct=config.crop_pct,
            interpolation=config.interpolation,
            scale=parse_train_crop(config.train_crop),
        )
        self.templates = list(config.templates or self.spec.prompt_templates)
        # KD's task teacher is loaded now: a wrong file or class count fails before any folder is written
        self.task_teacher_model = (
            load_task_teacher(self.task_teacher, self.spec.num_classes, config.dataset)
            if self.task_teacher is not None
            else None
        )
        self.vlm: VLMTeaching | None = None  # set by _check_inputs where a VLM teaches a stage
        self._check_inputs(stop_cache_after)
        if config.out:
            run_dir = Path(config.out)
        else:
            run_dir = default_run_dir(config.dataset, config.student, config.method)
        self.run_dir = Path(broadcast_object(str(run_dir), self.dist))
        self.layout = RunLayout(self.run_dir)
        self.teacher_cache = (
            Path(config.teacher_cache) if config.teacher_cache else self.layout.default_teacher_cache
        )
        self.metrics = self.layout.metrics
        self.locks = contextlib.ExitStack()  # released when the run ends, however it ends

    def _check_inputs(self, stop_cache_after: int | None) -> None:
        """Read what the stages will need, now: a missing or wrong file fails before the run folder exists
        and before any epoch is spent."""
        config = self.config
        for role, model in (("student", config.student), ("teacher", config.teacher)):
            path = getattr(config, f"{role}_weights")
            if path and (role == "student" or (self.two_stage and not config.teacher_checkpoint)):
                # built once now: a missing file, another architecture or an unreadable one fails here
                build_model(model, self.spec.num_classes, pretrained=False, weights=path, role=role)
        if config.teacher_checkpoint and self.two_stage:
            self.load_teacher(Path(config.teacher_checkpoint))  # readable, the teacher's, these classes
        if self.vlm_taught():  # resolves --vlm / --vlm-pretrained (names, files, hub tags)
            self.vlm = VLMTeaching(
                config,
                self.spec,
                self.templates,
                self.view_spec,
                self.device,
                self.dist,
                stop_cache_after=stop_cache_after,
            )

    def load_teacher(self, path: Path):
        """The frozen intermediate teacher in `path`, checked against this dataset's classes."""
        return load_teacher(path, self.config.teacher, self.spec.num_classes, self.config.dataset)

    @property
    def two_stage(self) -> bool:
        """Does the method learn from DAIT's intermediate teacher (stage 1 first)? Baselines train the
        student directly, in one stage."""
        return "teacher" in self.requirements

    def vlm_taught_epochs(self) -> int:
        """The epochs of the longest VLM-taught stage this run may train (`--vlm-views auto`)."""
        c = self.config
        stage1 = c.stage1_epochs if self.two_stage and not c.teacher_checkpoint else 0
        return max(stage1, c.stage2_epochs if "vlm" in self.requirements else 0)

    def vlm_taught(self) -> bool:
        """Does a VLM teach a stage of this run: a VLM-taught method, or DAIT's stage 1 (which a run needs
        unless a teacher checkpoint is given)?"""
        return "vlm" in self.requirements or (self.two_stage and not self.config.teacher_checkpoint)

    def kd_teacher_label(self) -> str | None:
        """For methods with a choice of teacher (KD, RKD): "vlm" or the task checkpoint's model."""
        if not self.method_cls.teacher_choice:
            return None
        return self.task_teacher.model if self.task_teacher is not None else "vlm"

    def taught_by(self) -> str:
        """What taught the student, in words (the comparison's teacher column)."""
        if self.two_stage:
            return f"{self.config.teacher} (stage 1)"
        if self.task_teacher is not None:
            return f"{self.kd_teacher_label()} (task checkpoint)"
        if "vlm" in self.requirements:
            return f"VLM {Path(self.config.vlm).stem}"
        return "labels only"

    def training_indices(self, method_cls) -> tuple[list[int], list[int] | None]:
        """(the images a stage trains on, the labelled ones among them or None when all are): unlabelled
        images join only when the method has terms that learn from them."""
        if self.unlabelled and method_cls.learns_from_unlabelled:
            return sorted(self.labelled + self.unlabelled), self.labelled
        return self.labelled, None

    def cached_views(self) -> int:
        """K, the views per image the VLM embedding cache holds; 0 when the live VLM teaches."""
        setting = self.config.vlm_view_setting()
        return self.vlm_taught_epochs() if setting is None else setting

    def views_for(self, stage: int, vlm_taught: bool) -> int:
        """Views per image in `stage`: a VLM-taught stage cycles through the K cached views (K = its epochs
        by default, so none repeats; the live VLM sees the same views); any other stage gets a new view
        every epoch."""
        if vlm_taught:
            return self.cached_views() or self.vlm_taught_epochs()
        return self.config.stage1_epochs if stage == 1 else self.config.stage2_epochs

    def vlm_teaching(self, model, summary, method_cls=None):
        """(provider, extra) for a VLM-taught stage training `model` (see `VLMTeaching.provider`)."""
        return self.vlm.provider(model, summary, self.cached_views(), method_cls or self.method_cls)

    def stage1_options(self) -> dict:
        """The stage-1 method's options (part of the teacher-cache key)."""
        return {"sia_weight": self.config.sia_weight}

    def plan(self, stage: int) -> StagePlan:
        c = self.config
        return StagePlan(
            stage=stage,
            epochs=c.stage1_epochs if stage == 1 else c.stage2_epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            weight_decay=c.weight_decay,
            lr_step=c.lr_step_for(c.stage1_epochs if stage == 1 else c.stage2_epochs),
            lr_gamma=c.lr_gamma,
            lr_schedule=c.lr_schedule,
            warmup_epochs=c.warmup_epochs,
            optimizer=c.optimizer,
            alpha_rate=c.alpha_rate,
            alpha_bias=c.alpha_bias,
            seed=c.seed,
            workers=c.workers,
            sync_bn=c.sync_bn,
        )

    def preprocessing(self, model) -> DataConfig:
        """The run's one input pipeline for `model`: --img-size, --interpolation and --crop-pct (the run's,
        the same for every model), in the model's own normalisation. Training views, evaluation, the
        summary, export and every sidecar take it from here."""
        c = self.config
        return DataConfig(
            input_size=[3, c.img_size, c.img_size],
            mean=list(model.data_config.mean),
            std=list(model.data_config.std),
            interpolation=c.interpolation,
            crop_pct=c.crop_pct,
            source="run",
        )

    def datasets(
        self, model, views: int, extra=None, method_cls=None
    ) -> tuple[TrainViews, ImageListDataset, ImageListDataset | None]:
        """Training views (of what `method_cls` trains on), the test set and the validation images (None
        when the run holds none), in `model`'s normalisation at --img-size.

        The views are cut by the run's model-independent view spec; only the normalisation is the model's.
        `extra(index, view)` adds cached teacher outputs to each item."""
        indices, labelled = self.training_indices(method_cls or self.method_cls)
        dc = self.preprocessing(model)
        train = TrainViews(
            ImageListDataset(self.all_train, crop_bottom=self.spec.crop_bottom),
            self.view_spec,
            seed=self.config.seed,
            views=views,
            mean=dc.mean,
            std=dc.std,
            indices=indices,
            extra=extra,
            labelled=labelled,
        )
        return train, self.eval_set(model, self.spec.split("test")), self.validation_set(model)

    def validation_set(self, model) -> ImageListDataset | None:
        """The validation images held out of training, as `model` is evaluated; None when there are none."""
        if not self.val_indices:
            return None
        return self.eval_set(model, [self.all_train[i] for i in self.val_indices])

    def eval_set(self, model, samples) -> ImageListDataset:
        """`samples` as `model` is evaluated: the run's resize and centre crop, the model's normalisation."""
        transform = eval_transform_for(self.preprocessing(model))
        return ImageListDataset(samples, transform, self.spec.crop_bottom)

    def stage_files(self, stage: int) -> StageFiles:
        """Where a stage writes: its resume state, the trained model's last and best weights."""
        layout = self.layout
        if stage == 1:
            return StageFiles(layout.state(1), layout.teacher, layout.weights("teacher_best"))
        return StageFiles(layout.state(2), layout.student_last, layout.student_best)

    def fit(
        self,
        method,
        datasets: tuple,
        plan: StagePlan,
        files: StageFiles,
        metadata: dict,
        stop_after: int | None,
    ):
        """Train one stage in this run on (train, test, validation) from `datasets`; None when it stopped
        early (as if killed)."""
        train, test, validation = datasets
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
            val_set=validation,
        )
        return result if result.last is not None and result.last.epoch == plan.epochs - 1 else None


def _readable(spec: DatasetSpec, config: DistillConfig, dist: DistInfo) -> tuple[DatasetSpec, list[str]]:
    """`spec` once every train and test image has decoded (rank 0 decodes, every rank follows): an image
    that cannot be read fails the run now, naming it, not hours into an epoch; with --skip-bad-images it is
    left out and counted."""
    from dait_edge.data.inspect import find_bad_images

    paths = [path for split in ("train", "test") for path, _ in spec.split(split)]
    bad = on_main(dist, lambda: find_bad_images(paths, progress=config.progress))
    if not bad:
        return spec, []
    if not config.skip_bad_images:
        first = bad[0]
        more = f" (and {len(bad) - 1} more: `dait-edge data inspect` lists them)" if len(bad) > 1 else ""
        raise UserError(
            f"image {first['path']} cannot be read ({first['error'][:120]}){more}; replace or remove it, or"
            " leave such images out of the run.",
            setting="skip_bad_images",
        )
    unreadable = {entry["path"] for entry in bad}
    if dist.is_main:
        print(f"left out {len(bad)} image(s) that cannot be read (first: {bad[0]['path']})", file=sys.stderr)
    splits = {
        name: [s for s in samples if str(s[0]) not in unreadable] for name, samples in spec.splits.items()
    }
    return dataclasses.replace(spec, splits=splits), sorted(unreadable)
