"""manifest.json: how a run was made (its resolved config, package versions, git commit, machine)."""

from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch

from dait_edge.records import DistillConfig, RunManifest, TrainingHardware

PACKAGES = ("dait-edge", "torch", "torchvision", "timm", "open_clip_torch", "numpy", "safetensors")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if versions["dait-edge"] is None:  # run from a checkout that was never pip-installed
        from dait_edge import __version__

        versions["dait-edge"] = __version__
    return versions


def git_commit() -> str | None:
    """The commit of the dait-edge checkout, when it runs from one."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def hardware(device: torch.device, world_size: int) -> TrainingHardware:
    return TrainingHardware(
        platform=platform.platform(),
        python=platform.python_version(),
        cpu=platform.processor() or platform.machine(),
        cpu_count=torch.get_num_threads(),
        device=str(device),
        world_size=world_size,
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    )


def write_manifest(
    run_dir: Path, config: DistillConfig, device: torch.device, world_size: int, skipped: list[str] = ()
) -> None:
    RunManifest(
        config=config,
        seed=config.seed,
        versions=package_versions(),
        git_commit=git_commit(),
        hardware=hardware(device, world_size),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        skipped_images=list(skipped),
    ).write(run_dir)
