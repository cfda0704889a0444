"""`dait-edge data ...`: dataset tools (inspect a dataset before spending hours on it)."""

from __future__ import annotations

import json

import click

from dait_edge.cli.base import UserErrorGroup
from dait_edge.cli.options import dataset_options, json_option
from dait_edge.data import DATASETS, LAYOUTS


def _layout_help() -> str:
    # Built from the readers' own LAYOUT strings so the help cannot drift from the code.
    lines = []
    for name, (title, layout) in LAYOUTS.items():
        aliases = DATASETS.aliases_of(name)
        alias_text = f" (also {', '.join(aliases)})" if aliases else ""
        lines.append(f"  {name}{alias_text}: {title}: {layout}")
    return "\n".join(lines)


@click.group(name="data", cls=UserErrorGroup)
def data() -> None:
    """Dataset tools."""


@data.command(
    name="inspect",
    help=f"""Read a dataset, count its images per split and class, and decode every image.

\b
Exit code 0 when every image decodes, 1 when some do not (they are listed), 2 when the dataset
cannot be read at all (wrong --dataset or --data-root).

\b
Expected layout under --data-root, per dataset:
{_layout_help()}

\b
Example:
  dait-edge data inspect --dataset cub --data-root ~/data/CUB_200_2011
""",
)
@dataset_options()
@json_option
@click.option(
    "--no-check-images", is_flag=True, help="Skip decoding every image (fast; counts and layout only)."
)
@click.pass_context
def inspect_cmd(
    ctx: click.Context, dataset: str, data_root: str, as_json: bool, no_check_images: bool
) -> None:
    from dait_edge.data.inspect import inspect_dataset

    report = inspect_dataset(dataset, data_root, check_images=not no_check_images, progress=True)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(_table(report))
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if not report["ok"]:
        n = len(report["bad_images"])
        click.echo(
            f"error: {n} image{'s' if n != 1 else ''} could not be decoded; re-download or delete them "
            f"(and their list entries) before training",
            err=True,
        )
        ctx.exit(1)


def _table(report: dict) -> str:
    def fmt(n: int | None) -> str:
        return "-" if n is None else str(n)

    checked = str(len(report["bad_images"])) if report["images_checked"] else "not checked"
    rows = [
        ("dataset", f"{report['dataset']} ({report['title']})"),
        ("root", report["root"]),
        ("classes", str(report["num_classes"])),
        ("train", f"{report['train']} (per class {report['per_class']['min']}-{report['per_class']['max']})"),
        ("val", fmt(report["val"]) + (" (a subset of train)" if report["val_in_train"] else "")),
        ("test", fmt(report["test"])),
        ("bad images", checked),
    ]
    if report["crop_bottom"]:
        rows.append(("crop bottom", f"{report['crop_bottom']} px"))
    lines = [f"{key:<12} {value}" for key, value in rows]
    lines += [f"  {b['path']}: {b['error']}" for b in report["bad_images"]]
    return "\n".join(lines)


command = data
