"""`dait-edge profile`: latency, throughput, memory and size of artifacts on a target profile."""

from __future__ import annotations

import json

import click

from dait_edge.cli.options import json_option


def _batch_sizes(ctx, param, value):
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("a comma-separated list of integers, e.g. 1,8,32") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("batch sizes must be positive integers, e.g. 1,8,32")
    return sizes


@click.command("profile")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option(
    "--profile",
    "profile_name",
    default="x86-ort-cpu-fp32",
    show_default=True,
    help="Target profile: a name from profiles/ (`dait-edge list profiles`) or a .toml path.",
)
@click.option("--batch-sizes", callback=_batch_sizes, help="Override the profile's batch sizes, e.g. 1,8,32.")
@click.option("--dataset", help="With --data-root: also measure top-1 on the test split.")
@click.option("--data-root", help="The dataset folder (see `dait-edge data inspect`).")
@click.option("--limit", type=click.IntRange(min=1), help="Score only the first N test images.")
@json_option
def command(artifacts, profile_name, batch_sizes, dataset, data_root, limit, as_json):
    """Measure exported artifacts (files or folders) on a target profile.

    One row per artifact and batch size: latency mean/p50/p90/p99 (one request at a time after
    warm-up), throughput, process peak memory, file size, params and MACs of the student, and
    top-1 on the test split when --dataset/--data-root are given. Rows of artifacts that came from
    a run are also saved in RUN/profile/PROFILE.json. Needs only numpy, onnxruntime, click and pillow:
    run it on the device itself.

    \b
    Example, on the target machine:
      dait-edge profile runs/cub-resnet18-dait_f-*/export --profile x86-ort-cpu-int8 --batch-sizes 1,8
    """
    from dait_edge.profiling.api import profile_artifacts
    from dait_edge.profiling.profiles import load_profile

    profile = load_profile(profile_name)
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    result = profile_artifacts(
        list(artifacts),
        profile,
        batch_sizes=batch_sizes,
        dataset=dataset,
        data_root=data_root,
        limit=limit,
        log=log,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
