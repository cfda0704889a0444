"""Which QAT settings keep a student's fp32 decisions: each setting at several QAT seeds, mean ± std.

For one run: the student is fake-quantised and calibrated once (export/qat.py, as `export --qat` does), then
fine-tuned from that point with each setting at each seed, and the fake-quantised model is scored in PyTorch on
the run's validation and test images (the images `export` judges and reports on): top-1, and agreement with
the fp32 student's predictions. A setting is `epochs,lr,ce_weight` (ce_weight 0: KD to the fp32 student alone;
1: CE on the labels + KD, the default). A claim that one setting beats another holds only where the spread
across seeds says so.

    python tools/qat_settings.py runs/demo/runs/efficientnet_b0-dait_f
    python tools/qat_settings.py RUN --settings 5,1e-4,1 --settings 15,1e-4,0 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_SETTINGS = ("5,1e-4,1", "5,1e-4,0", "15,1e-4,0", "5,1e-3,0", "15,1e-5,0")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="A finished distill run.")
    parser.add_argument("--settings", action="append", help="epochs,lr,ce_weight (repeatable).")
    parser.add_argument("--seeds", default="0,1,2", help="QAT seeds (the shuffling and flips).")
    parser.add_argument("--calib-samples", type=int, default=256, help="Training images QAT calibrates on.")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import dait_edge.export.qat as qat
    from dait_edge.errors import UserError
    from dait_edge.export.images import PARITY_SAMPLES, VAL_SAMPLES, int8_images, load_images, qat_images
    from dait_edge.export.source import load_student, resolve_run

    try:
        settings = [tuple(float(v) for v in s.split(",")) for s in args.settings or DEFAULT_SETTINGS]
        assert all(len(s) == 3 for s in settings)
        seeds = [int(s) for s in args.seeds.split(",")]
    except (ValueError, AssertionError):
        print(
            "error: --settings takes epochs,lr,ce_weight (e.g. 5,1e-4,1) and --seeds a comma list.",
            file=sys.stderr,
        )
        return 2
    try:
        info = resolve_run(args.run)
        model = load_student(info).eval()
        calibration, validation = int8_images(info, args.calib_samples, VAL_SAMPLES)
        training = qat_images(info, args.calib_samples, VAL_SAMPLES)
        test = load_images(info.dataset, info.data_root, "test", PARITY_SAMPLES, info.data_config)
        calibrated = qat.fake_quantised(model, calibration.images)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if validation is None or validation.labels is None or test.labels is None:
        print(f"error: {args.run} has no labelled validation or test images to judge on.", file=sys.stderr)
        return 2

    def logits(m, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([m(torch.from_numpy(x[i : i + 64])) for i in range(0, len(x), 64)]).numpy()

    fp32 = {"val": logits(model, validation.images), "test": logits(model, test.images)}
    labels = {"val": validation.labels, "test": test.labels}

    def scores(m) -> dict[str, float]:
        out = {}
        for split, x in (("val", validation.images), ("test", test.images)):
            predicted = logits(m, x).argmax(1)
            out[f"{split}_top1"] = 100.0 * float(np.mean(predicted == labels[split]))
            out[f"{split}_agree"] = 100.0 * float(np.mean(predicted == fp32[split].argmax(1)))
        return out

    tau = info.manifest.config.temperature if info.manifest else 2.0
    base = {f"{s}_top1": 100.0 * float(np.mean(fp32[s].argmax(1) == labels[s])) for s in ("val", "test")}
    print(
        f"{args.run.name}: fp32 validation {base['val_top1']:.1f} / test {base['test_top1']:.1f} on"
        f" {len(validation.images)} / {len(test.images)} images; {len(training.images)} QAT images; tau {tau}"
    )
    calibrated_only = scores(calibrated)
    print(
        f"calibrated, not fine-tuned: validation {calibrated_only['val_top1']:.1f} / test"
        f" {calibrated_only['test_top1']:.1f}, agreement with fp32 {calibrated_only['test_agree']:.1f}% (test)"
    )
    print("epochs | lr | ce_weight | val top-1 | val agreement | test top-1 | test agreement | s per QAT")
    original_ce = qat.labelled_ce
    for epochs, lr, ce_weight in settings:
        results, seconds = [], []
        for seed in seeds:
            model_copy = copy.deepcopy(calibrated)
            qat.labelled_ce = lambda logits_, target, w=ce_weight: w * original_ce(logits_, target)
            try:
                started = time.perf_counter()
                chosen = qat.QATSettings(epochs=int(epochs), lr=lr, temperature=tau, seed=seed)
                qat.fine_tune(model_copy, model, training.images, training.labels, chosen, progress=False)
                seconds.append(time.perf_counter() - started)
            finally:
                qat.labelled_ce = original_ce
            results.append(scores(model_copy))

        cells = [
            _mean_std([r[k] for r in results]) for k in ("val_top1", "val_agree", "test_top1", "test_agree")
        ]
        print(" | ".join([f"{int(epochs)}", f"{lr:g}", f"{ce_weight:g}", *cells, f"{np.mean(seconds):.0f}"]))
    return 0


def _mean_std(values: list[float]) -> str:
    """Mean ± the population standard deviation over the seeds."""
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


if __name__ == "__main__":
    sys.exit(main())
