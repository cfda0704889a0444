"""`run_sweep`: distill every student with every method (one shared stage-1 teacher, one VLM embedding
cache), export, profile, report and compare; resumable.

Layout under the sweep folder:
    sweep.json                      settings and each run's progress (rewritten after every step)
    runs/teachers/<key>/            the stage-1 teacher, trained by the first DAIT run, reused by the rest
    runs/<student>-<method>/        a normal distill run (summary.json, export/, profile/<profile>.json)
    report/                         report.md, report.csv, report.json, pareto.png, report.html
    compare/                        compare.md, compare.csv, compare.png, compare.json (methods x students)
Running the same command again skips every finished step and resumes an interrupted distill run.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.export.images import CALIB_SAMPLES, PARITY_SAMPLES
from dait_edge.records import DistillConfig, StudentProgress, SweepJob, SweepLayout, SweepState
from dait_edge.report.api import BuiltReport
from dait_edge.utils.signals import check_stop

# Settings that may differ between invocations of one sweep without invalidating its runs.
FREE_SETTINGS = ("student", "method", "out", "progress", "workers", "device", "teacher_cache", "cache_dir")


def all_students() -> list[str]:
    """What `--students all` means: every registered student, in registration order."""
    from dait_edge.models import STUDENTS

    return list(STUDENTS)


def resolve_students(spec: str | list[str]) -> list[str]:
    """'all' -> every registered student; otherwise comma-separated names or aliases (any name `distill`
    takes, timm names included), resolved to the names runs are filed under."""
    from dait_edge.models import check_model_name, resolve_model_name

    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return all_students()
    if not names:
        raise UserError(
            "the list of students is empty; pass all or comma-separated names, e.g. resnet18,mobilenetv2.",
            setting="students",
        )
    for name in names:
        check_model_name(name, "student")  # unknown names: one line with close matches
    resolved = [resolve_model_name(n, "student") for n in names]
    if len(set(resolved)) != len(resolved):
        raise UserError(f"a student is named twice ({', '.join(names)}); list each once.", setting="students")
    return resolved


def _recipe(config: DistillConfig) -> dict:
    """The sweep's settings as its runs train with them: a training recipe that is the same for every
    method (not `own`) is resolved, so the values are recorded, not None."""
    from dait_edge.methods.base import training_recipe
    from dait_edge.records.recipe import OWN_RECIPE

    if config.recipe != OWN_RECIPE:
        config = dataclasses.replace(config)
        config.apply_recipe(training_recipe(config.recipe, config.method))
    return {k: v for k, v in config.to_dict().items() if k not in FREE_SETTINGS}


def _unrecorded(name: str):
    """What a sweep made before setting `name` existed trained with (its runs' manifests read so)."""
    from dait_edge.records import RunManifest

    return RunManifest.upgrade({"config": {}}, 1)["config"].get(name)


def _check_or_start(out_dir: Path, state: SweepState) -> SweepState:
    """A sweep folder keeps its recipe: resuming with other settings would mix incomparable runs."""
    if not SweepState.path_in(out_dir).is_file():
        return state
    previous = SweepState.read(out_dir)
    before = {k: v for k, v in previous.recipe.items() if k not in FREE_SETTINGS}  # older ones kept "method"
    # a setting added since is compared with what the sweep's runs used before it existed, unless none of
    # its methods reads it (RISE's weights in a sweep of DAIT-F)
    from dait_edge.methods.base import settings_of_other_methods

    unread = frozenset.intersection(*(settings_of_other_methods(m) for m in state.methods or [None]))
    for k in set(state.recipe) - set(previous.recipe):
        before[k] = state.recipe[k] if k in unread else _unrecorded(k)
    changed = sorted(k for k in set(before) | set(state.recipe) if before.get(k) != state.recipe.get(k))
    if changed:
        raise UserError(
            f"{out_dir} holds a sweep with other settings ({', '.join(changed[:5])} differ);"
            " rerun with the same settings to resume it, or pass a new sweep folder.",
            setting="out",
        )
    # new profiles, formats or methods extend a finished sweep
    state.methods = list(
        dict.fromkeys([*(previous.methods or [previous.recipe.get("method")]), *state.methods])
    )
    state.profiles = list(dict.fromkeys([*previous.profiles, *state.profiles]))
    state.formats = list(dict.fromkeys([*previous.formats, *state.formats]))
    # entries are keyed by run folder (older sweeps keyed them by student alone)
    state.students = {Path(e.run_dir).name: e for e in previous.students.values()} | state.students
    return state


def resolve_methods(spec: str | list[str] | None, default: str) -> list[str]:
    """Comma-separated method names or aliases (None: `default` alone), resolved; 'all' is every registered
    method that trains a student (DAIT's stage 1 alone does not)."""
    from dait_edge.methods import METHODS

    names = spec.split(",") if isinstance(spec, str) else list(spec or [default])
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return [name for name in METHODS if METHODS.get(name).stage == 2]
    if not names:
        raise UserError("the list of methods is empty; pass e.g. dait_f,none,kd,dho.", setting="methods")
    resolved = [METHODS.resolve(n) for n in names]
    if len(set(resolved)) != len(resolved):
        raise UserError(f"a method is named twice ({', '.join(names)}); list each once.", setting="methods")
    return resolved


def _shared_views(base: DistillConfig, methods: list[str]) -> DistillConfig:
    """--vlm-views auto across methods: the longest VLM-taught stage of any of them, so every run reads one
    VLM embedding cache (each run's own `auto` could differ: stage-1 vs stage-2 epochs)."""
    from dait_edge.methods import METHODS

    if base.vlm_view_setting() is not None or len(methods) < 2:
        return base
    options = {"kd_teacher": base.kd_teacher}
    epochs = []
    for name in methods:
        needs = METHODS.get(name).requirements(options)
        if "vlm" in needs:
            epochs.append(base.stage2_epochs)
        if "teacher" in needs and not base.teacher_checkpoint:
            epochs.append(base.stage1_epochs)
    return dataclasses.replace(base, vlm_views=str(max(epochs))) if epochs else base


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
    calib_samples: int = CALIB_SAMPLES,
    parity_samples: int = PARITY_SAMPLES,
    methods: list[str] | None = None,
    compare_note: str = "",
    qat: bool | str = False,
    launcher=None,
    log=print,
) -> tuple[SweepState, BuiltReport | None]:
    """The whole comparison for `students` x `methods` (default: `base.method`) on `base`'s dataset;
    returns the sweep state and report (None when a fanned-out sweep finished no run). `qat` (True, or "auto": only where post-training int8 misses its
    budget) adds each student's quantisation-aware int8 (`export_run`'s). `launcher` (a `launch.Launcher`)
    fans the runs out as processes or SLURM jobs; None runs them one after another in this process."""
    from dait_edge.distill import resolve_config
    from dait_edge.export.recipes import expand_formats, plan_recipes
    from dait_edge.profiling.profiles import load_profile
    from dait_edge.report import build_report
    from dait_edge.sweep.one import run_one

    out_dir = Path(out_dir)
    loaded = [load_profile(p) for p in profiles]  # bad profile names fail before any training
    format_list = expand_formats(formats)
    plan_recipes(format_list)  # an unknown format fails now, not after the students have trained
    methods = list(methods or [base.method])
    resolve_config(base)
    state = _check_or_start(
        out_dir,
        SweepState(
            recipe=_recipe(base),
            students={},
            profiles=[p.name for p in loaded],
            formats=format_list,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            methods=methods,
        ),
    )
    base = _shared_views(base, state.methods)  # after the recipe check: the recipe keeps `auto`
    sweep = SweepLayout(out_dir)
    started = time.perf_counter()

    def save() -> None:
        state.write(out_dir)

    matrix = [(method, student) for method in methods for student in students]
    jobs = []
    for index, (method, student) in enumerate(matrix, 1):
        run_dir = sweep.run(student, method)
        config = dataclasses.replace(
            base, student=student, method=method, out=str(run_dir), teacher_cache=str(sweep.teachers)
        )
        jobs.append(
            SweepJob(
                config=config,
                profiles=[p.name for p in loaded],
                formats=format_list,
                batch_sizes=batch_sizes,
                max_top1_drop=max_top1_drop,
                calib_samples=calib_samples,
                parity_samples=parity_samples,
                qat=qat,
                tag=f"[{index}/{len(matrix)} {student} {method}]",
            )
        )
        state.students.setdefault(run_dir.name, StudentProgress(run_dir=str(run_dir), method=method))
    if launcher is None:  # one run after another, in this process
        for job in jobs:
            run_dir = Path(job.config.out)
            check_stop(f"the sweep stopped before {job.tag.strip('[]')}", f"its progress is in {out_dir}")
            entry = run_one(job, state.students[run_dir.name], save, log, profile_limit=profile_limit)
            entry.status, entry.reason = "done", None  # a run an earlier fanned-out sweep left failed
            save()
    else:
        from dait_edge.sweep.fan_out import fan_out

        fan_out(state, jobs, launcher, out_dir, save, log)  # a failed run is recorded and said, not raised

    if launcher is not None and not any(e.status == "done" for e in state.students.values()):
        log("no run finished: nothing to report yet")
        state.seconds = round(time.perf_counter() - started, 1)
        save()
        return state, None
    log(f"report -> {sweep.report}")
    report = build_report([sweep.runs], sweep.report, max_top1_drop=max_top1_drop, log=log)
    state.report = str(sweep.report)
    if len(state.methods) > 1:
        from dait_edge.report.compare import compare_runs

        compare_runs([sweep.runs], sweep.compare, note=compare_note, log=log)
        state.compare = str(sweep.compare)
        log(f"method comparison -> {sweep.compare / 'compare.md'}")
    state.seconds = round(time.perf_counter() - started, 1)
    save()
    return state, report
