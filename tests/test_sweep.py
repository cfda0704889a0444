"""`dait-edge sweep` end to end on a tiny CUB tree: two students (a registered one by its alias and a timm
name), one stage-1 teacher, export, profile with top-1, report; then a rerun that resumes (skips every
finished step) and bad input. `--students all` with every registered student runs in the demo test.

1 epoch at 32 px from random weights: the numbers mean nothing, what is checked is what is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.records import Comparison, ExportSummary, ProfileResult, Report, RunSummary, SweepState

# a registered student by its alias, and a tiny timm model: sweep takes any name distill takes
STUDENTS = {"mobilenetv2": "mobilenetv2_100", "test_efficientnet": "test_efficientnet"}
STUDENTS_ALL = list(STUDENTS.values())


@pytest.fixture(scope="module")
def sweep_env(tmp_path_factory, layouts, tiny_vlm):
    base = tmp_path_factory.mktemp("sweep")
    cub = layouts.cub(base / "CUB", classes=3, train_per_class=3, test_per_class=2)
    return base, cub, tiny_vlm.config, tiny_vlm.weights


def sweep_args(env, out: Path, *extra: str) -> list[str]:
    base, cub, vlm_config, vlm_weights = env
    return [
        "sweep",
        "--students",
        ",".join(STUDENTS),
        "--teacher",
        "test_resnet",
        "--dataset",
        "cub",
        "--data-root",
        str(cub.root),
        "--vlm",
        str(vlm_config),
        "--vlm-pretrained",
        str(vlm_weights),
        "--epochs",
        "1",
        "--img-size",
        "32",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-pretrained",
        "--cache-dir",
        str(base / "cache"),
        "--formats",
        "onnx,onnx-int8-u8s8",
        "--profile",
        "x86-ort-cpu-int8",
        "--batch-sizes",
        "1",
        "--calib-samples",
        "4",
        "--parity-samples",
        "6",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="module")
def swept(sweep_env):
    out = sweep_env[0] / "sweep"
    result = CliRunner().invoke(cli, sweep_args(sweep_env, out, "--json"))
    assert result.exit_code == 0, (result.output, result.exception)
    return out, json.loads(result.stdout)


def test_sweep_distills_every_student_with_one_teacher(swept):
    out, result = swept
    state = SweepState.read(out)
    assert list(state.students) == [f"{s}-dait_f" for s in STUDENTS_ALL]  # keyed by run folder
    summaries = [RunSummary.read(out / "runs" / f"{s}-dait_f") for s in STUDENTS_ALL]
    # the first student trains the stage-1 teacher, the others reuse it from the shared cache
    assert [s.teacher_reused for s in summaries] == [False] + [True] * (len(STUDENTS_ALL) - 1)
    assert len({s.checkpoints.teacher for s in summaries[1:]}) == 1
    assert len(list((out / "runs" / "teachers").glob("*/teacher.safetensors"))) == 1
    for student, summary in zip(STUDENTS_ALL, summaries, strict=True):
        run = out / "runs" / f"{student}-dait_f"
        assert summary.student == student and summary.student_top1 is not None
        progress = state.students[f"{student}-dait_f"]
        assert progress.profiled == ["x86-ort-cpu-int8"] and progress.exported and progress.method == "dait_f"
        assert ExportSummary.read(run / "export").formats() == {"onnx-fp32", "onnx-int8-u8s8"}
        rows = ProfileResult.read(run / "profile" / "x86-ort-cpu-int8.json").rows
        assert {r.format for r in rows} == {"onnx-fp32", "onnx-int8-u8s8"}
        assert all(r.top1 is not None and r.student == student for r in rows)


def test_sweep_report_compares_all_students(swept):
    out, result = swept
    report = out / "report"
    for name in ("report.md", "report.csv", "report.json", "pareto.png", "report.html"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    assert (report / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = {entry.student: entry for entry in Report.read(report).best}
    assert set(best) == set(STUDENTS_ALL)
    for entry in best.values():
        # the chosen artifact is one of the student's own, and every other candidate says why it lost
        assert entry.chosen is None or f"{entry.student}-dait_f" in entry.chosen
        assert all(c.reason for c in entry.candidates if c.status != "chosen")
    markdown = (report / "report.md").read_text()
    assert all(student in markdown for student in STUDENTS_ALL)
    assert result["report"]["out_dir"] == str(report)


def test_sweep_resumes_and_keeps_its_recipe(assert_user_error, swept, sweep_env):
    out, _ = swept
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.onnx")}
    rerun = CliRunner().invoke(cli, sweep_args(sweep_env, out))
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.count("done earlier") == 3 * len(STUDENTS_ALL)  # distill, export, profile each
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.onnx")} == before
    # the shared recipe's values are recorded, and a sweep folder from before recipes (no recipe,
    # optimizer, train_crop nor RISE's settings in it) resumes: its runs trained as the shared recipe does
    state = SweepState.read(out)
    assert (state.recipe["recipe"], state.recipe["lr"], state.recipe["optimizer"]) == (
        "shared",
        1e-4,
        "adamw",
    )
    added = ("recipe", "optimizer", "train_crop", "rise_weights", "rise_temperature")
    state.recipe = {k: v for k, v in state.recipe.items() if k not in added}
    state.write(out)
    old = CliRunner().invoke(cli, sweep_args(sweep_env, out))
    assert old.exit_code == 0, old.output
    assert old.output.count("done earlier") == 3 * len(STUDENTS_ALL)

    changed = CliRunner().invoke(cli, [*sweep_args(sweep_env, out), "--lr", "0.5"])
    assert_user_error(changed, "other settings")

    # a student exported again after its profile was measured (a sweep extended with --qat, say): that
    # profile is stale and measured again; the other students' are kept
    import os

    run = next(p for p in sorted((out / "runs").iterdir()) if (p / "export").is_dir())
    summary = ExportSummary.path_in(run / "export")
    later = summary.stat().st_mtime + 60
    os.utime(summary, (later, later))
    again = CliRunner().invoke(cli, sweep_args(sweep_env, out))
    assert again.exit_code == 0, again.output
    assert again.output.count("done earlier") == 3 * len(STUDENTS_ALL) - 1
    assert f"{run.name.rsplit('-', 1)[0]} dait_f] profile" in again.output


def test_sweep_bad_input(assert_user_error, sweep_env, tmp_path):
    runner = CliRunner()
    assert_user_error(
        runner.invoke(cli, [*sweep_args(sweep_env, tmp_path / "s1"), "--students", "resnet18,nope"]), "nope"
    )
    assert_user_error(
        runner.invoke(cli, [*sweep_args(sweep_env, tmp_path / "s2"), "--profile", "x86"]), "unknown profile"
    )
    assert_user_error(
        runner.invoke(cli, [*sweep_args(sweep_env, tmp_path / "s3"), "--qat", "--qat-auto"]), "pass one"
    )
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()
    assert not (tmp_path / "s3").exists()


def test_sweep_runs_methods_by_students_and_ends_with_the_comparison(sweep_env):
    out = sweep_env[0] / "methods"
    args = [
        *sweep_args(sweep_env, out),
        "--students",
        "test_efficientnet",
        "--methods",
        "none,kd",
        "--formats",
        "onnx",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.output, result.exception)
    state = SweepState.read(out)
    assert state.methods == ["none", "kd"] and list(state.students) == [
        "test_efficientnet-none",
        "test_efficientnet-kd",
    ]
    kd = RunSummary.read(out / "runs" / "test_efficientnet-kd")
    assert kd.method == "kd" and kd.kd_teacher == "vlm" and kd.vlm_views == 1
    comparison = Comparison.read(out / "compare")
    assert [row.label for row in comparison.tables[0].rows] == ["none", "kd (T: VLM)"]
    assert "| kd (T: VLM) |" in result.output  # the table is printed at the end
    report = (out / "report" / "report.md").read_text()
    assert "compare/compare.md" in report  # the report links the comparison of the runs it profiled


def _runs_of(out: Path) -> dict[str, RunSummary]:
    return {
        p.name: RunSummary.read(p) for p in sorted((out / "runs").iterdir()) if (p / "summary.json").is_file()
    }


def test_sweep_fans_out_over_two_local_processes_with_one_teacher_and_one_cache(sweep_env):
    """--parallel 2: each run its own process (the CPU's cores split between them); the first run builds the
    VLM cache and trains the stage-1 teacher alone, the second starts once those exist; the table lists both.
    Run again, it starts nothing."""
    out = sweep_env[0] / "parallel"
    args = [*sweep_args(sweep_env, out, "--parallel", "2"), "--cache-dir", str(out / "cache")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    state = SweepState.read(out)
    assert {e.status for e in state.students.values()} == {"done"} and len(state.students) == 2
    assert all(e.launcher == "local" and e.job_id.isdigit() for e in state.students.values())
    logs = [Path(e.log).read_text() for e in state.students.values()]
    runs = _runs_of(out)
    assert sorted(s.teacher_reused for s in runs.values()) == [False, True]  # one stage-1 teacher
    assert len(list((out / "cache" / "vlm_embeddings").iterdir())) == 1  # one VLM cache, built once
    assert (
        sum(len(re.findall(r"VLM embedding cache: \d+ images", log)) for log in logs) == 1
    )  # its build line
    assert all(
        f"{name}] running as job" in result.output
        for name in ("test_efficientnet dait_f", "mobilenetv2_100 dait_f")
    )
    markdown = (out / "report" / "report.md").read_text()
    assert all(f"| {student} |" in markdown for student in STUDENTS_ALL)
    # profiles were measured afterwards in the sweep's own process, never beside a training job
    assert all((out / "runs" / name / "profile" / "x86-ort-cpu-int8.json").is_file() for name in runs)
    assert not any("profile x86-ort-cpu-int8" in log for log in logs)

    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.onnx")}
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "running as job" not in again.output and again.output.count("] done earlier") == 2
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.onnx")} == before


def test_sweep_through_submitit_reports_a_killed_job_and_resumes_it_when_run_again(sweep_env, monkeypatch):
    """--launcher submitit-local: the SLURM code path through submitit's local executor. A job killed mid-run
    (the machine gone under it) is reported failed with its log, the sweep exits 1 naming it; the same
    sweep again resubmits it, and the run continues from its last epoch."""
    pytest.importorskip("submitit")
    out = sweep_env[0] / "submitit"
    args = [*sweep_args(sweep_env, out, "--launcher", "submitit-local"), "--cache-dir", str(out / "cache")]
    args[args.index("--epochs") + 1] = "2"
    args[args.index("--students") + 1] = "test_efficientnet"  # one job: killed, then resubmitted
    monkeypatch.setenv("DAIT_EDGE_FAULT", "kill@epoch-end:2")  # each job dies after its first stage-2 epoch
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 1, first.output
    state = SweepState.read(out)
    (failed,) = state.students.values()
    assert failed.status == "failed" and failed.launcher == "submitit-local" and Path(failed.log).is_file()
    assert failed.reason.startswith(
        "the job ended without finishing, submitit: "
    )  # a kill leaves no error line
    assert "no run finished: nothing to report yet" in first.output
    assert "did not finish; run the same sweep again to retry them" in first.output

    monkeypatch.delenv("DAIT_EDGE_FAULT")
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    state = SweepState.read(out)
    assert {e.status for e in state.students.values()} == {"done"}
    resumed = Path(state.students[Path(failed.run_dir).name].log).read_text()
    assert "distill (resuming)" in resumed  # from its last finished epoch, not from scratch
    assert "| test_efficientnet |" in (out / "report" / "report.md").read_text()


def test_fan_out_options_are_checked_before_anything_runs(assert_user_error, sweep_env, tmp_path):
    runner = CliRunner()
    bad = [
        (["--launcher", "slurm", "--parallel", "2"], "--parallel and --gpus are for --launcher local"),
        (["--slurm-arg", "account"], "KEY=VALUE"),
        (["--slurm-partition", "gpu"], "are for --launcher slurm"),
    ]
    for index, (extra, message) in enumerate(bad):
        out = tmp_path / f"s{index}"
        assert_user_error(runner.invoke(cli, sweep_args(sweep_env, out, *extra)), message)
        assert not out.exists()


class _ScriptedLauncher:
    """A launcher whose jobs end as the test says, after a poll or two, writing the log a worker would:
    the scheduler's rules without processes."""

    name = "scripted"
    profiles_in_job = True  # nothing measured afterwards
    slots = 4

    def __init__(self, outcomes: dict[str, str], logs: dict[str, str], polls: dict[str, int] | None = None):
        self.outcomes, self.logs, self.started, self.polls, self.slot_of = outcomes, logs, [], {}, {}
        self.lengths = polls or {}  # how many polls each job runs for (default 2)

    def threads(self):
        return None

    def submit(self, job_file, log, slot, after=("", [])):
        name = Path(job_file).stem
        alive = {self.slot_of[n] for n in self.started if self.polls.get(n, 0) < self.lengths.get(n, 2)}
        assert slot not in alive, f"{name} was given slot {slot}, which a running job holds"
        self.started.append(name)
        self.slot_of[name] = slot
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(self.logs.get(name, "") + "\n")
        return name

    def poll(self, job_id):
        self.polls[job_id] = self.polls.get(job_id, 0) + 1
        return None if self.polls[job_id] < self.lengths.get(job_id, 2) else self.outcomes.get(job_id, "done")

    def reattach(self, job_id):
        return False

    def log_of(self, job_id, log):
        return log

    def stop(self):
        pass


def test_the_fan_out_starts_each_methods_first_run_alone_and_blocks_runs_whose_first_run_failed(tmp_path):
    """Pioneers (each method's first run) start one at a time and before their method's other runs; a
    pioneer that failed (here a full disk while building what the others need) leaves its method's other
    runs blocked, each saying which run it needed, and the failure's own line is the reason."""
    from dait_edge.records import DistillConfig, StudentProgress, SweepJob
    from dait_edge.sweep.fan_out import fan_out

    jobs, state = [], SweepState(recipe={}, students={}, profiles=[], formats=["onnx"], created="now")
    for method in ("dait_f", "none"):
        for student in ("resnet18", "mobilenetv2_100", "shufflenet_v2_x1_0"):
            run_dir = tmp_path / "runs" / f"{student}-{method}"
            config = DistillConfig(student=student, method=method, out=str(run_dir))
            jobs.append(SweepJob(config=config, profiles=[], formats=["onnx"], tag=f"[{student} {method}]"))
            state.students[run_dir.name] = StudentProgress(run_dir=str(run_dir), method=method)
    disk_full = "error: the disk is full while writing cache.json (nothing was written); free space on /c"
    launcher = _ScriptedLauncher({"resnet18-dait_f": "exit code 2"}, {"resnet18-dait_f": disk_full})
    lines: list[str] = []
    fan_out(state, jobs, launcher, tmp_path, lambda: None, lines.append, poll_s=0.0)

    assert launcher.started[0] == "resnet18-dait_f"  # the first pioneer alone
    assert launcher.started[1] == "resnet18-none"  # the next pioneer after it, before its method's others
    assert set(launcher.started[2:]) == {"mobilenetv2_100-none", "shufflenet_v2_x1_0-none"}
    status = {name: entry.status for name, entry in state.students.items()}
    assert status["resnet18-dait_f"] == "failed" and state.students["resnet18-dait_f"].reason == disk_full
    for name in ("mobilenetv2_100-dait_f", "shufflenet_v2_x1_0-dait_f"):
        assert status[name] == "blocked"
        assert state.students[name].reason.startswith("resnet18-dait_f failed")
    assert {status[f"{s}-none"] for s in ("resnet18", "mobilenetv2_100", "shufflenet_v2_x1_0")} == {"done"}
    assert set(state.unfinished()) == {
        "resnet18-dait_f",
        "mobilenetv2_100-dait_f",
        "shufflenet_v2_x1_0-dait_f",
    }
    assert lines[-1] == "3 of 6 run(s) did not finish; run the same sweep again to retry them"
    assert (tmp_path / "jobs" / "mobilenetv2_100-none.json").is_file()  # what the worker would have read
    assert set(launcher.slot_of.values()) <= set(range(launcher.slots))  # one slot (GPU) per running job


def test_a_job_started_while_others_run_never_gets_a_slot_one_of_them_holds(tmp_path):
    """With --parallel 2 --gpus 0,1: the job that starts when one of two running jobs ends takes the GPU that
    job freed, not one still in use."""
    from dait_edge.records import DistillConfig, StudentProgress, SweepJob
    from dait_edge.sweep.fan_out import fan_out

    jobs, state = [], SweepState(recipe={}, students={}, profiles=[], formats=["onnx"], created="now")
    for student in ("a", "b", "c", "d"):
        run_dir = tmp_path / "runs" / f"{student}-none"
        jobs.append(
            SweepJob(
                config=DistillConfig(student=student, method="none", out=str(run_dir)),
                profiles=[],
                formats=["onnx"],
            )
        )
        state.students[run_dir.name] = StudentProgress(run_dir=str(run_dir), method="none")
    launcher = _ScriptedLauncher({}, {}, polls={"c-none": 6})  # b ends while c still runs; then d starts
    launcher.slots = 2
    fan_out(state, jobs, launcher, tmp_path, lambda: None, lambda line: None, poll_s=0.0)
    assert launcher.started == ["a-none", "b-none", "c-none", "d-none"]
    assert launcher.slot_of["d-none"] == launcher.slot_of["b-none"] != launcher.slot_of["c-none"]


def _slurm_stand_in(monkeypatch, submitit, tmp_path, first_id: int, fails: str = ""):
    """submitit's executor and SlurmJob replaced by recording stand-ins (no SLURM): each submit is recorded as
    (run, sbatch dependency, account) and numbered from `first_id`; a job ends at its second poll, the
    run named `fails` with a disk-full error; a job found again by id reads PENDING. Returns the lists of
    submits and cancelled job ids."""
    submitted, cancelled = [], []

    class Job:
        def __init__(self, job_id, fails=False, state="COMPLETED"):
            self.job_id, self.fails, self.state, self.polls = job_id, fails, state, 0
            self.paths = type("Paths", (), {"stdout": tmp_path / f"{job_id}_log.out"})()

        def done(self):
            self.polls += 1
            return self.polls > 1

        def result(self):
            if self.fails:
                raise RuntimeError("error: the disk is full while writing stage1/teacher.pt")

        def cancel(self, check=True):
            cancelled.append(self.job_id)

    class Executor:
        def __init__(self, folder, cluster):
            self.parameters = {}

        def update_parameters(self, **params):
            self.parameters |= params

        def submit(self, fn, path):
            job_id = str(first_id + len(submitted))
            extra = self.parameters.get("slurm_additional_parameters", {})
            submitted.append((Path(path).stem, extra.get("dependency"), extra.get("account")))
            return Job(job_id, fails=Path(path).stem == fails)

    monkeypatch.setattr(submitit, "AutoExecutor", Executor)
    monkeypatch.setattr(submitit, "SlurmJob", lambda folder, job_id: Job(job_id, state="PENDING"))
    return submitted, cancelled


def test_on_slurm_every_job_is_queued_at_once_waiting_on_its_pioneer_and_cancelled_if_it_fails(
    tmp_path, monkeypatch
):
    """--launcher slurm: the jobs go to the queue together, each with the sbatch dependency that orders it
    (afterok on its method's first run, afterany between first runs); when a first run fails, the jobs
    held on it are cancelled and reported blocked. submitit's executor is a recording stand-in (no SLURM)."""
    submitit = pytest.importorskip("submitit")
    from dait_edge.records import DistillConfig, StudentProgress, SweepJob
    from dait_edge.sweep.fan_out import fan_out
    from dait_edge.sweep.launch import SubmititLauncher

    submitted, cancelled = _slurm_stand_in(
        monkeypatch, submitit, tmp_path, first_id=100, fails="resnet18-dait_f"
    )
    launcher = SubmititLauncher(tmp_path / "slurm", "slurm", partition="gpu", extra={"account": "lab"})
    jobs, state = [], SweepState(recipe={}, students={}, profiles=[], formats=["onnx"], created="now")
    for method, student in (("dait_f", "resnet18"), ("dait_f", "mobilenetv2_100"), ("none", "resnet18")):
        run_dir = tmp_path / "runs" / f"{student}-{method}"
        config = DistillConfig(student=student, method=method, out=str(run_dir))
        jobs.append(SweepJob(config=config, profiles=[], formats=["onnx"], tag=f"[{student} {method}]"))
        state.students[run_dir.name] = StudentProgress(run_dir=str(run_dir), method=method)
    lines: list[str] = []
    fan_out(state, jobs, launcher, tmp_path, lambda: None, lines.append, poll_s=0.0)
    assert submitted == [
        ("resnet18-dait_f", None, "lab"),
        ("mobilenetv2_100-dait_f", "afterok:100", "lab"),
        ("resnet18-none", "afterany:100", "lab"),
    ]
    assert cancelled == ["101"]
    status = {name: (e.status, e.job_id) for name, e in state.students.items()}
    assert status == {
        "resnet18-dait_f": ("failed", "100"),
        "mobilenetv2_100-dait_f": ("blocked", "101"),
        "resnet18-none": ("done", "102"),
    }
    assert "error: the disk is full" in state.students["resnet18-dait_f"].reason


def test_the_local_launcher_pins_each_job_to_its_gpu_or_its_share_of_the_cores(tmp_path, monkeypatch):
    """--gpus 0,1: a job's process sees only its slot's GPU; without GPUs, --parallel 2 gives each job half
    the cores (OMP_NUM_THREADS and the job's own thread count)."""
    import os
    import subprocess

    from dait_edge.records import DistillConfig, SweepJob
    from dait_edge.sweep.launch import LocalLauncher

    seen = []

    class Process:
        pid = 4242

        def __init__(self, args, env, **kwargs):
            seen.append((args, env))

    monkeypatch.setattr(subprocess, "Popen", Process)
    job_file = SweepJob(config=DistillConfig(out=str(tmp_path / "run")), profiles=[], formats=["onnx"]).write(
        tmp_path / "job.json"
    )
    gpus = LocalLauncher(2, ["0", "1"])
    assert gpus.threads() is None
    gpus.submit(job_file, tmp_path / "a.log", 1)
    assert seen[-1][1]["CUDA_VISIBLE_DEVICES"] == "1" and seen[-1][0][-2:] == [
        "dait_edge.sweep.worker",
        str(job_file),
    ]
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    cores = LocalLauncher(2)
    assert cores.threads() == 4
    cores.submit(job_file, tmp_path / "b.log", 0)
    env = seen[-1][1]
    assert env["OMP_NUM_THREADS"] == "4" and env.get("CUDA_VISIBLE_DEVICES") == os.environ.get(
        "CUDA_VISIBLE_DEVICES"
    )


def test_a_restarted_slurm_sweep_cancels_jobs_held_on_a_first_run_it_submits_again(tmp_path, monkeypatch):
    """Run again after its first run failed, the sweep resubmits that run; a job SLURM still holds on the old
    job id (afterok, never to be met) is cancelled and submitted again, now after the new id."""
    submitit = pytest.importorskip("submitit")
    from dait_edge.records import DistillConfig, StudentProgress, SweepJob
    from dait_edge.sweep.fan_out import fan_out
    from dait_edge.sweep.launch import SubmititLauncher

    submitted, cancelled = _slurm_stand_in(monkeypatch, submitit, tmp_path, first_id=201)
    launcher = SubmititLauncher(tmp_path / "slurm", "slurm")
    jobs, state = [], SweepState(recipe={}, students={}, profiles=[], formats=["onnx"], created="now")
    before = {"resnet18": ("failed", "100"), "mobilenetv2_100": ("running", "101")}
    for student, (status, job_id) in before.items():
        run_dir = tmp_path / "runs" / f"{student}-dait_f"
        jobs.append(
            SweepJob(config=DistillConfig(student=student, out=str(run_dir)), profiles=[], formats=["onnx"])
        )
        entry = StudentProgress(run_dir=str(run_dir), method="dait_f", status=status, job_id=job_id)
        entry.launcher = "slurm"
        state.students[run_dir.name] = entry
    fan_out(state, jobs, launcher, tmp_path, lambda: None, lambda line: None, poll_s=0.0)
    assert cancelled == ["101"]
    assert submitted == [("resnet18-dait_f", None, None), ("mobilenetv2_100-dait_f", "afterok:201", None)]
    assert {e.status for e in state.students.values()} == {"done"}
