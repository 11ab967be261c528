"""The crawl process's end of the pipeline worker: a `Runner` that hands pages to another process.

The worker (`server`) is a child process started at once (`zhuanlan crawl` makes the client before
setting up Scrapy, so the worker's start overlaps Scrapy's), forked where that is safe
(`start_method`). A sender thread writes to the pipe
(so the reactor never blocks on a full pipe), a receiver thread reads it, and the futures of
requests wait on Scrapy's event loop.

`submit` completes as soon as the page is queued; when `WINDOW` pages are waiting it then waits
until half of them are settled, so a worker slower than the downloads holds the crawl back (Scrapy
keeps the responses in its scraper slot and backs out) instead of queueing pages without bound.
Pages go in `Pages` messages of up to `MAX_SEND`. If the worker dies, every waiting call fails,
the users are told (their spiders close), and the crawl run fails with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING

from pipeline.worker.protocol import (
    Close,
    Closed,
    Finished,
    FromWorker,
    Open,
    Opened,
    Pages,
    Ready,
    RunSetup,
    Settled,
    SetupDone,
    SetupFailed,
    SetupRefused,
    StartFailed,
    Stop,
    ToWorker,
)
from pipeline.worker.runner import RunnerError, RunnerSettings, SharedBySettings
from pipeline.worker.server import main
from pipeline.worker.split import WorkSplit

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.process import BaseProcess

    from pipeline.record import Prepared, SourceRef

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0  # seconds for the worker to import and open the database
STOP_TIMEOUT = 30.0
WINDOW = 256  # pages queued for the worker at most (about 3 MB of pages)
MAX_SEND = 64  # pages per message


class _Page:
    """One page in the sender's queue (joined with its neighbours into one `Pages` message)."""

    __slots__ = ("page", "sid")

    def __init__(self, sid: int, page: Prepared) -> None:
        self.sid = sid
        self.page = page


class _End:
    """Tells the sender thread to exit."""


