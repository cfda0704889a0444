"""Exercise on one CUDA GPU every path that the CPU tests cannot reach; one line per check, then a JSON summary.

Checks (about 6 minutes on one recent GPU; each prints PASS / FAIL / SKIP with its seconds and a detail):
  stages-live    both DAIT stages for one epoch at 224 px, bf16 autocast and channels_last, the real
                 ConvNeXt-XXLarge image tower (random weights) run live at every step
  cache-build    the same run with --vlm-views auto: the VLM embedding cache built on the GPU, verified
                 against the live tower, then stage 1 read from it (the VLM freed before training)
  ddp-nccl       a 1-process torchrun run over NCCL (DDP over the trainable modules only)
  torch-runner   `profile` on the GPU: eager, CUDA-graph replay and torch.compile of the trained student
  bench-stage1   tools/bench_stage1.py --device cuda: live vs build vs cached vs floor, side by side

It needs torch (with CUDA), torchvision, timm, open_clip and this package (PYTHONPATH=. works from a
checkout), nothing else: it runs on a GPU box with a preinstalled PyTorch. Weights are random (nothing is
downloaded), so the figures are timings and the accuracies mean nothing.

    PYTHONPATH=. python tools/gpu_check.py                 # every check
    PYTHONPATH=. python tools/gpu_check.py --only ddp-nccl,torch-runner
    python tools/gpu_check.py --dry-run                    # list the checks and what each needs (no GPU)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Check:
    name: str
    what: str
    needs: tuple[str, ...]  # modules
    cuda: bool = True
    result: dict = field(default_factory=dict)


CHECKS = [
    Check("stages-live", "both stages, 1 epoch, 224 px, bf16 + channels_last, live ConvNeXt-XXLarge", ("torch", "torchvision", "timm", "open_clip")),
    Check("cache-build", "--vlm-views auto: cache built on the GPU, verified, stage 1 from it", ("torch", "torchvision", "timm", "open_clip")),
    Check("ddp-nccl", "torchrun --nproc_per_node 1: NCCL process group, DDP over trainable modules", ("torch", "torchvision", "timm", "open_clip")),
    Check("torch-runner", "profile on cuda: eager, CUDA-graph replay, torch.compile", ("torch", "torchvision", "timm")),
    Check("bench-stage1", "tools/bench_stage1.py --device cuda (live / build / cached / floor)", ("torch", "torchvision", "timm", "open_clip")),
]  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="List the checks and what each needs; run none."
    )
    parser.add_argument("--only", help="Comma list of checks to run (default: all).")
    parser.add_argument("--device", default="cuda", help="The GPU (cuda or cuda:N).")
    parser.add_argument("--images", type=int, default=48, help="Synthetic training images (6 classes).")
    parser.add_argument("--json", type=Path, help="Also write the summary JSON to this file.")
    return parser.parse_args(argv)


def missing_modules(check: Check) -> list[str]:
    return [name for name in check.needs if importlib.util.find_spec(name) is None]


def dry_run(checks: list[Check]) -> int:
    cuda = _cuda_available()
    for check in checks:
        missing = missing_modules(check)
        state = "ready" if not missing and (cuda or not check.cuda) else "would skip"
        reasons = [f"missing {', '.join(missing)}"] if missing else []
        if check.cuda and not cuda:
            reasons.append("no CUDA GPU here")
        print(
            f"{check.name:<13} {state:<10} needs {', '.join(check.needs)}{' + a CUDA GPU' if check.cuda else ''}"
            f"{' (' + '; '.join(reasons) + ')' if reasons else ''}: {check.what}"
        )
    summary = {"dry_run": True, "cuda": cuda, "checks": [c.name for c in checks]}
    print(json.dumps(summary))
    return 0


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


# ------------------------------------------------------------------------------------------ set-up


class Workspace:
    """Synthetic data, the VLM config, and the runs the checks share (later checks use earlier runs)."""

    def __init__(self, folder: Path, device: str, images: int):
        from dait_edge.demo.synthetic import write_demo_dataset

        self.folder, self.device = folder, device
        per_class = max(1, images // 6)
        self.data_root = write_demo_dataset(folder / "birds", train_per_class=per_class, test_per_class=4)
        self.cache_dir = folder / "cache"
        self.runs: dict[str, Path] = {}
        os.environ["DAIT_EDGE_CACHE"] = str(self.cache_dir)

    def config(self, name: str, **overrides):
        from dait_edge.config import DistillConfig

        values = dict(
            dataset="imagefolder",
            data_root=str(self.data_root),
            vlm="convnext_xxlarge",
            vlm_pretrained="none",
            student="mobilenetv2",
            teacher="regnety_016",
            method="dait_f",
            stage1_epochs=1,
            stage2_epochs=1,
            img_size=224,
            batch_size=16,
            device=self.device,
            pretrained=False,
            progress=False,
            vlm_views="0",
            out=str(self.folder / "runs" / name),
            teacher_cache=str(self.folder / "teachers" / name),
            cache_dir=str(self.cache_dir),
        )
        return DistillConfig(**{**values, **overrides})


def _finite_metrics(run_dir: Path) -> str:
    import math

    from dait_edge.records import read_metrics

    lines = read_metrics(run_dir / "metrics.jsonl")
    bad = [(m.stage, k) for m in lines for k, v in m.losses.items() if not math.isfinite(v)]
    if bad:
        raise AssertionError(f"non-finite losses {bad}")
    return ", ".join(f"stage {m.stage}: loss {m.losses['loss']:.3f}" for m in lines)


def check_stages_live(ws: Workspace) -> str:
    import torch

    from dait_edge.distill import run_distill
    from dait_edge.engine.precision import autocast_dtype_for

    device = torch.device(ws.device)
    dtype = autocast_dtype_for(device)
    summary = run_distill(ws.config("live"))
    assert summary.completed, "the run did not complete"
    ws.runs["live"] = Path(summary.run_dir)
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    return (
        f"autocast {str(dtype).removeprefix('torch.')}, stage 1 {summary.stage1_seconds:.1f} s, stage 2"
        f" {summary.stage2_seconds:.1f} s, peak {peak:.1f} GiB; {_finite_metrics(Path(summary.run_dir))}"
    )


def check_cache_build(ws: Workspace) -> str:
    from dait_edge.distill import run_distill
    from dait_edge.vlm.cache import cache_root, list_caches

    summary = run_distill(ws.config("cached", vlm_views="auto", stages="1"))
    assert summary.completed and summary.vlm_views == 1, summary
    (cache,) = [c for c in list_caches(cache_root(ws.cache_dir)) if c.info.views == 1]
    assert cache.complete, "the cache is not complete"
    return (
        f"built {cache.info.images} x {cache.info.views} views in {summary.cache_seconds:.1f} s"
        f" ({cache.info.compute_dtype}), stage 1 on it {summary.stage1_seconds:.1f} s;"
        f" {_finite_metrics(Path(summary.run_dir))}"
    )


def check_ddp_nccl(ws: Workspace) -> str:
    out = ws.folder / "runs" / "ddp"
    args = [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "1",
        "-m",
        "dait_edge",
        "distill",
    ]
    args += [
        "--dataset",
        "imagefolder",
        "--data-root",
        str(ws.data_root),
        "--vlm",
        "RN50",
        "--vlm-pretrained",
    ]
    args += ["none", "--student", "resnet18", "--teacher", "resnet18", "--epochs", "1", "--img-size", "64"]
    args += ["--batch-size", "16", "--device", ws.device, "--no-pretrained", "--out", str(out), "--json"]
    args += ["--teacher-cache", str(ws.folder / "teachers" / "ddp"), "--vlm-views", "0", "--sync-bn"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(proc.stdout)
    assert summary["completed"], "the DDP run did not complete"
    from dait_edge.records import RunManifest

    hardware = RunManifest.read(out).hardware
    return f"world size {hardware.world_size} on {hardware.gpu}, {time.perf_counter() - started:.0f} s end to end"


def check_torch_runner(ws: Workspace) -> str:
    from dait_edge.profiling.api import profile_artifacts
    from dait_edge.profiling.profiles import PROFILES_DIR, load_profile

    run = ws.runs.get("live")
    if run is None:
        raise AssertionError("needs the stages-live run")
    # the shipped cuda-torch profile on this GPU, shorter
    text = (PROFILES_DIR / "cuda-torch.toml").read_text()
    text = text.replace('name = "cuda-torch"', 'name = "gpu-check-torch"')
    text = text.replace('providers = ["cuda"]', f'providers = ["{ws.device}"]')
    text = text.replace("iterations = 200", "iterations = 50").replace(
        'precision = "fp16"', 'precision = "bf16"'
    )
    path = ws.folder / "gpu-check-torch.toml"
    path.write_text(text)
    result = profile_artifacts([run], load_profile(str(path)), save=False, log=lambda m: None)
    backends = {row.backend for row in result.rows}
    expected = {"torch-eager", "torch-eager-cudagraph", "torch-compiled"}
    assert expected <= backends, f"missing {sorted(expected - backends)} (skipped: {result.skipped})"
    p50 = {(r.backend, r.batch): r.latency_ms.p50 for r in result.rows}
    return ", ".join(f"{b} batch {n}: {ms:.2f} ms" for (b, n), ms in sorted(p50.items()))


def check_bench_stage1(ws: Workspace) -> str:
    out = ws.folder / "bench_stage1.json"
    command = [
        sys.executable,
        str(REPO / "tools" / "bench_stage1.py"),
        "--device",
        ws.device,
        "--img-size",
        "224",
    ]
    command += [
        "--vlm-size",
        "256",
        "--images",
        "96",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--json",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    if proc.returncode != 0:
        raise AssertionError(
            f"bench_stage1 exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
        )
    print(proc.stdout, end="")
    ratios = json.loads(out.read_text())["ratios"]
    return ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())


RUNS = {
    "stages-live": check_stages_live,
    "cache-build": check_cache_build,
    "ddp-nccl": check_ddp_nccl,
    "torch-runner": check_torch_runner,
    "bench-stage1": check_bench_stage1,
}


def main(argv=None) -> int:
    args = parse_args(argv)
    checks = CHECKS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(RUNS))
        if unknown:
            print(
                f"error: unknown checks {', '.join(unknown)}; choose from {', '.join(RUNS)}", file=sys.stderr
            )
            return 2
        checks = [c for c in CHECKS if c.name in names]
    if args.dry_run:
        return dry_run(checks)
    sys.path.insert(0, str(REPO))
    import torch

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ws = Workspace(Path(tmp), args.device, args.images) if _cuda_available() else None
        for check in checks:
            missing = missing_modules(check)
            if missing or ws is None:
                check.result = {
                    "status": "SKIP",
                    "detail": f"missing {missing}" if missing else "no CUDA GPU",
                }
            else:
                began = time.perf_counter()
                try:
                    detail = RUNS[check.name](ws)
                    check.result = {"status": "PASS", "detail": detail}
                except Exception as err:  # noqa: BLE001 - one line per check, the next check still runs
                    last = traceback.format_exception_only(type(err), err)[-1].strip()
                    check.result = {"status": "FAIL", "detail": last[:400]}
                check.result["seconds"] = round(time.perf_counter() - began, 1)
            r = check.result
            print(
                f"{r['status']:<4} {check.name:<13} {r.get('seconds', 0):6.1f} s  {r['detail']}", flush=True
            )
    gpu = torch.cuda.get_device_name(args.device) if torch.cuda.is_available() else None
    summary = {
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "seconds": round(time.perf_counter() - started, 1),
        "checks": {c.name: c.result for c in checks},
        "passed": all(c.result["status"] == "PASS" for c in checks),
    }
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
