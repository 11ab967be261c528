"""The pipeline worker process: the ingest of a crawl, on the other core.

Why a process: the stages cost more CPU per article than Scrapy itself, and on Scrapy's reactor
thread they held up the next request. The crawl process fetches, extracts and prepares each page
(normalize, and tag or precompute when the split gives it that work, `split.WorkSplit`); this
process runs `pipeline.ingest.Ingest` on what arrives: whatever stage is left, in order. Pages
are handled one at a time in arrival order, so a repost is compared with everything fetched
before it, whichever source it came from.

Messages are `protocol`'s. The worker commits when a batch is full or old (`Ingest.commit_due`),
or when no message came for `IDLE_COMMIT_SECONDS`, and then says how many more pages are settled.
It dies with its crawl process (SIGKILL on the parent's death, Linux), ignores SIGINT and SIGTERM
(the crawl process stops gracefully and then tells it to stop), and stops on end of input. What
it does not finish is not lost: the source's run stays incomplete and the next crawl pages fully.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipeline.worker.runner import RunnerSettings

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from pipeline.ingest import Ingest
    from pipeline.worker.protocol import RunSetup, Stop

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s [%(name)s] %(levelname)s: %(message)s"
# Waiting a moment for more pages (rather than committing whenever the pipe is empty) keeps batches
# full when the worker is faster than the crawl: small batches cost a commit and a full-text index
# segment each.
IDLE_COMMIT_SECONDS = 0.2
# A group of pages prepared together (`serve`): up to a batch; one smaller than GROUP_PAGES waits up
# to GATHER_SECONDS for more (in a backfill on PostgreSQL the crawl sends about 9 pages a message,
# and 27 arrive within 10 ms). The wait counts as idle: it is time the worker had to spare.
MAX_GROUP = 64
GROUP_PAGES = 32
GATHER_SECONDS = 0.01


PROCESS_NAME = b"zhuanlan-worker"  # what ps, top and /proc/PID/comm show for the worker (Linux)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the crawl process dies (as `scheduler._spawn` does for
    crawls), and name it `PROCESS_NAME` (a forked worker would otherwise look like its crawl)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig, pr_set_name = 1, 15
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    libc.prctl(pr_set_name, ctypes.c_char_p(PROCESS_NAME), 0, 0, 0)


def error_text(exc: BaseException) -> str:
    from pipeline.corpus.db import DatabaseError, one_line

    return one_line(exc) if isinstance(exc, DatabaseError) else f"{type(exc).__name__}: {one_line(exc)}"


def open_ingest(settings: RunnerSettings, *, batched: bool = True) -> Ingest:
    """The ingest of this crawl: its database, vocabulary and run (imported here: the crawl process
    that only talks to a worker never loads the stages)."""
    from pipeline.ingest import Ingest
    from pipeline.tag import vocabulary_from_path

    return Ingest.connect(
        settings.database_url,
        vocabulary_from_path(settings.config_path),
        run_id=settings.run_id,
        config_path=settings.config_path,
        batched=batched,
    )


def _more_pages(conn: Connection, pages: list[Any], *, wait: bool) -> tuple[object | None, bool, float]:
    """Add to `pages` the pages of the messages waiting in the pipe, up to `MAX_GROUP` pages, and
    with `wait` those that come within `GATHER_SECONDS` while there are fewer than `GROUP_PAGES`:
    they are prepared as one group. Returns the first other message met (to be answered next),
    whether the input ended, and the seconds spent waiting."""
    from pipeline.worker.protocol import Pages

    started = time.monotonic()
    until = started + (GATHER_SECONDS if wait else 0.0)
    waited = 0.0
    while len(pages) < MAX_GROUP:
        before = time.monotonic()
        timeout = max(0.0, until - before) if len(pages) < GROUP_PAGES else 0.0
        ready = conn.poll(timeout)
        waited += time.monotonic() - before
        if not ready:
            break
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return None, True, waited
        if not isinstance(message, Pages):
            return message, False, waited
        pages.extend(message.pages)
    return None, False, waited


def serve(conn: Connection, ingest: Ingest) -> Stop | None:
    """Answer messages until `Stop` (returned) or end of input.

    Pages that waited in the pipe while the worker was busy join the group of the message before
    them (up to a batch): `Ingest.prepare` asks the database once per group for the locks, the
    lookups and the tag ids of all its pages, so a worker that fell behind catches up with fewer
    round trips instead of more (groups of 32 pages instead of 8 took 10-25 % less of the worker's
    and 5-20 % less of the server's CPU a page, measured on the generated site). Where the groups save round trips
    (`Ingest.groups`), a small group also waits a moment for the pages behind it: the crawl sends
    pages as it fetches them, a few at a time."""
    from pipeline.worker.protocol import Close, Closed, Open, Opened, Pages, Settled, Stop

    handled = settled = acked = 0  # pages handled, committed (or recorded as lost), reported
    idle = 0.0  # seconds spent waiting for input since the last `Settled`
    following: object | None = None  # a message read while gathering pages, answered next
    ended = False  # the input ended while gathering pages
    while True:
        waited = time.monotonic()
        if following is None and not ended and ingest.pending and not conn.poll(IDLE_COMMIT_SECONDS):
            idle += time.monotonic() - waited
            ingest.commit()  # nothing came for a moment: store what was handled before waiting for more
            settled = handled
            waited = time.monotonic()
        if settled > acked:
            conn.send(Settled(settled - acked, idle))
            acked, idle = settled, 0.0
            waited = time.monotonic()
        if following is not None:
            message, following = following, None
        elif ended:
            return None
        else:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return None
            idle += time.monotonic() - waited
        if isinstance(message, Stop):
            return message
        if isinstance(message, Pages):
            pages = list(message.pages)
            following, ended, gathering = _more_pages(conn, pages, wait=ingest.groups)
            idle += gathering
            while pages:
                room = ingest.room  # a group prepared together goes into one batch
                for sid, page in ingest.prepare(pages[:room]):
                    ingest.handle(sid, page)
                    handled += 1
                    if ingest.commit_due():
                        ingest.commit()
                    if not ingest.pending:
                        settled = handled
                pages = pages[room:]
        elif isinstance(message, Open):
            try:
                ingest.open_source(message.sid, message.source)
                conn.send(Opened(message.sid, None))
            except Exception as exc:
                log.exception("could not open the run of source %s", message.source.key)
                conn.send(Opened(message.sid, error_text(exc)))
        elif isinstance(message, Close):
            try:
                ingest.close_source(message.sid, message.requests)
                conn.send(Closed(message.sid, None))
            except Exception as exc:
                log.exception("could not close the run of source %s", message.sid)
                conn.send(Closed(message.sid, error_text(exc)))
            settled = handled
        else:
            log.error("pipeline worker: unknown message %r", message)


def main(
    conn: Connection,
    settings: RunnerSettings,
    parents_end: Connection | None = None,
    setup: RunSetup | None = None,
) -> None:
    """The worker process's entry point (multiprocessing target); `parents_end`, the crawl
    process's end of the pipe, when the worker was forked with it; `setup`, the run's database
    work before and after its pages (`protocol.RunSetup`), when the worker does it."""
    from pipeline.worker.protocol import Ready, SetupDone, StartFailed

    if parents_end is not None:
        parents_end.close()
    _die_with_parent()
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # force: a forked worker inherits the crawl process's handlers; it logs through its own.
    if settings.log_file:
        logging.basicConfig(
            level=settings.log_level, format=LOG_FORMAT, filename=settings.log_file, encoding="utf-8", force=True
        )
    else:
        logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    if parent == 1:
        return  # the crawl process died before the death signal was armed
    crawling = True
    if setup is not None:
        prepared = _prepare(conn, setup)
        if prepared is None:
            conn.close()
            return
        run_id, plan, crawling = prepared
        settings = replace(settings, run_id=run_id)
        conn.send(SetupDone(plan))
    stop: Stop | None = None
    if crawling:
        try:
            ingest = open_ingest(settings)
        except Exception as exc:
            conn.send(StartFailed(error_text(exc)))
            conn.close()
            return
        # The worker's modules and state live as long as it does: out of the collector's way, as in
        # the crawl process.
        from crawler.launch import settle_collector

        settle_collector()
        conn.send(Ready())
        try:
            stop = serve(conn, ingest)
        finally:
            ingest.shutdown()
    else:
        stop = _wait_for_stop(conn)
    if setup is not None and stop is not None and stop.failures is not None:
        _finish(conn, setup, settings.run_id, stop.failures)
    conn.close()
    # Everything is committed and the database released: skip the interpreter's teardown (a few
    # tenths of a second of freeing modules) that the crawl process would wait for.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


def _prepare(conn: Connection, setup: RunSetup) -> tuple[int | None, object, bool] | None:
    """`setup.prepare()`, or None after telling the crawl process why it failed."""
    from pipeline.worker.protocol import SetupFailed, SetupRefused

    try:
        return setup.prepare()
    except SetupRefused as exc:
        conn.send(SetupFailed(str(exc), refused=True))
    except Exception as exc:
        log.exception("the crawl run could not be prepared")
        conn.send(SetupFailed(error_text(exc), refused=False))
    return None


def _wait_for_stop(conn: Connection) -> Stop | None:
    """Nothing to crawl: wait for the crawl process's `Stop` (None at the end of input)."""
    from pipeline.worker.protocol import Stop

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return None
        if isinstance(message, Stop):
            return message
        log.error("pipeline worker: unexpected message %r with nothing to crawl", message)


def _finish(conn: Connection, setup: RunSetup, run_id: int | None, failures: tuple[str, ...]) -> None:
    from pipeline.worker.protocol import Finished

    try:
        conn.send(Finished(setup.finish(run_id, failures)))
    except (EOFError, OSError):
        pass  # the crawl process is gone: the run is closed by the next crawl's planning
    except Exception as exc:
        log.exception("the crawl run could not be closed")
        conn.send(Finished(None, error_text(exc)))
