"""`dait-edge demo`: run the chain offline on built-in synthetic data (what `make demo` runs)."""

from __future__ import annotations

import json

import click

from dait_edge.cli.base import stoppable
from dait_edge.cli.options import json_option
from dait_edge.demo.scale import DemoScale
from dait_edge.records.layout import DEMO_DIR


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    default=str(DEMO_DIR),
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the demo writes its data, VLM and results.",
)
@click.option("--fresh", is_flag=True, help="Delete earlier demo output and start over.")
@click.option(
    "--images-per-class",
    default=DemoScale.images_per_class,
    show_default=True,
    type=click.IntRange(min=2),
    help="Synthetic training images per class (and as many test images).",
)
@click.option(
    "--epochs",
    default=DemoScale.epochs,
    show_default=True,
    type=click.IntRange(min=1),
    help="Stage-2 epochs per student (stage 1 trains half as many). Fewer: faster, less accurate.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed of the sweep's runs (splits, initial weights, views); the method comparison also runs the next"
    " seed. At demo scale the seed moves figures: the README shows two.",
)
@json_option
def command(out_dir, fresh, images_per_class, epochs, seed, as_json):
    """Run the whole chain offline on a synthetic fine-grained dataset.

    Writes a small dataset of 'birds' that differ in crest colour and wing bars, trains a small
    OpenCLIP model on it as a stand-in for a real VLM, saves it and loads it back through the
    same local-checkpoint path real weights take, then inspects the data and measures the VLM's
    zero-shot accuracy. Then, as `dait-edge sweep --students all` does: distils every registered
    student (the stage-1 teacher trained once, shared), exports each to ONNX fp32 / fp16 / int8 u8s8,
    profiles them on x86-ort-cpu-fp32 and x86-ort-cpu-int8 at batch 1 with top-1 on the test split,
    compares methods on ShuffleNet-V2 at two seeds (none and dait_f with all labels; none, dho and dait_f
    at 30% labelled: OUT/compare/), and writes the report (report.md, pareto.png, report.html, ...)
    into OUT/report/. About 9 minutes on 2 CPU cores; a second run reuses what is finished. Nothing is
    downloaded. Figures come from synthetic data and random initialisation: they show the chain works, not
    how well a real model does. Every top-1 is on the test split at the last epoch; choices (best epoch,
    int8's budget, the best artifact) are made on the held-out validation images.

    \b
    A quick look at the whole chain (about 40 s):
      dait-edge demo --out /tmp/demo-small --images-per-class 4 --epochs 1
    """
    from dait_edge.demo.run import run_demo

    scale = DemoScale(images_per_class=images_per_class, epochs=epochs)
    # With --json the steps still go to stderr, so stdout stays one JSON document.
    with stoppable(lambda err: "`dait-edge demo` again (without --fresh: it reuses what is finished)"):
        results = run_demo(
            out_dir,
            fresh=fresh,
            progress=not as_json,
            echo=(lambda msg: click.echo(msg, err=True)) if as_json else click.echo,
            scale=scale,
            seed=seed,
        )
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
