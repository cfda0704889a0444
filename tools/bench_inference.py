"""PyTorch eager against the exported artifacts, side by side, for the four students on this machine.

For each student (random weights: the figures are timings only; accuracies mean nothing; the normalisation
scales timm initialises to zero are set to 1, else litert-torch folds those residual branches away and times a
smaller network) an untrained run is written in a temp folder, exported to ONNX fp32 / fp16 / int8-u8s8 / int8-s8s8, and then measured at
batch 1 in one process, in rounds that alternate PyTorch eager and every artifact so that machine noise
hits them all alike. The best artifact is picked as `dait-edge profile` picks it (choose_best); the table
shows it against eager and against ONNX Runtime fp32.

Where the extras are installed, the same student is also lowered to ExecuTorch (.pte, XNNPACK) and LiteRT
(.tflite) in fp32 and int8, and those files join the rounds, each in its own runtime with the same thread
count; the rule then chooses across every runtime (`--mobile none` leaves them out, `--mobile litert` takes
one runtime).

Targets (from the issue): on a CPU, the chosen artifact at most 0.35x eager's batch-1 latency and never
slower than ONNX Runtime fp32. With --device cuda (on a CUDA machine): eager, CUDA graph replay,
torch.compile and, when TensorRT is installed, the fp16 engine from a CUDA graph, against 0.5 ms at batch 1.

    python tools/bench_inference.py                          # all students, 224 px, every core
    python tools/bench_inference.py --students resnet18 --threads 1 --iterations 50 --json bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

FORMATS = ("onnx-fp32", "onnx-fp16", "onnx-int8-u8s8", "onnx-int8-s8s8")
# The on-device runtimes' files (dait-edge[executorch], dait-edge[litert,litert-export]): runtime -> formats
MOBILE = {
    "executorch": ("executorch-fp32", "executorch-int8"),
    "litert": ("litert-fp32", "litert-int8"),
}
COLUMNS = {  # table heading -> format
    "ORT fp32": "onnx-fp32",
    "fp16": "onnx-fp16",
    "int8 u8s8": "onnx-int8-u8s8",
    "int8 s8s8": "onnx-int8-s8s8",
    "ET fp32": "executorch-fp32",
    "ET int8": "executorch-int8",
    "LiteRT fp32": "litert-fp32",
    "LiteRT int8": "litert-int8",
}
CPU_TARGET = 0.35  # chosen artifact / eager, batch 1
GPU_TARGET_MS = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--students",
        default="all",
        help="'all' (every registered student) or a comma list of names (any name `dait-edge distill` takes).",
    )
    parser.add_argument("--img-size", type=int, default=224, help="Input resolution (default 224).")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="Threads for torch and ORT.")
    parser.add_argument("--iterations", type=int, default=100, help="Timed requests per candidate.")
    parser.add_argument("--rounds", type=int, default=10, help="Alternations between candidates.")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: also the GPU figures."
    )
    parser.add_argument(
        "--precision", choices=("fp32", "fp16", "bf16"), default="fp16", help="GPU torch precision."
    )
    parser.add_argument("--json", type=Path, help="Also write every figure to this JSON file.")
    parser.add_argument("--keep", type=Path, help="Write the runs here (default: a temp folder, removed).")
    parser.add_argument(
        "--mobile",
        choices=("all", *MOBILE, "none"),
        default="all",
        help="Which on-device runtimes' files join the comparison (default all: ExecuTorch and LiteRT).",
    )
    args = parser.parse_args(argv)
    from dait_edge.errors import UserError
    from dait_edge.sweep import resolve_students

    try:
        args.students = resolve_students(args.students)  # the sweep's rule: `all` is the registry
    except UserError as err:
        parser.error(str(err))
    if min(args.threads, args.iterations, args.rounds, args.img_size) < 1:
        parser.error("--threads, --iterations, --rounds and --img-size must be positive")
    return args


# ------------------------------------------------------------------------------ a run without training


def make_run(folder: Path, student: str, data_root: Path, img_size: int) -> Path:
    """The files `dait-edge distill` leaves (summary, manifest, student weights), random weights."""
    from dait_edge.data import load_dataset
    from dait_edge.distill.untrained import write_untrained_run

    classes = load_dataset("imagefolder", data_root).classes
    return write_untrained_run(
        folder / f"run-{student}",
        student,
        dataset="imagefolder",
        data_root=data_root,
        classes=classes,
        img_size=img_size,
        fill_zero_scales=True,  # no converter may fold a zero-initialised residual branch away
    )


def export(run: Path, mobile: str = "all") -> list[str]:
    """fp32 + int8 in one export; fp16 on its own, so a parity failure there costs only fp16; each on-device
    runtime's pair in a folder of its own (export/<runtime>/: each export writes its own summary.json)."""
    from dait_edge.errors import UserError
    from dait_edge.export.api import export_run
    from dait_edge.records import RunLayout

    logging.getLogger().setLevel(logging.ERROR)  # the quantiser logs every tensor it leaves in float
    notes = []
    common = {"calib_samples": 16, "parity_samples": 48, "measure_speed": False, "log": lambda m: None}
    export_run(run, formats="onnx,onnx-int8", **common)
    try:
        export_run(run, formats="onnx-fp16", **common)
    except UserError as err:
        notes.append(f"onnx-fp16 not exported: {err}")
    for runtime, formats in MOBILE.items():
        if mobile not in ("all", runtime):
            continue
        try:  # its own export: a missing extra or a failed lowering costs only that runtime's columns
            export_run(run, formats=list(formats), out=RunLayout(run).export / runtime, **common)
        except UserError as err:
            notes.append(f"{runtime} not exported: {err}")
    return notes


