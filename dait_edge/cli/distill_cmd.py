"""`dait-edge distill`: stage 1 (VLM -> intermediate teacher) and stage 2 (teacher -> student)."""

from __future__ import annotations

import json
import os

import click
from click.core import ParameterSource

from dait_edge.cli.base import stoppable
from dait_edge.cli.options import (
    cache_dir_option,
    dataset_options,
    device_option,
    json_option,
    method_option,
    student_option,
    teacher_option,
    templates_option,
    vlm_options,
    workers_option,
)
from dait_edge.config import MIN_IMG_SIZE, DistillConfig
from dait_edge.records import RunSummary
from dait_edge.records.config import INTERPOLATIONS, LR_SCHEDULES, SRA_FORMS
from dait_edge.records.recipe import OPTIMIZERS, SHARED

D = DistillConfig()  # defaults shown in --help come from the one place that defines them


TRAINING_OPTIONS = [
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="TOML file with any of these options (flags override it).",
    ),
    dataset_options(
        required=False,
        data_root_help="The dataset folder in its original layout (check it with `dait-edge data inspect`).",
    ),
    method_option(D.method),
    teacher_option(D.teacher),
    click.option(
        "--teacher-checkpoint",
        type=click.Path(dir_okay=False),
        help="Use this trained teacher (a run's stage1/teacher.safetensors) and skip stage 1.",
    ),
    vlm_options,
    templates_option,
    click.option(
        "--vlm-views",
        default=D.vlm_views,
        show_default=True,
        help="Pay the VLM once: before the first VLM-taught stage, embed K augmented views of every training"
        " image and train from that cache (fp16, resumable, shared by every later student and method). auto:"
        " K = the epochs of the longest VLM-taught stage, so no view repeats and training sees what the live"
        " VLM would; a smaller K repeats views (less build time); 0: run the live VLM at every step.",
    ),
    click.option(
        "--epochs",
        type=click.IntRange(min=1),
        help="Epochs of both stages (sets --stage1-epochs and --stage2-epochs).",
    ),
    click.option("--stage1-epochs", default=D.stage1_epochs, show_default=True, type=click.IntRange(min=1)),
    click.option("--stage2-epochs", default=D.stage2_epochs, show_default=True, type=click.IntRange(min=1)),
    click.option(
        "--img-size",
        default=D.img_size,
        show_default=True,
        type=click.IntRange(min=MIN_IMG_SIZE),
        help="Training and test resolution of the student and teacher (the VLM resizes to its own).",
    ),
    click.option(
        "--interpolation",
        default=D.interpolation,
        show_default=True,
        type=click.Choice(INTERPOLATIONS),
        help="The run's one resize, from training views to the device: training views, evaluation, export's"
        " calibration and parity images and every sidecar use it (the same for every model of a sweep).",
    ),
    click.option(
        "--crop-pct",
        default=D.crop_pct,
        show_default=True,
        type=click.FloatRange(0.0, 1.0, min_open=True),
        help="The crop's share of the resized image: the short side is resized to img-size / crop-pct, then"
        " cropped to img-size (at random in training views, at the centre in evaluation and deployment).",
    ),
    click.option(
        "--recipe",
        default=D.recipe,
        show_default=True,
        help="The training protocol: shared (DAIT's, one for every method: the fair comparison), own (the"
        " method's released recipe; DHO's, RISE's, BorLan's) or a method's name. It fills the optimiser,"
        " rate, schedule, batch and training crop wherever they are not given; `dait-edge list recipes`.",
    ),
    click.option(
        "--optimizer",
        type=click.Choice(OPTIMIZERS),
        help=f"Default: the recipe's (shared: {SHARED.optimizer}). SGD uses momentum 0.9.",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        help=f"Global batch (split across torchrun processes). Default: the recipe's (shared: {SHARED.batch_size}).",
    ),
    click.option(
        "--lr",
        type=float,
        help=f"Base learning rate (see --lr-schedule). Default: the recipe's (shared: {SHARED.lr:g}).",
    ),
    click.option(
        "--lr-schedule",
        type=click.Choice(LR_SCHEDULES),
        help="step: multiply by --lr-gamma every --lr-step epochs (the paper's recipe); cosine, linear: decay to"
        " near zero at the last step. All move step by step, after --warmup-epochs. Default: the recipe's"
        f" (shared: {SHARED.lr_schedule}).",
    ),
    click.option(
        "--lr-step",
        type=click.IntRange(min=1),
        help="Epochs between step decays. Default: the recipe's share of the epochs, else 30% of the stage's"
        " epochs (30 at the paper's 100, 4 at 12), so that a short run decays too.",
    ),
    click.option(
        "--lr-gamma",
        type=click.FloatRange(0.0, 1.0, min_open=True),
        help=f"The step decay's factor. Default: the recipe's (shared: {SHARED.lr_gamma:g}).",
    ),
    click.option(
        "--warmup-epochs",
        type=click.IntRange(min=0),
        help="Raise the rate linearly from near zero over these first epochs (step by step). Default: the"
        " recipe's share of the student's epochs (shared: none).",
    ),
    click.option(
        "--weight-decay",
        type=float,
        help=f"Default: the recipe's (shared: {SHARED.weight_decay:g}).",
    ),
    click.option(
        "--train-crop",
        help="How training views are cut: resize (the short side to img-size / crop-pct, a random crop, a flip)"
        " or rrc:MIN_SCALE (RandomResizedCrop keeping MIN_SCALE to all of the area, a flip). Default: the"
        f" recipe's (shared: {SHARED.train_crop}).",
    ),
    click.option(
        "--alpha-rate",
        type=float,
        help="alpha(e) = clip(rate * e + bias, 0, 1) weighs CE against distillation. Default 1 / (8 * epochs).",
    ),
    click.option("--alpha-bias", default=D.alpha_bias, show_default=True, type=float),
    click.option(
        "--temperature", default=D.temperature, show_default=True, type=float, help="tau of the KL terms."
    ),
    click.option(
        "--sia-weight",
        default=D.sia_weight,
        show_default=True,
        type=click.FloatRange(min=0.0),
        help="Weight of SIA in stage 1: L1 = alpha CE + (1 - alpha) / 2 (w SIA + IRA). 0.5 matches VL2Lite's"
        " released code, with which the paper's numbers were obtained.",
    ),
    click.option(
        "--kd-weights",
        default=D.kd_weights,
        show_default=True,
        help="KD's weights on CE and on its KD term: constant (1 and 1, as Hinton et al. ran KD), W_CE,W_KD"
        " (e.g. 0.1,0.9), or alpha (DAIT's schedule: alpha CE + (1 - alpha) KD, at most 0.124 on CE with the"
        " paper's rate; runs made before this option used it).",
    ),
    click.option(
        "--rise-weights",
        default=D.rise_weights,
        show_default=True,
        help="RISE's weights W_KD,W_CE,W_DIST on its KD term, CE and its two text terms (AD + RD), constant as"
        " its released code runs them; alpha: DAIT's schedule on KD and CE, 1 on the text terms.",
    ),
    click.option(
        "--rise-temperature",
        default=D.rise_temperature,
        show_default=True,
        type=float,
        help="RISE's KD temperature (its code's 3; the other methods use --temperature).",
    ),
    click.option(
        "--sra-form",
        default=D.sra_form,
        show_default=True,
        type=click.Choice(list(SRA_FORMS)),
        help="How DAIT-F's feature term compares the adapted student map with the teacher map. "
        + "; ".join(f"{name}: {text}" for name, text in SRA_FORMS.items())
        + ". pearson is the default because the paper's form stopped from-scratch students learning at demo"
        " scale (README).",
    ),
    click.option(
        "--labelled-fraction",
        default=D.labelled_fraction,
        show_default=True,
        type=float,
        help="Keep the labels of this class-balanced, seeded fraction of the training split (e.g. 0.3; DHO's"
        " 0.01, 0.1). The other images are unlabelled: they get only the distillation terms (methods without"
        " such terms, e.g. none, skip them).",
    ),
    click.option(
        "--unlabelled/--no-unlabelled",
        "train_unlabelled",
        default=D.train_unlabelled,
        show_default=True,
        help="--no-unlabelled: train on the labelled fraction alone (the paper's data-shortage rows).",
    ),
    click.option(
        "--val-fraction",
        type=click.FloatRange(0.0, 1.0, max_open=True),
        default=D.val_fraction,
        show_default=True,
        help="Hold out this class-balanced share of the labelled images for validation (never trained on),"
        " the same images for every method of a (dataset, labelled fraction, seed): the best epoch, DHO's"
        " (a, b) and int8's accuracy budget are chosen there, never on the test split. 0: train on every"
        " labelled image, and no epoch is called best.",
    ),
    click.option(
        "--skip-bad-images",
        is_flag=True,
        default=D.skip_bad_images,
        help="Every image is decoded before training; one that cannot be read fails the run, naming it. With"
        " this flag such images are left out instead, and counted in summary.json (skipped_images).",
    ),
    click.option(
        "--kd-teacher",
        default=D.kd_teacher,
        show_default=True,
        help="Teacher of kd and rkd: vlm (the VLM's zero-shot logits / image embeddings: the paper's 'T: CLIP'),"
        " or a model fine-tuned on the task: a run directory or its student_last.safetensors (the paper's"
        " 'T: R-152': `dait-edge distill --method none --student resnet152`).",
    ),
    click.option("--seed", default=D.seed, show_default=True, type=int),
    device_option,
    click.option(
        "--no-pretrained",
        "no_pretrained",
        is_flag=True,
        help="Random initialisation instead of ImageNet weights.",
    ),
    click.option(
        "--teacher-weights",
        type=click.Path(dir_okay=False),
        help="Initial teacher weights from a local file.",
    ),
    cache_dir_option,
    workers_option(D.workers),
    click.option(
        "--sync-bn",
        is_flag=True,
        help="Under torchrun on GPUs: BatchNorm statistics over every GPU's samples (small per-GPU batches).",
    ),
]


