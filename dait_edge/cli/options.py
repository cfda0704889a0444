"""Options shared by several commands, declared once: their names, defaults and help read the same everywhere.

Help texts that list choices (students, methods, datasets, profiles, export formats) are built from the
registries when `--help` is shown, never from hand-written lists: an entry registered later (a new
method module, a profile TOML) shows up in every command's help.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from dait_edge.export.images import CALIB_SAMPLES, PARITY_SAMPLES
from dait_edge.records.config import DEFAULT_VLM, DEFAULT_VLM_PRETRAINED


class RegistryHelpOption(click.Option):
    """A click option whose help text is computed when help is shown (`help_from()`). Where the registry
    needs the full install (methods import torch), a light install shows how to get it instead."""

    def __init__(self, *args, help_from: Callable[[], str], **kwargs):
        super().__init__(*args, **kwargs)
        self.help_from = help_from

    def get_help_record(self, ctx: click.Context):
        try:
            self.help = self.help_from()
        except ModuleNotFoundError as err:
            self.help = f"(the choices need {err.name}: pip install 'dait-edge[full]')"
        return super().get_help_record(ctx)


def _names(registry) -> str:
    """'resnet18, efficientnet_b0 (effb0), ...': canonical names with their aliases."""
    parts = []
    for name in registry:
        aliases = registry.aliases_of(name)
        parts.append(f"{name} ({', '.join(aliases)})" if aliases else name)
    return ", ".join(parts)


def students_text() -> str:
    from dait_edge.models import STUDENTS

    return _names(STUDENTS)


def _student_help() -> str:
    return f"Student: {students_text()}; or any timm model name (`dait-edge list students`)."


def _students_help() -> str:
    return (
        f"all (every registered student: {students_text()}) or a comma-separated list of names"
        " (any name --student takes)."
    )


def _teacher_help() -> str:
    from dait_edge.models import TEACHERS

    return f"Intermediate teacher: {_names(TEACHERS)}; or any timm model name (`dait-edge list teachers`)."


def _method_help() -> str:
    from dait_edge.methods import METHODS

    described = "; ".join(f"{name}: {METHODS.describe(name)}" for name in METHODS if name != "dait_stage1")
    return f"Distillation method. {described}. (`dait-edge list methods`)"


def _dataset_help() -> str:
    from dait_edge.data import DATASETS

    return f"Dataset layout: {_names(DATASETS)} (`dait-edge list datasets`, `dait-edge data inspect --help`)."


def _profile_names() -> str:
    from dait_edge.profiling.profiles import available_profiles

    return ", ".join(available_profiles())


def _profile_help() -> str:
    return f"Target profile: {_profile_names()}, or a path to a .toml file (`dait-edge list profiles`)."


def _formats_help() -> str:
    from dait_edge.export.recipes import format_names

    return (
        f"Comma-separated export formats: {', '.join(format_names())}, or paths to .toml recipes"
        " (onnx = onnx-fp32; onnx-int8 = both int8 variants)."
    )


def student_option(default: str):
    return click.option(
        "--student", default=default, show_default=True, cls=RegistryHelpOption, help_from=_student_help
    )


def students_option(func):
    return click.option(
        "--students", default="all", show_default=True, cls=RegistryHelpOption, help_from=_students_help
    )(func)


def teacher_option(default: str):
    return click.option(
        "--teacher", default=default, show_default=True, cls=RegistryHelpOption, help_from=_teacher_help
    )


def method_option(default: str):
    return click.option(
        "--method", default=default, show_default=True, cls=RegistryHelpOption, help_from=_method_help
    )


def dataset_options(
    required: bool = True, data_root_help: str = "The dataset folder in its original layout."
):
    """--dataset and --data-root. Not required where a config file may give them (distill) or where they
    are optional together (profile: top-1 on the test split)."""

    def decorator(func):
        func = click.option("--data-root", required=required, help=data_root_help)(func)
        return click.option("--dataset", required=required, cls=RegistryHelpOption, help_from=_dataset_help)(
            func
        )

    return decorator


def profile_option(default: str = "x86-ort-cpu-fp32"):
    return click.option(
        "--profile",
        "profile_name",
        default=default,
        show_default=True,
        cls=RegistryHelpOption,
        help_from=_profile_help,
    )


def profiles_option(defaults: tuple[str, ...]):
    def help_text() -> str:
        return (
            f"Target profile to measure on; repeat for several: {_profile_names()}, or .toml paths."
            f" Default: {', '.join(defaults)}."
        )

    return click.option("--profile", "profiles", multiple=True, cls=RegistryHelpOption, help_from=help_text)


def formats_option(default: str | None = None):
    return click.option(
        "--formats",
        default=default,
        show_default=default is not None,
        cls=RegistryHelpOption,
        help_from=_formats_help,
    )


def calib_samples_option(func):
    return click.option(
        "--calib-samples",
        default=CALIB_SAMPLES,
        show_default=True,
        type=click.IntRange(min=1),
        help="Training images int8 quantisation is calibrated on.",
    )(func)


def parity_samples_option(func):
    return click.option(
        "--parity-samples",
        default=PARITY_SAMPLES,
        show_default=True,
        type=click.IntRange(min=1),
        help="Test images each exported artifact is checked against PyTorch on.",
    )(func)


def max_top1_drop_option(func):
    return click.option(
        "--max-top1-drop",
        default=1.0,
        show_default=True,
        type=click.FloatRange(min=0),
        help="Accuracy budget: the top-1 points an artifact may lose against fp32 (report, sweep: which"
        " artifact may be chosen; export: int8 returns its most damaged layers to float until it holds on"
        " validation images, default from the recipe's [accuracy] table).",
    )(func)


def batch_sizes_option(func):
    return click.option(
        "--batch-sizes", callback=_batch_sizes, help="Override the profiles' batch sizes, e.g. 1,8,32."
    )(func)


def _batch_sizes(ctx, param, value):
    """click callback: "1,8,32" -> [1, 8, 32]."""
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("a comma-separated list of integers, e.g. 1,8,32") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("batch sizes must be positive integers, e.g. 1,8,32")
    return sizes


def vlm_options(func):
    func = click.option(
        "--vlm-pretrained",
        default=DEFAULT_VLM_PRETRAINED,
        show_default=True,
        help="Pretrained tag, local checkpoint file, hf-hub:ORG/REPO, local-dir:PATH, or none (random weights).",
    )(func)
    return click.option(
        "--vlm",
        default=DEFAULT_VLM,
        show_default=True,
        help="OpenCLIP model name, or path to an OpenCLIP model-config JSON.",
    )(func)


def cache_dir_option(func):
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False),
        help="Where class-text embeddings and VLM image embeddings are cached (default $DAIT_EDGE_CACHE or"
        " ~/.cache/dait_edge).",
    )(func)


def templates_option(func):
    return click.option(
        "--template",
        "templates",
        multiple=True,
        help="Prompt template with one {} for the class name; repeat to ensemble. Default: the dataset's own.",
    )(func)


def workers_option(default: int | None):
    """--workers; a default of None means the usable cores, at most 8 (config.default_workers)."""
    return click.option(
        "--workers",
        default=default,
        show_default="the usable cores, at most 8" if default is None else True,
        type=click.IntRange(min=0),
        help="Data-loading processes (per training process under torchrun); 0 loads in the main process.",
    )


def limit_option(func):
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        help="Score only N test images, evenly spread over the split (every class): a quick look.",
    )(func)


def device_option(func):
    return click.option(
        "--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N."
    )(func)


def default_out(sources, name: str) -> Path:
    """Where a command over SOURCES writes by default: SOURCE/<name> for one source folder, else ./<name>."""
    only = Path(sources[0])
    return only / name if len(sources) == 1 and only.is_dir() else Path(name)


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(
        func
    )


def qat_options(func):
    """--qat and --qat-auto: quantisation-aware int8 always, or where post-training int8 misses the budget."""
    func = click.option(
        "--qat-auto",
        is_flag=True,
        help="QAT only for a student whose post-training int8 (built too) misses --max-top1-drop; otherwise its"
        " QAT formats are reported as not built, with the drop that made QAT unneeded.",
    )(func)
    return click.option(
        "--qat",
        is_flag=True,
        help="Also int8 from quantisation-aware training (onnx-int8-qat and its u8s8 conversion): the student"
        " with int8 fake quantisers, fine-tuned on the run's training images with KD from its own fp32"
        " weights, exported as signed int8 Q/DQ (TensorRT's explicit quantisation; ONNX Runtime). Needs"
        " nvidia-modelopt (the full install).",
    )(func)


def qat_mode(qat: bool, qat_auto: bool) -> bool | str:
    """The flags as `export_run`'s `qat`: True, False or "auto"; both at once is a one-line error."""
    if qat and qat_auto:
        from dait_edge.errors import UserError

        raise UserError(
            "--qat always trains QAT and --qat-auto only where post-training int8 misses its budget; pass one."
        )
    return "auto" if qat_auto else qat
