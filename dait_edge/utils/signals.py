"""SIGINT / SIGTERM during long work: stop at the next safe point, never in the middle of a write.

The first signal sets a flag (the current atomic write finishes: the handler raises nothing); the work
checks it between steps with `check_stop()` and raises `Interrupted`, which the CLI turns into one line
saying what is saved and how to resume, and exit code 128 + the signal's number. A second signal, a
second or more after the first, exits at once (os._exit): a temporary file may stay behind, hidden and
never renamed onto a finished name. Under torchrun the ranks agree on the stop in an all-reduce, so all
stop at the same step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from dait_edge.errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A second signal this soon after the first is the same request delivered twice (a scheduler signalling
# both torchrun and its ranks, a terminal's process group), not a user insisting.
_REPEAT_S = 1.0
_received: list[tuple[int, float]] = []


def _handler(signum, frame) -> None:
    now = time.monotonic()
    if _received:
        if now - _received[0][1] >= _REPEAT_S:  # the second signal: the user means it
            os._exit(128 + signum)
        return
    _received.append((signum, now))
    # os.write, not print: the signal may have interrupted a write to stderr (a progress bar)
    message = (
        f"\n{signal.Signals(signum).name}: stopping at the next safe point (send it again to exit at once)\n"
    )
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), message.encode())


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """DataLoader `worker_init_fn`: SIGINT / SIGTERM are the main process's to act on. A worker that died of
    one (a signal sent to the process group) would end the run with a DataLoader error instead of a stop."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def stop_on_signal() -> Iterator[None]:
    """Within the block, SIGINT / SIGTERM request a stop instead of killing the process. Outside the main
    thread (signal handlers cannot be set there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    _received.clear()
    for sig in _SIGNALS:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received.clear()


def stop_requested() -> bool:
    return bool(_received)


def check_stop(where: str, saved: str, *, elsewhere: bool = False) -> None:
    """Raise Interrupted if a signal asked to stop (here, or in another DDP process: `elsewhere`): `where`
    says what was running, `saved` what is on disk."""
    if _received or elsewhere:
        raise Interrupted(_received[0][0] if _received else signal.SIGTERM, f"{where}; {saved}")
