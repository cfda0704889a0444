"""A sweep's runs as separate processes or jobs (`launch.py`), started when what they need exists.

What a run needs that another run builds: the stage-1 teacher (one per sweep) and the VLM embedding cache
(one per set of views). The first run of each method is its pioneer: pioneers start one at a time, in
order, so no two builds of one teacher or cache run at once (the caches' locks would make the second wait
idle), and a method's other runs start once its pioneer has reached the last stage (its teacher is stored,
its cache built) or finished. A pioneer that fails blocks its method's other runs, saying so.

Progress is one line per change (queued, running with its stage and epoch, done with its top-1, failed
with the reason and its log), and sweep.json records each run's status and job id after every change:
running the same sweep again keeps finished runs, resubmits failed or cancelled ones, and waits for runs
whose jobs are still alive.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from dait_edge.errors import Interrupted
from dait_edge.records import EpochMetrics, RunLayout, StudentProgress, SweepJob, SweepState
from dait_edge.sweep.launch import RUNNING
from dait_edge.sweep.one import finished, progress_from_disk, run_one
from dait_edge.utils.signals import check_stop

POLL_S = 2.0


def _name(job: SweepJob) -> str:
    return Path(job.config.out).name


def _last_epoch(job: SweepJob) -> tuple[int, int] | None:
    """(stage, epoch) of the run's last finished epoch, from its metrics.jsonl; None before the first."""
    path = RunLayout(job.config.out).metrics
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        last = EpochMetrics.from_dict(json.loads(lines[-1])) if lines else None
    except Exception:  # noqa: BLE001 - no file yet, or a line being written: read it next time
        return None
    return (last.stage, last.epoch) if last is not None else None


def _in_last_stage(job: SweepJob) -> bool:
    """Has the run finished an epoch of its last stage (stage 2: the teacher is stored, the cache built)?"""
    last = _last_epoch(job)
    return last is not None and last[0] == 2


class _Schedule:
    """Which job may start now: pioneers one at a time, the others after their method's pioneer."""

    def __init__(self, jobs: list[SweepJob], state: SweepState, native: bool = False):
        self.jobs, self.state = jobs, state
        # SLURM orders the jobs itself (sbatch --dependency): a job is handed over once what it waits for
        # has been submitted, not finished
        self.native = native
        self.pioneer: dict[str, SweepJob] = {}
        for job in jobs:
            self.pioneer.setdefault(job.config.method, job)

    def status(self, job: SweepJob) -> str | None:
        return self.state.students[_name(job)].status

    def blocked_by(self, job: SweepJob) -> str | None:
        """The name of the failed run this job needs, if any."""
        pioneer = self.pioneer[job.config.method]
        if pioneer is not job and self.status(pioneer) in ("failed", "blocked"):
            return _name(pioneer)
        return None

    def after(self, job: SweepJob) -> tuple[str, list[str]]:
        """(SLURM dependency type, the job ids) this job waits for: a pioneer for every earlier pioneer to
        have ended (afterany), another run for its method's pioneer to have succeeded (afterok)."""
        pioneer = self.pioneer[job.config.method]
        if pioneer is job:
            earlier = [p for p in self.pioneer.values() if self.jobs.index(p) < self.jobs.index(job)]
            ids = [self.state.students[_name(p)].job_id for p in earlier if self.status(p) == "running"]
            return "afterany", [i for i in ids if i]
        entry = self.state.students[_name(pioneer)]
        return "afterok", [entry.job_id] if entry.status == "running" and entry.job_id else []

    def ready(self, job: SweepJob) -> bool:
        pioneer = self.pioneer[job.config.method]
        if self.native:  # submitted as soon as what it waits for is submitted (or over)
            waits = [p for p in self.pioneer.values() if self.jobs.index(p) < self.jobs.index(job)]
            waits = waits if pioneer is job else [pioneer]
            return all(self.status(p) != "queued" for p in waits)
        if pioneer is job:  # earlier pioneers first: they may build what this one needs
            earlier = [p for p in self.pioneer.values() if self.jobs.index(p) < self.jobs.index(job)]
            return all(self.status(p) in ("done", "failed", "blocked") or _in_last_stage(p) for p in earlier)
        return self.status(pioneer) == "done" or (
            self.status(pioneer) == "running" and _in_last_stage(pioneer)
        )


def _epochs_text(job: SweepJob) -> str:
    last = _last_epoch(job)
    if last is None:
        return "starting"
    stage, epoch = last
    total = job.config.stage1_epochs if stage == 1 else job.config.stage2_epochs
    return f"stage {stage} epoch {epoch + 1}/{total} done"  # metrics.jsonl counts epochs from 0


def _reason(log: Path | None, outcome: str) -> str:
    """Why a job failed: the `error:` / `stopped:` line it ended with, else what the launcher saw (an exit
    code, a signal, submitit's message) and the last line of its log (a kill leaves no error line)."""
    text = ""
    # submitit splits a job's output: its lines in *_log.out, the `error:` line (stderr) in *_log.err
    for path in [log, log.with_name(log.name.replace("_log.out", "_log.err"))] if log else []:
        try:
            text += path.read_text(encoding="utf-8", errors="replace") + "\n" if path.is_file() else ""
        except OSError:
            pass
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("error:", "stopped:"))]
    if said:
        return said[-1][:300]
    ends = f"; its log ends with: {lines[-1][:200]}" if lines else ""
    return f"the job ended without finishing, {outcome}{ends}"


