"""`collect_rows`: profile rows from run folders, folders of runs and `dait-edge profile --json` files."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.records import (
    Hardware,
    Measured,
    ProfileResult,
    ProfileRow,
    RecordError,
    RunLayout,
    RunSummary,
    read_result,
)
from dait_edge.records.layout import PROFILE_RESULTS, profile_results_under, run_summary_of

FIRST_STEP = "run `dait-edge profile RUN/export --profile NAME` first"
# Precision order for the tables: fp32 first, then the formats that trade accuracy for speed.
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "bf16": 1, "int8": 2}


@dataclass
class Collected:
    rows: list[ProfileRow] = field(default_factory=list)
    measured: dict[str, list[Measured]] = field(default_factory=dict)  # profile -> its distinct blocks
    files: list[str] = field(default_factory=list)  # the profile results read


def collect_rows(sources: list[str | Path]) -> list[ProfileRow]:
    """Every profile row under `sources`, with profile, run_dir, torch_top1 and hardware attached."""
    return collect(sources).rows


def collect(sources: list[str | Path]) -> Collected:
    """Like `collect_rows`, also keeping how each profile was measured (for the report header)."""
    if not sources:
        raise UserError(
            f"no sources given; pass run folders, a folder of runs or profile JSON files ({FIRST_STEP})."
        )
    collected = Collected()
    kept: dict[tuple, tuple[float, ProfileRow]] = {}  # _row_key -> (when measured, row)
    for source in map(Path, sources):
        for path, result in _profile_results(source):
            collected.files.append(str(path))
            blocks = collected.measured.setdefault(result.measured.profile, [])
            if result.measured not in blocks:
                blocks.append(result.measured)
            created = _timestamp(result.measured.created)
            for row in annotate_rows(result.rows, result.measured, path=path):
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


def annotate_rows(
    rows: list[ProfileRow], measured: Measured, *, path: Path | None = None
) -> list[ProfileRow]:
    """Copies of `rows` with profile, run_dir, torch_top1, params, macs, latency budget and a short hardware
    string filled in from where they were found."""
    saved_in_run = _run_holding(path) if path else None
    hardware = short_hardware(measured.hardware)
    annotated = []
    for row in rows:
        run_dir, summary = saved_in_run or _run_of_artifact(row.artifact)
        annotated.append(
            dataclasses.replace(
                row,
                profile=row.profile or measured.profile,
                run_dir=row.run_dir or (str(run_dir) if run_dir else None),
                torch_top1=row.torch_top1 if row.torch_top1 is not None else summary and summary.student_top1,
                params=row.params if row.params is not None else summary and summary.params,
                macs=row.macs if row.macs is not None else summary and summary.macs,
                latency_budget_ms=row.latency_budget_ms
                if row.latency_budget_ms is not None
                else measured.latency_budget_ms,
                hardware=hardware,
            )
        )
    return annotated


def machine_name(hardware: Hardware) -> str:
    """The CPU model as /proc/cpuinfo names it (else the architecture), plus the GPU where there is one."""
    name = hardware.cpu or hardware.processor or hardware.machine or "unknown machine"
    return f"{name} with {hardware.gpu}" if hardware.gpu else name


def short_hardware(hardware: Hardware) -> str:
    """e.g. 'AMD EPYC, 2 CPUs, onnxruntime 1.32.0' (the GPU too, when the profile ran on one)."""
    parts = [machine_name(hardware)]
    if hardware.cpu_count:
        parts.append(f"{hardware.cpu_count} CPUs")
    parts += [f"{name} {version}" for name, version in hardware.versions.items() if name in RUNTIME_VERSIONS]
    return ", ".join(parts)


# The runtimes whose version is part of a row's machine key: a choice never mixes two versions of one runtime.
RUNTIME_VERSIONS = ("onnxruntime", "tensorrt", "executorch", "ai-edge-litert")


def machine_of(short: str | None) -> str | None:
    """`short_hardware` without the runtime versions: the machine alone (choices across runtimes group by it)."""
    if short is None:
        return None
    return ", ".join(part for part in short.split(", ") if part.split(" ")[0] not in RUNTIME_VERSIONS)


def _profile_results(source: Path) -> list[tuple[Path, ProfileResult]]:
    if not source.exists():
        raise UserError(
            f"{source} does not exist; pass a run folder, a folder of runs or a profile JSON file ({FIRST_STEP})."
        )
    if source.is_file():
        return [(source, _read_named(source))]
    found = profile_results_under(source)
    # Files found by looking are skipped when they are something else; files named on the command line are not.
    results = [(path, result) for path in found if (result := read_result(path))]
    read = {path for path, _ in results}
    damaged = [path for path in found if path not in read and not _is_json(path)]  # rejects only
    for path in damaged if results else ():  # the others still make a report; say what was left out
        print(
            f"warning: skipped {path}: not valid JSON (cut short?); profile again to rewrite it",
            file=sys.stderr,
        )
    if results:
        return results
    if damaged:
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise UserError(
            f"profile result {damaged[0]}{more} is not valid JSON (damaged or cut short); run `dait-edge profile`"
            " again to rewrite it."
        )
    if RunSummary.path_in(source).is_file():
        layout = RunLayout(source)
        raise UserError(
            f"run {source} has no profile results ({layout.profiles}/*.json);"
            f" run `dait-edge profile {layout.export} --profile NAME` first."
        )
    raise UserError(
        f"no profile results under {source} (looked for {', '.join(PROFILE_RESULTS)});"
        f" {FIRST_STEP}, or pass the JSON file `dait-edge profile --json` printed."
    )


def _read_named(path: Path) -> ProfileResult:
    try:
        return ProfileResult.read(path)
    except RecordError as err:  # say which files it takes
        raise UserError(
            f"{err} (pass the file `dait-edge profile --json` printed, or RUN/profile/PROFILE.json)"
        ) from None


def _run_holding(path: Path) -> tuple[Path, RunSummary | None] | None:
    """RUN and its summary, for a result saved as RUN/profile/PROFILE.json."""
    run_dir = RunLayout.run_of_profile_result(path)
    return (run_dir, _summary_or_none(run_dir)) if run_dir is not None else None


def _run_of_artifact(artifact: str) -> tuple[Path | None, RunSummary | None]:
    # Artifact paths are as given to `dait-edge profile`: look only when the path still leads somewhere.
    if artifact and Path(artifact).exists():
        try:
            return run_summary_of(Path(artifact))
        except RecordError:
            return None, None
    return None, None


def _summary_or_none(run_dir: Path) -> RunSummary | None:
    try:
        return RunSummary.read_if_present(run_dir)
    except RecordError:
        return None  # a run summary only adds context (PyTorch top-1, params); the rows stand without it


def _row_key(row: ProfileRow) -> tuple:
    """One measurement: the same file of the same model at one batch size, on one profile and machine. Files
    of two runs can share a path on a device (each copied as export/), and two boards one profile name."""
    artifact = row.artifact
    if artifact and Path(artifact).exists():
        artifact = str(Path(artifact).resolve())
    # the model, not the run folder: a --json dump of a run's rows has none, and is the same rows
    return (row.profile, row.hardware, row.model, artifact, row.backend, row.batch)


def _timestamp(created: str) -> float:
    """Seconds since the epoch of a `created` stamp (%Y-%m-%dT%H:%M:%S%z); 0 when missing or unreadable."""
    from datetime import datetime

    try:
        return datetime.strptime(str(created), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return 0.0


def _table_order(row: ProfileRow) -> tuple:
    return (
        row.profile,
        str(row.student or ""),
        PRECISION_ORDER.get(row.precision, 3),
        row.format,
        row.artifact,
        row.batch,
    )


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True
