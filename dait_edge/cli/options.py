"""Options shared by several commands, so their names and help read the same everywhere."""

from __future__ import annotations

import click

from dait_edge.vlm.loader import DEFAULT_VLM, DEFAULT_VLM_PRETRAINED


def dataset_options(func):
    func = click.option(
        "--data-root",
        required=True,
        help="Folder holding the dataset in its original on-disk layout.",
    )(func)
    func = click.option(
        "--dataset",
        required=True,
        help="cub, aircraft, cars, dogs, nabirds or imagefolder (`dait-edge list datasets`).",
    )(func)
    return func


def vlm_options(func):
    func = click.option(
        "--vlm-pretrained",
        default=DEFAULT_VLM_PRETRAINED,
        show_default=True,
        help="Pretrained tag, local checkpoint file, hf-hub:ORG/REPO, local-dir:PATH, or none (random weights).",
    )(func)
    func = click.option(
        "--vlm",
        default=DEFAULT_VLM,
        show_default=True,
        help="OpenCLIP model name, or path to an OpenCLIP model-config JSON.",
    )(func)
    return func


def device_option(func):
    return click.option(
        "--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N."
    )(func)


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(
        func
    )


def batch_sizes_option(ctx, param, value):
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
