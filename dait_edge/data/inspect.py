"""What `dait-edge data inspect` reports: counts per split and class, and images PIL cannot decode."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dait_edge.data import load_dataset


def _decode_error(path: Path) -> str | None:
    """None if the image decodes fully, else a one-line reason."""
    from dait_edge.data.images import load_rgb

    try:
        load_rgb(path)
    except Exception as err:  # noqa: BLE001  -- any decoder failure is a finding to report, not a crash
        return " ".join(f"{type(err).__name__}: {err}".split())
    return None


def find_bad_images(paths: list[Path], progress: bool = True) -> list[dict]:
    """[{path, error}] for every file PIL cannot open and fully decode."""
    from tqdm import tqdm

    # PIL releases the GIL while decoding, so threads use all cores without pickling.
    workers = max(1, min(8, os.cpu_count() or 1))
    bad = []
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(_decode_error, paths)
        for path, error in tqdm(
            zip(paths, results, strict=True),
            total=len(paths),
            desc="decoding images",
            unit="img",
            disable=not progress,
        ):
            if error is not None:
                bad.append({"path": str(path), "error": error})
    return bad


def inspect_dataset(name: str, root: str | Path, check_images: bool = True, progress: bool = True) -> dict:
    """Counts, per-class balance and undecodable images of one dataset, as a JSON-ready dict."""
    spec = load_dataset(name, root)
    train_counts = Counter(label for _, label in spec.splits["train"])
    per_class = [train_counts.get(c, 0) for c in range(spec.num_classes)]

    warnings = []
    empty = [spec.classes[c] for c, n in enumerate(per_class) if n == 0]
    if empty:
        shown = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        warnings.append(f"{len(empty)} classes have no train images: {shown}")

    bad: list[dict] = []
    if check_images:
        # Aircraft's val is a subset of its train split: decode each file once.
        paths = list(dict.fromkeys(p for samples in spec.splits.values() for p, _ in samples))
        bad = find_bad_images(paths, progress=progress)

    return {
        "dataset": spec.name,
        "title": spec.extra.get("title", spec.name),
        "root": str(spec.root),
        "num_classes": spec.num_classes,
        "train": len(spec.splits["train"]),
        "val": len(spec.splits["val"]) if "val" in spec.splits else None,
        "test": len(spec.splits["test"]),
        "val_in_train": bool(spec.extra.get("val_in_train", False)),
        "per_class": {"min": min(per_class, default=0), "max": max(per_class, default=0)},
        "crop_bottom": spec.crop_bottom,
        "images_checked": check_images,
        "bad_images": bad,
        "warnings": warnings,
        "ok": not bad,
    }
