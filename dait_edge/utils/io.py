"""Atomic writes: a killed process never leaves a half-written file that looks finished."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dait_edge.utils.faults import fault_point


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The data reaches the disk before the rename (fsync), so a power cut on a device leaves the old file
    or the new one, never an empty one. An unwritable folder is a one-line UserError.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = temp_path_beside(path)
    except OSError as err:
        from dait_edge.errors import UserError

        raise UserError(
            f"cannot write {path}: {err.strerror or err}; choose a folder you can write to (or copy the run there)."
        ) from None
    try:
        yield tmp_path
        fault_point(f"write:{path.name}")
        with open(tmp_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp_path, path)
        _fsync_folder(path.parent)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
        if not _disk_full(err, path.parent):
            raise
        from dait_edge.errors import UserError

        kept = "the previous file is kept" if path.exists() else "nothing was written"
        raise UserError(
            f"the disk is full while writing {path} ({kept}); free space on {path.parent} (or write elsewhere)"
            " and run the command again (a run continues with --resume)."
        ) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _disk_full(err: BaseException, folder: Path) -> bool:
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    if "No space left on device" in str(err):
        return True
    # torch.save says only "file write failed": a full disk if the folder has (almost) nothing free now
    if "file write failed" in str(err):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free < 64 * 2**20
    return False


def _fsync_folder(folder: Path) -> None:
    # The rename itself is durable once the folder is synced; not every filesystem allows it.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_path_beside(path: Path) -> Path:
    """A new empty hidden file next to `path`, with ordinary permissions (mkstemp's are 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # outputs are copied to devices and shared; keep them readable
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_toml(path: Path, what: str, fix: str, setting: str | None = None) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed one is a one-line UserError naming `what` and `fix`."""
    import tomllib

    from dait_edge.errors import UserError

    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist; {fix}", setting=setting) from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise UserError(
            f"cannot parse {what} {path}: {' '.join(str(err).split())}; {fix}", setting=setting
        ) from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()
