"""`dait-edge sweep`: the four-student comparison in one resumable command."""

from __future__ import annotations

import json

import click

from dait_edge.cli.distill_cmd import config_from_cli, training_options
from dait_edge.cli.options import (
    batch_sizes_option,
    calib_samples_option,
    formats_option,
    json_option,
    max_top1_drop_option,
    parity_samples_option,
    profiles_option,
    students_option,
)

DEFAULT_PROFILES = ("x86-ort-cpu-fp32", "x86-ort-cpu-int8")
DEFAULT_FORMATS = "onnx,onnx-fp16,onnx-int8"


@click.command("sweep")
@students_option
@training_options
@profiles_option(DEFAULT_PROFILES)
@formats_option(DEFAULT_FORMATS)
@batch_sizes_option
@max_top1_drop_option
@calib_samples_option
@parity_samples_option
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
    state, report = run_sweep(
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
        click.echo(json.dumps({"state": state.to_dict(), "report": report.to_dict()}, indent=2))
        return
    click.echo(f"sweep finished in {state.seconds} s; report: {state.report}/report.md")
