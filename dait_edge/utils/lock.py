"""One writer at a time: a lock file that names its owner, released by the kernel when the owner dies.

`exclusive(folder, what)` takes `folder/.lock` with a POSIX record lock (lockf: not inherited by forked
DataLoader workers, and carried over NFS) and writes `pid@host` into it. A second process is refused with
the owner's name (or, with `wait=True`, waits for it: two builds of one cache would do the same work twice).
The kernel drops the lock when its process dies, however it dies, so a lock file that still names a
process but is free is stale: it is taken over, and said so. Where the filesystem cannot lock (no lock
support, a read-only cache shared by others) the work goes on unlocked, with a warning: a lock that
cannot be had must not stop a reader.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from dait_edge.errors import UserError

LOCK_FILE = ".lock"
_HELD = (errno.EACCES, errno.EAGAIN)  # what lockf raises while another process holds the lock
_UNLOCKABLE = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EROFS, errno.EACCES, errno.EPERM)


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold `folder`'s lock for the block (`what` names the folder in messages, e.g. "run directory")."""
    path = Path(folder) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        if err.errno not in _UNLOCKABLE:
            raise
        _warn(f"cannot lock the {what} {folder} ({err.strerror}); going on without the lock")
        yield
        return
    try:
        if not _acquire(fd, path, folder, what, wait):
            yield  # the filesystem cannot lock: said in _acquire
            return
        stale = _owner(fd)
        if stale:  # free, yet it names an owner: that process died holding it
            _warn(f"took over the stale lock of the {what} {folder} (process {stale} is gone)")
        _write(fd, f"{os.getpid()}@{socket.gethostname()}")
        try:
            yield
        finally:
            _write(fd, "")  # released cleanly: the next owner finds no name in it
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, folder, what: str, wait: bool) -> bool:
    """True once this process holds the lock; False where the filesystem has no locks."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno not in _HELD:
            if err.errno in _UNLOCKABLE:
                _warn(f"cannot lock the {what} {folder} ({err.strerror}); going on without the lock")
                return False
            raise
    owner = _owner(fd) or "another process"
    if not wait:
        raise UserError(
            f"the {what} {folder} is in use by process {owner} (lock {path}); wait for it to finish, or use"
            " another folder."
        )
    _warn(f"waiting for process {owner}, which is writing the {what} {folder}")
    fcntl.lockf(fd, fcntl.LOCK_EX)
    return True


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _owner(fd: int) -> str:
    return os.pread(fd, 256, 0).decode("utf-8", "replace").strip()


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    os.fsync(fd)
