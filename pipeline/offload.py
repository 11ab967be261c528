"""The one Scrapy item pipeline of a crawl: prepares every item and hands it to the pipeline worker process.

Thin shell (see `pipeline.worker` for why a process, `pipeline.prepare` for what is done here and
`pipeline.chain` for the stages the worker runs). One worker serves every spider of the crawl
process that has the same database, config and run. `zhuanlan crawl` starts it (`prestart`) before
setting up Scrapy, so its imports overlap Scrapy's; otherwise the first spider's pipeline starts
it. It is stopped when the last spider's pipeline closes.

`process_item` completes as soon as the item is queued for the worker; when `WINDOW` items are
waiting it then waits until half of them are stored, so a worker slower than the downloads holds
the crawl back (Scrapy keeps the responses in its scraper slot and backs out) instead of queueing
pages without bound. Items go to the worker in batches and it acknowledges them by the batch, so
the crawl process spends next to nothing per item. `close_spider` completes when the worker has
stored every item before it and closed the source's run. If the worker dies, every waiting item
fails, the spiders are closed, the crawl run fails with the reason, and the source runs are
recorded as unfinished: the next crawl pages fully.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from pipeline.prepare import Preparer
from pipeline.settings_access import config_path, database_url, open_sessions, run_id
from pipeline.tag import vocabulary_from_path
from pipeline.worker import WorkerSettings, main

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.process import BaseProcess

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0  # seconds for the worker to import and open the database
STOP_TIMEOUT = 30.0
WINDOW = 256  # items queued for the worker at most (about 3 MB of pages)
MAX_SEND = 64  # items per message


# Share of its time the worker spent waiting for pages, from which it also tags them.
WORKER_IDLE_SHARE = 0.25
# Pages whose work moves per signal: about one acknowledgement's worth, so the split follows the
# load closely (a whole window's worth overshot: measured, the work swung from side to side).
MAX_PAGES_MOVED = 64
# Pages a crawl prepares before tagging may move to the worker: the worker first loads the keyword
# model (0.4 s of CPU and about 100 MB), which only a long crawl (a backfill) wins back.
TAGS_MOVE_AFTER = 500


class WorkSplit:
    """Which process does the optional per-page work, page by page, so neither waits for the other.

    Tagging (keywords above all) is done by the crawl process unless the worker has time to spare:
    after an acknowledgement says it spent `WORKER_IDLE_SHARE` or more of its time waiting for
    pages, it tags (`TagPipeline`, which tags what comes untagged) the next `span` pages, once the
    crawl has prepared `tags_move_after` pages (a short cycle never moves them). The
    worker's page-only work (signature, snapshot, search text: `pipeline.ahead`) is done by the
    worker unless the crawl process had to wait for it (a full window): then the crawl process does
    it for the next `span` pages. Either way, while the condition holds it starts over; when the
    moved work has made the other side the slower one, it stops, and the work moves back. A worker
    that falls behind for a moment (a commit) is absorbed by the window and changes nothing.
    """

    def __init__(self, span: int = MAX_PAGES_MOVED, tags_move_after: int = TAGS_MOVE_AFTER) -> None:
        self.span = span
        self.tags_move_after = tags_move_after
        self.pages = 0  # pages split so far
        self.ahead_left = 0  # pages whose page-only work the crawl process does
        self.worker_tags_left = 0  # pages the worker tags

    def crawl_waited(self) -> None:
        self.ahead_left, self.worker_tags_left = self.span, 0

    def worker_idled(self, share: float) -> None:
        if share >= WORKER_IDLE_SHARE and self.pages >= self.tags_move_after:
            self.ahead_left, self.worker_tags_left = 0, self.span

    def next_page(self) -> tuple[bool, bool]:
        """(work ahead, tag here) for the next page."""
        self.pages += 1
        ahead = self.ahead_left > 0
        if ahead:
            self.ahead_left -= 1
        tag_here = self.worker_tags_left <= 0
        if not tag_here:
            self.worker_tags_left -= 1
        return ahead, tag_here


class PipelineWorkerError(RuntimeError):
    """The pipeline worker could not start, or stopped before it finished."""


class WorkerClient:
    """The crawl process's end of one worker: a sender thread (so the reactor never blocks on a full
    pipe), a receiver thread, and the futures of requests awaiting their answer."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process: BaseProcess = context.Process(
            target=main, args=(child, settings), name="zhuanlan-pipeline-worker", daemon=True
        )
        self._process.start()
        child.close()
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name="zhuanlan-worker-sender", daemon=True)
        self._sender.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: threading.Thread | None = None
        self._pending: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._ready: asyncio.Future[None] | None = None
        self._error: str | None = None
        self._in_flight = 0  # items sent and not yet acknowledged
        self.split = WorkSplit()
        self._last_done = 0.0  # monotonic time of the last acknowledgement (or of the first item)
        self._room: asyncio.Future[None] | None = None  # set when the window has room again
        self._sids = itertools.count(1)
        self._on_lost: list[Callable[[str], None]] = []
        self.users = 0
        self._stopping = False
        self._watchdog = False

    # -- threads

    def _send_loop(self) -> None:
        # Items waiting together go in one message; other messages keep their place in the order.
        items: list[tuple[int, Any]] = []
        while True:
            message = self._outbox.get() if not items else self._next_or_none()
            if message is not None and message[0] == "item" and len(items) < MAX_SEND:
                items.append((message[1], message[2]))
                continue
            try:
                if items:
                    self._conn.send(("items", items))
                    items = []
                if message is not None and message[0] == "item":
                    items.append((message[1], message[2]))
                elif message is not None:
                    if message[0] == "end":
                        return
                    self._conn.send(message)
            except (OSError, ValueError):
                return  # the worker is gone: the receiver reports it

    def _next_or_none(self) -> Any:
        try:
            return self._outbox.get_nowait()
        except queue.Empty:
            return None

    def _receive_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                loop.call_soon_threadsafe(self._lost)
                return
            loop.call_soon_threadsafe(self._dispatch, message)

    def _attach(self) -> None:
        """Start receiving on the running event loop (Scrapy's reactor loop); once."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._receiver = threading.Thread(
            target=self._receive_loop, args=(self._loop,), name="zhuanlan-worker-receiver", daemon=True
        )
        self._receiver.start()

    # -- on the event loop

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "done":
            self._in_flight -= int(message[1])
            now = time.monotonic()
            if self._last_done:
                self.split.worker_idled(float(message[2]) / max(now - self._last_done, 1e-3))
            self._last_done = now
            if self._room is not None and not self._room.done() and self._in_flight <= WINDOW // 2:
                self._room.set_result(None)
            return
        if kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
            return
        if kind == "failed":
            self._fail(f"the pipeline worker could not start: {message[1]}")
            return
        future = self._pending.pop((kind, message[1]), None)  # opened / closed
        if future is not None and not future.done():
            future.set_result(message[2])

    def _lost(self) -> None:
        if self._stopping:
            return  # the end of input we asked for
        self._process.join(timeout=5)
        self._fail(f"the pipeline worker stopped unexpectedly (exit code {self._process.exitcode})")

    def _fail(self, error: str) -> None:
        if self._error is not None:
            return
        self._error = error
        _FAILURES.append(error)
        log.error("%s; pages not yet stored are fetched again by the next crawl", error)
        failure = PipelineWorkerError(error)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(failure)
        if self._room is not None and not self._room.done():
            self._room.set_exception(failure)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(failure)
        self._pending.clear()
        for callback in self._on_lost:
            callback(error)

    async def _ask(self, key: tuple[str, int], message: tuple[Any, ...]) -> Any:
        self._attach()
        if self._error is not None:
            raise PipelineWorkerError(self._error)
        assert self._loop is not None
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[key] = future
        self._outbox.put(message)
        return await future

    # -- the pipeline's calls

    def new_source(self, on_lost: Callable[[str], None]) -> int:
        self.users += 1
        self._on_lost.append(on_lost)
        return next(self._sids)

    def open(self, sid: int, source_key: str, source: dict[str, Any], on_error: Callable[[str], None]) -> None:
        """Ask the worker to open the source's run, without waiting: the crawl starts fetching while
        the worker still imports (its first items wait in the queue). If the run cannot be opened,
        `on_error` is called with the reason."""
        self._attach()
        if self._error is not None:
            raise PipelineWorkerError(self._error)
        assert self._loop is not None
        if not self._watchdog:
            self._watchdog = True
            self._loop.call_later(START_TIMEOUT, self._check_started)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[("opened", sid)] = future

        def opened(done: asyncio.Future[Any]) -> None:
            error = None if done.cancelled() else done.exception() or done.result()
            if error:
                on_error(f"could not start the run of source {source_key}: {error}")

        future.add_done_callback(opened)
        self._outbox.put(("open", sid, source_key, source))

    def _check_started(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._process.kill()
            self._fail(f"the pipeline worker did not start within {START_TIMEOUT:.0f} s")

    async def submit(self, sid: int, item: Any) -> None:
        """Queue one item; waits only while the window is full."""
        self._attach()
        if self._error is not None:
            raise PipelineWorkerError(self._error)
        if not self._last_done:
            self._last_done = time.monotonic()
        self._in_flight += 1
        self._outbox.put(("item", sid, item))
        if self._in_flight >= WINDOW:
            assert self._loop is not None
            if self._room is None or self._room.done():
                self._room = self._loop.create_future()
            self.split.crawl_waited()
            await asyncio.shield(self._room)

    async def close(self, sid: int, requests: int) -> str | None:
        error: str | None = await self._ask(("closed", sid), ("close", sid, requests))
        return error

    def stop(self) -> None:
        """Ask the worker to stop after what it was sent, and wait for it."""
        self._stopping = True
        self._outbox.put(("stop",))
        self._outbox.put(("end",))
        self._sender.join(timeout=STOP_TIMEOUT)
        self._process.join(timeout=STOP_TIMEOUT)
        if self._process.is_alive():
            log.error("the pipeline worker did not stop in %.0f s: killed", STOP_TIMEOUT)
            self._process.kill()
            self._process.join()
        self._conn.close()


# Workers of this process by their settings (a test process may run crawls on several databases).
_CLIENTS: dict[WorkerSettings, WorkerClient] = {}
# What went wrong with any worker of this process: `zhuanlan crawl` reports it on the crawl run.
_FAILURES: list[str] = []


def worker_failures() -> list[str]:
    """Errors of pipeline workers in this process so far (a crawl with any did not store everything)."""
    return list(_FAILURES)


def _client_for(settings: WorkerSettings) -> WorkerClient:
    client = _CLIENTS.get(settings)
    if client is None:
        client = _CLIENTS[settings] = WorkerClient(settings)
    return client


_PREPARERS: dict[str | None, Preparer] = {}


def _preparer_for(config: str | None) -> Preparer:
    """One per config file in this process (the vocabulary is read once for all sources)."""
    preparer = _PREPARERS.get(config)
    if preparer is None:
        preparer = _PREPARERS[config] = Preparer(vocabulary_from_path(config))
    return preparer


def prestart(settings: WorkerSettings) -> None:
    """Start the worker for `settings` now (it imports and opens the database while the caller sets
    up Scrapy); the first pipeline with the same settings uses it. `stop_unused` ends it if none did."""
    _client_for(settings)


def stop_unused() -> None:
    """Stop prestarted workers that no pipeline took (e.g. every source was skipped)."""
    for settings, client in list(_CLIENTS.items()):
        if client.users <= 0:
            del _CLIENTS[settings]
            client.stop()


def worker_settings(settings: Any) -> WorkerSettings:
    """The worker's settings from a crawl's Scrapy settings (what `zhuanlan crawl` sets)."""
    return WorkerSettings(
        database_url=database_url(settings),
        config_path=config_path(settings),
        run_id=run_id(settings),
        log_level=str(settings.get("LOG_LEVEL") or "WARNING"),
    )


def _release(client: WorkerClient) -> None:
    client.users -= 1
    if client.users <= 0:
        if _CLIENTS.get(client.settings) is client:
            del _CLIENTS[client.settings]
        client.stop()


class OffloadPipeline:
    """ITEM_PIPELINES' only entry: every item is prepared here (`Preparer`: normalize and tag) and
    goes to the worker, which signs, deduplicates and stores it."""

    def __init__(self, client: WorkerClient, preparer: Preparer, crawler: Any = None) -> None:
        self.client = client
        self.preparer = preparer
        self.crawler = crawler
        self.sid = client.new_source(self._worker_lost)
        self.released = False
        self._closing: asyncio.Future[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> OffloadPipeline:
        wanted = worker_settings(crawler.settings)
        if wanted not in _CLIENTS:
            # Fail here, in plain words, when the database is missing or not initialised.
            open_sessions(crawler.settings).kw["bind"].dispose()
        client = _client_for(wanted)  # started first: it imports while this process prepares
        # The keyword model (0.5 s of CPU, about 100 MB) is loaded by the first page tagged here:
        # a cycle that finds nothing new never loads it.
        return cls(client, _preparer_for(wanted.config_path), crawler)

    def _spider(self, spider: Any) -> Any:
        if spider is None and self.crawler is not None:
            spider = self.crawler.spider
        return spider

    def _worker_lost(self, error: str) -> None:
        engine = getattr(self.crawler, "engine", None)
        if engine is not None and getattr(engine, "spider", None) is not None:
            self._closing = asyncio.ensure_future(engine.close_spider_async(reason="pipeline_worker_died"))

    def open_spider(self, spider: Any = None) -> None:
        spider = self._spider(spider)
        self.client.open(self.sid, str(spider.source_key), dict(getattr(spider, "source", {}) or {}), self._open_failed)

    def _open_failed(self, error: str) -> None:
        log.error("%s; the source is not crawled in this run", error)
        _FAILURES.append(error)
        self._worker_lost(error)

    async def process_item(self, item: Any, spider: Any = None) -> Any:
        ahead, tag = self.client.split.next_page()
        prepared = self.preparer.prepare(item, self._spider(spider), ahead=ahead, tag=tag)
        await self.client.submit(self.sid, prepared)
        return item

    async def close_spider(self, spider: Any = None) -> None:
        requests = 0
        stats = getattr(self.crawler, "stats", None)
        if stats is not None:
            requests = int(stats.get_value("downloader/request_count", 0) or 0)
        try:
            error = await self.client.close(self.sid, requests)
            if error:
                log.error("the run of source %s could not be closed: %s", getattr(spider, "source_key", "?"), error)
        except PipelineWorkerError as exc:
            log.error("the run of source %s was not closed: %s", getattr(self._spider(spider), "source_key", "?"), exc)
        finally:
            if not self.released:
                self.released = True
                _release(self.client)
