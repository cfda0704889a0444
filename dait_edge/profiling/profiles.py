"""Target profiles: TOML files in the top-level profiles/ folder, named or given as a path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.utils.io import read_toml
from dait_edge.utils.shipped import shipped_dir

PROFILES_DIR = shipped_dir("profiles")  # the top-level profiles/ (or a wheel's copy of it)
RUNTIMES = ("onnxruntime", "tensorrt", "torch")


@dataclass(frozen=True)
class Profile:
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


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name_or_path: str) -> Profile:
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise UserError(
            f"unknown profile {name_or_path!r}; use one of {', '.join(available_profiles())} or a path to a .toml file."
        )
    data = read_toml(path, "profile", "fix the TOML.")
    known = {f for f in Profile.__dataclass_fields__ if f not in ("source", "extra")}
    values = {k: v for k, v in data.items() if k in known}
    missing = [k for k in ("name", "runtime") if k not in values]
    if missing:
        raise UserError(f"profile {path} lacks {', '.join(missing)}; see profiles/x86-ort-cpu-fp32.toml.")
    if values["runtime"] not in RUNTIMES:
        raise UserError(f"profile {path}: runtime {values['runtime']!r} is not one of {', '.join(RUNTIMES)}.")
    for key in ("providers", "formats", "batch_sizes"):
        if key in values:
            values[key] = tuple(values[key])
    values.setdefault("description", "")
    values.setdefault("device", "")
    values.setdefault("providers", ())
    values.setdefault("formats", ())
    if any(b < 1 for b in values.get("batch_sizes", (1,))) or values.get("iterations", 1) < 1:
        raise UserError(f"profile {path}: batch sizes and iterations must be at least 1.")
    extra = {k: v for k, v in data.items() if k not in known}
    return Profile(**values, source=str(path), extra=extra)
