"""Rows from a runtime's own benchmark binary run on a phone (adb), for `dait-edge report`.

On Android neither Python runtime is at hand; each runtime ships a native benchmark instead:

- LiteRT's `benchmark_model` (`adb shell /data/local/tmp/benchmark_model --graph=student-litert-int8.tflite
  --num_threads=4`) prints, in microseconds, `count=50 first=.. curr=.. min=.. max=.. avg=.. std=..` (newer
  builds add `p5=.. median=.. p95=..`) for its warm-up and then its timed runs, and a memory line.
- ExecuTorch's `executor_runner` (`--model_path=student-executorch-int8.pte --num_executions=50`) prints
  `Model executed successfully 50 time(s) in 612.3 ms.`: a mean only.

`rows_from_log` reads such output into the profile rows `dait-edge profile` writes, so that `report` puts the
phone's figures beside the workstation's and applies the same rule. What the binary does not give is said
in the row's note, never invented: p90 and p99 are the log's p95 and max (upper bounds) for LiteRT, and
every percentile is the mean for ExecuTorch. No top-1: the binary feeds random inputs; the rule then falls
back on export parity.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.profiling.target import Profile
from dait_edge.records import Hardware, Latency, Measured, ProfileResult, ProfileRow, Sidecar

_COUNT = re.compile(r"count=(\d+)\s+first=([\d.e+]+).*?min=([\d.e+]+)\s+max=([\d.e+]+)\s+avg=([\d.e+]+)(.*)")
_MEDIAN = re.compile(r"\bp5=([\d.e+]+)\s+median=([\d.e+]+)\s+p95=([\d.e+]+)")
_THREADS = re.compile(r"Num threads:\s*\[(\d+)\]")
_GRAPH = re.compile(r"Graph:\s*\[([^\]]+)\]")
_MEMORY = re.compile(
    r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):.*overall=([\d.e+]+)"
)
_EXECUTED = re.compile(r"Model executed successfully (\d+) time\(s\) in ([\d.e+]+) ms")
_MODEL_PATH = re.compile(r"(?:Model file|model_path)\W+(\S+\.pte)")


@dataclass
class LogTiming:
    latency: Latency
    tool: str
    threads: int | None
    peak_mem_mb: float | None
    model_file: str | None  # the file the log names, if it does
    note: str


def parse_litert(text: str) -> LogTiming | None:
    """LiteRT's benchmark_model output; None when the text has no timed-run line."""
    runs = [m for m in map(_COUNT.search, text.splitlines()) if m]
    if not runs:
        return None
    last = runs[-1]  # the warm-up line comes first, the timed runs last
    count, lo, hi, avg = int(last.group(1)), float(last.group(3)), float(last.group(4)), float(last.group(5))
    spread = _MEDIAN.search(last.group(6))
    if spread:
        p50, p95 = float(spread.group(2)), float(spread.group(3))
        note = "LiteRT benchmark_model log: p50 is its median, p90 its p95, p99 its max (upper bounds)"
    else:
        p50, p95 = avg, hi
        note = "LiteRT benchmark_model log without percentiles: p50 is its mean, p90 and p99 its max"
    latency = Latency(mean=avg / 1e3, p50=p50 / 1e3, p90=p95 / 1e3, p99=hi / 1e3, min=lo / 1e3, samples=count)
    threads = _THREADS.search(text)
    memory = _MEMORY.search(text)
    graph = _GRAPH.search(text)
    return LogTiming(
        latency,
        "LiteRT benchmark_model",
        int(threads.group(1)) if threads else None,
        float(memory.group(1)) if memory else None,
        graph.group(1).strip() if graph else None,
        note,
    )


