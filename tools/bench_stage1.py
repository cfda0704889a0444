"""Stage 1 with the live VLM against stage 1 on the VLM embedding cache, side by side in one process.

On the same data, models and VLM, in one process:
  live    stage-1 epochs that run the VLM's image tower at every step (--vlm-views 0)
  build   building the cache: the VLM over K = epochs views of every training image, once
  cached  stage-1 epochs that read the cache (what every later student and VLM-taught method pays)
  floor   the intermediate teacher on cross-entropy alone (no VLM at all): the least an epoch can cost
Every stage-1 epoch runs at alpha = 0, so the VLM term is on in every epoch (the live way's worst case).

Targets (issue 13): an epoch reading the cache within 1.2x of the floor; the whole of stage 1 at K = epochs
(build + cached epochs) no slower than the live way; a second student reading the cache pays no VLM time.

On the CPU the VLM is the real ConvNeXt-XXLarge tower at 64 px (OpenCLIP's convnext_xxlarge config with
image_size 64, random weights): the timings are real, the accuracies mean nothing.

    python tools/bench_stage1.py                        # CPU: 64 px, 24 images, 2 epochs
    python tools/bench_stage1.py --device cuda --img-size 224 --vlm-size 256 --images 512 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument(
        "--vlm", default="convnext_xxlarge", help="OpenCLIP model name or config JSON (random weights)."
    )
    parser.add_argument("--vlm-size", type=int, default=64, help="The VLM's input size (its native is 256).")
    parser.add_argument("--img-size", type=int, default=64, help="Views and intermediate-teacher resolution.")
    parser.add_argument("--teacher", default="regnety_016", help="Intermediate teacher (random weights).")
    parser.add_argument("--images", type=int, default=24, help="Training images (synthetic birds).")
    parser.add_argument("--epochs", type=int, default=2, help="Stage-1 epochs of each way (K = epochs).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="Data-loading processes.")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    return parser.parse_args(argv)


def vlm_config(name: str, size: int, folder: Path) -> Path:
    """OpenCLIP's config of `name` at input size `size`, as a JSON file --vlm accepts."""
    import open_clip

    config = (
        json.loads(Path(name).read_text()) if name.endswith(".json") else open_clip.get_model_config(name)
    )
    if config is None:
        raise SystemExit(f"error: unknown OpenCLIP model {name!r}")
    name = Path(name).stem
    config["vision_cfg"]["image_size"] = size
    path = folder / f"{name}_{size}px.json"
    path.write_text(json.dumps(config))
    return path