def training_options(func):
    """The training options `distill` and `sweep` share, in --help order."""
    for option in reversed(TRAINING_OPTIONS):
        func = option(func)
    return func


def config_from_cli(
    ctx: click.Context, config_file, options: dict, *, epochs, no_pretrained, templates, quiet, resume=False
):
    """--config file values, overridden by the flags given on the command line. With --resume the run's own
    settings (its manifest) come first, so `--out RUN --resume` alone continues it."""
    from dait_edge.config import build_config, load_toml

    file_values = load_toml(config_file) if config_file else {}
    if resume:
        file_values = {**_run_settings(options.get("out")), **file_values}
    flag_values = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    }
    if epochs is not None:
        flag_values["stage1_epochs"] = flag_values["stage2_epochs"] = epochs
    if no_pretrained:
        flag_values["pretrained"] = False
    if templates:
        flag_values["templates"] = list(templates)
    if quiet:
        flag_values["progress"] = False
    return build_config(file_values, flag_values)


def _run_settings(out: str | None) -> dict:
    """The settings of the run in `out` (its manifest), or none where there is no run there to read."""
    import dataclasses
    from pathlib import Path

    from dait_edge.errors import UserError
    from dait_edge.records import RunManifest

    if not out:
        raise UserError("--resume needs the run directory to continue; pass it with --out.")
    manifest = RunManifest.path_in(Path(out))
    return dataclasses.asdict(RunManifest.read(manifest).config) if manifest.is_file() else {}


