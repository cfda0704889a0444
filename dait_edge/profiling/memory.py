"""Peak resident memory of the profiling process, per artifact where the OS allows resetting it.

getrusage's ru_maxrss only grows, so every row after the first would carry the biggest model seen so
far; on Linux writing "5" to /proc/self/clear_refs resets the peak (VmHWM) before each artifact loads.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Start a new peak from the current resident size; False where the OS has no such control."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The peak resident set size in MB (1e6 bytes): since the last reset on Linux, since start elsewhere."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # the kernel reports kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, KiB on Linux
