"""Single-stream timing (MLPerf style): warm up, then one request at a time, percentiles of the rest."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dait_edge.records import Latency


@dataclass
class Timed:
    """One way of running an artifact at one batch size, ready for `measure`; `skip` says why it cannot."""

    run_once: Callable[[], object] | None
    backend: str
    sync: Callable[[], None] | None = None  # waits for the device; None on the CPU
    note: str = ""
    skip: str = ""


def measure(
    run_once: Callable[[], object],
    *,
    warmup: int,
    iterations: int,
    duration_s: float = 0.0,
    sync: Callable[[], None] | None = None,
) -> Latency:
    """Latency statistics in ms of `run_once`; `sync` waits for a device (GPU) before each clock read."""
    for _ in range(warmup):
        run_once()
    if sync:
        sync()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < iterations or (duration_s > 0 and time.perf_counter() - started < duration_s):
        t0 = time.perf_counter()
        run_once()
        if sync:
            sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    return summarise(samples)


MAX_KEPT_SAMPLES = 2000  # samples a row keeps for the noise test (every k-th of a long run)


def summarise(samples_ms: list[float]) -> Latency:
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return Latency(
        mean=float(values.mean()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        min=float(values.min()),
        samples=int(values.size),
        values=[round(float(v), 4) for v in values[:: max(1, -(-values.size // MAX_KEPT_SAMPLES))]],
    )
