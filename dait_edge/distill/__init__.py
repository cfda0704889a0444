"""`run_distill`: both stages of DAIT (or a baseline's one stage) into a run directory.

data + VLM --stage 1--> intermediate teacher (saved, cached for later students)
           --stage 2--> student (last / best weights, no adapter)   -> summary.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import warnings
from pathlib import Path

import torch

from dait_edge.config import DistillConfig
from dait_edge.data import load_dataset
from dait_edge.data.base import DatasetSpec
from dait_edge.data.images import ImageListDataset
from dait_edge.data.splits import labelled_split
from dait_edge.data.transforms import eval_transform_for
from dait_edge.data.views import TrainViews, ViewSpec
from dait_edge.distill.run_dir import default_run_dir, write_manifest
from dait_edge.distill.teacher_cache import (
    TEACHER_FILE,
    cached_teacher,
    restore_teacher,
    stage1_key,
    store_teacher,
)
from dait_edge.engine.checkpoint import seed_everything, stage_seed
from dait_edge.engine.distributed import (
    DistInfo,
    all_gather_object,
    barrier,
    broadcast_object,
    check_stop_together,
    init_distributed,
    local_device,
    on_main,
    shutdown,
)
from dait_edge.engine.evaluate import evaluate
from dait_edge.engine.precision import autocast_dtype_for, vlm_dtype_for
from dait_edge.engine.trainer import StageFiles, StagePlan, fit
from dait_edge.errors import Interrupted, UserError
from dait_edge.methods import METHODS, Distiller, MethodContext
from dait_edge.models import build_model, count_macs, count_params
from dait_edge.records import RunManifest, RunSummary, TeacherInfo
from dait_edge.utils.device import resolve_device
from dait_edge.utils.faults import fault_point
from dait_edge.utils.io import sha256_file
from dait_edge.utils.lock import exclusive

STAGE1_METHOD = "dait_stage1"


class _Run:
    """What both stages share: config, data, devices, paths."""

    def __init__(self, config: DistillConfig, resume: bool):
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
        self.task_teacher, self.task_teacher_name, self.task_teacher_head = (
            _task_teacher_source(config) if "task_teacher" in self.requirements else (None, None, None)
        )
        self.spec: DatasetSpec = load_dataset(config.dataset, config.data_root)
        self.spec, self.skipped_paths = _readable(self.spec, config, self.dist)
        self.skipped_images = len(self.skipped_paths)
        # One index space for the whole training split: view seeds and cached embeddings are keyed by it.
        self.all_train = self.spec.split("train")
        # Labelled (class-balanced, seeded), minus a validation split held out of it; the rest unlabelled.
        self.labelled, self.val_indices = labelled_split(
            self.all_train, config.labelled_fraction, config.resolved_val_fraction(), config.seed
        )
        outside = {*self.labelled, *self.val_indices}
        self.unlabelled = (
            [i for i in range(len(self.all_train)) if i not in outside] if config.train_unlabelled else []
        )
        self.view_spec = ViewSpec(size=config.img_size)  # the same views for every model that sees them
        self.templates = list(config.templates or self.spec.prompt_templates)
        # KD's task teacher is loaded now: a wrong file or class count fails before any folder is written
        self.task_teacher_model = _load_task_teacher(self) if self.task_teacher is not None else None
        self._check_inputs()
        run_dir = Path(config.out) if config.out else default_run_dir(config)
        self.run_dir = Path(broadcast_object(str(run_dir), self.dist))
        self.teacher_cache = (
            Path(config.teacher_cache) if config.teacher_cache else self.run_dir.parent / "teachers"
        )
        self.metrics = self.run_dir / "metrics.jsonl"
        self.locks = contextlib.ExitStack()  # released when the run ends, however it ends

    def _check_inputs(self) -> None:
        """Read what the stages will need, now: a missing or wrong file fails before the run folder exists
        and before any epoch is spent."""
        config = self.config
        for role, model in (("student", config.student), ("teacher", config.teacher)):
            path = getattr(config, f"{role}_weights")
            if path and (role == "student" or (self.two_stage and not config.teacher_checkpoint)):
                # built once now: a missing file, another architecture or an unreadable one fails here
                build_model(model, self.spec.num_classes, pretrained=False, weights=path, role=role)
        if config.teacher_checkpoint and self.two_stage:
            _load_teacher(self, Path(config.teacher_checkpoint))  # readable, the teacher's, these classes
        if self.vlm_taught():
            self.vlm_source  # noqa: B018 - resolves --vlm / --vlm-pretrained (names, files, hub tags)

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
        return self.task_teacher_name or "vlm"

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

    def prepare_dir(self) -> None:
        on_main(self.dist, self._prepare_dir)
        barrier(self.dist)

    def _prepare_dir(self) -> None:
        """Check that the folder may be written (a new run, or --resume of one), then hold its lock until
        the run ends (`self.locks`)."""
        manifest = RunManifest.path_in(self.run_dir)
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
        self.locks.enter_context(exclusive(self.run_dir, "run directory"))
        if manifest.is_file() and not self.resume:  # another process made a run here after the check above
            raise UserError(
                f"{self.run_dir} already holds a run; resume it, or pass a new run directory.",
                setting="resume",
            )
        if not manifest.is_file():
            write_manifest(self.run_dir, self.config, self.device, self.dist.world_size, self.skipped_paths)

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
            sync_bn=c.sync_bn,
        )

    def datasets(self, model, views: int, extra=None, method_cls=None) -> tuple[TrainViews, ImageListDataset]:
        """Training views (of what `method_cls` trains on) and the test set, in `model`'s normalisation at
        --img-size.

        The views are cut by the run's model-independent view spec; only the normalisation is the model's.
        `extra(index, view)` adds cached teacher outputs to each item."""
        indices, labelled = self.training_indices(method_cls or self.method_cls)
        dc = model.data_config
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
        return train, self.eval_set(model, self.spec.split("test"))

    def eval_set(self, model, samples) -> ImageListDataset:
        """`samples` as `model` is evaluated: resized and centre-cropped at --img-size."""
        transform = eval_transform_for(model.data_config, self.config.img_size)
        return ImageListDataset(samples, transform, self.spec.crop_bottom)

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

    @functools.cached_property
    def vlm_source(self):
        """--vlm / --vlm-pretrained resolved once (a config JSON is read and registered with open_clip)."""
        from dait_edge.vlm import resolve_vlm_source

        return resolve_vlm_source(self.config.vlm, self.config.vlm_pretrained)

    def stage1_options(self) -> dict:
        """The stage-1 method's options (part of the teacher-cache key)."""
        return {"sia_weight": self.config.sia_weight}

    def vlm_teaching(self, model, summary: RunSummary, method_cls=None):
        """What teaches a VLM-taught stage: (provider, extra) where `extra` feeds each training item its
        cached embedding. With --vlm-views K > 0 the cache is opened, or built first (its time goes to
        summary.cache_seconds); when it is complete the VLM's image tower is never loaded."""
        views = self.cached_views()
        gaussian = getattr(method_cls or self.method_cls, "text_gaussian", False)
        # In a forked RNG: loading the VLM (open_clip draws its initial weights) or building the cache
        # (DataLoader seeds) must not move the training RNG, or the adapters would start differently in a
        # live run, a run that builds the cache and one that finds it complete.
        with torch.random.fork_rng(devices=[]):
            if views == 0:
                return self.live_vlm(model, gaussian), None
            from dait_edge.vlm.provider import CachedVLM

            cache, vlm = self.open_or_build_cache(views, summary)
            provider = CachedVLM(self.text_embeddings(vlm))
            if gaussian:
                provider.set_text_gaussian(*self.class_gaussian(vlm))
            del vlm  # the 1.2 B-parameter VLM stays off the device during training
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return provider, cache.reader()

    def class_gaussian(self, vlm=None) -> tuple[torch.Tensor, torch.Tensor]:
        """BorLan's per-class Gaussian over an ensemble of templates (and the dataset's own): from the
        text-embedding cache, else from `vlm` or a VLM loaded for it."""
        from dait_edge.vlm.prompts import ENSEMBLE_TEMPLATES
        from dait_edge.vlm.text_embeddings import text_gaussian

        templates = list(dict.fromkeys([*ENSEMBLE_TEMPLATES, *self.templates]))
        classes, cache_dir = self.spec.classes, self.config.cache_dir
        try:
            mean, var = text_gaussian(self.vlm_source, classes, templates, cache_dir=cache_dir)
        except LookupError:
            vlm = vlm if vlm is not None else self.load_vlm()
            mean, var = text_gaussian(self.vlm_source, classes, templates, vlm=vlm, cache_dir=cache_dir)
        return mean.to(self.device), var.to(self.device)

    def open_or_build_cache(self, views: int, summary: RunSummary):
        """The complete VLM embedding cache of this run's data, view spec, seed, K and VLM; returns it
        and the VLM when this process loaded it (to build, or to verify), else None."""
        from dait_edge.vlm.cache import EmbeddingCache, cache_key, cache_root

        config, source = self.config, self.vlm_source
        compute_dtype = str(vlm_dtype_for(self.device)).removeprefix("torch.")
        key = cache_key(
            self.all_train, self.view_spec, config.seed, views, source, compute_dtype, self.spec.crop_bottom
        )
        root = cache_root(config.cache_dir)

        def probe():
            """Rank 0 decides, every rank follows: (the cache or None, complete?)."""
            found = EmbeddingCache.open(root, key)
            if found is not None and found.complete:
                if not found.info.complete:  # every chunk done, the process stopped before writing so
                    found.finish(0.0)
                return found, True
            return found, False

        cache, complete = on_main(self.dist, probe)  # a complete cache is only read: no lock
        if complete:
            return cache, None
        # One builder per cache: a second job waits for the first (under torchrun it is refused instead, as
        # the other ranks cannot wait that long in a collective), then finds the chunks it encoded.
        with contextlib.ExitStack() as held:
            lock = exclusive(root / key, "VLM embedding cache", wait=not self.dist.enabled)
            on_main(self.dist, lambda: held.enter_context(lock) and None)
            cache, complete = on_main(self.dist, probe)
            if complete:
                return cache, None
            return self._build_cache(root, key, views, compute_dtype, cache, summary)

    def _build_cache(self, root: Path, key: str, views: int, compute_dtype: str, cache, summary: RunSummary):
        import time as _time

        from dait_edge.records import VLMCacheInfo
        from dait_edge.vlm import cache as vlm_cache
        from dait_edge.vlm.cache import EmbeddingCache, describe_size, pixel_library_versions

        config, source = self.config, self.vlm_source

        vlm = self.load_vlm()
        if cache is None:
            info = VLMCacheInfo(
                key=key,
                images=len(self.all_train),
                views=views,
                dim=vlm.embed_dim,
                chunk=vlm_cache.CHUNK,
                seed=config.seed,
                view_spec=self.view_spec.to_dict(),
                vlm=config.vlm,
                vlm_pretrained=config.vlm_pretrained,
                vlm_weights=source.weights_id,
                compute_dtype=compute_dtype,
                dataset=config.dataset,
                data_root=str(Path(config.data_root).resolve()),
                created=_time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                versions=pixel_library_versions(),
            )
            # another job may have created it meanwhile: its arrays are then kept (the rows are deterministic)
            cache = on_main(
                self.dist, lambda: EmbeddingCache.open(root, key) or EmbeddingCache.create(root, info)
            )
        if self.dist.is_main:
            print(f"VLM embedding cache: {describe_size(cache.info)} in {cache.folder}", file=sys.stderr)
        images = ImageListDataset(self.all_train, crop_bottom=self.spec.crop_bottom)
        failure = None
        try:
            seconds = cache.build(
                vlm,
                images,
                device=self.device,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                workers=config.workers,
                progress=config.progress and self.dist.is_main,
                stop_after_chunks=self.stop_cache_after,
            )
        except UserError as err:  # every rank learns of it (one rank stopping alone would hang the others)
            seconds, failure = 0.0, err
        shares = all_gather_object((seconds, str(failure) if failure else None), self.dist)
        if failure is not None:
            raise failure
        if any(message for _, message in shares):
            raise UserError(next(message for _, message in shares if message), setting="vlm_views")
        seconds = max(share for share, _ in shares)
        if self.stop_cache_after is not None:
            raise CacheBuildStopped
        on_main(self.dist, lambda: cache.finish(seconds))
        check_stop_together(
            "the VLM embedding cache build stopped",
            f"its finished chunks are kept in {cache.folder} and resuming encodes only the rest",
            self.dist,
            self.device,
        )
        cache.info = VLMCacheInfo.read(cache.folder)
        # a few views re-encoded live must match the cache
        on_main(self.dist, lambda: cache.verify(vlm, images, device=self.device))
        summary.cache_seconds = round(summary.cache_seconds + seconds, 3)
        return cache, vlm

    stop_cache_after: int | None = None  # tests: end the cache build after N chunks, as if killed

    def load_vlm(self):
        """The frozen VLM on this device, its image tower in the training dtype."""
        from dait_edge.vlm import load_vlm

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            vlm = load_vlm(self.config.vlm, self.config.vlm_pretrained, device=self.device)
        vlm.model.visual.to(dtype=vlm_dtype_for(self.device))  # the pixels are normalised in fp32 first
        return vlm

    def text_embeddings(self, vlm=None):
        """The class-text embeddings: from their cache when there (no VLM needed), else from `vlm` or a VLM
        loaded for them alone."""
        from dait_edge.vlm import text_classifier
        from dait_edge.vlm.text_embeddings import cached_text_classifier

        config = self.config
        text = cached_text_classifier(self.vlm_source, self.spec.classes, self.templates, config.cache_dir)
        if text is not None:
            return text.to(self.device)
        vlm = vlm if vlm is not None else self.load_vlm()
        return text_classifier(vlm, self.spec.classes, self.templates, cache_dir=config.cache_dir)

    def live_vlm(self, model, gaussian: bool = False):
        """The live VLM as the provider, for batches normalised like `model`'s, its text tower freed."""
        from dait_edge.vlm.provider import LiveVLM

        vlm = self.load_vlm()
        provider = LiveVLM(vlm, self.text_embeddings(vlm), model.data_config.mean, model.data_config.std)
        if gaussian:
            provider.set_text_gaussian(*self.class_gaussian(vlm))
        vlm.free_text_tower()
        return provider