# ------------------------------------------------------------------------------ side-by-side timing


def side_by_side(
    candidates: dict, iterations: int, rounds: int, warmup: int = 5, settle_s: float = 0.05
) -> dict[str, dict]:
    """Batch-1 latency of each candidate (name -> Timed), measured in alternating rounds.

    Each round runs every candidate for iterations/rounds requests, in an order rotated per round. After
    a switch the process sleeps `settle_s`, so the previous runtime's worker threads (PyTorch's OpenMP
    pool, ONNX Runtime's) stop spinning instead of competing for the cores, and the first request is
    untimed (caches belong to the previous candidate).
    """
    from dait_edge.profiling.timing import summarise

    def once(timed) -> float:
        start = time.perf_counter()
        timed.run_once()
        if timed.sync:
            timed.sync()
        return (time.perf_counter() - start) * 1e3

    for timed in candidates.values():
        for _ in range(warmup):
            once(timed)
    per_round = max(1, math.ceil(iterations / rounds))
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(settle_s)
            once(candidates[name])
            samples[name] += [once(candidates[name]) for _ in range(per_round)]
    return {name: summarise(values) for name, values in samples.items()}


def mobile_profile(runtime: str, threads: int):
    """A profile for the on-device runtime's runner: the same threads as torch and ORT, batch 1."""
    from dait_edge.profiling.target import Profile

    return Profile(
        name=f"bench-{runtime}",
        description="tools/bench_inference.py",
        device="this CPU",
        runtime=runtime,
        providers=(),
        formats=MOBILE[runtime],
        threads=threads,
        batch_sizes=(1,),
        warmup=1,
        iterations=1,
    )


def cpu_profiles(threads: int):
    from dait_edge.profiling.target import Profile

    ort = Profile(
        name="bench-ort-cpu",
        description="tools/bench_inference.py",
        device="this CPU",
        runtime="onnxruntime",
        providers=("CPUExecutionProvider",),
        formats=FORMATS,
        threads=threads,
        batch_sizes=(1,),
        warmup=1,
        iterations=1,  # rows for choose_best; their latency is replaced by the side-by-side figures
    )
    eager = Profile(
        name="bench-torch-cpu",
        description="tools/bench_inference.py",
        device="this CPU",
        runtime="torch",
        providers=("cpu",),
        formats=("checkpoint",),
        threads=threads,
        extra={"modes": ["eager"]},
    )
    return ort, eager


def choose(rows: list) -> tuple[str, str]:
    """(format chosen, how): the rule `dait-edge profile` and `report` apply."""
    from dait_edge.report.best import choose_best

    # one choice across every runtime measured (the report's "all runtimes" choice does the same)
    entry = choose_best(
        [dataclasses.replace(row, profile="bench") for row in rows], max_top1_drop=1.0, batch=1
    )[0]
    return (
        entry.chosen_format,
        "dait_edge.report.best.choose_best(max_top1_drop=1.0, batch=1), across runtimes",
    )