def fan_out(
    state: SweepState,
    jobs: list[SweepJob],
    launcher,
    out_dir: Path,
    save,
    log,
    poll_s: float = POLL_S,
) -> None:
    """Run `jobs` through `launcher`, recording each run's progress in `state` (saved with `save`); the
    local launcher's profiles are measured afterwards in this process, one run at a time."""
    schedule = _Schedule(jobs, state, native=getattr(launcher, "native_dependencies", False))
    job_dir, log_dir = out_dir / "jobs", out_dir / "logs"
    pending, running = [], {}
    for job in jobs:
        name, entry = _name(job), state.students[_name(job)]
        job.profiles_here = launcher.profiles_in_job
        job.threads = launcher.threads()
        if finished(job):
            progress_from_disk(entry, job)
            entry.status = "done"
            log(f"{job.tag} done earlier{_top1(entry)}")
        elif entry.status in ("queued", "running") and entry.job_id and entry.launcher == launcher.name:
            if launcher.reattach(entry.job_id):
                entry.status = "running"
                running[name] = entry.job_id
                log(f"{job.tag} still running (job {entry.job_id}): waiting for it")
            else:
                pending.append(job)
        else:
            pending.append(job)
        if job in pending:
            entry.status, entry.job_id, entry.reason = "queued", None, None
            job.write(job_dir / f"{name}.json")
    if schedule.native:  # a job found again that SLURM holds on a first run about to be resubmitted waits on
        for job in jobs:  # the old job id, which will never succeed: cancelled, and submitted again after it
            name, pioneer = _name(job), schedule.pioneer[job.config.method]
            if name in running and pioneer in pending:
                launcher.cancel(running.pop(name))
                entry = state.students[name]
                entry.status, entry.job_id, entry.reason = "queued", None, None
                pending.append(job)
                job.write(job_dir / f"{name}.json")
                log(f"{job.tag} cancelled and queued again: its method's first run is submitted anew")
        pending.sort(key=jobs.index)
    save()
    shown: dict[str, str] = {}
    slots: dict[str, int] = {}  # run -> the launcher slot (GPU) it holds while it runs
    try:
        while pending or running:
            check_stop("the sweep stopped", f"its progress is in {out_dir}; finished runs are kept")
            for job in list(pending):
                name, entry = _name(job), state.students[_name(job)]
                blocker = schedule.blocked_by(job)
                if blocker:
                    pending.remove(job)
                    entry.status, entry.reason = (
                        "blocked",
                        f"{blocker} failed, and this run needs what it builds",
                    )
                    log(f"{job.tag} could not start: {entry.reason}")
                elif len(running) < launcher.slots and schedule.ready(job):
                    pending.remove(job)
                    log_file = log_dir / f"{name}.log"
                    # the lowest slot no running job holds: with --gpus, no two jobs share a GPU
                    slots[name] = min(set(range(len(running) + 1)) - {slots.get(n) for n in running})
                    after = schedule.after(job) if schedule.native else ("", [])
                    try:
                        entry.job_id = launcher.submit(job_dir / f"{name}.json", log_file, slots[name], after)
                    except Exception as err:  # noqa: BLE001 - sbatch refusing a job (partition, option)
                        entry.status, entry.reason = (
                            "failed",
                            f"could not be submitted: {err}".splitlines()[0],
                        )
                        log(f"{job.tag} {entry.reason}")
                        continue
                    entry.launcher, entry.status = launcher.name, "running"
                    entry.log = str(launcher.log_of(entry.job_id, log_file))
                    running[name] = entry.job_id
                    log(f"{job.tag} running as job {entry.job_id} (log: {entry.log})")
                    save()  # its job id on disk at once: a sweep that dies now finds the job again
            for name, job_id in list(running.items()):
                if name not in running:  # cancelled above: its pioneer failed
                    continue
                job = next(j for j in jobs if _name(j) == name)
                entry = state.students[name]
                outcome = launcher.poll(job_id)
                if outcome is RUNNING:
                    text = _epochs_text(job)
                    if shown.get(name) != text:
                        shown[name] = text
                        log(f"{job.tag} running ({text})")
                    continue
                del running[name]
                # a job found again after a restart: done when its folder says so
                done = outcome == "done" or (outcome == "ended" and finished(job))
                progress_from_disk(entry, job)
                if done:
                    entry.status, entry.reason = "done", None
                    log(f"{job.tag} done{_top1(entry)}")
                else:
                    entry.status = "failed"
                    entry.reason = _reason(Path(entry.log) if entry.log else None, outcome)
                    log(f"{job.tag} failed: {entry.reason} (log: {entry.log})")
                    for other in jobs:  # held by SLURM on this run's success, which will not come
                        if schedule.native and schedule.blocked_by(other) == name and _name(other) in running:
                            launcher.cancel(running.pop(_name(other)))
                            waiting = state.students[_name(other)]
                            waiting.status, waiting.reason = (
                                "blocked",
                                f"{name} failed, and this run needs what it builds",
                            )
                            log(f"{other.tag} cancelled: {waiting.reason}")
            save()
            if pending or running:
                time.sleep(poll_s)
    except Interrupted:
        launcher.stop()
        save()
        raise
    if not launcher.profiles_in_job:  # measured here, one run at a time, with no training beside them
        for job in jobs:
            entry = state.students[_name(job)]
            if entry.status == "done":
                job.profiles_here = True
                run_one(job, entry, save, log)
    unfinished = state.unfinished()
    for name, entry in unfinished.items():
        log(f"{name}: {entry.status}: {entry.reason}")
    if unfinished:
        log(f"{len(unfinished)} of {len(jobs)} run(s) did not finish; run the same sweep again to retry them")
    save()


def _top1(entry: StudentProgress) -> str:
    return f" (test top-1 {entry.student_top1:.1f}%)" if entry.student_top1 is not None else ""
