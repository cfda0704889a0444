"""`dait-edge demo`: the whole chain, offline, on synthetic data. Grows as the chain grows."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from dait_edge.demo.synthetic import write_demo_dataset
from dait_edge.demo.train_vlm import DEMO_VLM_CONFIG, train_demo_vlm

DEMO_STUDENT = "resnet18"  # trains from scratch in a few epochs; MobileNet-V2 needs many more
DEMO_TEACHER = "regnety_016"
DEMO_EPOCHS = 8
DEMO_IMG_SIZE = 64


def distill_demo_student(
    out_dir: Path,
    data_root: Path,
    vlm_checkpoint: Path,
    student: str,
    method: str = "dait_f",
    progress: bool = True,
) -> dict:
    """Both DAIT stages at demo scale (64 px, random init, a few epochs); a finished run is reused."""
    from dait_edge.config import DistillConfig
    from dait_edge.distill import run_distill

    run_dir = out_dir / "runs" / f"{student}-{method}"
    config = DistillConfig(
        dataset="imagefolder",
        data_root=str(data_root),
        student=student,
        method=method,
        teacher=DEMO_TEACHER,
        vlm=str(DEMO_VLM_CONFIG),
        vlm_pretrained=str(vlm_checkpoint),
        stage1_epochs=DEMO_EPOCHS,
        stage2_epochs=DEMO_EPOCHS,
        img_size=DEMO_IMG_SIZE,
        batch_size=32,
        lr=1e-3,  # from scratch at 64 px, the paper's 1e-4 (for ImageNet-pretrained models) barely moves
        lr_step=30,
        alpha_rate=1.0
        / DEMO_EPOCHS,  # reaches CE-heavy training within the short schedule (the paper ablates k)
        pretrained=False,  # offline: no ImageNet weights
        workers=0,
        out=str(run_dir),
        teacher_cache=str(out_dir / "runs" / "teachers"),
        cache_dir=str(out_dir / "cache"),
        progress=progress,
    )
    return run_distill(config, resume=(run_dir / "manifest.json").is_file())


def run_demo(
    out_dir: str | Path = "runs/demo", fresh: bool = False, progress: bool = True, echo=print
) -> dict:
    """Data -> demo VLM -> inspect -> zero-shot -> distill -> export. Returns what each step produced."""
    from dait_edge.data import load_dataset
    from dait_edge.data.inspect import inspect_dataset
    from dait_edge.vlm import evaluate_zero_shot, load_vlm

    out_dir = Path(out_dir)
    if fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    results: dict = {"out_dir": str(out_dir)}
    started = time.perf_counter()

    echo(f"[1/6] synthetic fine-grained dataset -> {out_dir / 'data'}")
    data_root = write_demo_dataset(out_dir / "data")
    dataset = load_dataset("imagefolder", data_root)

    checkpoint = out_dir / "vlm" / "demo_clip.safetensors"
    if checkpoint.is_file():
        echo(f"[2/6] demo VLM: reusing {checkpoint}")
    else:
        echo(f"[2/6] training the demo VLM ({DEMO_VLM_CONFIG.name}) contrastively on image/prompt pairs")
        logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that it starts from random weights
        train_demo_vlm(dataset, checkpoint, progress=progress)
    results["vlm"] = {"config": str(DEMO_VLM_CONFIG), "checkpoint": str(checkpoint)}

    echo("[3/6] dait-edge data inspect")
    report = inspect_dataset("imagefolder", data_root, progress=progress)
    results["inspect"] = report
    echo(
        f"      {report['num_classes']} classes, {report['train']} train / {report['test']} test images,"
        f" {len(report['bad_images'])} unreadable"
    )

    echo("[4/6] dait-edge zero-shot (the VLM loaded back from its local checkpoint file)")
    teacher = load_vlm(str(DEMO_VLM_CONFIG), str(checkpoint))
    zero_shot = evaluate_zero_shot(teacher, dataset, cache_dir=out_dir / "cache", progress=progress)
    results["zero_shot"] = zero_shot
    echo(
        f"      top-1 {zero_shot['top1']:.1f}% (chance {zero_shot['chance_top1']:.1f}%),"
        f" top-5 {zero_shot['top5']:.1f}%"
    )

    echo(
        f"[5/6] dait-edge distill --student {DEMO_STUDENT} --method dait_f (stage 1: VLM -> {DEMO_TEACHER}, stage 2: -> student)"
    )
    results["distill"] = distill_demo_student(out_dir, data_root, checkpoint, DEMO_STUDENT, progress=progress)
    summary = results["distill"]
    echo(
        f"      teacher top-1 {summary['teacher_top1']:.1f}%, student top-1 {summary['student_top1']:.1f}%"
        f" -> {summary['run_dir']}"
    )

    from dait_edge.export import export_run

    echo(f"[6/6] dait-edge export {summary['run_dir']} --fp16 --int8 (each artifact checked against PyTorch)")
    exported = export_run(summary["run_dir"], fp16=True, int8=True, log=lambda *_: None)
    results["export"] = exported
    for artifact in exported["artifacts"]:
        parity = artifact.get("parity") or {}
        echo(
            f"      {Path(artifact['path']).name}: {artifact['size_mb']:.2f} MB, agrees with PyTorch on"
            f" {parity.get('agreement', float('nan')):.1f}% of test images"
        )
    for note in exported["performance"]:
        echo(f"      {note}")
    results["seconds"] = round(time.perf_counter() - started, 1)
    echo(f"demo finished in {results['seconds']} s; everything is under {out_dir}/")
    return results