def bench_cpu(run: Path, args) -> dict:
    from dait_edge.profiling.api import profile_artifacts
    from dait_edge.profiling.runner import runner_for
    from dait_edge.records import RunLayout

    ort_profile, eager_profile = cpu_profiles(args.threads)
    export_dir = RunLayout(run).export
    profiled = [
        (ort_profile, profile_artifacts([export_dir], ort_profile, save=False, log=lambda m: None).rows)
    ]
    for runtime in MOBILE:
        folder = export_dir / runtime
        if args.mobile in ("all", runtime) and folder.is_dir() and any(folder.glob("*.json")):
            profile = mobile_profile(runtime, args.threads)
            profiled.append(
                (profile, profile_artifacts([folder], profile, save=False, log=lambda m: None).rows)
            )
    rows = [row for _, found in profiled for row in found]
    with contextlib.ExitStack() as stack:  # every runner is deactivated, whatever fails
        eager = stack.enter_context(runner_for("torch")(run, eager_profile))
        candidates = {"eager": eager.timed(1, "eager")}
        for profile, found in profiled:
            for row in found:
                runner = stack.enter_context(runner_for(profile.runtime)(Path(row.artifact), profile))
                candidates[row.format] = runner.timed(1)
        stats = side_by_side(candidates, args.iterations, args.rounds)
    rows = [
        dataclasses.replace(row, latency_ms=stats[row.format], throughput_ips=1e3 / stats[row.format].mean)
        for row in rows
    ]
    chosen, rule = choose(rows)
    p50 = {name: s.p50 for name, s in stats.items()}
    to_eager = p50[chosen] / p50["eager"]
    to_fp32 = p50[chosen] / p50["onnx-fp32"]
    return {
        "p50_ms": p50,
        "latency_ms": {name: s.to_dict() for name, s in stats.items()},
        "parity_passed": {r.format: r.parity_passed for r in rows},
        "chosen": chosen,
        "rule": rule,
        "chosen_to_eager": to_eager,
        "chosen_to_fp32": to_fp32,
        "target_met": to_eager <= CPU_TARGET and to_fp32 <= 1.0,
    }


