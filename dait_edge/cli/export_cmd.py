"""`dait-edge export`: a run's student -> verified ONNX (fp32 / fp16 / int8) and TensorRT files."""

from __future__ import annotations

import json

import click

from dait_edge.cli.options import calib_samples_option, formats_option, json_option, parity_samples_option
from dait_edge.records import ExportSummary


@click.command("export")
@click.argument("run", required=False, type=click.Path())
@click.option("--fp16", is_flag=True, help="Also an fp16 ONNX (with the fp32 one).")
@click.option("--int8", is_flag=True, help="Also int8 ONNX: u8s8 (x86 CPUs) and s8s8 (TensorRT).")
@click.option(
    "--trt",
    is_flag=True,
    help="Also a TensorRT fp16 engine (needs tensorrt and a CUDA GPU; skipped otherwise).",
)
@formats_option()
@click.option("--out", type=click.Path(file_okay=False), help="Output folder. Default RUN/export.")
@click.option(
    "--checkpoint",
    type=click.Choice(["last", "best"]),
    default="last",
    show_default=True,
    help="last = the weights student_top1 describes; best = the best test epoch.",
)
@calib_samples_option
@parity_samples_option
@click.option("--data-root", help="Dataset folder, when it moved since the run (default: the run's).")
@click.option("--opset", type=click.IntRange(min=13), help="ONNX opset (default: the recipe's, 18).")
@json_option
def command(
    run, fp16, int8, trt, formats, out, checkpoint, calib_samples, parity_samples, data_root, opset, as_json
):
    """Export a distilled student and check every artifact against PyTorch.

    RUN is a run directory, a .safetensors checkpoint inside one, or nothing (the latest under runs/).
    Each artifact gets a sidecar JSON (classes, input size, mean/std, interpolation, precision,
    parity) and OUT/summary.json lists them with sizes, parity and measured CPU speed.

    \b
      dait-edge export runs/cub-mobilenetv2-dait_f-... --fp16 --int8
      dait-edge export --formats onnx,onnx-int8-s8s8,trt-int8
    """
    from dait_edge.export.api import export_run

    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    summary = export_run(
        run,
        formats=formats,
        fp16=fp16,
        int8=int8,
        trt=trt,
        out=out,
        checkpoint=checkpoint,
        calib_samples=calib_samples,
        parity_samples=parity_samples,
        data_root=data_root,
        opset=opset,
        log=log,
    )
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    click.echo(_describe(summary))


def _describe(summary: ExportSummary) -> str:
    lines = [f"exported {summary.student} from {summary.checkpoint} -> {summary.out}"]
    for a in summary.artifacts:
        p = a.parity
        check = ""
        if p is not None:
            below = "" if p.passed else f" (BELOW {p.threshold}%)"
            check = f"  agreement {p.agreement:.1f}% on {p.samples} {p.data}{below}"
        lines.append(f"  {a.format:<16} {a.size_mb:8.2f} MB  {a.path}{check}")
    lines += [f"  {note}" for note in summary.performance]
    lines += [f"  {note}" for note in summary.skipped]
    return "\n".join(lines)
