"""Target profiles: TOML files in the top-level profiles/ folder, named or given as a path, read into a
`target.Profile` and checked against the runtime's runner."""

from __future__ import annotations

from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.profiling.runner import runner_for, runners
from dait_edge.profiling.target import Profile
from dait_edge.utils.io import read_toml
from dait_edge.utils.shipped import shipped_dir

PROFILES_DIR = shipped_dir("profiles")  # the top-level profiles/ (or a wheel's copy of it)


def _is_int(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_number(value, least: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= least


def _is_strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# Each common key: (its check, how to say what it must be).
KINDS = {
    "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "device": (lambda v: isinstance(v, str), "a string"),
    "runtime": (lambda v: v in _runtimes(), "one of {runtimes}"),
    "providers": (_is_strings, 'a list of strings, e.g. ["CPUExecutionProvider"]'),
    "formats": (_is_strings, 'a list of strings, e.g. ["onnx-int8-u8s8", "onnx-fp32"]'),
    "threads": (lambda v: _is_int(v, 0), "an integer, 0 for the runtime's default"),
    "batch_sizes": (
        lambda v: isinstance(v, list) and v != [] and all(_is_int(b, 1) for b in v),
        "a list of integers of at least 1, e.g. [1, 8]",
    ),
    "warmup": (lambda v: _is_int(v, 0), "an integer of at least 0"),
    "iterations": (lambda v: _is_int(v, 1), "an integer of at least 1"),
    "duration_s": (lambda v: _is_number(v, 0), "a number of seconds of at least 0"),
    "latency_budget_ms": (lambda v: _is_number(v, 0) and v > 0, "a positive number of milliseconds"),
}


def _runtimes() -> list[str]:
    return sorted(runners())


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
    for key, value in values.items():
        if not KINDS[key][0](value):
            what = KINDS[key][1].format(runtimes=", ".join(_runtimes()))
            raise UserError(f"profile {path}: {key} must be {what}, not {value!r}.")
    for key in ("providers", "formats", "batch_sizes"):
        if key in values:
            values[key] = tuple(values[key])
    values.setdefault("description", "")
    values.setdefault("device", "")
    values.setdefault("providers", ())
    values.setdefault("formats", ())
    extra = {k: v for k, v in data.items() if k not in known}
    own = runner_for(values["runtime"]).profile_keys
    unknown = sorted(set(extra) - set(own))
    if unknown:  # a misspelt key would otherwise be measured with its default, silently
        raise UserError(
            f"profile {path} has unknown key(s) {', '.join(unknown)}; a {values['runtime']} profile takes"
            f" {', '.join([*KINDS, *own])}: fix the spelling or remove them."
        )
    return Profile(**values, source=str(path), extra=extra)