class CacheBuildStopped(Exception):
    """The cache build ended early on purpose (`_Run.stop_cache_after`, tests)."""


def method_options(config: DistillConfig) -> dict:
    """The options a stage-2 method is built with (its MethodContext.options)."""
    return {"sia_weight": config.sia_weight, "kd_teacher": config.kd_teacher, **config.extra}


def _task_teacher_source(config: DistillConfig) -> tuple[Path, str, str]:
    """--kd-teacher RUN or FILE: the weights of a model fine-tuned on the task, the model's name and its
    head ("linear", or "dual" for a DHO student) from the run's summary, else from the file's metadata;
    checked before any work."""
    from dait_edge.models.weights import weights_metadata

    path = Path(config.kd_teacher)
    if path.is_dir():
        if not RunSummary.path_in(path).is_file():
            raise UserError(
                f"KD teacher {path} is a folder without a summary.json; pass a finished run or its"
                " student_last.safetensors.",
                setting="kd_teacher",
            )
        summary = RunSummary.read(path)
        found = summary.checkpoint("student", path) if summary.has_student else None
        if found is None or not found.is_file():
            raise UserError(
                f"run {path} holds no trained student to teach with; finish it first.", setting="kd_teacher"
            )
        return found, summary.student, summary.student_head
    if not path.is_file():
        raise UserError(
            f"KD teacher {path} does not exist; pass vlm, a run directory or a student checkpoint"
            " (e.g. from `dait-edge distill --method none --student resnet152`).",
            setting="kd_teacher",
        )
    metadata = weights_metadata(path)
    if not metadata.get("model"):
        raise UserError(
            f"KD teacher {path} does not say which model it holds; pass the run directory it came from.",
            setting="kd_teacher",
        )
    method = metadata.get("method")
    head = METHODS.get(method).student_head if method in METHODS else "linear"
    return path, metadata["model"], head


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


