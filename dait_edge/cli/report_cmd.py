"""`dait-edge report`: tables, a top-1 vs latency figure and the best artifact per student, from profile results."""

from __future__ import annotations

import json

import click

from dait_edge.cli.options import default_out, json_option, max_top1_drop_option


@click.command("report")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Output folder. Default: SOURCE/report for one source folder, else ./report.",
)
@max_top1_drop_option
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Batch size the artifacts are compared at (an artifact not measured at it: its smallest batch).",
)
@json_option
def command(sources, out, max_top1_drop, batch, as_json):
    """Compare profiled artifacts and choose the best one per student and profile.

    SOURCES are distill run folders (their profile/*.json), folders holding runs (any
    */profile/*.json or */*/profile/*.json below), or JSON files that `dait-edge profile --json`
    printed (e.g. on another device). The best artifact, per trained model, profile and machine, is
    the fastest by p50 latency among those that lose at most --max-top1-drop top-1 points against
    fp32 (the fp32 artifact's measured top-1, else the run's PyTorch top-1; where no top-1 was
    measured, export parity must have passed instead) and meet the profile's p99 budget; the report
    says why each other artifact lost.

    \b
    Examples:
      dait-edge report runs/cub-resnet18-dait_f-20250101-120000
      dait-edge report runs/ --max-top1-drop 0.5 --batch 8
      dait-edge report pi5.json jetson.json --out reports/devices

    \b
    Files written into --out:
      report.html  the whole report on one self-contained page (open it in a browser)
      report.md    the same in Markdown: how each profile was measured, tables, best artifacts
      report.csv   one line per artifact and batch size, for spreadsheets
      report.json  the rows, the best-artifact choices with reasons, measurement settings
      pareto.png   top-1 vs p50 latency per profile, with the Pareto front
    """
    from dait_edge.report import build_report, describe_best

    if out is None:
        out = default_out(sources, "report")
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    result = build_report(list(sources), out, max_top1_drop=max_top1_drop, batch=batch, log=log)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"report: {result.files['html']} (with report.md, report.csv, report.json, pareto.png)")
    click.echo(
        f"best artifact per student (batch {batch}, at most {max_top1_drop:g} top-1 point{'' if max_top1_drop == 1 else 's'} below fp32):"
    )
    for line in describe_best(result.best):
        click.echo(f"  {line}")
