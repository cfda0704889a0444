"""`dait-edge export`: a run's student -> verified ONNX (fp32 / fp16 / int8) and TensorRT files."""

from __future__ import annotations

import json

import click
from click.core import ParameterSource

from dait_edge.cli.base import stoppable
from dait_edge.cli.options import (
    calib_samples_option,
    formats_option,
    json_option,
    max_top1_drop_option,
    parity_samples_option,
    qat_mode,
    qat_options,
)
from dait_edge.export.images import VAL_SAMPLES
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
@qat_options
@click.option(
    "--qat-epochs",
    type=click.IntRange(min=0),
    help="QAT's fine-tuning epochs (default: the recipe's, 5; 0: calibration only).",
)
@click.option(
    "--qat-teacher",
    type=click.Choice(["student", "teacher"]),
    help="What QAT distils from: the run's fp32 student (default) or its intermediate teacher (stage 1).",
)
@click.option(
    "--qat-lr",
    type=click.FloatRange(0.0, min_open=True),
    help="QAT's AdamW rate (default: the recipe's, 1e-4).",
)
@formats_option()
@click.option("--out", type=click.Path(file_okay=False), help="Output folder. Default RUN/export.")
@click.option(
    "--checkpoint",
    type=click.Choice(["last", "best"]),
    default="last",
    show_default=True,
    help="last = the weights student_top1 describes; best = the epoch best on the validation images (a run"
    " without validation images has none).",
)
@calib_samples_option
@parity_samples_option
@max_top1_drop_option
@click.option(
    "--calibration",
    help="int8 calibration: minmax, entropy, percentile (the recipe's percentile), or search (tries minmax,"
    " entropy and the recipe's search_percentiles on the validation images; keeps, within --max-top1-drop, the"
    " one that agrees with fp32's predictions most). Default: the recipe's [accuracy] table (search).",
)
@click.option(
    "--max-fallback-nodes",
    type=click.IntRange(min=0),
    help="Most nodes int8 may return to float to meet --max-top1-drop (default: 20% of the quantisable"
    " nodes; 0: plain int8, the budget only checked).",
)
@click.option(
    "--val-samples",
    default=VAL_SAMPLES,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training images (not calibration ones) the int8 budget is checked on when the run kept no"
    " validation split of its own (distill --val-fraction). Never the test split.",
)
@click.option("--data-root", help="Dataset folder, when it moved since the run (default: the run's).")
@click.option("--opset", type=click.IntRange(min=13), help="ONNX opset (default: the recipe's, 18).")
@json_option
@click.pass_context
def command(
    ctx,
    run,
    fp16,
    int8,
    trt,
    qat,
    qat_auto,
    qat_epochs,
    qat_teacher,
    qat_lr,
    formats,
    out,
    checkpoint,
    calib_samples,
    parity_samples,
    max_top1_drop,
    calibration,
    max_fallback_nodes,
    val_samples,
    data_root,
    opset,
    as_json,
):
    """Export a distilled student and check every artifact against PyTorch.

    RUN is a run directory, a .safetensors checkpoint inside one, or nothing (the latest under runs/).
    Each artifact gets a sidecar JSON (classes, input size, mean/std, interpolation, precision,
    parity) and OUT/summary.json lists them with sizes, parity and measured CPU speed.

    int8 keeps its accuracy: top-1 of fp32 and int8 is measured on validation images (the run's
    validation split, else training images the calibration did not use; never the test split).
    The classifier that makes the logits stays in float; the calibration search (the default)
    tries minmax, entropy and three percentile cuts; if int8 loses more than --max-top1-drop
    points, the layers it damages most (ranked by the SQNR of their quantised outputs, as ONNX
    Runtime's qdq_loss_debug compares them) go back to float a few at a time until the budget
    holds or --max-fallback-nodes is reached. Within the budget, the candidate that agrees with
    fp32's predictions most is kept. A missed budget comes with a diagnosis (logit error against
    fp32's decision margin). What happened is in the sidecar and summary.json; every int8 artifact
    gets a per-layer error table beside it (ARTIFACT.layers.csv).

    Phones and boards: --formats executorch,litert lowers the student to ExecuTorch .pte and LiteRT
    .tflite files (fp32 and int8, XNNPACK), each checked in its own runtime against PyTorch, int8
    judged on the same validation budget (the modules it hurts most stay float), the ops the
    delegate did not take named in the sidecar. Needs the executorch / litert and litert-export
    extras.

    \b
      dait-edge export runs/cub-mobilenetv2-dait_f-... --fp16 --int8
      dait-edge export RUN --int8 --max-top1-drop 0.5 --calibration minmax
      dait-edge export --formats onnx,onnx-int8-s8s8,trt-int8
      dait-edge export RUN --int8 --qat --qat-epochs 5     # post-training and QAT int8 side by side
      dait-edge export RUN --formats executorch,litert --out RUN/export-mobile
    """
    from dait_edge.export.api import export_run

    if ctx.get_parameter_source("max_top1_drop") == ParameterSource.DEFAULT:
        max_top1_drop = None  # the recipe's [accuracy] budget

    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    with stoppable(lambda err: "the same `dait-edge export` command again"):
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
            max_top1_drop=max_top1_drop,
            calibration_method=calibration,
            max_fallback_nodes=max_fallback_nodes,
            val_samples=val_samples,
            qat=qat_mode(qat, qat_auto),
            qat_epochs=qat_epochs,
            qat_lr=qat_lr,
            qat_teacher=qat_teacher,
            progress=not as_json,
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
        if a.accuracy is not None:
            lines.append(f"  {'':<16} {_describe_accuracy(a.accuracy)}")
    lines += [f"  {note}" for note in summary.performance]
    lines += [f"  {note}" for note in summary.skipped]
    return "\n".join(lines + _int8_side_by_side(summary))


