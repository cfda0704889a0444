"""`dait-edge demo`: the whole chain, offline, on synthetic data. Grows as the chain grows."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from dait_edge.demo.scale import DemoScale
from dait_edge.demo.synthetic import write_demo_dataset
from dait_edge.demo.train_vlm import DEMO_VLM_CONFIG, train_demo_vlm
from dait_edge.records import DistillConfig, RunManifest, RunSummary, SweepLayout
from dait_edge.records.layout import DEMO_DIR

DEMO_TEACHER = "regnety_016"
DEMO_IMG_SIZE = 64
DEMO_PROFILES = ("x86-ort-cpu-fp32", "x86-ort-cpu-int8")
# What an x86 CPU runs, plus fp16 to show the GPU format; the s8s8 Q/DQ form is TensorRT's (`--formats`
# of sweep and export make it), 2-6x slower on these CPUs, and left out to keep `make demo` short.
DEMO_FORMATS = "onnx,onnx-fp16,onnx-int8-u8s8"
# Every student also gets quantisation-aware int8 (its Q/DQ file and that file's u8s8 conversion), and the
# int8 profile measures both beside post-training u8s8: the report's rule picks per student. Not --qat-auto:
# on 60 validation images post-training int8 "kept" EfficientNet-B0's budget while losing 3 points on test.
# Only where QAT's budget can be judged: at the test suite's 4 images per class there are 4 validation images,
# and QAT there would cost a minute of `make test` to prove what tests/test_qat.py proves.
DEMO_QAT = True
DEMO_BATCH_SIZES = [1]  # the single-request latency the best-artifact rule judges
# int8 calibrates on 96 of the 240 training images; the accuracy search judges on the 60 held out
DEMO_CALIB_SAMPLES = 96
# The method comparison: the fastest student to train; DAIT-F's row is the sweep's own run of it.
COMPARE_STUDENT = "shufflenet_v2_x1_0"
# (method, labelled fraction), beside the sweep's DAIT-F at 100%; kept short for `make demo` (KD with the VLM
# as teacher, two more runs, was left out when the comparison grew to two seeds: 10 min 24 s with it)
COMPARE_RUNS = (
    ("none", 1.0),
    ("none", 0.3),
    ("dho", 0.3),
    ("dait_f", 0.3),
)
# Every comparison run at the demo's seed and the next: at demo scale a single seed can decide a ranking on
# its own, so the table shows mean ± std over both (the sweep's DAIT-F run is the first; the second is
# trained here).
COMPARE_SEEDS = 2


# The demo's training recipe, chosen by measuring it at two seeds (README, "What the numbers mean"): with a
# cosine decay after one warm-up epoch every student's last three epochs stayed within 4 points of each
# other; the step decay (halved every 4 epochs of 12) left ResNet-18 climbing 15 points over them (seed 0).
DEMO_RECIPE = {"lr": 1e-2, "lr_schedule": "cosine", "warmup_epochs": 1}


def demo_qat_judgeable(scale: DemoScale) -> bool:
    """Does the demo hold out enough validation images to judge an int8 budget on (the int8 search's
    minimum)? `make demo`'s 60 do; the test suite's 4 do not."""
    from dait_edge.demo.synthetic import class_names
    from dait_edge.export.int8_search import MIN_VALIDATION_IMAGES

    held_out = int(scale.images_per_class * len(class_names()) * scale.val_fraction)
    return held_out >= MIN_VALIDATION_IMAGES


def demo_preprocessing(config: DistillConfig):
    """The demo runs' one input pipeline (size, resize, crop), for scoring the VLM the same way."""
    from dait_edge.records import DataConfig

    size = config.img_size
    return DataConfig(
        [3, size, size], interpolation=config.interpolation, crop_pct=config.crop_pct, source="run"
    )


