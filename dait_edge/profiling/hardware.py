"""The machine a profile ran on, in the words a reader needs to compare figures: CPU, cores, versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from dait_edge.records import Hardware


def cpu_model() -> str:
    """'Intel(R) Xeon(R) Platinum 8480+', 'Raspberry Pi 5 Model B', 'NVIDIA Jetson Orin Nano ...'."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        info = ""
    for key in ("model name", "Model"):  # x86 names the CPU; ARM boards name the board
        for line in info.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    tree = Path("/proc/device-tree/model")  # Jetson and other device-tree boards
    if tree.is_file():
        return tree.read_text(errors="replace").strip("\x00 \n")
    return platform.processor() or platform.machine()


def hardware(versions: dict[str, str] | None = None) -> Hardware:
    """The host, plus the runtime versions (and "gpu") the chosen runner's `require` reports."""
    versions = dict(versions or {})
    return Hardware(
        machine=platform.machine(),
        processor=platform.processor() or platform.machine(),
        cpu=cpu_model(),
        cpu_count=os.cpu_count(),
        platform=platform.platform(),
        gpu=versions.pop("gpu", None),
        versions=versions,
    )
