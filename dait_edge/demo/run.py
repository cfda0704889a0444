"""`dait-edge demo`: the whole chain, offline, on synthetic data. Grows as the chain grows."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from dait_edge.demo.synthetic import write_demo_dataset
from dait_edge.demo.train_vlm import DEMO_VLM_CONFIG, train_demo_vlm


def run_demo(
    out_dir: str | Path = "runs/demo", fresh: bool = False, progress: bool = True, echo=print
) -> dict:
    """Data -> demo VLM -> inspect -> zero-shot. Returns what each step produced."""
    from dait_edge.data import load_dataset
    from dait_edge.data.inspect import inspect_dataset
    from dait_edge.vlm import evaluate_zero_shot, load_vlm

    out_dir = Path(out_dir)
    if fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    results: dict = {"out_dir": str(out_dir)}
    started = time.perf_counter()

    echo(f"[1/4] synthetic fine-grained dataset -> {out_dir / 'data'}")
    data_root = write_demo_dataset(out_dir / "data")
    dataset = load_dataset("imagefolder", data_root)

    checkpoint = out_dir / "vlm" / "demo_clip.safetensors"
    if checkpoint.is_file():
        echo(f"[2/4] demo VLM: reusing {checkpoint}")
    else:
        echo(f"[2/4] training the demo VLM ({DEMO_VLM_CONFIG.name}) contrastively on image/prompt pairs")
        logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that it starts from random weights
        train_demo_vlm(dataset, checkpoint, progress=progress)
    results["vlm"] = {"config": str(DEMO_VLM_CONFIG), "checkpoint": str(checkpoint)}

    echo("[3/4] dait-edge data inspect")
    report = inspect_dataset("imagefolder", data_root, progress=progress)
    results["inspect"] = report
    echo(
        f"      {report['num_classes']} classes, {report['train']} train / {report['test']} test images,"
        f" {len(report['bad_images'])} unreadable"
    )

    echo("[4/4] dait-edge zero-shot (the VLM loaded back from its local checkpoint file)")
    teacher = load_vlm(str(DEMO_VLM_CONFIG), str(checkpoint))
    zero_shot = evaluate_zero_shot(teacher, dataset, cache_dir=out_dir / "cache", progress=progress)
    results["zero_shot"] = zero_shot
    echo(
        f"      top-1 {zero_shot['top1']:.1f}% (chance {zero_shot['chance_top1']:.1f}%),"
        f" top-5 {zero_shot['top5']:.1f}%"
    )
    results["seconds"] = round(time.perf_counter() - started, 1)
    echo(f"demo finished in {results['seconds']} s; everything is under {out_dir}/")
    return results