def demo_config(
    out_dir: Path,
    data_root: Path,
    vlm_checkpoint: Path,
    scale: DemoScale = DemoScale(),
    progress: bool = True,
    seed: int = 0,
) -> DistillConfig:
    """Both DAIT stages at demo scale: 64 px, random init, a few epochs, on the synthetic birds."""
    return DistillConfig(
        dataset="imagefolder",
        data_root=str(data_root),
        method="dait_f",
        teacher=DEMO_TEACHER,
        vlm=str(DEMO_VLM_CONFIG),
        vlm_pretrained=str(vlm_checkpoint),
        stage1_epochs=scale.stage1_epochs,
        stage2_epochs=scale.epochs,
        img_size=DEMO_IMG_SIZE,
        batch_size=32,
        # From scratch at 64 px the paper's 1e-4 (for ImageNet-pretrained models) barely moves; at 1e-2
        # MobileNet-V2 reached 61% where 3e-3 gave 36% (16 epochs, synthetic birds).
        lr=DEMO_RECIPE["lr"],
        lr_schedule=DEMO_RECIPE["lr_schedule"],
        warmup_epochs=DEMO_RECIPE["warmup_epochs"],
        alpha_rate=1.0 / scale.stage1_epochs,  # reaches CE-heavy training within the short schedules
        pretrained=False,  # offline: no ImageNet weights
        val_fraction=scale.val_fraction,
        seed=seed,
        workers=0,
        cache_dir=str(out_dir / "cache"),
        progress=progress,
    )


def run_demo(
    out_dir: str | Path = DEMO_DIR,
    fresh: bool = False,
    progress: bool = True,
    echo=print,
    scale: DemoScale = DemoScale(),
    seed: int = 0,
) -> dict:
    """Data -> demo VLM -> inspect -> zero-shot -> sweep (distill, export, profile) -> report."""
    from dait_edge.data import load_dataset
    from dait_edge.data.inspect import inspect_dataset
    from dait_edge.vlm import evaluate_zero_shot, load_vlm

    scale.check()
    out_dir = Path(out_dir)
    if fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    results: dict = {"out_dir": str(out_dir)}
    started = time.perf_counter()

    echo(f"[1/7] synthetic fine-grained dataset -> {out_dir / 'data'}")
    data_root = write_demo_dataset(
        out_dir / "data", train_per_class=scale.images_per_class, test_per_class=scale.images_per_class
    )
    dataset = load_dataset("imagefolder", data_root)

    checkpoint = out_dir / "vlm" / "demo_clip.safetensors"
    if checkpoint.is_file():
        echo(f"[2/7] demo VLM: reusing {checkpoint}")
    else:
        echo(f"[2/7] training the demo VLM ({DEMO_VLM_CONFIG.name}) contrastively on image/prompt pairs")
        logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that it starts from random weights
        train_demo_vlm(dataset, checkpoint, progress=progress)
    results["vlm"] = {"config": str(DEMO_VLM_CONFIG), "checkpoint": str(checkpoint)}

    echo("[3/7] dait-edge data inspect")
    inspected = inspect_dataset("imagefolder", data_root, progress=progress)
    results["inspect"] = inspected
    echo(
        f"      {inspected['num_classes']} classes, {inspected['train']} train / {inspected['test']} test"
        f" images, {len(inspected['bad_images'])} unreadable"
    )

    echo("[4/7] dait-edge zero-shot (the VLM loaded back from its local checkpoint file)")
    teacher = load_vlm(str(DEMO_VLM_CONFIG), str(checkpoint))
    # the test split cut as the runs cut it (64 px, their resize and crop), then brought to the VLM's size
    zero_shot = evaluate_zero_shot(
        teacher,
        dataset,
        cache_dir=out_dir / "cache",
        progress=progress,
        run_preprocessing=demo_preprocessing(demo_config(out_dir, data_root, checkpoint, scale, seed=seed)),
    )
    results["zero_shot"] = zero_shot
    echo(
        f"      top-1 {zero_shot['top1']:.1f}% (chance {zero_shot['chance_top1']:.1f}%),"
        f" top-5 {zero_shot['top5']:.1f}%"
    )

    from dait_edge.report import describe_best
    from dait_edge.sweep import all_students, run_sweep

    students = all_students()
    qat = DEMO_QAT and demo_qat_judgeable(scale)
    echo(
        f"[5/7] dait-edge sweep --students all: distill (stage 1: VLM -> {DEMO_TEACHER} once, stage 2: ->"
        f" each student), export {DEMO_FORMATS}{' + QAT int8' if qat else ''}, profile on"
        f" {' and '.join(DEMO_PROFILES)} at batch 1"
    )
    if DEMO_QAT and not qat:
        echo("      (no QAT int8 at this size: too few validation images to judge its budget on)")
    state, report = run_sweep(
        demo_config(out_dir, data_root, checkpoint, scale, progress=progress, seed=seed),
        students,
        out_dir,
        profiles=list(DEMO_PROFILES),
        formats=DEMO_FORMATS,
        batch_sizes=DEMO_BATCH_SIZES,
        calib_samples=DEMO_CALIB_SAMPLES,
        qat=qat,
        log=lambda msg: echo(f"      {msg}"),
    )
    results["sweep"] = state.to_dict()
    results["students"] = {}
    for student in students:
        summary = RunSummary.read(SweepLayout(out_dir).run(student, "dait_f"))
        results["students"][student] = summary.to_dict()
        reused = " (reused)" if summary.teacher_reused else ""
        best = (
            f" (best on validation: epoch {summary.student_best_epoch + 1}, test {summary.student_top1_best:.1f}%)"
            if summary.student_best_epoch is not None
            else ""
        )
        echo(
            f"      {student}: test top-1 {summary.student_top1:.1f}% at the last epoch{best}, from teacher"
            f" {DEMO_TEACHER}{reused} at {summary.teacher_top1 or float('nan'):.1f}%"
        )

    echo(
        f"[6/7] method comparison on {COMPARE_STUDENT}, seeds {seed} and {seed + 1}: dait-edge distill --method"
        f" none and dait_f with all labels (seed {seed}'s dait_f is the sweep's run), none, dho and dait_f at 30%"
        " labelled; then dait-edge compare"
    )
    config = demo_config(out_dir, data_root, checkpoint, scale, progress=progress, seed=seed)
    comparison = compare_methods(config, out_dir, SweepLayout(out_dir).run(COMPARE_STUDENT, "dait_f"), echo)
    results["compare"] = comparison.to_dict()

    results["report"] = report.to_dict()
    echo(f"[7/7] dait-edge report -> {report.out_dir}/report.md (and pareto.png, report.html)")
    for line in describe_best(report.best):
        echo(f"      {line}")
    results["seconds"] = round(time.perf_counter() - started, 1)
    echo(f"demo finished in {results['seconds']} s; everything is under {out_dir}/")
    echo(f"the report: {report.out_dir}/report.md")
    return results