def run_distill(
    config: DistillConfig, *, resume: bool = False, stop_after_epoch: dict | None = None
) -> RunSummary:
    """Train the stages `config.stages` asks for; returns the summary (also written to summary.json).

    `stop_after_epoch` ({stage: epoch}, or {"cache": chunks}) ends a stage, or the VLM embedding cache's
    build, early as if the process were killed (tests).
    """
    config.validate()
    run = _Run(config, resume)
    run.stop_cache_after = (stop_after_epoch or {}).get("cache")
    try:
        finished = on_main(run.dist, lambda: _finished(run)) if resume else None
        if finished is not None:
            return finished
        return _run_stages(run, stop_after_epoch or {})
    except Interrupted as err:
        err.folder = run.run_dir  # what --out --resume continues
        raise
    finally:
        run.locks.close()
        shutdown(run.dist)


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


def _comparable(config: DistillConfig, run: _Run) -> dict:
    """Settings as they act, so that the same run written another way compares equal: paths resolved,
    stages sorted, `auto` views and a method's default validation fraction as numbers."""
    values = dataclasses.asdict(config)
    for name in (*PATH_SETTINGS, "kd_teacher"):
        value = values.get(name)
        if isinstance(value, str) and value and Path(value).exists():
            values[name] = str(Path(value).resolve())
    values["stages"] = config.stage_list()
    values["val_fraction"] = config.resolved_val_fraction()
    if config.vlm_view_setting() is None:  # auto: as many views as the longest VLM-taught stage's epochs
        values["vlm_views"] = str(run.vlm_taught_epochs())
    return values


