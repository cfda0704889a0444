"""What a profile measures, found from the paths given: ONNX files, TensorRT engines or distill runs.

Reads JSON only (sidecars, run summaries), so finding artifacts needs neither torch nor a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.profiling.profiles import Profile

# Artifact files per runtime; the torch runtime measures runs (their student checkpoint) instead.
SUFFIXES = {"onnxruntime": (".onnx",), "tensorrt": (".engine", ".plan")}
RUN_SUMMARY = "summary.json"


def read_sidecar(artifact: Path) -> dict:
    """The sidecar JSON beside an exported artifact (student.onnx -> student.json)."""
    path = artifact.with_suffix(".json")
    if not path.is_file():
        raise UserError(f"{artifact} has no sidecar {path.name}; export it with `dait-edge export`.")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read the sidecar {path}: {err}; re-export the artifact.") from None


def _summary(folder: Path) -> dict | None:
    path = folder / RUN_SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_run_dir(folder: Path) -> bool:
    """A distill run: its summary.json lists checkpoints (an export's summary.json does not)."""
    summary = _summary(folder)
    return summary is not None and (
        isinstance(summary.get("checkpoints"), dict) or (folder / "manifest.json").is_file()
    )


def run_summary_of(artifact: Path) -> tuple[Path | None, dict]:
    """The distill run an artifact (or checkpoint) came from, and its summary, if it lives inside one."""
    for parent in Path(artifact).resolve().parents:
        if is_run_dir(parent):
            return parent, _summary(parent) or {}
    return None, {}


def _has_student(run: Path) -> bool:
    return bool(((_summary(run) or {}).get("checkpoints") or {}).get("student"))


def _runs_for(folder: Path) -> list[Path]:
    """A run; else the runs below (a runs/ folder); else the run above (RUN/export, RUN/stage2)."""
    if is_run_dir(folder):
        return [folder]
    below = sorted(
        p.parent for p in folder.rglob(RUN_SUMMARY) if is_run_dir(p.parent) and _has_student(p.parent)
    )
    if below:
        return below
    owner, _ = run_summary_of(folder / RUN_SUMMARY)  # the parents of a path inside `folder`
    return [owner] if owner else []


def _files_for(folder: Path, profile: Profile) -> list[Path]:
    found = []
    for suffix in SUFFIXES[profile.runtime]:
        for candidate in sorted(folder.rglob(f"*{suffix}")):
            sidecar = candidate.with_suffix(".json")
            if not sidecar.is_file():
                continue  # a build in progress, or a file export did not write
            try:
                fmt = json.loads(sidecar.read_text()).get("format")
            except (OSError, json.JSONDecodeError):
                continue
            if not profile.formats or fmt in profile.formats:
                found.append(candidate)
    return found


def _given_file(path: Path, profile: Profile) -> Path:
    if profile.runtime == "torch":
        if path.suffix != ".safetensors":
            raise UserError(
                f"{path} is not a student checkpoint; profile {profile.name} measures PyTorch: pass a run"
                " directory (holding summary.json) or its student .safetensors file."
            )
    elif path.suffix not in SUFFIXES[profile.runtime]:
        wanted = " or ".join(SUFFIXES[profile.runtime])
        raise UserError(
            f"{path} is not a {wanted} file, which profile {profile.name} ({profile.runtime}) measures;"
            " pass those artifacts, the folder that holds them, or pick a profile for this file."
        )
    return path


def find_artifacts(paths: list[str | Path], profile: Profile) -> list[Path]:
    """Files as given; folders contribute what the profile's runtime measures, in the formats it targets."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(_given_file(path, profile))
        elif path.is_dir():
            found += _runs_for(path) if profile.runtime == "torch" else _files_for(path, profile)
        else:
            raise UserError(f"{path} does not exist; pass exported artifacts or the folder that holds them.")
    unique, seen = [], set()
    for path in found:  # a file given and found again in its folder is measured once
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    if not unique:
        what = "distill runs (summary.json with a student)" if profile.runtime == "torch" else "artifacts"
        first = "`dait-edge distill`" if profile.runtime == "torch" else "`dait-edge export`"
        raise UserError(
            f"no {what} for profile {profile.name} (formats {', '.join(profile.formats)}) under"
            f" {', '.join(map(str, paths))}; run {first} first."
        )
    return unique