def compare_methods(config: DistillConfig, out_dir: Path, dait_run: Path, echo=print):
    """The baselines on one student (distill only: export and profile are the sweep's part), compared
    with the sweep's DAIT-F run of it; prints the table with the note that synthetic data proves the chain,
    not the method."""
    import dataclasses

    from dait_edge.distill import run_distill
    from dait_edge.report.compare import SYNTHETIC_NOTE, compare_runs, markdown

    runs_root = out_dir / "compare-runs"
    seeds = [config.seed + k for k in range(COMPARE_SEEDS)]
    planned = [(seed, method, fraction) for seed in seeds for method, fraction in COMPARE_RUNS]
    planned += [(seed, "dait_f", 1.0) for seed in seeds[1:]]  # the sweep ran the first
    for seed, method, fraction in planned:
        suffix = "" if fraction >= 1 else f"-l{round(fraction * 100)}"
        run_dir = runs_root / f"{COMPARE_STUDENT}-{method}{suffix}-s{seed}"
        what = f"{method} ({fraction:.0%} labelled, seed {seed})"
        summary = RunSummary.read_if_present(run_dir)
        if summary is not None and summary.student_top1 is not None:
            echo(f"      {what}: done earlier")
            continue
        run = dataclasses.replace(
            config,
            student=COMPARE_STUDENT,
            method=method,
            labelled_fraction=fraction,
            seed=seed,
            out=str(run_dir),
            teacher_cache=str(SweepLayout(out_dir).teachers),
        )
        summary = run_distill(run, resume=RunManifest.path_in(run_dir).is_file())
        echo(f"      {what}: test top-1 {summary.student_top1:.1f}% in {summary.stage2_seconds:.0f} s")
    comparison, files = compare_runs(
        [dait_run, runs_root],
        SweepLayout(out_dir).compare,
        note=SYNTHETIC_NOTE,
        log=lambda msg: echo(f"      {msg}"),
    )
    for line in markdown(comparison, figure_name=None).splitlines()[2:]:
        echo(f"      {line}")
    echo(f"      -> {files['markdown']} (and compare.png, compare.csv)")
    return comparison
