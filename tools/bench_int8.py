"""Plain against accuracy-aware int8 (u8s8, ONNX Runtime), and with `--qat` against quantisation-aware int8
(its Q/DQ file and its u8s8 conversion), side by side, on trained students.

For each run (by default the four students `make demo` distils, trained briefly on its synthetic data): export
ONNX fp32 and u8s8 int8 twice, plain (no layer back to float) and accuracy-aware (`--max-top1-drop`), then
measure validation and test top-1 of all three and their batch-1 p50 in one process, in rounds that alternate
the artifacts so machine noise hits them alike. Prints one line per student and whether the target holds:
an int8 artifact within the budget of fp32 on the test split that is faster than ORT fp32 on this CPU, where
"faster" means the 95% bootstrap interval of the p50 saving excludes 0 (the rule `choose_best` uses for ties).

    python tools/bench_int8.py                                  # runs/demo/runs (runs the demo first if absent)
    python tools/bench_int8.py --runs runs/sweep-cub/runs --calibration minmax --json int8.json
    python tools/bench_int8.py --qat                            # + onnx-int8-qat and onnx-int8-qat-u8s8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/demo/runs"), help="A folder of distill runs.")
    parser.add_argument("--max-top1-drop", type=float, default=1.0, help="The int8 budget in top-1 points.")
    parser.add_argument(
        "--calibration", help="minmax, entropy, percentile or search (default: the recipe's, search)."
    )
    parser.add_argument("--calib-samples", type=int, default=96, help="Training images int8 calibrates on.")
    parser.add_argument("--parity-samples", type=int, default=512, help="Test images top-1 is measured on.")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT intra-op threads.")
    parser.add_argument("--iterations", type=int, default=100, help="Timed requests per artifact and round.")
    parser.add_argument("--rounds", type=int, default=5, help="Alternations between the artifacts.")
    parser.add_argument("--json", type=Path, help="Also write every figure to this JSON file.")
    parser.add_argument(
        "--qat", action="store_true", help="Also QAT's int8 (Q/DQ and its u8s8 conversion; export --qat)."
    )
    return parser.parse_args(argv)


def find_runs(folder: Path) -> list[Path]:
    from dait_edge.records import RunSummary

    return sorted(p.parent for p in folder.glob("*/summary.json") if RunSummary.read(p.parent).has_student)


def sidecar_top1(artifact: str | Path, run: Path, limit: int) -> float | None:
    """Test top-1 of `artifact` measured from its sidecar alone (export/predict.py: PIL, the sidecar's
    resize / crop / normalisation, ONNX Runtime; no torch, not the export's loader) on the test split's
    files, evenly spread up to `limit` as the export's parity picks them; None without readable data."""
    from dait_edge.data import load_dataset
    from dait_edge.data.splits import evenly_spread
    from dait_edge.errors import UserError
    from dait_edge.export.predict import predict_logits
    from dait_edge.export.source import resolve_run
    from dait_edge.records import Sidecar

    info = resolve_run(run)
    try:
        spec = load_dataset(info.dataset, info.data_root)
    except UserError:
        return None
    samples = evenly_spread(spec.split("test"), limit)
    classes = Sidecar.read_for(artifact).classes  # the artifact's own class order, by name
    expected = np.array([classes.index(spec.classes[label]) for _, label in samples])
    logits = np.concatenate(
        [
            predict_logits(artifact, [path for path, _ in samples[i : i + 128]])
            for i in range(0, len(samples), 128)
        ]
    )
    return round(100.0 * float(np.mean(logits.argmax(1) == expected)), 3)


def timings(
    paths: dict[str, Path], input_size, threads: int, iterations: int, rounds: int
) -> dict[str, list[float]]:
    """Latency samples (ms, batch 1) of each artifact, pooled over rounds that alternate the artifacts."""
    from dait_edge.export.parity import ort_session

    sessions = {name: ort_session(path, threads) for name, path in paths.items()}
    x = np.random.default_rng(0).standard_normal((1, *input_size), dtype=np.float32)
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for session in sessions.values():  # warm-up
        for _ in range(5):
            session.run(None, {"input": x})
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(iterations):
                start = time.perf_counter()
                session.run(None, {"input": x})
                samples[name].append((time.perf_counter() - start) * 1e3)
    return samples


def bench_run(run: Path, args, folder: Path) -> dict:
    from dait_edge.export.api import export_run
    from dait_edge.report.stats import p50_difference_interval

    common = dict(
        formats="onnx,onnx-int8-u8s8",
        calib_samples=args.calib_samples,
        parity_samples=args.parity_samples,
        measure_speed=False,
        log=lambda m: None,
    )
    plain = export_run(
        run,
        out=folder / "plain",
        max_fallback_nodes=0,
        max_top1_drop=args.max_top1_drop,
        calibration_method=args.calibration,
        **common,
    )
    aware = export_run(
        run,
        out=folder / "aware",
        max_top1_drop=args.max_top1_drop,
        calibration_method=args.calibration,
        **common,
    )

    fp32, int8_plain, int8_aware = (
        plain.by_format("onnx-fp32"),
        plain.by_format("onnx-int8-u8s8"),
        aware.by_format("onnx-int8-u8s8"),
    )
    compared = {"plain": int8_plain, "aware": int8_aware}
    if args.qat:
        qat = export_run(
            run,
            out=folder / "qat",
            qat=True,
            max_top1_drop=args.max_top1_drop,
            calibration_method=args.calibration,
            progress=False,
            **(common | {"formats": "onnx"}),
        )
        compared |= {name: qat.by_format(fmt) for name, fmt in QAT_FORMATS.items()}
    samples = timings(
        {"fp32": Path(fp32.path)} | {name: Path(a.path) for name, a in compared.items()},
        plain.input_size,
        args.threads,
        args.iterations,
        args.rounds,
    )
    p50 = {name: float(np.median(values)) for name, values in samples.items()}
    acc_plain, acc_aware = int8_plain.accuracy, int8_aware.accuracy
    test_fp32 = fp32.parity.top1_artifact
    row = {
        "student": plain.student,
        "val_images": acc_aware.val_images,
        "val_source": acc_aware.val_source,
        "checked": acc_aware.checked,
        "fp32": {"val_top1": acc_aware.fp32_val_top1, "test_top1": test_fp32, "p50_ms": p50["fp32"]},
        "calibration": acc_aware.calibration,
        "diagnosis": acc_aware.diagnosis,
        "plain": {
            "val_top1": acc_plain.val_top1,
            "val_agreement": acc_plain.val_agreement,
            "test_top1": int8_plain.parity.top1_artifact,
            "p50_ms": p50["plain"],
        },
        "aware": {
            "val_top1": acc_aware.val_top1,
            "val_agreement": acc_aware.val_agreement,
            "test_top1": int8_aware.parity.top1_artifact,
            "p50_ms": p50["aware"],
            "nodes_in_float": len(acc_aware.nodes_in_float),
            "quantised_nodes": acc_aware.quantised_nodes,
            "seconds": acc_aware.seconds,
        },
    }
    for name in QAT_FORMATS if args.qat else ():
        made, accuracy = compared[name], compared[name].accuracy
        row[name] = {
            "val_top1": accuracy.val_top1,
            "val_agreement": accuracy.val_agreement,
            "test_top1": made.parity.top1_artifact,
            "p50_ms": p50[name],
            "budget_met": accuracy.budget_met,
            "seconds": accuracy.seconds,
        }
    row["fp32"]["sidecar_test_top1"] = sidecar_top1(fp32.path, run, args.parity_samples)
    for name in compared:
        entry = row[name]
        entry["sidecar_test_top1"] = sidecar_top1(compared[name].path, run, args.parity_samples)
        entry["test_drop"] = (
            None
            if test_fp32 is None or entry["test_top1"] is None
            else round(test_fp32 - entry["test_top1"], 3)
        )
        entry["speedup_vs_fp32"] = round(p50["fp32"] / entry["p50_ms"], 3)
        # faster only where the machine's noise cannot explain it, as `choose_best` rules latency ties
        low, high = (round(v, 4) for v in p50_difference_interval(samples["fp32"], samples[name], seed=0))
        entry["p50_saving_ms_95"] = [low, high]
        entry["faster"] = low > 0  # judged on the figures printed (a saving under 0.05 us is none)
    candidates = [row[n] for n in compared if row[n]["test_drop"] is not None]
    row["target_met"] = any(c["test_drop"] <= args.max_top1_drop and c["faster"] for c in candidates)
    return row


QAT_FORMATS = {"qat": "onnx-int8-qat", "qat_u8s8": "onnx-int8-qat-u8s8"}  # row key -> export format


def main(argv=None) -> int:
    args = parse_args(argv)
    from dait_edge.errors import UserError
    from dait_edge.export.quantize import cpu_has_vnni
    from dait_edge.profiling.hardware import cpu_model

    if not args.runs.is_dir() or not find_runs(args.runs):
        if args.runs != Path("runs/demo/runs"):
            print(
                f"error: {args.runs} holds no finished run; pass a folder of distill runs.", file=sys.stderr
            )
            return 2
        from dait_edge.demo.run import run_demo

        print("no demo runs yet: running `dait-edge demo` first (about 5 minutes)", file=sys.stderr)
        run_demo("runs/demo", progress=False, echo=lambda m: print(m, file=sys.stderr))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        for run in find_runs(args.runs):
            try:
                rows.append(bench_run(run, args, Path(tmp) / run.name))
            except UserError as err:
                print(f"error: {run.name}: {err}", file=sys.stderr)
                return 2
    cpu = f"{cpu_model()}, {os.cpu_count()} cores, {'VNNI' if cpu_has_vnni() else 'AVX2 without VNNI'}"
    print(
        f"int8 u8s8 on {cpu}, ORT {args.threads} thread(s), batch 1; budget {args.max_top1_drop:g} point(s);"
        f" calibration {args.calibration or 'the recipe default'} on {args.calib_samples} images"
    )
    header = (
        "student",
        "val imgs",
        "calibration",
        "fp32 val/test",
        "p50 ms",
        "plain val/test (drop)",
        "p50 ms (x fp32)",
        "aware val/test (drop), val agreement",
        "float nodes",
        "p50 ms (x fp32)",
    )
    qat_names = tuple(QAT_FORMATS) if args.qat else ()
    for name in qat_names:
        header += (f"{name.replace('_', '-')} val/test (drop), val agreement", "p50 ms (x fp32)")
    print(" | ".join((*header, "target")))
    for r in rows:
        f, p, a = r["fp32"], r["plain"], r["aware"]
        cells = [
            r["student"],
            str(r["val_images"]),
            r["calibration"],
            f"{_pct(f['val_top1'])}/{_pct(f['test_top1'])}",
            f"{f['p50_ms']:.3f}",
            f"{_pct(p['val_top1'])}/{_pct(p['test_top1'])} ({_pts(p['test_drop'])})",
            f"{p['p50_ms']:.3f} ({_speed(p)})",
            f"{_pct(a['val_top1'])}/{_pct(a['test_top1'])} ({_pts(a['test_drop'])}), {_pct(a['val_agreement'])}%",
            f"{a['nodes_in_float']}/{a['quantised_nodes']}",
            f"{a['p50_ms']:.3f} ({_speed(a)})",
        ]
        for name in qat_names:
            q = r[name]
            cells += [
                f"{_pct(q['val_top1'])}/{_pct(q['test_top1'])} ({_pts(q['test_drop'])}), {_pct(q['val_agreement'])}%",
                f"{q['p50_ms']:.3f} ({_speed(q)})",
            ]
        print(" | ".join([*cells, "met" if r["target_met"] else "NOT met"]))
    for r in rows:
        if r["diagnosis"]:
            print(f"{r['student']}: {r['diagnosis']}")
    for r in rows:  # the same files, evaluated from their sidecars alone (PIL + ORT, not the export's loader)
        names = ("fp32", *(n for n in ("plain", "aware", *qat_names) if n in r))
        figures = ", ".join(f"{n} {_pct(r[n]['sidecar_test_top1'])}" for n in names)
        same = all(r[n]["sidecar_test_top1"] == r[n]["test_top1"] for n in names)
        print(
            f"{r['student']}: test top-1 from the sidecars: {figures} ({'as' if same else 'NOT as'} exported)"
        )
    met = all(r["target_met"] for r in rows)
    print(
        f"target (an int8 artifact within {args.max_top1_drop:g} point of fp32 on the test split and faster than"
        f" ORT fp32 beyond the noise) met for every student: {met}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu,
                    "settings": vars(args) | {"runs": str(args.runs), "json": str(args.json)},
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0


def _speed(entry) -> str:
    """The speed-up, and whether it is outside the noise: the 95% interval of the p50 saving excludes 0."""
    low, high = entry["p50_saving_ms_95"]
    verdict = "faster" if entry["faster"] else "not resolved"
    return f"{entry['speedup_vs_fp32']:.2f}x, saves {low:+.3f} to {high:+.3f} ms: {verdict}"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pts(value) -> str:
    return "-" if value is None else f"{value:+.1f}"


if __name__ == "__main__":
    sys.exit(main())
