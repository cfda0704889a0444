"""One fanned-out sweep run in its own process: `python -m dait_edge.sweep.worker SWEEP/jobs/RUN.json`
(the local launcher), or `run_job_file` inside a submitit job. It distils (or resumes), exports and, where
the job says so, profiles that run, as the sweep's own loop does; its output is the job's log."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when the run is finished, 2 on bad input (an `error:` line), 128 + N when signal N
    stopped it at a safe point (a `stopped:` line)."""
    from dait_edge.errors import Interrupted, UserError
    from dait_edge.records import RecordError, StudentProgress, SweepJob
    from dait_edge.utils.signals import stop_on_signal

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dait_edge.sweep.worker SWEEP/jobs/RUN.json", file=sys.stderr)
        return 2
    try:
        job = SweepJob.read(args[0])
        _threads(job.threads)
        _distributed()
        with stop_on_signal():
            from dait_edge.sweep.one import run_one

            run_one(job, StudentProgress(run_dir=job.config.out), log=lambda line: print(line, flush=True))
    except (UserError, RecordError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    except Interrupted as err:
        print(f"stopped: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    return 0


def _threads(threads: int | None) -> None:
    """The job's share of the CPU: torch's intra-op threads (OMP_NUM_THREADS is set by the launcher too)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def _distributed() -> None:
    """A submitit job of several tasks (one per GPU) becomes a torchrun-style process group: RANK,
    WORLD_SIZE, MASTER_ADDR, ... from submitit's environment, which the distill engine reads."""
    try:
        import submitit
    except ImportError:
        return
    try:
        environment = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job
        return
    if environment.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export()


def run_job_file(path: str) -> None:
    """What a submitit job runs: the worker in this process; a failure raises with the worker's reason."""
    code = main([path])
    if code != 0:
        raise RuntimeError(f"error: the sweep run {path} ended with exit code {code} (see the job's log)")


if __name__ == "__main__":
    sys.exit(main())