def _finished(run: _Run) -> RunSummary | None:
    """The summary of a run that already completed, after checking that --resume asks for the same run."""
    manifest = RunManifest.path_in(run.run_dir)
    if not manifest.is_file():
        return None  # _prepare_dir says there is nothing to resume
    recorded = RunManifest.read(manifest)
    if recorded.skipped_images is not None and sorted(recorded.skipped_images) != run.skipped_paths:
        raise UserError(
            f"cannot resume {run.run_dir}: the images that cannot be read are not those of when it started"
            f" ({len(recorded.skipped_images)} then, {len(run.skipped_paths)} now), so its image indices would"
            " shift; restore the dataset as it was, or start a new run.",
            setting="resume",
        )
    before = _comparable(recorded.config, run)
    now = _comparable(run.config, run)
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


def _run_stages(run: _Run, stop_after_epoch: dict) -> RunSummary:
    config = run.config
    run.prepare_dir()
    summary = RunSummary(
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
    )

    teacher_path = None
    if not run.two_stage:
        if 1 in run.stages and run.dist.is_main:
            print(
                f"{config.method} is a single-stage method: no stage 1 (intermediate teacher); the student"
                f" trains for {config.stage2_epochs} epochs (--stage2-epochs).",
                file=sys.stderr,
            )
    try:
        if run.two_stage:
            teacher_path, teacher_info = _stage1(run, summary, stop_after_epoch.get(1))
            if teacher_path is None:  # interrupted
                return summary
            summary.teacher_top1 = teacher_info.top1 if teacher_info else None
        if 2 in run.stages:
            if not _stage2(run, summary, teacher_path, stop_after_epoch.get(2)):
                return summary
    except CacheBuildStopped:
        return summary
    summary.completed = True
    if run.dist.is_main:
        summary.write(run.run_dir)
    barrier(run.dist)
    return summary


