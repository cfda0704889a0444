"""How sensitive a trained student's predictions are to int8, activation by activation.

For one distill run: quantise the student as `dait-edge export --int8` does (u8s8, the chosen calibration),
then, on the run's validation images (else calibration images), measure agreement with fp32's predictions
and the logit error (rms) of
  int8          the real int8 artifact (QOperator, weights and activations),
  activations   the float graph with every activation on its int8 grid (weights float),
  one at a time each activation alone on its grid, most sensitive first (`--top` shown),
  all but k     every activation on its grid except the k most sensitive (`--keep`).
It answers what the accuracy search cannot: whether a few activations carry the damage (then falling
back k of them repairs int8) or every one does (then none within a cap will).

    python tools/int8_sensitivity.py runs/demo/runs/efficientnet_b0-dait_f
    python tools/int8_sensitivity.py RUN --calibration percentile --keep 0,10,48,120 --json sens.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="A distill run directory (holding summary.json).")
    parser.add_argument(
        "--calibration", default="minmax", choices=["minmax", "entropy", "percentile"], help="Calibration."
    )
    parser.add_argument("--percentile", type=float, default=99.999, help="percentile's cut.")
    parser.add_argument("--calib-samples", type=int, default=96, help="Training images to calibrate on.")
    parser.add_argument("--val-samples", type=int, default=500, help="Validation images to measure on.")
    parser.add_argument("--top", type=int, default=15, help="Most sensitive activations to print.")
    parser.add_argument(
        "--keep", default="0,5,10,20,48", help="Comma-separated k: all but the k most sensitive quantised."
    )
    parser.add_argument("--json", type=Path, help="Also write every figure to this JSON file.")
    return parser.parse_args(argv)


def measure(args) -> dict:
    import dataclasses

    import onnx
    from tqdm import tqdm

    from dait_edge.export.images import int8_images
    from dait_edge.export.layer_error import quantisation_grids
    from dait_edge.export.onnx_export import export_onnx
    from dait_edge.export.parity import ort_logits
    from dait_edge.export.quantize import CALIBRATION_METHODS, prepare_for_quantization, quantize_int8
    from dait_edge.export.recipes import load_recipe
    from dait_edge.export.sensitivity import (
        activation_sensitivity,
        compare,
        fake_quantised,
        logits_of,
        median_margin,
    )
    from dait_edge.export.source import load_student, resolve_run

    keep = sorted({int(k) for k in args.keep.split(",") if k.strip()})
    info = resolve_run(args.run)
    calibration, validation = int8_images(info, args.calib_samples, args.val_samples)
    usable = validation is not None and len(validation.images) > 0
    images = validation.images if usable else calibration.images
    options = {
        **load_recipe("onnx-int8-u8s8").quantize,
        "calibrate_method": CALIBRATION_METHODS[args.calibration],
        "percentile": args.percentile,
    }
    with tempfile.TemporaryDirectory(prefix="int8-sensitivity-") as tmp:
        folder = Path(tmp)
        export_onnx(load_student(info), folder / "fp32.onnx", info.data_config.input_size)
        prepared = prepare_for_quantization(folder / "fp32.onnx", folder / "prepared.onnx")
        ranges = folder / "ranges.json"
        int8 = quantize_int8(
            prepared, folder / "int8.onnx", calibration.images, options, prepared, ranges=ranges
        )
        qdq_options = {**options, "format": "QDQ"}
        qdq = quantize_int8(
            prepared, folder / "qdq.onnx", calibration.images, qdq_options, prepared, ranges=ranges
        )
        model = onnx.load(str(prepared))
        grids = quantisation_grids(onnx.load(str(qdq)).graph)
        reference = logits_of(model, images).astype("float64")
        int8_error, int8_agreement = compare(reference, ort_logits(int8, images))
        everything = [t for t in grids if t != model.graph.input[0].name]
        all_error, all_agreement = compare(
            reference, logits_of(fake_quantised(model, grids, everything), images)
        )
        with tqdm(desc="each activation alone", unit="activation", file=sys.stderr, leave=False) as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(1)

            rows = activation_sensitivity(model, grids, images, reference, log=advance)
        ranked = [row.tensor for row in rows]
        kept = []
        for k in keep:
            floated = set(ranked[:k])
            quantised = [t for t in everything if t not in floated]
            error, agreement = compare(reference, logits_of(fake_quantised(model, grids, quantised), images))
            kept.append({"float": k, "logit_error_rms": error, "agreement": agreement})
    return {
        "run": str(args.run),
        "student": info.student,
        "images": int(len(images)),
        "images_from": validation.source if usable else "calibration images (no validation images)",
        "calibration": args.calibration,
        "fp32_margin_median": median_margin(reference),
        "activations": len(everything),
        "int8": {"logit_error_rms": int8_error, "agreement": int8_agreement},
        "activations_only": {"logit_error_rms": all_error, "agreement": all_agreement},
        "one_at_a_time": [dataclasses.asdict(row) for row in rows],
        "all_but_k": kept,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    from dait_edge.errors import UserError

    try:
        result = measure(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{result['student']}: {result['activations']} quantised activations, {result['calibration']} calibration;"
        f" measured on {result['images']} {result['images_from']}; fp32's median top-two logit margin"
        f" {result['fp32_margin_median']:.3g}"
    )
    print("what is quantised | agreement with fp32 | logit error rms")
    for name, key in (
        ("int8 artifact (weights and activations)", "int8"),
        ("every activation, weights float", "activations_only"),
    ):
        print(f"{name} | {result[key]['agreement']:.1f}% | {result[key]['logit_error_rms']:.3g}")
    for row in result["all_but_k"]:
        print(
            f"every activation but the {row['float']} most sensitive | {row['agreement']:.1f}% | {row['logit_error_rms']:.3g}"
        )
    print(f"the {args.top} most sensitive activations, each quantised alone:")
    print("rank | node | op | agreement with fp32 | logit error rms")
    for rank, row in enumerate(result["one_at_a_time"][: args.top], 1):
        print(
            f"{rank} | {row['node']} | {row['op']} | {row['agreement']:.1f}% | {row['logit_error_rms']:.3g}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