def dataset(folder: Path, images: int):
    """Synthetic birds in an ImageFolder tree; returns (train samples, test samples, classes)."""
    from dait_edge.data import load_dataset
    from dait_edge.demo.synthetic import class_names, write_demo_dataset

    per_class = max(1, -(-images // len(class_names())))
    root = write_demo_dataset(folder / "birds", train_per_class=per_class, test_per_class=2)
    spec = load_dataset("imagefolder", root)
    return spec.split("train")[:images], spec.split("test"), spec.classes


def stage1(way: str, teacher_name, classes, views, test, args, device, provider, folder):
    """One stage-1 training of `way`; returns per-epoch seconds (training + the tiny evaluation)."""
    import torch

    from dait_edge.engine.checkpoint import seed_everything
    from dait_edge.engine.trainer import StageFiles, StagePlan, fit
    from dait_edge.methods import METHODS, MethodContext
    from dait_edge.models import build_model

    seed_everything(0)
    teacher = build_model(teacher_name, len(classes), pretrained=False, role="teacher")
    context = MethodContext(len(classes), teacher.data_config.mean, teacher.data_config.std, vlm=provider)
    method = METHODS.get("dait_stage1")(teacher, context)
    floor = way == "floor"
    plan = StagePlan(
        stage=1,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-4,
        weight_decay=1e-4,
        lr_step=30,
        lr_gamma=0.5,
        alpha_rate=0.0,
        alpha_bias=1.0 if floor else 0.0,  # floor: CE alone, the VLM never runs; else the VLM every step
        seed=0,
        workers=args.workers,
    )
    out = folder / way
    files = StageFiles(out / "state.pt", out / "last.safetensors", out / "best.safetensors")
    fit(method, views, test, plan, files, device=device, metrics_path=out / "metrics.jsonl", progress=False)
    from dait_edge.records import read_metrics

    seconds = [m.seconds for m in read_metrics(out / "metrics.jsonl")]
    del method, teacher
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return [round(b - a, 3) for a, b in zip([0.0, *seconds], seconds, strict=False)]


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from dait_edge.data.images import ImageListDataset
    from dait_edge.data.transforms import eval_transform_for
    from dait_edge.data.views import TrainViews, ViewSpec
    from dait_edge.engine.precision import vlm_dtype_for
    from dait_edge.models import build_model
    from dait_edge.profiling.hardware import cpu_model
    from dait_edge.records import VLMCacheInfo
    from dait_edge.utils.device import resolve_device
    from dait_edge.vlm import load_vlm, text_classifier
    from dait_edge.vlm.cache import EmbeddingCache, describe_size
    from dait_edge.vlm.provider import CachedVLM, LiveVLM

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_stage1_") as tmp:
        folder = Path(tmp)
        train, test_samples, classes = dataset(folder, args.images)
        spec = ViewSpec(args.img_size)
        probe = build_model(args.teacher, len(classes), pretrained=False, role="teacher")
        test = ImageListDataset(test_samples, eval_transform_for(probe.data_config, args.img_size))
        images = ImageListDataset(train)

        print(f"loading {args.vlm} at {args.vlm_size} px (random weights) ...", file=sys.stderr)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vlm = load_vlm(str(vlm_config(args.vlm, args.vlm_size, folder)), "none", device=device)
        text = text_classifier(vlm, classes, ["a photo of a {}."], use_cache=False)
        vlm.free_text_tower()
        vlm.model.visual.to(dtype=vlm_dtype_for(device))
        load_s = time.perf_counter() - started
        vlm_params = sum(p.numel() for p in vlm.model.visual.parameters())

        def views(extra=None):
            dc = probe.data_config  # every way trains the same teacher architecture
            return TrainViews(images, spec, 0, args.epochs, dc.mean, dc.std, extra=extra)

        seconds = {}
        seconds["live"] = stage1(
            "live", args.teacher, classes, views(), test, args, device,
            LiveVLM(vlm, text, probe.data_config.mean, probe.data_config.std), folder,
        )  # fmt: skip
        dim = text.shape[1]
        info = VLMCacheInfo(
            key="bench",
            images=len(train),
            views=args.epochs,
            dim=dim,
            chunk=32,
            seed=0,
            view_spec=spec.to_dict(),
            vlm=args.vlm,
            vlm_pretrained="none",
            vlm_weights={"kind": "random"},
            compute_dtype=str(vlm_dtype_for(device)).removeprefix("torch."),
            dataset="imagefolder",
            data_root=str(folder),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        cache = EmbeddingCache.create(folder / "cache", info)
        build_s = cache.build(vlm, images, device=device, workers=args.workers, progress=False)
        cache.finish(build_s)
        cosine = cache.verify(vlm, images, device=device)
        del vlm
        if device.type == "cuda":
            torch.cuda.empty_cache()
        seconds["cached"] = stage1(
            "cached",
            args.teacher,
            classes,
            views(cache.reader()),
            test,
            args,
            device,
            CachedVLM(text),
            folder,
        )
        seconds["floor"] = stage1(
            "floor", args.teacher, classes, views(), test, args, device, CachedVLM(text), folder
        )

    epoch = {way: sum(s) / len(s) for way, s in seconds.items()}
    live_total, cached_total = sum(seconds["live"]), build_s + sum(seconds["cached"])
    ratios = {
        "cached_epoch_to_floor": epoch["cached"] / epoch["floor"],
        "stage1_cached_with_build_to_live": cached_total / live_total,
        # the build against the VLM's share of the live stage 1 (live minus floor): ~1 when it replaces it
        "build_to_live_vlm_time": build_s / max(live_total - sum(seconds["floor"]), 1e-9),
        "second_student_to_live": sum(seconds["cached"]) / live_total,
    }
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )
    print(f"# stage 1, live VLM vs VLM embedding cache ({platform.machine()}: {hardware})")
    print(
        f"VLM {args.vlm} image tower at {args.vlm_size} px ({vlm_params / 1e6:.0f} M params, random weights,"
        f" loaded in {load_s:.0f} s), teacher {args.teacher} at {args.img_size} px, {len(train)} images,"
        f" batch {args.batch_size}, {args.epochs} epochs, K = {args.epochs}; cache {describe_size(info)}"
    )
    print("| way | epoch seconds | mean epoch s |")
    print("|---|---|---|")
    for way, values in seconds.items():
        print(f"| {way} | {', '.join(f'{v:.2f}' for v in values)} | {epoch[way]:.2f} |")
    print(f"| cache build (once) | {build_s:.2f} | |")
    print()
    print(f"cached epoch / floor epoch:               {ratios['cached_epoch_to_floor']:.2f}  (target <= 1.2)")
    print(
        f"stage 1 (build + cached) / live stage 1:  {ratios['stage1_cached_with_build_to_live']:.2f}"
        "  (target <= 1.0)"
    )
    print(f"cache build / the live way's VLM time:    {ratios['build_to_live_vlm_time']:.2f}")
    print(
        f"a second student on the cache / live:     {ratios['second_student_to_live']:.2f}  (pays no VLM time)"
    )
    print(f"verification: lowest cosine of re-encoded views {cosine:.5f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"seconds": seconds, "build_seconds": build_s, "ratios": ratios, "hardware": hardware},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
