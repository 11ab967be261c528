"""Stopping a long-running process on Ctrl-C or SIGTERM without ever hanging it.

Python runs a signal handler in the main thread, the next time that thread runs bytecode. A main
thread blocked in `threading.Event.wait()` (a lock wait) runs none: when the kernel hands the
signal to another thread (waitress', APScheduler's, the heartbeat's), the lock wait is not
interrupted and the handler waits with it, for ever. Seen as `zhuanlan demo` and `zhuanlan
schedule` ignoring a Ctrl-C that came while they waited. And `Event.set()` from a handler that
interrupted the main thread inside that event's own `wait()` would block on a lock its thread
holds. So the main thread never waits on such an event: it sleeps in short steps and looks at the
flag (`sleep_until`), and the handler runs within a step of the signal. Other threads may wait on
the event as usual.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long a stop can go unnoticed by a sleeping main thread.
STEP_SECONDS = 0.1


def sleep_until(stop: threading.Event, seconds: float | None = None) -> bool:
    """Sleep until `stop` is set or `seconds` have passed (None: no limit); True when stopped."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not stop.is_set():
        left = STEP_SECONDS if deadline is None else min(STEP_SECONDS, deadline - time.monotonic())
        if left <= 0:
            return False
        time.sleep(left)
    return True


@contextmanager
def stop_on_signals(stop: threading.Event, on_signal: Callable[[int], None] | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (after `on_signal(signum)`) inside the block; the handlers
    that were there before come back after it. Main thread only, as Python's signal handlers."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if on_signal is not None:
            on_signal(signum)
        stop.set()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
