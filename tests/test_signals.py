"""pipeline.signals: the main thread's wait for a stop, and the handlers that set it."""

from __future__ import annotations

import os
import signal
import threading
import time

from pipeline.signals import sleep_until, stop_on_signals


def test_sleep_until_returns_false_when_the_time_is_up() -> None:
    stop = threading.Event()
    started = time.monotonic()
    assert sleep_until(stop, 0.25) is False
    assert 0.25 <= time.monotonic() - started < 2


def test_sleep_until_returns_true_soon_after_another_thread_sets_the_event() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert sleep_until(stop) is True
    assert time.monotonic() - started < 2


def test_a_signal_sets_the_event_inside_the_block_and_the_old_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = threading.Event()
    seen: list[int] = []
    with stop_on_signals(stop, seen.append):
        os.kill(os.getpid(), signal.SIGTERM)
        assert sleep_until(stop, 5) is True
    assert seen == [signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
