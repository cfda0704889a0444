"""SIGINT / SIGTERM during long work: stop at the next safe point, never in the middle of a write.

The first signal sets a flag (the current atomic write finishes: the handler raises nothing); the work
checks it between steps with `check_stop()` and raises `Interrupted`, which the CLI turns into one line
saying what is saved and how to resume, and exit code 128 + the signal's number. A second signal exits
at once (os._exit): a temporary file may stay behind, hidden and never renamed onto a finished name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from dait_edge.errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _handler(signum, frame) -> None:
    if _received:  # the second signal: the user means it
        os._exit(128 + signum)
    _received.append(signum)
    print(
        f"\n{signal.Signals(signum).name}: stopping at the next safe point (send it again to exit at once)",
        file=sys.stderr,
        flush=True,
    )


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
        raise Interrupted(_received[0] if _received else signal.SIGTERM, f"{where}; {saved}")