def _int8_side_by_side(summary: ExportSummary) -> list[str]:
    """Post-training and QAT int8 beside fp32: validation top-1 (what the budget judges), test top-1 (only
    reported) and ORT batch-1 latency, where two or more int8 artifacts were judged."""
    judged = [a for a in summary.artifacts if a.accuracy is not None and a.accuracy.checked]
    fp32 = next((a for a in summary.artifacts if a.format == "onnx-fp32"), None)
    if len(judged) < 2 or fp32 is None:
        return []

    def cell(value, width: int = 9) -> str:
        return f"{'-' if value is None else f'{value:.2f}':>{width}}"

    def test(a) -> float | None:
        return a.parity.top1_artifact if a.parity else None

    lines = ["  int8 side by side (validation judges the budget; the test split is only reported):"]
    lines.append(f"    {'format':<20} {'val top-1':>9} {'test top-1':>10} {'ORT ms':>9}  budget")
    first = judged[0].accuracy
    lines.append(
        f"    {'onnx-fp32':<20} {cell(first.fp32_val_top1)} {cell(test(fp32), 10)} {cell(fp32.latency_ms_batch1)}"
    )
    for a in judged:
        verdict = "met" if a.accuracy.budget_met else "NOT met"
        row = f"{cell(a.accuracy.val_top1)} {cell(test(a), 10)} {cell(a.latency_ms_batch1)}"
        lines.append(f"    {a.format:<20} {row}  {verdict}")
    return lines


def _describe_accuracy(accuracy) -> str:
    if not accuracy.checked:
        return f"int8 budget not checked: {accuracy.reason}; per-layer errors in {accuracy.layers_csv}"
    verdict = "met" if accuracy.budget_met else "NOT met"
    return (
        f"validation top-1 {accuracy.val_top1:.2f}% vs fp32 {accuracy.fp32_val_top1:.2f}% on {accuracy.val_images}"
        f" {accuracy.val_source} images (plain int8 {accuracy.plain_val_top1:.2f}%), agreement with fp32"
        f" {accuracy.val_agreement:.1f}%; {len(accuracy.nodes_in_float)} node(s) in float; {accuracy.budget:g}-point"
        f" budget {verdict}; calibration {accuracy.calibration}"
    )
