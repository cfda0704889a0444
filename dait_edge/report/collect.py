"""`collect_rows`: profile rows from run folders, folders of runs and `dait-edge profile --json` files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.profiling.api import read_result, run_summary_of

# Where `dait-edge profile` saves rows: RUN/profile/PROFILE.json, RUN being SOURCE, a child, or a grandchild.
PROFILE_GLOBS = ("profile/*.json", "*/profile/*.json", "*/*/profile/*.json")
FIRST_STEP = "run `dait-edge profile RUN/export --profile NAME` first"
# Precision order for the tables: fp32 first, then the formats that trade accuracy for speed.
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "bf16": 1, "int8": 2}


@dataclass
class Collected:
    rows: list[dict] = field(default_factory=list)
    measured: dict[str, list[dict]] = field(default_factory=dict)  # profile -> its distinct measured blocks
    files: list[str] = field(default_factory=list)  # the profile results read


def collect_rows(sources: list[str | Path]) -> list[dict]:
    """Every profile row under `sources`, with profile, run_dir, torch_top1 and hardware attached."""
    return collect(sources).rows


def collect(sources: list[str | Path]) -> Collected:
    """Like `collect_rows`, also keeping how each profile was measured (for the report header)."""
    if not sources:
        raise UserError(
            f"no sources given; pass run folders, a folder of runs or profile JSON files ({FIRST_STEP})."
        )
    collected = Collected()
    kept: dict[tuple, tuple[float, dict]] = {}  # _row_key -> (when measured, row)
    for source in map(Path, sources):
        for path, result in _profile_results(source):
            collected.files.append(str(path))
            measured = result["measured"]
            blocks = collected.measured.setdefault(_profile_name(measured, path), [])
            if measured not in blocks:
                blocks.append(measured)
            created = _timestamp(measured.get("created"))
            for row in annotate_rows(result["rows"], measured, path=path):
                key = _row_key(row)
                # The same row read twice (a run folder and its --json dump): keep the newer measurement.
                if key not in kept or created > kept[key][0]:
                    kept[key] = (created, row)
    if not kept:
        raise UserError(
            f"the profile results in {', '.join(map(str, sources))} hold no rows; {FIRST_STEP}"
            " (it needs exported artifacts the profile targets)."
        )
    collected.rows = sorted((row for _, row in kept.values()), key=_table_order)
    return collected


def annotate_rows(rows: list[dict], measured: dict, *, path: Path | None = None) -> list[dict]:
    """Copies of `rows` with profile, run_dir, torch_top1, latency_budget_ms and a short hardware string."""
    profile = _profile_name(measured, path)
    if "latency_budget_ms" in measured:  # recorded at measurement, null when the profile had none
        budget = measured["latency_budget_ms"]
    else:  # results saved before the budget was recorded: the profile file may still say
        budget = _budget_from_profile_file(measured.get("profile_file"))
    saved_in_run = _run_holding(path) if path else None
    hardware = short_hardware(measured.get("hardware") or {})
    annotated = []
    for row in rows:
        run_dir, summary = saved_in_run or _run_of_artifact(row.get("artifact"))
        new = dict(row)
        new["profile"] = row.get("profile") or profile
        if not isinstance(new.get("model"), (str, type(None))):  # hand-written JSON: keep it hashable
            new["model"] = str(new["model"])
        new["run_dir"] = new.get("run_dir") or (str(run_dir) if run_dir else None)
        if new.get("torch_top1") is None:
            new["torch_top1"] = summary.get("student_top1")
        for key in ("params", "macs"):
            if new.get(key) is None:
                new[key] = summary.get(key)
        if new.get("latency_budget_ms") is None:
            new["latency_budget_ms"] = budget
        new["hardware"] = hardware
        annotated.append(new)
    return annotated


def machine_name(hardware: dict) -> str:
    """The CPU model as /proc/cpuinfo names it (else the architecture), plus the GPU where there is one."""
    name = str(
        hardware.get("cpu") or hardware.get("processor") or hardware.get("machine") or "unknown machine"
    )
    return f"{name} with {hardware['gpu']}" if hardware.get("gpu") else name


def short_hardware(hardware: dict) -> str:
    """e.g. 'AMD EPYC, 2 CPUs, onnxruntime 1.32.0' (the GPU too, when the profile ran on one)."""
    parts = [machine_name(hardware)]
    if hardware.get("cpu_count"):
        parts.append(f"{hardware['cpu_count']} CPUs")
    parts += [f"{name} {hardware[name]}" for name in ("onnxruntime", "tensorrt") if hardware.get(name)]
    return ", ".join(parts)


def _profile_results(source: Path) -> list[tuple[Path, dict]]:
    if not source.exists():
        raise UserError(
            f"{source} does not exist; pass a run folder, a folder of runs or a profile JSON file ({FIRST_STEP})."
        )
    if source.is_file():
        return [(source, _read_profile_result(source))]
    found = sorted({path for pattern in PROFILE_GLOBS for path in source.glob(pattern) if path.is_file()})
    if source.name == "profile":
        found = sorted(set(found) | {path for path in source.glob("*.json") if path.is_file()})
    # Files found by looking are skipped when they are something else; files named on the command line are not.
    results = [(path, result) for path in found if (result := _read_profile_result(path, strict=False))]
    if results:
        return results
    if (source / "summary.json").is_file():
        raise UserError(
            f"run {source} has no profile results ({source}/profile/*.json);"
            f" run `dait-edge profile {source}/export --profile NAME` first."
        )
    raise UserError(
        f"no profile results under {source} (looked for {', '.join(PROFILE_GLOBS)});"
        f" {FIRST_STEP}, or pass the JSON file `dait-edge profile --json` printed."
    )


def _read_profile_result(path: Path, strict: bool = True) -> dict | None:
    result = read_result(path)
    if result is not None or not strict:
        return result
    try:  # say why: not JSON at all, or JSON of another shape
        json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot read {path} as JSON ({' '.join(str(err).split())}); pass the file `dait-edge profile --json`"
            " printed or RUN/profile/PROFILE.json."
        ) from None
    raise UserError(
        f'{path} is not a profile result (expected {{"measured": {{...}}, "rows": [...]}});'
        " pass the file `dait-edge profile --json` printed or RUN/profile/PROFILE.json."
    )


def _profile_name(measured: dict, path: Path | None) -> str | None:
    return measured.get("profile") or (path.stem if path else None)


def _run_holding(path: Path) -> tuple[Path, dict] | None:
    """RUN and its summary, for a result saved as RUN/profile/PROFILE.json."""
    run_dir = path.parent.parent
    if path.parent.name == "profile" and (run_dir / "summary.json").is_file():
        return run_dir, _read_summary(run_dir / "summary.json")
    return None


def _run_of_artifact(artifact) -> tuple[Path | None, dict]:
    # Artifact paths are as given to `dait-edge profile`: look only when the path still leads somewhere.
    if artifact and Path(artifact).exists():
        try:
            return run_summary_of(Path(artifact))
        except (OSError, json.JSONDecodeError):
            return None, {}
    return None, {}


def _read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # a run summary only adds context (PyTorch top-1, params); the rows stand without it
    return summary if isinstance(summary, dict) else {}


def _budget_from_profile_file(profile_file) -> float | None:
    if not profile_file or not Path(profile_file).is_file():
        return None
    import tomllib

    try:
        return tomllib.loads(Path(profile_file).read_text()).get("latency_budget_ms")
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _row_key(row: dict) -> tuple:
    """One measurement: the same file of the same model at one batch size, on one profile and machine. Files
    of two runs can share a path on a device (each copied as export/), and two boards one profile name."""
    artifact = row.get("artifact")
    if artifact and Path(artifact).exists():
        artifact = str(Path(artifact).resolve())
    return (
        row.get("profile"),
        row.get("hardware"),
        row.get("model"),  # not the run folder: a --json dump of a run's rows has none, and is the same rows
        artifact,
        row.get("backend"),
        row.get("batch"),
    )


def _timestamp(created) -> float:
    """Seconds since the epoch of a `created` stamp (%Y-%m-%dT%H:%M:%S%z); 0 when missing or unreadable."""
    from datetime import datetime

    try:
        return datetime.strptime(str(created), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return 0.0


def _table_order(row: dict) -> tuple:
    return (
        str(row.get("profile") or ""),
        str(row.get("student") or ""),
        PRECISION_ORDER.get(str(row.get("precision")), 3),
        str(row.get("format") or ""),
        str(row.get("artifact") or ""),
        row.get("batch") or 0,
    )