def parse_executorch(text: str) -> LogTiming | None:
    """ExecuTorch executor_runner output; None when the text has no "executed successfully ... ms" line."""
    found = _EXECUTED.search(text)
    if not found:
        return None
    count, total = int(found.group(1)), float(found.group(2))
    if count < 1 or total <= 0:
        return None  # no timed execution: not a result
    mean = total / count
    latency = Latency(mean=mean, p50=mean, p90=mean, p99=mean, min=mean, samples=count)
    model = _MODEL_PATH.search(text)
    return LogTiming(
        latency,
        "ExecuTorch executor_runner",
        None,
        None,
        model.group(1) if model else None,
        f"ExecuTorch executor_runner log: the mean of {count} executions stands for every percentile",
    )


PARSERS = {"litert": parse_litert, "executorch": parse_executorch}


def rows_from_log(
    artifact: str | Path, profile: Profile, log_file: str | Path, device: str
) -> tuple[ProfileResult, Path | None]:
    """One row (batch 1) for `artifact` from a benchmark binary's output in `log_file`, measured on `device`,
    and the run the artifact lives in (None outside a run)."""
    artifact, log_file = Path(artifact), Path(log_file)
    parse = PARSERS.get(profile.runtime)
    if parse is None:
        raise UserError(
            f"--from-log reads the benchmark output of {' and '.join(PARSERS)}; profile {profile.name} runs"
            f" {profile.runtime}: pick an arm64-executorch-* or arm64-litert-* profile."
        )
    if not log_file.is_file():
        raise UserError(
            f"{log_file} does not exist; save the benchmark's output (adb shell ... > {log_file.name})."
        )
    sidecar = Sidecar.verified_for(artifact)
    if sidecar.runtime != profile.runtime:
        raise UserError(
            f"{artifact.name} is a {sidecar.runtime} file, but profile {profile.name} measures {profile.runtime}"
            " files; pick the profile of its runtime."
        )
    timing = parse(log_file.read_text(errors="replace"))
    if timing is None:
        raise UserError(
            f"{log_file} holds no {profile.runtime} benchmark result (no timed-run line); pass the complete"
            " output of the benchmark binary."
        )
    if timing.model_file and Path(timing.model_file).name != artifact.name:
        raise UserError(
            f"{log_file} measured {Path(timing.model_file).name}, not {artifact.name}; pass the artifact the log"
            " is about."
        )
    from dait_edge.records.layout import run_summary_of

    run_dir, summary = run_summary_of(artifact)
    threads = timing.threads if timing.threads is not None else profile.threads
    measured = Measured(
        profile=profile.name,
        profile_file=profile.source,
        runtime=profile.runtime,
        threads=threads or "runtime default",
        warmup=0,
        iterations=timing.latency.samples,
        duration_s=0,
        latency_budget_ms=profile.latency_budget_ms,
        timing=f"{timing.tool} on the device itself (its own clock and warm-up), batch 1",
        memory="the benchmark binary's memory footprint (MB), where it prints one",
        hardware=Hardware(
            machine=device,
            processor="",
            cpu=device,
            cpu_count=None,
            platform=f"device, read from {timing.tool} output",
            versions={},
        ),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    latency = timing.latency
    row = ProfileRow(
        artifact=str(artifact.resolve()),
        profile=profile.name,
        format=sidecar.format,
        student=sidecar.student,
        model=sidecar.model,
        dataset=sidecar.dataset,
        method=sidecar.method,
        backend=profile.runtime,
        label=sidecar.format,
        reference=False,
        providers=[timing.tool],
        precision=sidecar.precision,
        batch=1,
        latency_ms=latency,
        throughput_ips=1e3 / latency.mean,
        peak_mem_mb=timing.peak_mem_mb,
        device_mem_mb=None,
        size_mb=artifact.stat().st_size / 1e6,
        params=summary.params if summary else None,
        macs=summary.macs if summary else None,
        top1=None,  # the binary feeds random inputs
        top1_data=None,
        torch_top1=summary.student_top1 if summary else sidecar.student_top1,
        parity_passed=sidecar.parity.passed if sidecar.parity else None,
        within_budget=None if profile.latency_budget_ms is None else latency.p99 <= profile.latency_budget_ms,
        note=timing.note,
    )
    return ProfileResult(measured=measured, rows=[row]), run_dir