def bench_cuda(run: Path, args) -> dict:
    """Eager, CUDA graph replay, torch.compile (reduce-overhead) and a TensorRT engine where installed."""
    from dait_edge.profiling.runner import runner_for
    from dait_edge.profiling.target import Profile

    profile = Profile(
        name="bench-torch-cuda",
        description="tools/bench_inference.py",
        device="this GPU",
        runtime="torch",
        providers=("cuda",),
        formats=("checkpoint",),
        extra={
            "modes": ["eager", "compiled"],
            "cuda_graphs": True,
            "precision": args.precision,
            "channels_last": True,
        },
    )
    notes = []
    with contextlib.ExitStack() as stack:  # every runner is deactivated, whatever fails
        runner = stack.enter_context(runner_for("torch")(run, profile))
        candidates = {}
        for mode in runner.modes:
            timed = runner.timed(1, mode)
            if timed.skip:
                notes.append(f"{timed.backend}: {timed.skip}")
            else:
                candidates[timed.backend] = timed
        engine_runner = _trt_runner(run, notes, stack)
        if engine_runner is not None:
            try:
                timed = engine_runner.timed(1, engine_runner.modes[0])
            except Exception as err:  # noqa: BLE001 - a failed TensorRT step is a note in the table
                notes.append(f"no TensorRT figure: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
            else:
                candidates[f"{timed.backend}-fp16"] = timed
                if timed.note:
                    notes.append(timed.note)
        stats = side_by_side(candidates, args.iterations, args.rounds, warmup=20)
    p50 = {name: s.p50 for name, s in stats.items()}
    best = min(p50, key=p50.get)
    return {
        "p50_ms": p50,
        "latency_ms": {name: s.to_dict() for name, s in stats.items()},
        "best": best,
        "target_met": p50[best] < GPU_TARGET_MS,
        "notes": notes,
    }


def _trt_runner(run: Path, notes: list[str], stack: contextlib.ExitStack):
    """The fp16 engine's runner, active in `stack`; None (and a note) where TensorRT cannot build or run it."""
    from dait_edge.errors import UserError
    from dait_edge.export.tensorrt import trt_availability

    available = trt_availability()
    if not available.ok:
        notes.append(f"no TensorRT figure: {available.reason}")
        return None
    from dait_edge.export.api import export_run
    from dait_edge.profiling.runner import runner_for
    from dait_edge.profiling.target import Profile
    from dait_edge.records import RunLayout

    try:
        export_run(run, formats="trt-fp16", parity_samples=48, measure_speed=False, log=lambda m: None)
        engine = next(RunLayout(run).export.glob("student-trt-fp16-*.engine"))
    except (UserError, StopIteration) as err:  # a failed build is a note in the table, not the end of the run
        notes.append(f"no TensorRT figure: the engine build failed ({err or 'no engine written'})")
        return None
    profile = Profile(
        name="bench-trt",
        description="tools/bench_inference.py",
        device="this GPU",
        runtime="tensorrt",
        providers=("cuda",),
        formats=("trt-fp16",),
        extra={"cuda_graphs": True},
    )
    try:
        return stack.enter_context(runner_for("tensorrt")(engine, profile))
    except UserError as err:
        notes.append(f"no TensorRT figure: {err}")
        return None


# ------------------------------------------------------------------------------ output


def hardware_line(args) -> str:
    import importlib.metadata

    import onnxruntime
    import torch

    from dait_edge.profiling.hardware import cpu_model

    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    versions = [f"torch {torch.__version__}", f"onnxruntime {onnxruntime.__version__}"]
    packages = {"executorch": ("executorch",), "litert": ("ai-edge-litert", "litert-torch")}
    for package in [
        p for runtime, names in packages.items() if args.mobile in ("all", runtime) for p in names
    ]:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    flags = cpu_flags()
    line = (
        f"{cpu_model()} ({flags}), {os.cpu_count()} cores, {args.threads} thread(s) for every runtime;"
        f" {', '.join(versions)}; load average {load} at start"
    )
    if args.device == "cuda":
        line += f"; GPU {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
    return line


def cpu_flags() -> str:
    """The CPU features that decide which int8 kernels run (from /proc/cpuinfo; Linux only)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "flags unknown"
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    have = set(line.split(":", 1)[-1].split())
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve"]
    present = [flag for flag in wanted if flag in have]
    return ", ".join(present) if present else "none of avx2 / avx512 / vnni / dotprod"


def cpu_table(results: dict[str, dict], img_size: int) -> list[str]:
    measured = {fmt for r in results.values() for fmt in r["p50_ms"]}
    columns = {head: fmt for head, fmt in COLUMNS.items() if fmt in FORMATS or fmt in measured}
    head = ["student", "eager", *columns, "chosen", "/eager", "/fp32", "target"]
    lines = [
        f"CPU, batch 1, {img_size} px, p50 ms (* = failed parity at export; ratios = chosen p50 / other p50;"
        " ET = ExecuTorch XNNPACK)"
    ]
    table = [head]
    for student, r in results.items():
        cells = [student, f"{r['p50_ms']['eager']:.2f}"]
        for fmt in columns.values():
            ms = r["p50_ms"].get(fmt)
            mark = "*" if r["parity_passed"].get(fmt) is False else ""
            cells.append("-" if ms is None else f"{ms:.2f}{mark}")
        cells += [
            str(r["chosen"]),
            f"{r['chosen_to_eager']:.3f}x",
            f"{r['chosen_to_fp32']:.3f}x",
            "yes" if r["target_met"] else "no",
        ]
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: --device cuda needs a CUDA GPU and a CUDA build of torch; none found here.",
            file=sys.stderr,
        )
        return 2
    from dait_edge.demo.synthetic import write_demo_dataset

    hardware = hardware_line(args)
    print("random weights: these figures are timings only (accuracies and the parity gate mean little)")
    print(hardware)
    print(f"target: chosen artifact <= {CPU_TARGET}x eager batch-1 p50 and <= ONNX Runtime fp32")
    with tempfile.TemporaryDirectory(prefix="dait-bench-") as tmp:
        base = args.keep or Path(tmp)
        data_root = write_demo_dataset(base / "data", train_per_class=4, test_per_class=8)
        cpu, cuda, notes = {}, {}, {}
        for student in args.students:
            started = time.perf_counter()
            run = make_run(base, student, data_root, args.img_size)
            notes[student] = export(run, mobile=args.mobile)
            exported = time.perf_counter() - started
            cpu[student] = bench_cpu(run, args)
            if args.device == "cuda":
                cuda[student] = bench_cuda(run, args)
                notes[student] += cuda[student]["notes"]
            print(
                f"  {student}: exported in {exported:.0f} s, measured in {time.perf_counter() - started - exported:.0f} s",
                flush=True,
            )
    print("\n".join(cpu_table(cpu, args.img_size)))
    rule = next(iter(cpu.values()))["rule"]
    print(
        f"chosen by {rule}; {args.iterations} timed requests per candidate in {args.rounds} alternating rounds"
    )
    if cuda:
        print(f"GPU, batch 1, {args.img_size} px, p50 ms (target < {GPU_TARGET_MS} ms)")
        for student, r in cuda.items():
            figures = ", ".join(f"{name} {ms:.3f}" for name, ms in r["p50_ms"].items())
            print(f"  {student}: {figures}; best {r['best']}: {'yes' if r['target_met'] else 'no'}")
    for student, lines in notes.items():
        for line in lines:
            print(f"note: {student}: {line}")
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} at the end ({os.cpu_count()} cores)")
    if load > (os.cpu_count() or 1) + 0.5:
        # With OpenMP threads spinning, a competing process can slow eager PyTorch by 10-100x.
        print("warning: other processes competed for the CPU; rerun on a quiet machine (or with --threads 1)")
    all_met = all(r["target_met"] for r in cpu.values())
    print(f"CPU target met for every student: {'yes' if all_met else 'no'}")
    if args.json:
        report = {"hardware": hardware, "img_size": args.img_size, "cpu": cpu, "cuda": cuda, "notes": notes}
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    sys.exit(main())
