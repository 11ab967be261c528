"""The pipeline worker: one child process of a crawl that deduplicates and stores for every source.

Why a process: the item stages cost more CPU per article than Scrapy itself, and on Scrapy's
reactor thread they held up the next request. The crawl process prepares each page (normalize and
tag, `pipeline.prepare`); this process signs, deduplicates and stores it on the other core (the
chain of `pipeline.chain`, whose normalize and tag stages pass a prepared record through, and tag
one that comes untagged; what was computed ahead is used as it is).

The crawl process talks to the worker over one pipe, in order: ("open", sid, source_key, source),
("items", [(sid, item), …]), ("close", sid, requests) and ("stop",). The worker answers ("ready",)
or ("failed", error) once, ("opened", sid, error), ("closed", sid, error), and ("done", n, idle)
each time it has committed (or lost, and recorded as lost) n more items, with the seconds it spent
waiting for input since the last "done" (the crawl process then leaves it more of the work, see
`pipeline.offload.WorkSplit`). Items are handled one at a time in arrival order, so a repost is
compared with everything fetched before it, whichever source it came from. Items are committed
in batches (`BatchedSessions`).

The worker dies with its crawl process (SIGKILL on the parent's death, Linux), ignores SIGINT and
SIGTERM (the crawl process stops gracefully and then tells it to stop), and stops on end of input.
What the worker does not finish is not lost: the source's run stays incomplete and the next
crawl pages fully.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.corpus.db import BatchedSessions, DatabaseError, make_engine, one_line, session_factory

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from pipeline.chain import SourceChain

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s [%(name)s] %(levelname)s: %(message)s"
# When a batch is committed: at MAX_BATCH items, when no message has come for IDLE_COMMIT_SECONDS,
# or when its first item waited MAX_BATCH_SECONDS. Waiting a moment for more (rather than committing
# whenever the pipe is empty) keeps batches full when the worker is faster than the crawl: small
# batches cost a commit and a full-text index segment each. 64 articles are about a quarter of a
# second of work; a page is stored at most about a second after it was fetched.
MAX_BATCH = 64
IDLE_COMMIT_SECONDS = 0.2
MAX_BATCH_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker needs, passed at start (no config is read from the environment)."""

    database_url: str
    config_path: str | None
    run_id: int | None
    log_level: str = "WARNING"


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the crawl process dies (as `scheduler._spawn` does for crawls)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


