"""`Profile`: a target profile as the runners and the profiler read it (runtime, providers, threads,
batch sizes, timing, latency budget). A leaf: `profiles.py` loads it from TOML, runners only read it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    """Where and how artifacts are measured: a profiles/*.toml file (its runner's own keys in `extra`)."""

    name: str
    description: str
    device: str
    runtime: str
    providers: tuple[str, ...]
    formats: tuple[str, ...]
    threads: int = 0
    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 10
    iterations: int = 50
    duration_s: float = 0.0
    latency_budget_ms: float | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