def _stage1(run: _Run, summary: RunSummary, stop_after: int | None) -> tuple[Path | None, TeacherInfo | None]:
    """The intermediate teacher: given, finished earlier in this run, cached, or trained now."""
    config, stage_dir = run.config, run.run_dir / "stage1"
    if config.teacher_checkpoint:
        path = Path(config.teacher_checkpoint)  # _Run checked that it exists
        summary.checkpoints.teacher = str(path.resolve())
        summary.stage1_seconds = 0.0
        return path, None  # its top-1 is measured in stage 2, on this run's test split

    vlm_source = run.vlm_source
    stage1_cls = METHODS.get(STAGE1_METHOD)
    key = stage1_key(
        config,
        run.all_train,
        run.spec.classes,
        vlm_source,
        run.templates,
        method_cls=stage1_cls,
        method_options=run.stage1_options(),
        views=run.views_for(1, vlm_taught=True),
    )
    summary.stage1_key = key
    summary.checkpoints.teacher = f"stage1/{TEACHER_FILE}"
    summary.checkpoints.state_stage1 = "stage1/state.pt"

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
        info = _train_teacher(run, summary, stage_dir, key, stop_after)
        if info is None:
            return None, None
        trained_here = True
        on_main(run.dist, lambda: _store_teacher_locked(run.teacher_cache, key, stage_dir))
    summary.stage1_seconds = info.seconds if trained_here else 0.0
    summary.cache_seconds = info.cache_seconds if trained_here else 0.0
    summary.teacher_seconds = info.seconds
    summary.teacher_reused = not trained_here
    return stage_dir / TEACHER_FILE, info


