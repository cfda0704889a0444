"""int8 on a dataset that no test contains: post-training against quantisation-aware, for the four students.

The data is scikit-learn's copy of the UCI handwritten digits (1,797 8x8 greyscale images, 10 classes, shipped
inside the scikit-learn wheel: nothing is downloaded), upscaled to 64 px RGB and written as an ImageFolder tree
(train/ and test/, a fixed per-class split). Each student is trained on the labels from random initialisation
(`--method none`, the demo's recipe: AdamW 1e-2, cosine after one warm-up epoch, 20% of the training images
held out for validation), so, unlike the demo's near-chance small students, every one is a real classifier.
Then `tools/bench_int8.py --qat` exports fp32, accuracy-aware post-training u8s8 and both QAT files for each,
times them side by side, and evaluates every file again from its sidecar alone.

    pip install scikit-learn          # the data only; not a dait-edge dependency
    python tools/qat_heldout.py --out runs/heldout-digits [--epochs 8] [--json int8-digits.json]

A finished student is reused when the command runs again (its run folder holds summary.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

STUDENTS = ("resnet18", "efficientnet_b0", "mobilenetv2_100", "shufflenet_v2_x1_0")
IMG_SIZE = 64


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/heldout-digits"), help="Data, runs and exports."
    )
    parser.add_argument("--epochs", type=int, default=8, help="Training epochs per student.")
    parser.add_argument("--train-per-class", type=int, default=100, help="Training images per class.")
    parser.add_argument("--students", default=",".join(STUDENTS), help="Comma-separated students.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="bench_int8's figures as JSON.")
    return parser.parse_args(argv)


def write_digits(root: Path, train_per_class: int) -> int:
    """The digits as ImageFolder PNGs (idempotent): the first `train_per_class` of each class train, the rest
    test. Returns the number of images written or found."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen: dict[int, int] = {}
    count = 0
    for image, label in zip(digits.images, digits.target, strict=True):
        index = seen.get(int(label), 0)
        seen[int(label)] = index + 1
        split = "train" if index < train_per_class else "test"
        path = root / split / f"digit-{label}" / f"{index:03d}.png"
        count += 1
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        grey = np.uint8(np.round(image * (255.0 / 16.0)))
        Image.fromarray(grey).resize((IMG_SIZE, IMG_SIZE), Image.Resampling.BILINEAR).convert("RGB").save(
            path
        )
    return count


def train(student: str, data: Path, runs: Path, epochs: int, seed: int) -> Path:
    from dait_edge.demo.run import DEMO_RECIPE
    from dait_edge.distill import run_distill
    from dait_edge.records import DistillConfig, RunSummary

    out = runs / f"{student}-none"
    summary = RunSummary.read_if_present(out)
    if summary is not None and summary.student_top1 is not None:
        print(f"{student}: trained earlier ({summary.student_top1:.1f}% test top-1)", file=sys.stderr)
        return out
    config = DistillConfig(
        dataset="imagefolder",
        data_root=str(data),
        method="none",
        student=student,
        stage2_epochs=epochs,
        img_size=IMG_SIZE,
        batch_size=32,
        lr=DEMO_RECIPE["lr"],
        lr_schedule=DEMO_RECIPE["lr_schedule"],
        warmup_epochs=DEMO_RECIPE["warmup_epochs"],
        pretrained=False,
        val_fraction=0.2,
        seed=seed,
        workers=0,
        out=str(out),
        progress=False,
    )
    summary = run_distill(config)
    print(f"{student}: {summary.student_top1:.1f}% test top-1 after {epochs} epochs", file=sys.stderr)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print(
            "error: the digits come with scikit-learn; pip install scikit-learn and run again.",
            file=sys.stderr,
        )
        return 2
    data, runs = args.out / "data", args.out / "runs"
    images = write_digits(data, args.train_per_class)
    print(f"digits: {images} images under {data}", file=sys.stderr)
    for student in args.students.split(","):
        train(student, data, runs, args.epochs, args.seed)
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_int8

    bench = ["--runs", str(runs), "--qat", "--parity-samples", "1000"]
    return bench_int8.main(bench + (["--json", str(args.json)] if args.json else []))


if __name__ == "__main__":
    sys.exit(main())
