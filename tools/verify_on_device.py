"""Evaluate every .pte and .tflite under a folder with its runtime's own Python API (not dait-edge's runners),
fed through the sidecar's preprocessing alone, and check the top-1 `dait-edge profile` saved for that file.

The runtime calls here are the runtimes' documented ones (`executorch.runtime.Runtime`,
`ai_edge_litert.interpreter.Interpreter` with the input's int8 scale and zero point), so a figure the report
prints is reproduced by code that shares nothing with the path that measured it but the sidecar.

    python tools/verify_on_device.py runs/demo/runs/resnet18-dait_f --dataset imagefolder --data-root runs/demo/data

Exit 0 when every file with a saved top-1 is reproduced exactly, 1 when one differs, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def top1_of(artifact: Path, samples, crop_bottom: int) -> float:
    from dait_edge.data.images import load_rgb
    from dait_edge.export.predict import preprocess
    from dait_edge.records import Sidecar

    sidecar = Sidecar.verified_for(artifact)
    images = [preprocess(load_rgb(path, crop_bottom), sidecar)[None] for path, _ in samples]
    if artifact.suffix == ".pte":
        import torch
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(artifact)).load_method("forward")
        predicted = [int(method.execute([torch.from_numpy(x)])[0].argmax()) for x in images]
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(artifact))
        interpreter.allocate_tensors()
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        scale, zero = source["quantization"]
        predicted = []
        for x in images:
            if scale:  # an int8 input: quantised as the converter's input quantiser does
                x = np.clip(np.round(x / scale) + zero, -128, 127).astype(source["dtype"])
            interpreter.set_tensor(source["index"], x)
            interpreter.invoke()
            predicted.append(int(interpreter.get_tensor(target["index"]).argmax()))
    return 100.0 * float(np.mean([p == label for p, (_, label) in zip(predicted, samples, strict=True)]))


def saved_top1(artifact: Path) -> dict[str, float]:
    """profile name -> the top-1 saved for `artifact` in its run's profile/*.json."""
    from dait_edge.records import RunLayout, read_result
    from dait_edge.records.layout import run_summary_of

    run_dir, _ = run_summary_of(artifact)
    found = {}
    for path in sorted(RunLayout(run_dir).profiles.glob("*.json")) if run_dir else ():
        result = read_result(path)
        for row in result.rows if result else ():
            if Path(row.artifact).resolve() == artifact.resolve() and row.top1 is not None:
                found[result.measured.profile] = row.top1
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="A run, its export folder, or any folder of artifacts.")
    parser.add_argument("--dataset", required=True, help="The dataset the run was trained on.")
    parser.add_argument("--data-root", required=True, help="Its root: the test split is evaluated.")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    from dait_edge.data import load_dataset
    from dait_edge.errors import UserError

    try:
        spec = load_dataset(args.dataset, args.data_root)
        samples = spec.split("test")
        files = sorted(p for p in args.folder.rglob("*") if p.suffix in (".pte", ".tflite"))
        files = [p for p in files if p.with_suffix(".json").is_file()]
        if not files:
            raise UserError(f"no .pte or .tflite with a sidecar under {args.folder}; export them first.")
        figures = {
            str(p): {"top1": top1_of(p, samples, spec.crop_bottom), "saved": saved_top1(p)} for p in files
        }
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    differs = 0
    print(f"{len(samples)} test images of {args.data_root}, each file in its own runtime")
    for path, figure in figures.items():
        saved = figure["saved"]
        verdict = "no saved top-1 (profile it with --dataset)"
        if saved:
            same = all(abs(top1 - figure["top1"]) < 1e-6 for top1 in saved.values())
            differs += not same
            listed = ", ".join(f"{profile} {top1:.2f}%" for profile, top1 in saved.items())
            verdict = f"{'reproduces' if same else 'DIFFERS from'} the saved {listed}"
        print(f"  {Path(path).name}: top-1 {figure['top1']:.2f}%: {verdict}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if differs else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    sys.exit(main())
