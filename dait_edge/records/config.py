"""`DistillConfig`: every option of `dait-edge distill` as one plain record, saved in each run's manifest.

`validate()` checks values only (and fills in the default number of data-loading workers). Names (models,
methods) are resolved through the registries by the entry points that need them
(`dait_edge.distill.resolve_config`), so this module imports no registry and sits at the bottom with the
other records.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from dait_edge.errors import UserError
from dait_edge.records.recipe import OPTIMIZERS, SHARED_RECIPE, TrainingRecipe

MIN_IMG_SIZE = 16
LR_SCHEDULES = ("step", "cosine", "linear")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
LR_STEP_SHARE = 0.3  # --lr-step when not given: 30% of the stage's epochs (the paper's 30 of 100)
MAX_DEFAULT_WORKERS = 8
# How SRA compares the adapted student map with the teacher map (`--sra-form`). method.md's formula is
# "paper"; "pearson" is the default because the paper's form collapses a from-scratch student at demo scale
# (README, "DAIT-F's feature term"; issue 23's measurements).
SRA_FORMS = {
    "pearson": "both maps standardised per channel over the batch and positions, MSE / 2 (PKD's form:"
    " 1 - the mean per-channel correlation); the student map's scale and offset cost nothing",
    "paper": "MSE(phi(F_S), F_M) on the raw maps (the paper's formula)",
    "standardised": "MSE(phi(F_S), z(F_M)): only the teacher map standardised per channel",
}
PAPER_SRA_FORM = "paper"
DEFAULT_SRA_FORM = "pearson"
# How KD weighs CE against its KD term (`--kd-weights`): "constant" is Hinton's fixed weights, CE 1 + KD 1;
# "W_CE,W_KD" other fixed weights; "alpha" DAIT's schedule, alpha CE + (1 - alpha) KD (what runs made before
# the setting existed used: RunManifest.upgrade).
DEFAULT_KD_WEIGHTS = "constant"


def term_weights(setting: str) -> tuple[float, float] | None:
    """The fixed (w_CE, w_distillation) a weights setting names, or None for "alpha" (the alpha schedule).
    Raises ValueError naming the accepted forms."""
    text = str(setting).strip().lower()
    if text == "alpha":
        return None
    if text == "constant":
        return (1.0, 1.0)
    try:
        ce, distil = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"{setting!r} is not a weights setting; use alpha, constant or W_CE,W_KD (e.g. 0.1,0.9)"
        ) from None
    if ce < 0 or distil < 0 or ce + distil == 0:
        raise ValueError(f"weights {setting!r} must be 0 or more and not both 0")
    return (ce, distil)


# RISE's weights (`--rise-weights`): "W_KD,W_CE,W_DIST", constant as its released code runs them (w1 KD, w2 CE,
# w3 for both text terms), or "alpha" (CE alpha, KD 1 - alpha, text terms 1). Runs made before the setting
# existed weighed so (RunManifest.upgrade reads them as "alpha"), but with a side-branch projection and no
# relational term, a form no longer built: such a run is compared, not resumed.
DEFAULT_RISE_WEIGHTS = "1,1,1"
RISE_TEMPERATURE = 3.0  # RISE's KD temperature (train_rise.py's t)


def rise_weights(setting: str) -> tuple[float, float, float] | None:
    """The fixed (w_KD, w_CE, w_dist) a RISE weights setting names, or None for "alpha". Raises ValueError
    naming the accepted forms."""
    text = str(setting).strip().lower()
    if text == "alpha":
        return None
    try:
        kd, ce, dist = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"{setting!r} is not a RISE weights setting; use alpha or W_KD,W_CE,W_DIST (e.g. 1,1,1)"
        ) from None
    if min(kd, ce, dist) < 0 or kd + ce + dist == 0:
        raise ValueError(f"RISE weights {setting!r} must be 0 or more and not all 0")
    return (kd, ce, dist)


DEFAULT_VLM = "convnext_xxlarge"
DEFAULT_VLM_PRETRAINED = "laion2b_s34b_b82k_augreg_soup"


@dataclass
class DistillConfig:
    """Every option of `dait-edge distill`. Defaults are the paper's recipe (method.md), but for `sra_form`
    (chosen by measurement: README, "DAIT-F's feature term"). The training protocol's settings (None:
    `records.recipe.RECIPE_SETTINGS`) are filled by `--recipe` where the run leaves them open
    (`apply_recipe`); a manifest always holds the values used."""

    dataset: str = ""
    data_root: str = ""
    student: str = "mobilenetv2_100"
    method: str = "dait_f"
    teacher: str = "regnety_016"
    teacher_checkpoint: str | None = None
    vlm: str = DEFAULT_VLM
    vlm_pretrained: str = DEFAULT_VLM_PRETRAINED
    templates: list[str] | None = None  # None: the dataset's own prompt templates
    # K views per image in the VLM embedding cache: "auto" (= epochs), N, or 0 (live VLM)
    vlm_views: str = "auto"
    stages: str = "1,2"
    stage1_epochs: int = 100
    stage2_epochs: int = 100
    img_size: int = 224
    # The run's one input pipeline, from training views to the device: resize the short side to
    # img_size / crop_pct with this interpolation (views crop at random, evaluation and export at the centre).
    # One default for every model, so one VLM cache and one intermediate teacher serve every student; the
    # student's own config supplies only its normalisation.
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    # the training protocol: "shared" (DAIT's, every method alike), "own" (the method's released one) or a
    # method's name; it fills the settings below that are None (records.recipe)
    recipe: str = SHARED_RECIPE
    optimizer: str | None = None  # adamw, sgd or sgd-nesterov (momentum 0.9)
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    # step: x lr_gamma every lr_step epochs (VL2Lite's halving); cosine / linear: decay to ~0 at the end
    lr_schedule: str | None = None
    lr_step: int | None = None  # None: the recipe's, else 30% of the stage's epochs (30 at the paper's 100)
    lr_gamma: float | None = None
    warmup_epochs: int | None = None  # the rate rises linearly from ~0 over these epochs, step by step
    train_crop: str | None = None  # training views: "resize" (resize, random crop, flip) or "rrc:MIN_SCALE"
    alpha_rate: float | None = None  # None: 1 / (8 * epochs of the stage)
    alpha_bias: float = 0.0
    temperature: float = 2.0
    sia_weight: float = 0.5  # w_SIA of stage 1; 0.5 matches VL2Lite's released code (method.md)
    # how DAIT-F's SRA compares the maps (losses.alignment.SRA_FORMS); manifests written before it was a
    # setting used "paper" (RunManifest.upgrade)
    sra_form: str = DEFAULT_SRA_FORM
    labelled_fraction: float = 1.0
    train_unlabelled: bool = True  # the images outside the labelled fraction feed the distillation terms
    # labelled images held out for validation (best epoch, DHO's (a, b), int8's budget), the same for every
    # method; None in manifests written before it was one setting: the method's default of that time
    val_fraction: float | None = 0.1
    skip_bad_images: bool = False  # leave out images that cannot be decoded instead of failing up front
    kd_teacher: str = "vlm"  # KD / RKD teacher: the VLM's zero-shot logits, or a task checkpoint / run
    kd_weights: str = DEFAULT_KD_WEIGHTS  # KD's CE and KD weights (term_weights)
    rise_weights: str = DEFAULT_RISE_WEIGHTS  # RISE's KD, CE and text-term weights (rise_weights)
    rise_temperature: float = RISE_TEMPERATURE  # RISE's KD temperature (the other methods': temperature)
    seed: int = 0
    device: str = "auto"
    pretrained: bool = True
    student_weights: str | None = None
    teacher_weights: str | None = None
    workers: int | None = None  # None: the usable cores, at most MAX_DEFAULT_WORKERS
    sync_bn: bool = False  # DDP: BatchNorm statistics over all GPUs' samples
    out: str | None = None
    teacher_cache: str | None = None  # default: <parent of the run dir>/teachers
    cache_dir: str | None = None  # class-text embeddings
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific options

    def stage_list(self) -> list[int]:
        try:
            stages = sorted({int(s) for s in str(self.stages).split(",") if s.strip()})
        except ValueError:
            stages = []
        if not stages or any(s not in (1, 2) for s in stages):
            raise UserError(f"stages must be 1, 2 or 1,2 (got {self.stages!r}).", setting="stages")
        return stages

    def validate(self) -> None:
        """Check every value and fill in the default workers (names are resolved by the entry points,
        through the registries)."""
        for name in ("dataset", "data_root"):
            if not getattr(self, name):
                raise UserError(
                    f"the {name.replace('_', ' ')} is required (give it as an option or in the config file).",
                    setting=name,
                )
        if not 0.0 < self.labelled_fraction <= 1.0:
            raise UserError(
                f"the labelled fraction must be in (0, 1] (got {self.labelled_fraction}).",
                setting="labelled_fraction",
            )
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 1.0:
            raise UserError(
                f"the validation fraction must be in [0, 1) (got {self.val_fraction}).",
                setting="val_fraction",
            )
        for name in ("stage1_epochs", "stage2_epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1 (got {getattr(self, name)}).", setting=name)
        if self.lr_step is not None and self.lr_step < 1:
            raise UserError(f"lr_step must be at least 1 (got {self.lr_step}).", setting="lr_step")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise UserError(
                f"lr_schedule must be {' or '.join(LR_SCHEDULES)} (got {self.lr_schedule!r}).",
                setting="lr_schedule",
            )
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise UserError(
                f"optimizer must be {', '.join(OPTIMIZERS)} (got {self.optimizer!r}).", setting="optimizer"
            )
        if self.train_crop is not None:
            try:
                parse_train_crop(self.train_crop)
            except ValueError as err:
                raise UserError(f"train_crop: {err}.", setting="train_crop") from None
        if self.weight_decay is not None and self.weight_decay < 0:
            raise UserError(
                f"weight_decay must be 0 or more (got {self.weight_decay}).", setting="weight_decay"
            )
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise UserError(
                f"warmup_epochs must be 0 or more (got {self.warmup_epochs}).", setting="warmup_epochs"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise UserError(
                f"interpolation must be {', '.join(INTERPOLATIONS)} (got {self.interpolation!r}).",
                setting="interpolation",
            )
        if not 0.0 < self.crop_pct <= 1.0:
            raise UserError(
                f"crop_pct must be in (0, 1] (got {self.crop_pct}): the share of the resized image the crop keeps.",
                setting="crop_pct",
            )
        if self.img_size < MIN_IMG_SIZE:  # the students downsample 32x: smaller leaves no feature map
            raise UserError(
                f"img_size must be at least {MIN_IMG_SIZE} pixels (got {self.img_size}).", setting="img_size"
            )
        for template in self.templates or ():
            check_prompt_template(template)
        for name in ("lr", "temperature"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise UserError(f"{name} must be positive (got {getattr(self, name)}).", setting=name)
        self.vlm_view_setting()
        if self.sia_weight < 0:
            raise UserError(f"sia_weight must be 0 or more (got {self.sia_weight}).", setting="sia_weight")
        try:
            term_weights(self.kd_weights)
        except ValueError as err:
            raise UserError(f"kd_weights: {err}.", setting="kd_weights") from None
        try:
            rise_weights(self.rise_weights)
        except ValueError as err:
            raise UserError(f"rise_weights: {err}.", setting="rise_weights") from None
        if self.rise_temperature <= 0:
            raise UserError(
                f"rise_temperature must be positive (got {self.rise_temperature}).", setting="rise_temperature"
            )
        if self.sra_form not in SRA_FORMS:
            raise UserError(
                f"unknown SRA form {self.sra_form!r}; use one of {', '.join(SRA_FORMS)}.", setting="sra_form"
            )
        self.stage_list()
        if self.workers is None:
            self.workers = default_workers()

    def lr_step_for(self, epochs: int) -> int:
        """The step decay's period for a stage of `epochs`: --lr-step, else 30% of the epochs (at least 1),
        so that a short run decays too and the paper's 100 epochs halve every 30."""
        return self.lr_step if self.lr_step is not None else max(1, round(LR_STEP_SHARE * epochs))

    def vlm_view_setting(self) -> int | None:
        """--vlm-views as a number; None for "auto" (the epochs of the longest VLM-taught stage)."""
        text = str(self.vlm_views).strip().lower()
        if text == "auto":
            return None
        if not text.isdigit():
            raise UserError(
                f"vlm_views must be auto, 0 (the live VLM) or a number of views per image (got {self.vlm_views!r}).",
                setting="vlm_views",
            )
        return int(text)

    def apply_recipe(self, recipe: TrainingRecipe) -> None:
        """Fill the protocol settings this run left open (None) from `recipe`, and record its name; the step
        and warm-up shares are taken of the student's stage (stage 2)."""
        self.recipe = recipe.name
        for name, value in recipe.settings(self.stage2_epochs).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name for f in dataclasses.fields(DistillConfig)}


def parse_train_crop(setting: str) -> float | None:
    """The RandomResizedCrop minimum area share a train_crop setting names, None for "resize" (resize the
    short side, crop at random). Raises ValueError naming the accepted forms."""
    text = str(setting).strip().lower()
    if text == "resize":
        return None
    if text.startswith("rrc:"):
        try:
            scale = float(text[4:])
        except ValueError:
            scale = -1.0
        if 0.0 < scale <= 1.0:
            return scale
    raise ValueError(f"{setting!r} is not a crop; use resize or rrc:MIN_SCALE (e.g. rrc:0.5, in (0, 1])")


def check_prompt_template(template: str) -> None:
    """A prompt template holds exactly one `{}`, where the class name goes."""
    if template.count("{}") != 1:
        raise UserError(
            f"prompt template {template!r} must contain exactly one '{{}}' where the class name goes."
        )


def default_workers() -> int:
    """Data-loading processes by default: the cores this process may use, shared among the training
    processes torchrun started on this machine, at most 8."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = usable // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(MAX_DEFAULT_WORKERS, per_process))
