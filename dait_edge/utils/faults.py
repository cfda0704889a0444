"""Planned faults, for the reliability tests: die, run out of disk or memory at a named point of the work.

`DAIT_EDGE_FAULT="ACTION@POINT"` (or `ACTION@POINT#N`, the N-th time POINT is reached in this process)
makes `fault_point(POINT)` act: `kill` sends this process SIGKILL (nothing after it runs, as when a
machine is switched off), `sigint` / `sigterm` send it that signal (what a user or a scheduler does),
`enospc` raises the OSError a full disk raises, `oom` raises torch's CUDA out-of-memory error, `nan`
returns "nan" for the caller to poison its loss with. Unset (always, outside tests) it costs a dict lookup.

Points: `train-step` (after each optimiser step), `epoch-end:S` (stage S's epoch outputs all on disk),
`stage-start:S`, `cache-chunk` (a VLM cache chunk on disk), `write:NAME` (an atomic write of file NAME,
its data in the temporary file, before the rename), `qat-step` and `qat-epoch-end` (export --qat).
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "DAIT_EDGE_FAULT"
_hits: dict[str, int] = {}


def reset() -> None:
    """Forget how often each point was reached (tests that plan faults in one process)."""
    _hits.clear()


def _planned() -> tuple[str, str, int] | None:
    spec = os.environ.get(ENV, "")
    if "@" not in spec:
        return None
    action, _, point = spec.partition("@")
    point, _, nth = point.partition("#")
    return action, point, int(nth or 1)


def fault_point(point: str) -> str | None:
    """Act as planned if `point` is the planned one, reached for the planned time; returns the action."""
    planned = _planned()
    if planned is None or planned[1] != point:
        return None
    _hits[point] = _hits.get(point, 0) + 1
    action, _, nth = planned
    if _hits[point] != nth:
        return None
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action in ("sigint", "sigterm"):
        os.kill(os.getpid(), signal.SIGINT if action == "sigint" else signal.SIGTERM)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    elif action == "oom":
        import torch

        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (planned fault)")
    return action