def _store_teacher_locked(cache_dir: Path, key: str, stage_dir: Path) -> None:
    with exclusive(cache_dir / key, "teacher cache entry", wait=True):
        store_teacher(cache_dir, key, stage_dir)


def _train_teacher(
    run: _Run, summary: RunSummary, stage_dir: Path, key: str, stop_after: int | None
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
    train, test = run.datasets(teacher, run.views_for(1, vlm_taught=True), extra, stage1_cls)
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
        vlm_views=run.cached_views(),
        cache_seconds=summary.cache_seconds,
        weights_sha256=sha256_file(stage_dir / TEACHER_FILE),
    )
    on_main(run.dist, lambda: info.write(stage_dir))
    return info


def _load_teacher(run: _Run, path: Path, name: str | None = None, setting: str = "teacher_checkpoint"):
    """A frozen teacher from `path` (the intermediate teacher, or KD's task teacher: then `name` is the
    model the file says it holds); its classifier must have this dataset's classes."""
    from dait_edge.models.weights import load_state_dict_file

    name = name or run.config.teacher
    try:
        teacher = build_model(name, run.spec.num_classes, pretrained=False, weights=path, role="teacher")
    except UserError as err:
        err.settings = (setting,)  # the file came from this option, not --teacher-weights
        raise
    own = teacher.model.state_dict()
    for key, tensor in load_state_dict_file(path, role="teacher").items():
        # the loader keeps a classifier only when its class count fits: any other shape is the head
        if key in own and tuple(own[key].shape) != tuple(tensor.shape):
            raise UserError(
                f"teacher checkpoint {path} classifies {tensor.shape[0]} classes but {run.config.dataset} has"
                f" {run.spec.num_classes}; pass a teacher trained on this dataset.",
                setting=setting,
            )
    return teacher


def _load_task_teacher(run: _Run):
    """KD's / RKD's teacher fine-tuned on the task (`--kd-teacher`). A DHO student teaches with its combined
    prediction (log p: valid logits) and its pooled features."""
    if run.task_teacher_head != "dual":
        return _load_teacher(run, run.task_teacher, run.task_teacher_name, setting="kd_teacher")
    from dait_edge.models.dual_head import DualHeadClassifier
    from dait_edge.models.weights import load_state_dict_file

    head = load_state_dict_file(run.task_teacher, role="teacher").get("head_kd.weight")
    if head is not None and head.shape[0] != run.spec.num_classes:
        raise UserError(
            f"teacher checkpoint {run.task_teacher} classifies {head.shape[0]} classes but {run.config.dataset}"
            f" has {run.spec.num_classes}; pass a teacher trained on this dataset.",
            setting="kd_teacher",
        )
    return DualHeadClassifier.from_file(
        run.task_teacher_name, run.spec.num_classes, run.task_teacher, setting="kd_teacher"
    )