class Worker:
    """The worker's state: one database engine, the vocabulary, and the open sources' chains."""

    def __init__(self, settings: WorkerSettings) -> None:
        import pipeline.chain  # noqa: F401  (the stages: imported now, before "ready", not at the first source)
        from pipeline.corpus.db import is_initialised
        from pipeline.tag import vocabulary_from_path

        self.settings = settings
        self.engine = make_engine(settings.database_url, immediate_transactions=True)
        if not is_initialised(self.engine):
            self.engine.dispose()
            raise DatabaseError("the database has no schema yet: run `zhuanlan init` first")
        self.sessions = BatchedSessions(session_factory(self.engine), on_abandon=self._batch_lost)
        # what the uncommitted batch holds: (chain, item) in order
        self.batch: list[tuple[SourceChain, Any]] = []
        self.batch_started = 0.0  # monotonic time of the batch's first item
        self.handled = 0  # items handled
        self.settled = 0  # of which committed, or recorded as lost
        self.share_key = self.engine.url.render_as_string(hide_password=False)
        self.vocab = vocabulary_from_path(settings.config_path)  # records come tagged; kept for items that do not
        self.chains: dict[int, SourceChain] = {}

    def open(self, sid: int, source_key: str, source: dict[str, Any]) -> None:
        from pipeline.chain import SourceChain, SourceRef

        chain = SourceChain(
            self.sessions,
            SourceRef(source_key, source),
            self.vocab,
            run_id=self.settings.run_id,
            config_path=self.settings.config_path,
            share_key=self.share_key,
        )
        self.commit()  # the source run's row must exist before any item refers to it
        chain.open()
        self.commit()
        self.chains[sid] = chain

    def item(self, sid: int, item: Any) -> str:
        if not self.batch:
            self.batch_started = time.monotonic()
        chain = self.chains.get(sid)
        if chain is None:  # its run could not be opened (the crawl process was told, and says so)
            self.handled += 1
            if not self.batch:
                self.settled = self.handled  # nothing of it waits for a commit
            return "dropped"
        outcome = chain.handle(item)
        self.batch.append((chain, item))
        self.handled += 1
        if self.sessions.units >= MAX_BATCH or time.monotonic() - self.batch_started >= MAX_BATCH_SECONDS:
            self.commit()
        return outcome

    def close(self, sid: int, requests: int) -> None:
        chain = self.chains.pop(sid, None)
        if chain is None:
            raise LookupError("the source's run was never opened")
        self.commit()  # lost items must be known before the run is judged
        try:
            chain.close(requests)
        finally:
            self.commit()

    def commit(self) -> None:
        """Commit the batch; if the database refuses, `_batch_lost` has recorded what it held."""
        try:
            self.sessions.commit()
        except DatabaseError as exc:
            log.error("a batch of pages was not stored: %s", exc)
        self.batch.clear()
        self.settled = self.handled

    def _batch_lost(self, reason: str) -> None:
        # Called by BatchedSessions after rolling back: every item of the batch is recorded as not
        # stored (the run becomes incomplete), and the near-duplicate index forgets what it loaded.
        lost, self.batch = self.batch, []
        for chain, item in lost:
            chain.store.record_lost(item, reason)
        if lost:
            log.error("%d pages rolled back: %s", len(lost), reason)
        for chain in self.chains.values():
            if chain.dedup.index is not None:
                chain.dedup.index.reset()

    def shutdown(self) -> None:
        self.commit()
        for sid in list(self.chains):
            # A source the crawl process never closed (it stopped early): its run stays "running" and
            # the crawl run's finish marks it unfinished; close the dedup index only.
            self.chains.pop(sid).dedup.close_spider(None)
        self.sessions.close()
        self.engine.dispose()


def _error_text(exc: BaseException) -> str:
    return one_line(exc) if isinstance(exc, DatabaseError) else f"{type(exc).__name__}: {one_line(exc)}"


def serve(conn: Connection, worker: Worker) -> None:
    """Answer messages until "stop" or end of input."""
    acked = 0
    idle = 0.0  # seconds spent waiting for input since the last "done"
    while True:
        waited = time.monotonic()
        if worker.batch and not conn.poll(IDLE_COMMIT_SECONDS):
            idle += time.monotonic() - waited
            worker.commit()  # nothing came for a moment: store what was handled before waiting for more
            waited = time.monotonic()
        if worker.settled > acked:
            conn.send(("done", worker.settled - acked, idle))
            acked, idle = worker.settled, 0.0
            waited = time.monotonic()
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        idle += time.monotonic() - waited
        kind = message[0]
        if kind == "stop":
            return
        if kind == "items":
            for sid, item in message[1]:
                worker.item(sid, item)
        elif kind == "open":
            _, sid, source_key, source = message
            try:
                worker.open(sid, source_key, source)
                conn.send(("opened", sid, None))
            except Exception as exc:
                log.exception("could not open the run of source %s", source_key)
                conn.send(("opened", sid, _error_text(exc)))
        elif kind == "close":
            _, sid, requests = message
            try:
                worker.close(sid, requests)
                conn.send(("closed", sid, None))
            except Exception as exc:
                log.exception("could not close the run of source %s", sid)
                conn.send(("closed", sid, _error_text(exc)))
        else:
            log.error("pipeline worker: unknown message %r", kind)


def main(conn: Connection, settings: WorkerSettings) -> None:
    """The worker process's entry point (multiprocessing target)."""
    _die_with_parent()
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, stream=sys.stderr)
    if parent == 1:
        return  # the crawl process died before the death signal was armed
    try:
        worker = Worker(settings)
    except Exception as exc:
        conn.send(("failed", _error_text(exc)))
        conn.close()
        return
    # The worker's modules and state live as long as it does: keep them out of the collector's way.
    gc.collect()
    gc.freeze()
    conn.send(("ready",))
    try:
        serve(conn, worker)
    finally:
        worker.shutdown()
        conn.close()
    # Everything is committed and the database released: skip the interpreter's teardown (a few
    # tenths of a second of freeing modules) that the crawl process would wait for.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)
