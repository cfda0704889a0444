"""`dait-edge sweep`: the four-student comparison in one resumable command."""

from __future__ import annotations

import json

import click

from dait_edge.cli.base import stoppable
from dait_edge.cli.distill_cmd import config_from_cli, training_options
from dait_edge.cli.options import (
    batch_sizes_option,
    calib_samples_option,
    formats_option,
    json_option,
    max_top1_drop_option,
    parity_samples_option,
    profiles_option,
    qat_mode,
    qat_options,
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
@qat_options
@click.option(
    "--methods",
    help="Several methods, comma-separated (e.g. dait_f,none,kd,dho; all: every registered one): the sweep"
    " runs methods x students and ends with `dait-edge compare`'s table. Default: --method alone.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Sweep folder (runs/, report/, compare/, sweep.json). Default runs/sweep-<dataset>-<method>.",
)
@click.option(
    "--launcher",
    type=click.Choice(["local", "slurm", "submitit-local"]),
    default="local",
    show_default=True,
    help="Where the runs execute: this machine (one after another, or --parallel N processes), SLURM jobs"
    " through submitit, or submitit's local executor (the SLURM code path as local processes).",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local runs at once, each its own process (one GPU each with --gpus; on a CPU the cores are split).",
)
@click.option("--gpus", help="GPUs for --parallel runs, comma-separated (e.g. 0,1): one per process.")
@click.option("--slurm-partition", help="SLURM partition for --launcher slurm.")
@click.option(
    "--slurm-time", type=click.IntRange(min=1), default=240, show_default=True, help="Minutes per SLURM job."
)
@click.option(
    "--gpus-per-run",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="GPUs per SLURM job; more than 1 makes the run a DDP process group over them.",
)
@click.option(
    "--slurm-arg", multiple=True, help="An extra sbatch option as KEY=VALUE (repeatable), e.g. account=abc."
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
    qat,
    qat_auto,
    methods,
    out,
    launcher,
    parallel,
    gpus,
    slurm_partition,
    slurm_time,
    gpus_per_run,
    slurm_arg,
    as_json,
    **options,
):
    """Distil every student (with every --methods), export, profile and report in one command.

    The stage-1 teacher is trained once (by the first student) and shared by the others, and one
    VLM embedding cache serves every VLM-taught run. Each
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
    The paper's Table 1 (methods x students), then its table:
      dait-edge sweep --methods none,kd,rkd,vl2lite,rise,borlan,dho,dait_f --students resnet18,mobilenetv2 \
          --dataset cub --data-root ~/data/CUB_200_2011 --profile x86-ort-cpu-fp32
    \b
    int8 that keeps its accuracy on every student (quantisation-aware where post-training int8 misses):
      dait-edge sweep --students all --dataset cub --data-root ... --qat-auto
    \b
    Offline, tiny: --no-pretrained --epochs 2 --img-size 64
    """
    from dait_edge.distill import resolve_config
    from dait_edge.records.layout import default_sweep_dir

    qat = qat_mode(qat, qat_auto)
    from dait_edge.sweep import resolve_students, run_sweep
    from dait_edge.sweep.run import resolve_methods

    config = config_from_cli(
        ctx,
        config_file,
        options,
        epochs=epochs,
        no_pretrained=no_pretrained,
        templates=templates,
        quiet=as_json,
    )
    resolve_config(config)  # the run folders are named by the resolved student and method names
    names = resolve_students(students)
    method_list = resolve_methods(methods, config.method)
    label = config.method if len(method_list) == 1 else "methods"
    out_dir = out or default_sweep_dir(config.dataset, label)
    fan = _launcher(launcher, parallel, gpus, out_dir, slurm_partition, slurm_time, gpus_per_run, slurm_arg)
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    again = "the same `dait-edge sweep` command again (finished steps are reused, a stopped run resumes)"
    with stoppable(lambda err: again):
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
            methods=method_list,
            qat=qat,
            launcher=fan,
            log=log,
        )
    if as_json:
        made = report.to_dict() if report is not None else None
        click.echo(json.dumps({"state": state.to_dict(), "report": made}, indent=2))
    elif report is not None:
        click.echo(f"sweep finished in {state.seconds} s; report: {state.report}/report.md")
        if state.compare:
            from dait_edge.records import Comparison
            from dait_edge.report.compare import markdown

            click.echo(markdown(Comparison.read(state.compare), figure_name=None).rstrip())
    if state.unfinished():  # said above, run by run; the table covers the runs that finished
        ctx.exit(1)


def _launcher(kind, parallel, gpus, out_dir, partition, time_min, gpus_per_run, slurm_args):
    """The launcher the options ask for; None: one run after another in this process (the default)."""
    from pathlib import Path

    from dait_edge.errors import UserError
    from dait_edge.sweep.launch import LocalLauncher, SubmititLauncher

    extra = {}
    for item in slurm_args:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--slurm-arg takes KEY=VALUE (e.g. account=abc), not {item!r}.")
        extra[key.strip()] = value.strip()
    if kind == "local":
        if slurm_args or partition or gpus_per_run:
            raise UserError("--slurm-partition, --slurm-arg and --gpus-per-run are for --launcher slurm.")
        gpu_list = [g.strip() for g in (gpus or "").split(",") if g.strip()]
        if parallel == 1 and not gpu_list:
            return None
        return LocalLauncher(parallel, gpu_list)
    if parallel != 1 or gpus:
        raise UserError("--parallel and --gpus are for --launcher local; SLURM places the jobs itself.")
    cluster = "slurm" if kind == "slurm" else "local"
    folder = Path(out_dir) / "slurm"
    return SubmititLauncher(folder, cluster, partition, time_min, gpus_per_run, extra=extra)