def _stage2(run: _Run, summary: RunSummary, teacher_path: Path | None, stop_after: int | None) -> bool:
    config, stage_dir = run.config, run.run_dir / "stage2"
    num_classes = run.spec.num_classes
    fault_point("stage-start:2")
    check_stop_together("stopped before stage 2", "every finished stage is saved", run.dist, run.device)
    # Reseeded from (seed, stage, rank) alone: the student's initial weights and adapter are the same whether
    # the teacher was trained in this process, read from the cache or given.
    seed_everything(stage_seed(config.seed, 2, run.dist.rank))
    student = run.method_cls.wrap_student(
        build_model(
            config.student,
            num_classes,
            pretrained=config.pretrained,
            weights=config.student_weights,
            role="student",
        )
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
        context.teacher = _load_teacher(run, teacher_path)
    if run.task_teacher_model is not None:
        context.teacher = run.task_teacher_model
    if vlm_taught:
        context.vlm, extra = run.vlm_teaching(student, summary)
    train, test = run.datasets(student, run.views_for(2, vlm_taught), extra)
    method = run.method_cls(student, context)
    if context.teacher is not None and summary.teacher_top1 is None:
        # a given checkpoint: measure it on the same test split (in a forked RNG: training draws stay the same)
        teacher_test = run.eval_set(context.teacher, run.spec.split("test"))
        with torch.random.fork_rng(devices=[]):
            summary.teacher_top1 = evaluate(
                context.teacher.to(run.device), teacher_test, device=run.device, dist_info=run.dist
            )["top1"]

    files = StageFiles(
        stage_dir / "state.pt", stage_dir / "student_last.safetensors", stage_dir / "student_best.safetensors"
    )
    plan = run.plan(2)
    metadata = {"role": "student", "model": student.name, "method": config.method}
    result = run.fit(method, train, test, plan, files, metadata, stop_after)
    if result is None:
        return False
    if run.method_cls.calibrate is not Distiller.calibrate:
        summary.calibration = _calibrate(run, method, files, metadata, result)
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


def _calibrate(run: _Run, method, files: StageFiles, metadata: dict, result) -> dict[str, float]:
    """After training: the method fits its inference settings (DHO's (a, b)) on the validation split, for
    the last and the best weights each; both files are rewritten with them and scored again on the test
    split, which updates `result` (rank 0 works, every rank gets the outcome). Returns the last's settings."""
    from safetensors.torch import load_file

    from dait_edge.engine.checkpoint import save_weights
    from dait_edge.engine.distributed import DistInfo
    from dait_edge.models.weights import weights_metadata

    def on_rank0() -> tuple[dict, dict, float | None]:
        validation = torch.utils.data.DataLoader(
            run.eval_set(method.student, [run.all_train[i] for i in run.val_indices]), batch_size=64
        )
        test = run.eval_set(method.student, run.spec.split("test"))
        student, chosen, last, best = method.student, {}, {}, None
        for path, is_last in ((files.best_weights, False), (files.last_weights, True)):
            if not path.is_file():
                continue
            student.load_state_dict(load_file(str(path), device=str(run.device)))
            settings = method.calibrate(validation, run.device)
            if not settings:
                continue
            save_weights(path, student, {**metadata, **weights_metadata(path)})
            scores = evaluate(
                student,
                test,
                device=run.device,
                dist_info=DistInfo(),
                autocast_dtype=autocast_dtype_for(run.device),  # as every epoch's top-1 is measured
            )
            if is_last:
                chosen, last = settings, scores
            else:
                best = scores["top1"]
        return chosen, last, best

    with torch.random.fork_rng(devices=[]):
        chosen, last, best = on_main(run.dist, on_rank0)
    if not chosen:
        if run.dist.is_main:
            print(
                f"{run.config.method}: no validation images to calibrate on (raise --val-fraction or"
                " --labelled-fraction); its default inference settings are kept.",
                file=sys.stderr,
            )
        return {}
    result.last = dataclasses.replace(result.last, top1=last["top1"], top5=last["top5"])
    if best is not None:
        result.best_top1 = best
    return chosen
