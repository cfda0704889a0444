"""`dait-edge profile`: latency, throughput, memory and size of artifacts on a target profile."""

from __future__ import annotations

import json

import click

from dait_edge.cli.options import (
    batch_sizes_option,
    dataset_options,
    json_option,
    limit_option,
    max_top1_drop_option,
    profile_option,
)


@click.command("profile")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@profile_option()
@batch_sizes_option
@dataset_options(required=False, data_root_help="With --dataset: also measure top-1 on its test split.")
@limit_option
@max_top1_drop_option
@click.option(
    "--from-log",
    "from_log",
    type=click.Path(dir_okay=False),
    help="Read the timing of the one ARTIFACT from a phone's benchmark binary output instead of running it"
    " here: LiteRT's benchmark_model or ExecuTorch's executor_runner, run over adb (README, phones and boards).",
)
@click.option(
    "--device-name",
    default="Android device",
    show_default=True,
    help="With --from-log: the device the log was taken on (e.g. 'Pixel 8, Tensor G3'); it names the machine.",
)
@json_option
def command(
    artifacts,
    profile_name,
    batch_sizes,
    dataset,
    data_root,
    limit,
    max_top1_drop,
    from_log,
    device_name,
    as_json,
):
    """Measure exported artifacts (files or folders) on a target profile.

    One row per artifact and batch size: latency mean/p50/p90/p99 (one request at a time after
    warm-up), throughput, process peak memory, file size, params and MACs of the student, and
    top-1 on the test split when --dataset/--data-root are given. Rows of artifacts that came from
    a run are also saved in RUN/profile/PROFILE.json. Then it names the best artifact per student:
    the fastest (p50, smallest batch measured) that stays within --max-top1-drop of fp32 (export
    parity stands in where top-1 is not measured), and why the others lost (`dait-edge report` does the same across runs and profiles).
    Needs only numpy, onnxruntime, click and pillow: run it on the device itself.

    \b
    Example, on the target machine:
      dait-edge profile runs/cub-resnet18-dait_f-*/export --profile x86-ort-cpu-int8 --batch-sizes 1,8
    """
    from dait_edge.profiling.api import profile_artifacts
    from dait_edge.profiling.profiles import load_profile
    from dait_edge.report import choose_best, describe_best
    from dait_edge.report.collect import annotate_rows

    profile = load_profile(profile_name)
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    if from_log:
        result = _from_log(artifacts, profile, from_log, device_name, dataset, batch_sizes, log)
    else:
        result = profile_artifacts(
            list(artifacts),
            profile,
            batch_sizes=batch_sizes,
            dataset=dataset,
            data_root=data_root,
            limit=limit,
            log=log,
        )
    # The best artifact is judged at the smallest batch profiled: the single-request latency on the device.
    rows = annotate_rows(result.rows, result.measured)
    best = choose_best(rows, max_top1_drop=max_top1_drop, batch=min((row.batch for row in rows), default=1))
    log(
        f"best artifact per student (at most {max_top1_drop:g} top-1 point{'' if max_top1_drop == 1 else 's'} below fp32):"
    )
    for line in describe_best(best):
        log(f"  {line}")
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "best": [entry.to_dict() for entry in best]}, indent=2))


def _from_log(artifacts, profile, from_log, device_name, dataset, batch_sizes, log):
    """The row a phone's benchmark binary measured, saved in the artifact's run like any profile."""
    from pathlib import Path

    from dait_edge.errors import UserError
    from dait_edge.profiling.api import _save_rows
    from dait_edge.profiling.device_log import rows_from_log
    from dait_edge.records import RunLayout

    if len(artifacts) != 1 or not Path(artifacts[0]).is_file():
        raise UserError(
            "--from-log reads the timing of one artifact: pass that one file (the log measured it)."
        )
    if dataset or batch_sizes:
        raise UserError(
            "--from-log takes the benchmark binary's batch-1 timing only: leave out --dataset and --batch-sizes"
            " (measure top-1 with `dait-edge profile --dataset` where the runtime runs)."
        )
    result, run_dir = rows_from_log(artifacts[0], profile, from_log, device_name)
    row = result.rows[0]
    log(f"{Path(row.artifact).name} on {device_name} ({row.providers[0]}): p50 {row.latency_ms.p50:.2f} ms")
    if run_dir is not None:
        _save_rows(RunLayout(run_dir).profile(profile.name), result.measured, result.rows, log)
    return result
