"""`dait-edge zero-shot`: the VLM teacher's own accuracy, before any distillation."""

from __future__ import annotations

import json

import click

from dait_edge.cli.options import (
    cache_dir_option,
    dataset_options,
    device_option,
    json_option,
    limit_option,
    templates_option,
    vlm_options,
    workers_option,
)


@click.command("zero-shot")
@vlm_options
@dataset_options()
@click.option("--split", default="test", show_default=True, help="Split to evaluate (train, val, test).")
@templates_option
@click.option(
    "--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Images per forward pass."
)
@workers_option(0)
@limit_option
@cache_dir_option
@device_option
@json_option
def command(
    vlm,
    vlm_pretrained,
    dataset,
    data_root,
    split,
    templates,
    batch_size,
    workers,
    limit,
    cache_dir,
    device,
    as_json,
):
    """Report the VLM's zero-shot top-1 / top-5 on a dataset split.

    How good is the teacher on your classes? Distillation cannot make the student know more than
    this (plus what the labels teach). The class-text embeddings are cached, so the second run
    only encodes images.

    \b
    Example:
      dait-edge zero-shot --dataset cub --data-root ~/data/CUB_200_2011 \\
          --vlm convnext_xxlarge --vlm-pretrained ~/weights/convnext_xxlarge.bin
    """
    from dait_edge.data import load_dataset
    from dait_edge.utils.device import resolve_device
    from dait_edge.vlm import evaluate_zero_shot, load_vlm

    spec = load_dataset(dataset, data_root)
    teacher = load_vlm(vlm, vlm_pretrained, device=resolve_device(device))
    result = evaluate_zero_shot(
        teacher,
        spec,
        split=split,
        templates=templates or None,
        batch_size=batch_size,
        workers=workers,
        limit=limit,
        cache_dir=cache_dir,
        progress=not as_json,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"{result['vlm']} zero-shot on {result['dataset']}/{result['split']} ({result['images']} images,"
        f" {result['num_classes']} classes): top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%"
        f"  (chance {result['chance_top1']:.2f}%)"
    )
