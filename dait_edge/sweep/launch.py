"""Where a fanned-out sweep's runs execute: local processes (`LocalLauncher`, `--parallel N`, one GPU each or
the CPU's cores split between them), or SLURM jobs through submitit (`SubmititLauncher`, `--launcher slurm`;
`submitit-local` runs the same code path as local processes, through submitit's local executor).

A launcher starts a job from its job file (`records.SweepJob`, run by `worker.py`), says whether it has
ended and how, and can find again a job a previous sweep process started (the job ids are in sweep.json).
It never decides what runs when: that is `fan_out.py`'s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dait_edge.errors import UserError

RUNNING = None  # what `poll` returns while a job runs


def _pid_alive(pid: int) -> bool:
    """Is process `pid` a sweep worker that still runs (not a zombie, not a reused pid)?"""
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    except (OSError, ValueError):
        return False
    return status != "Z" and (b"dait_edge.sweep.worker" in cmdline or b"submitit" in cmdline)


@dataclass
class LocalLauncher:
    """`parallel` worker processes at once on this machine; each gets one of `gpus` (CUDA_VISIBLE_DEVICES),
    or, without GPUs, an equal share of the CPU cores (its torch and OpenMP threads)."""

    parallel: int
    gpus: list[str] = field(default_factory=list)
    name: str = "local"
    profiles_in_job: bool = False  # profiles are measured afterwards, one run at a time: never under load
    _processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _gone: dict[str, bool] = field(default_factory=dict)  # a re-attached job's pid

    def __post_init__(self):
        if self.parallel < 1:
            raise UserError(f"--parallel must be 1 or more, not {self.parallel}.", setting="parallel")

    @property
    def slots(self) -> int:
        return self.parallel

    def threads(self) -> int | None:
        """Each job's CPU threads: the cores split between the jobs (None with GPUs: the defaults)."""
        return None if self.gpus else max(1, (os.cpu_count() or 1) // self.parallel)

    def submit(self, job_file: Path, log: Path, slot: int, after: tuple[str, list[str]] = ("", [])) -> str:
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        else:
            env["OMP_NUM_THREADS"] = str(self.threads())
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "dait_edge.sweep.worker", str(job_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C reaches the sweep, which stops its jobs at safe points
            )
        self._processes[str(process.pid)] = process
        return str(process.pid)

    def poll(self, job_id: str) -> str | None:
        """None while the job runs; "done", or "failed (exit code N)" when it has ended."""
        process = self._processes.get(job_id)
        if process is None:  # a job a previous sweep process started: it ended when its pid is gone
            return RUNNING if _pid_alive(int(job_id)) else "ended"
        code = process.poll()
        if code is None:
            return RUNNING
        if code < 0:
            return f"killed by signal {-code}"
        return "done" if code == 0 else f"exit code {code}"

    def reattach(self, job_id: str) -> bool:
        return job_id.isdigit() and _pid_alive(int(job_id))

    def log_of(self, job_id: str, log: Path) -> Path:
        return log

    def cancel(self, job_id: str) -> None:
        process = self._processes.get(job_id)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Ask every job this process started to stop at its next safe point (SIGTERM), and wait for them."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes.values():
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise UserError(
            "--launcher slurm needs submitit; pip install 'dait-edge[cluster]' (or pip install submitit)."
        ) from None
    return submitit


@dataclass
class SubmititLauncher:
    """Each run a job through submitit: on SLURM (`cluster="slurm"`), or as local processes through
    submitit's local executor (`cluster="local"`: the same code path, no cluster). A run on several GPUs
    (`gpus_per_run` > 1) is one job of that many tasks, which the worker turns into a torchrun-style DDP
    process group (submitit's TorchDistributedEnvironment)."""

    folder: Path
    cluster: str = "slurm"
    partition: str | None = None
    time_min: int = 240
    gpus_per_run: int = 0
    cpus_per_run: int | None = None
    extra: dict[str, str] = field(default_factory=dict)  # --slurm-arg K=V: sbatch options
    name: str = "slurm"
    profiles_in_job: bool = True  # a profile is of the node that ran the job (its hardware is recorded)
    _jobs: dict = field(default_factory=dict)

    def __post_init__(self):
        submitit = require_submitit()
        self.name = "slurm" if self.cluster == "slurm" else f"submitit-{self.cluster}"
        self.executor = submitit.AutoExecutor(folder=str(Path(self.folder) / "%j"), cluster=self.cluster)
        tasks = max(1, self.gpus_per_run)
        params: dict = {"timeout_min": self.time_min, "name": "dait-edge-sweep", "tasks_per_node": tasks}
        if self.gpus_per_run:
            params["gpus_per_node"] = self.gpus_per_run
        if self.cpus_per_run:
            params["cpus_per_task"] = self.cpus_per_run
        if self.cluster == "slurm":
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.extra:
                params["slurm_additional_parameters"] = dict(self.extra)
        self.executor.update_parameters(**params)

    @property
    def slots(self) -> int:
        return 1 << 30  # the scheduler queues them; on the local executor every job starts at once

    def threads(self) -> int | None:
        return self.cpus_per_run

    @property
    def native_dependencies(self) -> bool:
        """On SLURM the jobs wait on each other in the queue (sbatch --dependency); the local executor has
        no queue, so the sweep's process holds them back instead."""
        return self.cluster == "slurm"

    def submit(self, job_file: Path, log: Path, slot: int, after: tuple[str, list[str]] = ("", [])) -> str:
        from dait_edge.sweep.worker import run_job_file

        kind, ids = after
        if self.cluster == "slurm":
            extra = dict(self.extra)
            if ids:
                extra["dependency"] = f"{kind}:{':'.join(ids)}"
            self.executor.update_parameters(slurm_additional_parameters=extra)
        job = self.executor.submit(run_job_file, str(job_file))
        self._jobs[str(job.job_id)] = job
        return str(job.job_id)

    def poll(self, job_id: str) -> str | None:
        job = self._jobs.get(job_id)
        if job is None:
            return RUNNING if self.reattach(job_id) else "ended"
        if not job.done():
            return RUNNING
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - submitit wraps whatever the job raised
            lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
            said = next((ln for ln in reversed(lines) if "error:" in ln), lines[0] if lines else "")
            return f"submitit: {said[:300] or type(err).__name__}"
        return "done"

    def reattach(self, job_id: str) -> bool:
        """A job a previous sweep process submitted: still queued or running?"""
        if self.cluster == "local":
            return job_id.isdigit() and _pid_alive(int(job_id))  # the local executor's job id is its pid
        submitit = require_submitit()
        job = submitit.SlurmJob(folder=str(Path(self.folder) / "%j"), job_id=job_id)
        if job.state in (
            "PENDING",
            "RUNNING",
            "CONFIGURING",
            "COMPLETING",
            "REQUEUED",
            "RESIZING",
            "SUSPENDED",
        ):
            self._jobs[job_id] = job
            return True
        return False

    def log_of(self, job_id: str, log: Path) -> Path:
        job = self._jobs.get(job_id)
        return Path(job.paths.stdout) if job is not None else log

    def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.cancel(check=False)

    def stop(self) -> None:
        """A stopped sweep leaves SLURM jobs running (they are the cluster's); local-executor jobs are
        asked to stop at a safe point. Running the sweep again waits for what still runs."""
        if self.cluster != "local":
            return
        for job in self._jobs.values():
            if not job.done():
                job.cancel(check=False)
