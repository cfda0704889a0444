"""`dait-edge compare`: methods x students from finished distill runs (the paper's Table 1)."""

from __future__ import annotations

import json

import click

from dait_edge.cli.options import default_out, json_option


@click.command("compare")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Output folder. Default: SOURCE/compare for one source folder, else ./compare.",
)
@json_option
def command(sources, out, as_json):
    """Compare distillation methods: one table per dataset and labelled fraction.

    SOURCES are distill run folders, or folders holding runs (runs/, a sweep's folder). Each cell
    is a method's test top-1 on a student, mean ± std over runs that differ only in --seed; the
    best of each column is in bold; beside each method, what taught it and its training seconds.

    \b
    Example (the paper's Table 1 on CUB, two students, two seeds):
      dait-edge sweep --methods none,kd,rkd,vl2lite,rise,borlan,dho,dait_f \\
          --students resnet18,mobilenetv2 --dataset cub --data-root ~/data/CUB_200_2011 --out runs/t1
      dait-edge sweep ... --seed 1 --out runs/t1-seed1
      dait-edge compare runs/t1 runs/t1-seed1

    \b
    Files written into --out:
      compare.md   the tables in Markdown
      compare.csv  one line per method, student and table
      compare.png  grouped bars (students x methods, std as error bars)
      compare.json the same as a record (--json prints it)
    """
    from dait_edge.report.compare import compare_runs, markdown

    if out is None:
        out = default_out(sources, "compare")
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    comparison, files = compare_runs(list(sources), out, log=log)
    if as_json:
        click.echo(json.dumps(comparison.to_dict(), indent=2))
        return
    click.echo(markdown(comparison, figure_name=None).rstrip())
    click.echo(f"\nwritten: {files['markdown']} (with compare.csv, compare.png, compare.json)")
