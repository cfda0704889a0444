"""`run_sweep`: distill every student (one shared stage-1 teacher), export, profile, report; resumable.

Layout under the sweep folder:
    sweep.json                      settings and each student's progress (rewritten after every step)
    runs/teachers/<key>/            the stage-1 teacher, trained by the first student, reused by the rest
    runs/<student>-<method>/        a normal distill run (summary.json, export/, profile/<profile>.json)
    report/                         report.md, report.csv, report.json, pareto.png, report.html
Running the same command again skips every finished step and resumes an interrupted distill run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from dait_edge.config import DistillConfig
from dait_edge.errors import UserError
from dait_edge.utils.io import write_json_atomic

SWEEP_FILE = "sweep.json"
STUDENTS_ALL = ("resnet18", "efficientnet_b0", "mobilenetv2_100", "shufflenet_v2_x1_0")
# Settings that may differ between invocations of one sweep without invalidating its runs.
FREE_SETTINGS = ("student", "out", "progress", "workers", "device", "teacher_cache", "cache_dir")


def resolve_students(spec: str | list[str]) -> list[str]:
    """'all' -> the four students; otherwise comma-separated registered names or aliases."""
    from dait_edge.models import STUDENTS

    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return list(STUDENTS_ALL)
    if not names:
        raise UserError("--students is empty; pass all or a comma-separated list, e.g. resnet18,mobilenetv2.")
    resolved = [STUDENTS.resolve(n) for n in names]  # unknown names: one line with close matches
    if len(set(resolved)) != len(resolved):
        raise UserError(f"--students names a student twice ({', '.join(names)}); list each once.")
    return resolved


def _recipe(config: DistillConfig) -> dict:
    values = config.to_dict()
    return {k: v for k, v in values.items() if k not in FREE_SETTINGS}


def _check_or_start(out_dir: Path, state: dict) -> dict:
    """A sweep folder keeps its recipe: resuming with other settings would mix incomparable runs."""
    path = out_dir / SWEEP_FILE
    if not path.is_file():
        return state
    previous = json.loads(path.read_text())
    changed = sorted(
        k
        for k in set(previous.get("recipe", {})) | set(state["recipe"])
        if previous.get("recipe", {}).get(k) != state["recipe"].get(k)
    )
    if changed:
        raise UserError(
            f"{out_dir} holds a sweep with other settings ({', '.join(changed[:5])} differ);"
            " rerun with the same settings to resume it, or pass a new --out."
        )
    for key in ("profiles", "formats"):  # new profiles or formats extend a finished sweep
        state[key] = list(dict.fromkeys([*previous.get(key, []), *state[key]]))
    state["students"] = {**previous.get("students", {}), **state["students"]}
    return state


def _export_done(run_dir: Path, formats: list[str]) -> bool:
    summary = run_dir / "export" / "summary.json"
    if not summary.is_file():
        return False
    exported = json.loads(summary.read_text())
    have = {a.get("format") for a in exported.get("artifacts", [])}
    # formats this machine cannot build (TensorRT without a GPU) were skipped with a message naming them
    have |= {f for f in formats if any(f in str(message) for message in exported.get("skipped", []))}
    return set(formats) <= have


def run_sweep(
    base: DistillConfig,
    students: list[str],
    out_dir: str | Path,
    *,
    profiles: list[str],
    formats: str = "onnx,onnx-fp16,onnx-int8-u8s8,onnx-int8-s8s8",
    batch_sizes: list[int] | None = None,
    max_top1_drop: float = 1.0,
    profile_limit: int | None = None,
    calib_samples: int = 256,
    parity_samples: int = 512,
    log=print,
) -> dict:
    """The whole comparison for `students` on `base`'s dataset; returns the sweep state and report."""
    from dait_edge.distill import run_distill
    from dait_edge.export import export_run
    from dait_edge.export.recipes import expand_formats
    from dait_edge.profiling.api import profile_artifacts
    from dait_edge.profiling.profiles import load_profile
    from dait_edge.report import build_report

    out_dir = Path(out_dir)
    loaded = [load_profile(p) for p in profiles]  # bad profile names fail before any training
    format_list = expand_formats(formats)
    base.validate()
    state = _check_or_start(
        out_dir,
        {
            "recipe": _recipe(base),
            "students": {},
            "profiles": [p.name for p in loaded],
            "formats": format_list,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    runs_root = out_dir / "runs"
    started = time.perf_counter()

    def save() -> None:
        write_json_atomic(out_dir / SWEEP_FILE, state)

    for index, student in enumerate(students, 1):
        tag = f"[{index}/{len(students)} {student}]"
        run_dir = runs_root / f"{student}-{base.method}"
        entry = state["students"].setdefault(student, {"run_dir": str(run_dir)})
        config = dataclasses.replace(
            base, student=student, out=str(run_dir), teacher_cache=str(runs_root / "teachers")
        )

        summary_file = run_dir / "summary.json"
        finished = (
            summary_file.is_file() and json.loads(summary_file.read_text()).get("student_top1") is not None
        )
        if finished:
            log(f"{tag} distill: done earlier, reusing {run_dir}")
            summary = json.loads(summary_file.read_text())
        else:
            resume = (run_dir / "manifest.json").is_file()
            log(
                f"{tag} distill ({'resuming' if resume else 'stage 1 + 2' if index == 1 else 'stage 2'}) -> {run_dir}"
            )
            summary = run_distill(config, resume=resume)
        entry.update(
            {
                "student_top1": summary.get("student_top1"),
                "teacher_top1": summary.get("teacher_top1"),
                "teacher_reused": summary.get("teacher_reused"),
                "distilled": True,
            }
        )
        save()

        if _export_done(run_dir, format_list):
            log(f"{tag} export: done earlier")
        else:
            log(f"{tag} export {', '.join(format_list)} (each artifact checked against PyTorch)")
            exported = export_run(
                run_dir,
                formats=format_list,
                calib_samples=calib_samples,
                parity_samples=parity_samples,
                measure_speed=False,
                log=lambda *_: None,
            )
            for artifact in exported["artifacts"]:
                parity = artifact.get("parity") or {}
                log(
                    f"{tag}   {Path(artifact['path']).name}: agrees with PyTorch on"
                    f" {parity.get('agreement', float('nan')):.1f}% of test images"
                )
        entry["exported"] = True
        save()

        for profile in loaded:
            saved = run_dir / "profile" / f"{profile.name}.json"
            if saved.is_file():
                log(f"{tag} profile {profile.name}: done earlier")
                continue
            log(f"{tag} profile {profile.name}")
            target = run_dir if profile.runtime == "torch" else run_dir / "export"
            profile_artifacts(
                [target],
                profile,
                batch_sizes=batch_sizes,
                dataset=base.dataset,
                data_root=base.data_root,
                limit=profile_limit,
                log=lambda msg, tag=tag: log(f"{tag}   {msg}"),
            )
        entry["profiled"] = sorted({*entry.get("profiled", []), *(p.name for p in loaded)})
        save()

    log(f"report -> {out_dir / 'report'}")
    report = build_report([runs_root], out_dir / "report", max_top1_drop=max_top1_drop, log=log)
    state["report"] = str(out_dir / "report")
    state["seconds"] = round(time.perf_counter() - started, 1)
    save()
    return {"state": state, "report": report}