def start_method() -> str:
    """How the worker process is started: forked where that is safe, spawned otherwise.

    A forked worker starts with the modules the crawl process has loaded by now (SQLAlchemy, the
    database driver, the pipeline's records and tagging): it then imports 0.1 s of CPU instead of
    0.9 s, on the core it shares with the database, and is ready that much sooner (measured). It
    never uses what it inherits: it opens its own connections and logging, and leaves with
    `os._exit` (no finalizer touches the crawl process's connections). Forking is safe only
    while this process runs one thread (a lock another thread holds would stay held in the
    child), which `zhuanlan crawl` does when it starts the worker; a process with threads (a test
    runner, an embedding program) spawns a fresh interpreter instead, as does any system but Linux
    (macOS's system libraries are not safe to fork, which is why Python spawns there)."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


class WorkerClient(SharedBySettings):
    """A `Runner` whose ingest runs in the pipeline worker process."""

    def __init__(self, settings: RunnerSettings, setup: RunSetup | None = None) -> None:
        self.settings = settings
        self.setup = setup
        self.start_method = start_method()
        context = (
            multiprocessing.get_context("fork") if self.start_method == "fork" else multiprocessing.get_context("spawn")
        )
        self._conn, child = context.Pipe()
        # A forked worker holds a copy of this end too: it closes it, or it would never see the end
        # of input when this process dies.
        inherited = self._conn if self.start_method == "fork" else None
        self._process: BaseProcess = context.Process(
            target=main, args=(child, settings, inherited, setup), name="zhuanlan-pipeline-worker", daemon=True
        )
        self._process.start()
        child.close()
        self._outbox: queue.SimpleQueue[ToWorker | _Page | _End] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name="zhuanlan-worker-sender", daemon=True)
        self._sender.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: threading.Thread | None = None
        self._opened: dict[int, asyncio.Future[str | None]] = {}
        self._closed: dict[int, asyncio.Future[str | None]] = {}
        self._ready: asyncio.Future[None] | None = None
        self._error: str | None = None
        self._in_flight = 0  # pages sent and not yet settled
        self.split = WorkSplit()
        self.failures: list[str] = []
        self._last_settled = 0.0  # monotonic time of the last `Settled` (or of the first page)
        self._room: asyncio.Future[None] | None = None  # set when the window has room again
        self._sids = itertools.count(1)
        self._on_lost: list[Callable[[str], None]] = []
        self.users = 0
        self._stopping = False
        self._watchdog = False
        self._finished: queue.SimpleQueue[Finished | None] = queue.SimpleQueue()  # None: the worker is gone

    # -- threads

    def _send_loop(self) -> None:
        # Pages waiting together go in one message; other messages keep their place in the order.
        pages: list[tuple[int, Prepared]] = []
        while True:
            message = self._outbox.get() if not pages else self._next_or_none()
            if isinstance(message, _Page) and len(pages) < MAX_SEND:
                pages.append((message.sid, message.page))
                continue
            try:
                if pages:
                    self._conn.send(Pages(tuple(pages)))
                    pages = []
                if isinstance(message, _Page):
                    pages.append((message.sid, message.page))
                elif isinstance(message, _End):
                    return
                elif message is not None:
                    self._conn.send(message)
            except (OSError, ValueError):
                return  # the worker is gone: the receiver reports it

    def _next_or_none(self) -> ToWorker | _Page | _End | None:
        try:
            return self._outbox.get_nowait()
        except queue.Empty:
            return None

    def _receive_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                message: FromWorker = self._conn.recv()
            except (EOFError, OSError):
                self._finished.put(None)
                self._call_on_loop(loop, self._lost)
                return
            if isinstance(message, Finished):
                self._finished.put(message)  # awaited by `close_run`, after the event loop has ended
            else:
                self._call_on_loop(loop, self._dispatch, message)

    @staticmethod
    def _call_on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the crawl is over, its loop closed: nobody waits any more
            loop.call_soon_threadsafe(callback, *args)

    def _attach_loop(self) -> asyncio.AbstractEventLoop:
        """Start receiving on the running event loop (Scrapy's reactor loop); once."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._ready = self._loop.create_future()
            self._receiver = threading.Thread(
                target=self._receive_loop, args=(self._loop,), name="zhuanlan-worker-receiver", daemon=True
            )
            self._receiver.start()
        return self._loop

    # -- on the event loop

    def _dispatch(self, message: FromWorker) -> None:
        if isinstance(message, Settled):
            self._in_flight -= message.pages
            now = time.monotonic()
            if self._last_settled:
                self.split.worker_idled(message.idle_seconds / max(now - self._last_settled, 1e-3))
            self._last_settled = now
            if self._room is not None and not self._room.done() and self._in_flight <= WINDOW // 2:
                self._room.set_result(None)
        elif isinstance(message, Ready):
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif isinstance(message, StartFailed):
            self._fail(f"the pipeline worker could not start: {message.error}")
        elif isinstance(message, Opened | Closed):
            waiting = self._opened if isinstance(message, Opened) else self._closed
            future = waiting.pop(message.sid, None)
            if future is not None and not future.done():
                future.set_result(message.error)

    def _lost(self) -> None:
        if self._stopping:
            return  # the end of input we asked for
        self._process.join(timeout=5)
        self._fail(f"the pipeline worker stopped unexpectedly (exit code {self._process.exitcode})")

    def _fail(self, error: str) -> None:
        if self._error is not None:
            return
        self._error = error
        self.failures.append(error)
        log.error("%s; pages not yet stored are fetched again by the next crawl", error)
        failure = RunnerError(error)
        for future in (self._ready, self._room, *self._opened.values(), *self._closed.values()):
            if future is not None and not future.done():
                future.set_exception(failure)
        self._opened.clear()
        self._closed.clear()
        for callback in self._on_lost:
            callback(error)

    def _check_started(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._process.kill()
            self._fail(f"the pipeline worker did not start within {START_TIMEOUT:.0f} s")

    # -- the Runner

    def attach(self, on_lost: Callable[[str], None]) -> int:
        self.users += 1
        self._on_lost.append(on_lost)
        return next(self._sids)

    def open(self, sid: int, source: SourceRef, on_error: Callable[[str], None]) -> None:
        """Ask the worker to open the source's run, without waiting: the crawl starts fetching while
        the worker still imports (its first pages wait in the queue)."""
        loop = self._attach_loop()
        if self._error is not None:
            raise RunnerError(self._error)
        if not self._watchdog:
            self._watchdog = True
            loop.call_later(START_TIMEOUT, self._check_started)
        future: asyncio.Future[str | None] = loop.create_future()
        self._opened[sid] = future

        def opened(done: asyncio.Future[str | None]) -> None:
            error = None if done.cancelled() else done.exception() or done.result()
            if error:
                on_error(f"could not start the run of source {source.key}: {error}")

        future.add_done_callback(opened)
        self._outbox.put(Open(sid, source))

    async def submit(self, sid: int, page: Prepared) -> None:
        loop = self._attach_loop()
        if self._error is not None:
            raise RunnerError(self._error)
        if not self._last_settled:
            self._last_settled = time.monotonic()
        self._in_flight += 1
        self._outbox.put(_Page(sid, page))
        if self._in_flight >= WINDOW:
            if self._room is None or self._room.done():
                self._room = loop.create_future()
            self.split.crawl_waited()
            await asyncio.shield(self._room)

    async def close(self, sid: int, requests: int) -> str | None:
        loop = self._attach_loop()
        if self._error is not None:
            raise RunnerError(self._error)
        future: asyncio.Future[str | None] = loop.create_future()
        self._closed[sid] = future
        self._outbox.put(Close(sid, requests))
        return await future

    def plan(self) -> object:
        """What the worker's `RunSetup.prepare` planned, waited for (before the crawl starts: the
        worker prepares while this process imports Scrapy). `SetupRefused` with the worker's
        message when the user can act on it, `RunnerError` otherwise."""
        if self.setup is None:
            raise RunnerError("this pipeline worker was started without a run setup")
        try:
            message = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)
            raise RunnerError(
                f"the pipeline worker stopped before it planned the crawl (exit code {self._process.exitcode})"
            ) from None
        if isinstance(message, SetupFailed):
            if message.refused:
                raise SetupRefused(message.error)
            raise RunnerError(f"the crawl run could not be prepared: {message.error}")
        if not isinstance(message, SetupDone):
            raise RunnerError(f"the pipeline worker answered {type(message).__name__} before its plan")
        return message.plan

    def close_run(self, failures: tuple[str, ...]) -> object:
        """Stop the worker once it has stored everything, having it close the run (`RunSetup.finish`)
        with `failures`; its summary. `RunnerError` when the worker could not."""
        if self._stopping:
            raise RunnerError("the pipeline worker was already told to stop")
        self._request_stop(failures)
        try:
            finished = self._finished.get(timeout=STOP_TIMEOUT) if self._receiver else self._recv_finished()
        except queue.Empty:
            finished = None
        self._wait_stopped()
        if finished is None:
            raise RunnerError("the pipeline worker stopped before it closed the crawl run")
        if finished.error is not None:
            raise RunnerError(f"the crawl run could not be closed: {finished.error}")
        return finished.summary

    def _recv_finished(self) -> Finished | None:
        """`Finished` read from the pipe (no receiver thread: nothing was crawled)."""
        while self._conn.poll(STOP_TIMEOUT):
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                return None
            if isinstance(message, Finished):
                return message
        return None

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.stop()

    def stop(self) -> None:
        """Ask the worker to stop after what it was sent, and wait for it."""
        if self._stopping:
            return
        self._request_stop(None)
        self._wait_stopped()

    def _request_stop(self, failures: tuple[str, ...] | None) -> None:
        self._stopping = True
        self._outbox.put(Stop(failures))
        self._outbox.put(_End())

    def _wait_stopped(self) -> None:
        self._sender.join(timeout=STOP_TIMEOUT)
        self._process.join(timeout=STOP_TIMEOUT)
        if self._process.is_alive():
            log.error("the pipeline worker did not stop in %.0f s: killed", STOP_TIMEOUT)
            self._process.kill()
            self._process.join()
        self._conn.close()
