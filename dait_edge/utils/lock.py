"""One writer at a time: a lock file that names its owner, released by the kernel when the owner dies.

`exclusive(folder, what)` takes `folder/.lock` with flock(2) and writes `pid@host` into it. A second process
is refused with the owner's pid (or, with `wait=True`, waits for it: two builds of one cache would do the
same work twice). The kernel drops the lock when its process dies, however it dies, so a lock file that
still names a process but is free is stale: it is taken over, and said so. flock works between processes
of one machine; on a network filesystem whose server does not support it, the lock is advisory only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from dait_edge.errors import UserError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold `folder`'s lock for the block (`what` names the folder in messages, e.g. "run directory")."""
    path = Path(folder) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd) or "another process"
            if not wait:
                raise UserError(
                    f"the {what} {folder} is in use by process {owner} (lock {path}); wait for it to finish,"
                    " or use another folder."
                ) from None
            print(f"waiting for process {owner}, which is writing the {what} {folder}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        stale = _owner(fd)
        if stale:  # free, yet it names an owner: that process died holding it
            print(
                f"took over the stale lock of the {what} {folder} (process {stale} is gone)", file=sys.stderr
            )
        _write(fd, f"{os.getpid()}@{socket.gethostname()}")
        try:
            yield
        finally:
            _write(fd, "")  # released cleanly: the next owner finds no name in it
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _owner(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 256).decode("utf-8", "replace").strip()


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    os.fsync(fd)