@click.command("distill")
@student_option(D.student)
@training_options
@click.option("--stages", default=D.stages, show_default=True, help="1, 2 or 1,2.")
@click.option(
    "--student-weights", type=click.Path(dir_okay=False), help="Initial student weights from a local file."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Run directory. Default runs/<dataset>-<student>-<method>-<time>.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last completed epoch, with its own settings (any given must match).",
)
@click.option(
    "--teacher-cache",
    type=click.Path(file_okay=False),
    help="Where trained teachers are kept for reuse. Default: <run dir>/../teachers.",
)
@json_option
@click.pass_context
def command(ctx: click.Context, config_file, epochs, no_pretrained, templates, resume, as_json, **options):
    """Distil the VLM into a small student through an intermediate teacher (DAIT), or train a baseline.

    Stage 1 trains the intermediate teacher (default RegNetY-1.6GF) from the frozen VLM with
    SIA + IRA + CE; it is saved in the run and in a teacher cache, and later students with the
    same data, VLM, teacher and stage-1 recipe reuse it instead of training it again. Stage 2
    trains the student from the frozen teacher: DAIT-F on feature maps (a 1x1 adapter that is
    not part of the exported student), DAIT-L on logits.

    \b
    The paper's recipe (defaults): 100 + 100 epochs, AdamW lr 1e-4 halved every 30 epochs,
    batch 32, 224 px, tau 2, ImageNet-pretrained student and teacher (DAIT-F's feature
    term is compared as correlations, --sra-form pearson; --sra-form paper is the formula):
      dait-edge distill --student mobilenetv2 --dataset cub --data-root ~/data/CUB_200_2011 \\
          --vlm-pretrained ~/weights/convnext_xxlarge.safetensors
    \b
    Multi-GPU: torchrun --nproc_per_node 4 -m dait_edge distill ...
    Offline, tiny: --no-pretrained --epochs 2 --img-size 64
    """
    from dait_edge.distill import run_distill

    config = config_from_cli(
        ctx,
        config_file,
        options,
        epochs=epochs,
        no_pretrained=no_pretrained,
        templates=templates,
        quiet=as_json,
        resume=resume,
    )
    with stoppable(lambda err: f"dait-edge distill --out {err.folder} --resume"):
        summary = run_distill(config, resume=resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun every process gets here; rank 0 reports
        return
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    click.echo(_describe(summary))


def _describe(summary: RunSummary) -> str:
    lines = [f"run: {summary.run_dir}"]
    if summary.teacher_top1 is not None:
        reused = " (reused)" if summary.teacher_reused else ""
        lines.append(
            f"intermediate teacher {summary.teacher}{reused}: test top-1 {summary.teacher_top1:.2f}%"
        )
    if summary.student_top1 is not None:
        best = (
            f" (epoch {summary.student_best_epoch + 1}, best on {summary.val_images} validation images:"
            f" {summary.student_top1_best:.2f}%)"
            if summary.student_best_epoch is not None and summary.student_top1_best is not None
            else ""
        )
        lines.append(
            f"student {summary.student} ({summary.method}): test top-1 {summary.student_top1:.2f}% at the last"
            f" epoch{best}, {summary.params / 1e6:.2f} M params, {summary.macs / 1e9:.3f} GMACs"
        )
        if summary.unlabelled_images:
            lines.append(
                f"labels: {summary.labelled_images} labelled, {summary.unlabelled_images} unlabelled images"
                f" ({summary.labelled_fraction:g} labelled fraction)"
            )
        if summary.calibration:
            settings = ", ".join(f"{k} {v:g}" for k, v in summary.calibration.items())
            lines.append(f"calibrated on {summary.val_images} held-out images: {settings}")
        lines.append(f"next: dait-edge export {summary.run_dir} --fp16")
    return "\n".join(lines)
