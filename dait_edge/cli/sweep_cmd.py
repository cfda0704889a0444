"""`dait-edge sweep`: the four-student comparison in one resumable command."""

from __future__ import annotations

import json

import click

from dait_edge.cli.distill_cmd import config_from_cli, training_options
from dait_edge.cli.options import batch_sizes_option, json_option

DEFAULT_PROFILES = ("x86-ort-cpu-fp32", "x86-ort-cpu-int8")
DEFAULT_FORMATS = "onnx,onnx-fp16,onnx-int8"


@click.command("sweep")
@click.option(
    "--students",
    default="all",
    show_default=True,
    help="all (resnet18, efficientnet_b0, mobilenetv2_100, shufflenet_v2_x1_0) or a comma-separated list.",
)
@training_options
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    help=f"Target profile to measure on; repeat for several. Default: {', '.join(DEFAULT_PROFILES)}.",
)
@click.option(
    "--formats",
    default=DEFAULT_FORMATS,
    show_default=True,
    help="Export formats (as `dait-edge export --formats`); add trt-fp16 on a GPU machine.",
)
@click.option(
    "--batch-sizes", callback=batch_sizes_option, help="Override the profiles' batch sizes, e.g. 1,8."
)
@click.option(
    "--max-top1-drop",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Accuracy budget of the best-artifact choice, in top-1 points below fp32.",
)
@click.option(
    "--calib-samples",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="int8 calibration images.",
)
@click.option(
    "--parity-samples",
    default=512,
    show_default=True,
    type=click.IntRange(min=1),
    help="Test images each export is checked on.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Sweep folder (runs/, report/, sweep.json). Default runs/sweep-<dataset>-<method>.",
)
@json_option
@click.pass_context
def command(
    ctx: click.Context,
    students,
    config_file,
    epochs,
    no_pretrained,
    templates,
    profiles,
    formats,
    batch_sizes,
    max_top1_drop,
    calib_samples,
    parity_samples,
    out,
    as_json,
    **options,
):
    """Distil every student, export, profile and report: the whole comparison in one command.

    The stage-1 teacher is trained once (by the first student) and shared by the others. Each
    student is then exported (each artifact checked against PyTorch), profiled on every
    --profile with top-1 on the test split, and one report compares them all: which student, in
    which precision, on this hardware, for how much accuracy. Run the same command again to
    resume: finished steps are skipped, an interrupted distill run continues from its last epoch.

    \b
    The paper's four students on CUB, measured on this machine's CPU:
      dait-edge sweep --students all --dataset cub --data-root ~/data/CUB_200_2011 \\
          --vlm-pretrained ~/weights/convnext_xxlarge.safetensors
    \b
    On a GPU workstation, with TensorRT engines too:
      dait-edge sweep --dataset cub --data-root ... --formats onnx,onnx-fp16,trt-fp16 \\
          --profile cuda-ort-trt --profile cuda-torch
    \b
    Offline, tiny: --no-pretrained --epochs 2 --img-size 64
    """
    from dait_edge.sweep import resolve_students, run_sweep

    config = config_from_cli(
        ctx,
        config_file,
        options,
        epochs=epochs,
        no_pretrained=no_pretrained,
        templates=templates,
        quiet=as_json,
    )
    config.validate()
    names = resolve_students(students)
    out_dir = out or f"runs/sweep-{config.dataset}-{config.method}"
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    result = run_sweep(
        config,
        names,
        out_dir,
        profiles=list(profiles or DEFAULT_PROFILES),
        formats=formats,
        batch_sizes=batch_sizes,
        max_top1_drop=max_top1_drop,
        calib_samples=calib_samples,
        parity_samples=parity_samples,
        log=log,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(
        f"sweep finished in {result['state']['seconds']} s; report: {result['state']['report']}/report.md"
    )
