"""The ingest: every page of a crawl through normalize → precompute → deduplicate → tag → store.

`Ingest.handle` is the one place where the stages stand in order, for a page of an open source.
It runs wherever the crawl puts it — in the pipeline worker process, or in the crawl process
itself (`pipeline.worker`) — and tests drive it directly. A page may arrive already prepared by
the crawl process (normalized, maybe tagged and precomputed): each stage does only what is left.

Batched (the pipeline worker), pages are stored many to a transaction (`BatchedSessions`: a
SAVEPOINT per page, none for a new story on PostgreSQL, where a failure replays the batch), the
worker hands them over in groups (`prepare`), and the owner commits (`commit`, or `commit_due`
for the batching policy); if the database refuses a batch, every page of it is recorded on its
source's run as lost (the run is incomplete, so the next crawl fetches them again) and the
near-duplicate index reloads. Not batched (in the crawl process, and in tests), every page is its
own transaction.

Owns no Scrapy type, reads no config by itself, and takes "now" from the clock it is given.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from crawler.items import ListPageItem, ProblemItem
from pipeline.corpus.batch import IdCache
from pipeline.corpus.db import (
    BatchedSessions,
    DatabaseError,
    ReplayBatch,
    SessionSource,
    is_initialised,
    make_engine,
    session_factory,
)
from pipeline.corpus.runs import SourceRow, SourceRunRecorder
from pipeline.corpus.search_index import BackgroundMerge
from pipeline.corpus.tagstore import tag_ids, wanted_tags
from pipeline.dedup import Deduplicator
from pipeline.locks import (
    DedupLocks,
    LockBusy,
    first_batch_pages,
    pages_per_transaction,
    writer_name,
    writers_and_table,
)
from pipeline.normalize import Rejected, normalize
from pipeline.precompute import precompute
from pipeline.record import Decision, Outcome, Page, Prepared, Record, SourceRef
from pipeline.store import Store
from pipeline.tag import Tagger

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy import Engine

    from pipeline.tagging.vocabulary import Vocabulary

log = logging.getLogger(__name__)

# When a batch is committed: at MAX_BATCH pages, or when its first page waited MAX_BATCH_SECONDS
# (the worker also commits when no page came for a moment). 64 articles are about a quarter of a
# second of work; a page is stored at most about a second after it was fetched. On PostgreSQL a
# batch holds the dedup locks of its pages: fewer pages when many writers share the server
# (`locks.pages_per_transaction`).
MAX_BATCH = 64
MAX_BATCH_SECONDS = 1.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _OpenSource:
    ref: SourceRef
    run: SourceRunRecorder
    row: SourceRow


class Ingest:
    """The stages of a crawl over one database, for every source the crawl opens."""

    def __init__(
        self,
        engine: Engine,
        vocab: Vocabulary,
        *,
        run_id: int | None = None,
        config_path: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        owns_engine: bool = False,
        batched: bool = True,
        writer: str | None = None,
    ) -> None:
        self.engine = engine
        self.owns_engine = owns_engine
        # Batched: many pages per transaction, committed by the owner (SQLite: the engine must begin
        # its transactions immediately). Not batched: every page is its own transaction.
        self.sessions: SessionSource = (
            BatchedSessions(session_factory(engine), on_abandon=self._lost, cache=IdCache())
            if batched
            else session_factory(engine)
        )
        self.run_id = run_id
        self.config_path = config_path
        self.clock = clock
        # Dedup locks need the decision and the rows in one transaction: batched sessions only.
        locking = engine.dialect.name if batched else "none"
        self.merge: BackgroundMerge | None = None
        if isinstance(self.sessions, BatchedSessions):
            locks = DedupLocks(locking, self.sessions.batch.locks, self.sessions.batch.reads)
            if engine.dialect.name == "postgresql":
                # The search index's pending lists are merged after each commit, on a thread of
                # their own, instead of by the batch before it (`search_index`).
                self.merge = BackgroundMerge(engine)
                self.sessions.batch.merges_search_index = False
        else:
            locks = DedupLocks(locking)
        self.deduplicator = Deduplicator(locks)
        # Pages per batch: where each holds its dedup locks until the commit, the writers share the
        # server's lock table (`pipeline.locks`): a first batch that fits, then this writer's share.
        self.max_batch = first_batch_pages(MAX_BATCH) if locks.enabled else MAX_BATCH
        self._writer = writer  # the `locks.writer_name` its connections bear, unless the URL names them
        self.tagger = Tagger(vocab)
        self.store = Store(self.sessions, clock)
        self.sources: dict[int, _OpenSource] = {}
        self._batch: list[tuple[_OpenSource, Page | Prepared]] = []  # handled since the last commit
        self._batch_started = 0.0  # monotonic time of the batch's first page
        # Each run's counts before the batch (`_mark`): fetched, fatal reasons, unsaved problems.
        self._marks: dict[int, tuple[SourceRunRecorder, int, int, int]] = {}
        self._replaying = False

    @classmethod
    def connect(
        cls,
        database_url: str,
        vocab: Vocabulary,
        *,
        run_id: int | None = None,
        config_path: str | None = None,
        batched: bool = True,
    ) -> Ingest:
        """An ingest on its own engine (SQLite: transactions that take the write lock at their start,
        so SAVEPOINTs nest in them; PostgreSQL: connections named as a writer, `locks.writer_name`,
        where the URL and PGAPPNAME give them no name of their own); the database must be initialised."""
        writer = writer_name() if make_url(database_url).get_backend_name() == "postgresql" else None
        extra = {"connect_args": {"fallback_application_name": writer}} if writer is not None else {}
        engine = make_engine(database_url, immediate_transactions=True, **extra)
        if not is_initialised(engine):
            engine.dispose()
            raise DatabaseError("the database has no schema yet: run `zhuanlan init` first")
        return cls(
            engine, vocab, run_id=run_id, config_path=config_path, owns_engine=True, batched=batched, writer=writer
        )

    # -- sources

    def open_source(self, sid: int, source: SourceRef) -> None:
        """Open the source's run (its row must exist before any page refers to it: committed now)."""
        run = SourceRunRecorder(self.sessions, run_id=self.run_id, config_path=self.config_path)
        self.commit()
        row = run.open(source, self.clock())
        self.commit()
        self.sources[sid] = _OpenSource(source, run, row)

    def close_source(self, sid: int, requests: int) -> None:
        """Judge the source's run, after everything before it is committed (lost pages count)."""
        source = self.sources.pop(sid, None)
        if source is None:
            raise LookupError("the source's run was never opened")
        self.commit()
        try:
            source.run.close(requests, self.clock())
        finally:
            self.commit()

    # -- pages

    @property
    def groups(self) -> bool:
        """Whether `prepare` does a group's database work at once (PostgreSQL with batches), so that
        larger groups save round trips."""
        return isinstance(self.sessions, BatchedSessions) and self.deduplicator.locks.enabled

    def prepare(self, pages: Sequence[tuple[int, Page | Prepared]]) -> list[tuple[int, Page | Prepared]]:
        """Ahead of handling a group of pages (a message of the crawl process), on PostgreSQL with
        batches: the page-only stages of each (normalize, precompute, tag), then in one statement
        each what their decisions and rows would otherwise ask the server for page by page: their
        dedup locks (tried without waiting, `pipeline.locks`), the catch-up with every page's
        lookups (`Deduplicator.hold`), and the ids of their tag names. A round trip per page is
        most of what a stage costs there. `handle` then does what is left; a page a stage refuses
        comes back as it was, and `handle` meets and records the refusal. The group should fit in
        the batch (`room`). Elsewhere (SQLite, or not batched) the pages come back as they are."""
        if len(pages) < 2 or not self.groups or not isinstance(self.sessions, BatchedSessions):
            return list(pages)
        out: list[tuple[int, Page | Prepared]] = []
        records: list[Record] = []
        for sid, page in pages:
            source = self.sources.get(sid)
            if source is not None:
                try:
                    current = normalize(page)
                    if isinstance(current, Record):
                        self.tagger.tag(precompute(current), source.ref)
                        records.append(current)
                        page = current
                except Exception:  # `handle` runs the stage again and records why
                    pass
            out.append((sid, page))
        if records:
            try:
                with self.sessions() as session:
                    self.deduplicator.hold(session, records)
                    names = {key for record in records if record.tags is not None for key in wanted_tags(record.tags)}
                    if names:
                        tag_ids(session, names, self.sessions.batch)
            except Exception as exc:  # each page asks for itself, as without the group
                log.warning("could not prepare a group of %d pages at once: %s", len(records), exc)
        return out

    def handle(self, sid: int, page: Page | Prepared) -> Outcome:
        """One page through the stages, in order. Never raises: what goes wrong is recorded on the
        source's run, and the answer says what happened."""
        source = self.sources.get(sid)
        if source is None:  # its run could not be opened (the crawl process was told, and says so)
            return Outcome.DROPPED
        if not self._batch:
            self._batch_started = time.monotonic()
        if not isinstance(self.sessions, BatchedSessions):
            return self._stages(source, page)
        self._mark(source.run)
        try:
            outcome = self._stages(source, page)
        except ReplayBatch as replay:
            self._batch.append((source, page))
            return self._replay(replay)
        # Known to the batch only now: if this page's own unit failed, `Store` recorded why.
        self._batch.append((source, page))
        return outcome

    def _mark(self, run: SourceRunRecorder) -> None:
        """What the run counted before this batch (a replay starts it again from there)."""
        if id(run) not in self._marks:
            self._marks[id(run)] = (run, run.fetched, len(run.fatal_reasons), len(run.unsaved_problems))

    def _replay(self, replay: ReplayBatch) -> Outcome:
        """A page's optimistic unit failed and the batch's transaction is rolled back
        (`db.BatchedSessions`): every page of the batch again, each unit in its SAVEPOINT, so the
        failing page fails alone and is recorded, as without optimistic units. The runs count from
        where the batch started, and the near-duplicate index forgets what the batch added (it is
        built again from the stored signatures, as after a lost batch). The answer is the failing
        page's (the last of the batch)."""
        assert isinstance(self.sessions, BatchedSessions)
        log.warning(
            "a unit of a batch of %d pages failed (%s): storing them again one by one", len(self._batch), replay
        )
        pages, self._batch = self._batch, []
        for run, fetched, fatal, unsaved in self._marks.values():
            run.fetched = fetched
            del run.fatal_reasons[fatal:]
            del run.unsaved_problems[unsaved:]
        self._marks.clear()
        self.deduplicator.forget()
        self.sessions.careful = True  # until the commit after the replay
        self._replaying = True
        outcome = Outcome.FAILED
        try:
            for source, page in pages:
                self._mark(source.run)
                outcome = self._stages(source, page)
                self._batch.append((source, page))
        finally:
            self._replaying = False
        return outcome

    def _stages(self, source: _OpenSource, page: Page | Prepared) -> Outcome:
        current: Page | Prepared = page
        try:
            current = normalize(page)
            if isinstance(current, ProblemItem):
                source.run.problem(current)
                return Outcome.STORED
            if isinstance(current, ListPageItem):
                self.store.list_page(current, source.run)
                return Outcome.STORED
            record = precompute(current)
            decision = self._decide(record)
            if decision is None:
                log.info(
                    "page %s at the source, but the article was never stored: %s", record.item.state, record.item.url
                )
                return Outcome.DROPPED
            self.tagger.tag(record, source.ref)
            self.deduplicator.stored(record, self.store.write(record, source.run, source.row))
        except Rejected as exc:
            log.warning("not stored: %s", exc)
            source.run.problem(exc.problem)
            return Outcome.REJECTED
        except Exception as exc:
            failed = current.item if isinstance(current, Record) else current
            log.exception("could not process %s", getattr(failed, "url", failed))
            source.run.failure(failed, exc)
            return Outcome.FAILED
        return Outcome.STORED

    def _decide(self, record: Record) -> Decision | None:
        # Another writer holds one of the page's dedup locks: commit the batch (releasing ours) and
        # wait for them in a fresh transaction, holding nothing else (why: `pipeline.locks`).
        try:
            with self.sessions() as session:
                return self.deduplicator.decide(session, record, wait=False)
        except LockBusy:
            self.commit()
        with self.sessions() as session:
            return self.deduplicator.decide(session, record, wait=True)

    # -- the batch

    @property
    def pending(self) -> int:
        """Pages handled since the last commit."""
        return len(self._batch)

    @property
    def room(self) -> int:
        """Pages the batch takes before it is full (at least one): a group `prepare`d together
        should fit, or the commit in its middle releases what the group holds."""
        return max(1, self.max_batch - len(self._batch))

    def commit_due(self) -> bool:
        """Whether the batching policy wants a commit now (a full batch, or its first page waited long)."""
        return bool(self._batch) and (
            len(self._batch) >= self.max_batch or time.monotonic() - self._batch_started >= MAX_BATCH_SECONDS
        )

    def commit(self) -> None:
        """Commit the batch; if the database refuses it, `_lost` has recorded every page of it."""
        if isinstance(self.sessions, BatchedSessions):
            try:
                self.sessions.commit()
                if self.merge is not None:
                    self.merge.request()
            except DatabaseError as exc:
                log.error("a batch of pages was not stored: %s", exc)
            if self._batch and self.deduplicator.locks.enabled:
                self._size_batches()
            if not self._replaying:
                self.sessions.careful = False
        self._batch.clear()
        self._marks.clear()

    def _size_batches(self) -> None:
        """The next batches' size: this writer's share of the server's lock table (`pipeline.locks`).
        Counted again after every batch, so a writer that joins or leaves is met within a batch; if
        the server cannot say, the size stays as it was."""
        try:
            with self.engine.connect() as connection:
                writers, table, name = writers_and_table(connection)
        except DBAPIError as exc:
            log.warning("could not count the writers sharing the server's lock table: %s", exc)
            return
        counted = self._writer is not None and name == self._writer  # else it counts itself
        self.max_batch = pages_per_transaction(table, writers + (0 if counted else 1), MAX_BATCH)

    def _lost(self, reason: str) -> None:
        # Called by BatchedSessions after rolling back: every page of the batch is recorded as not
        # stored (its run becomes incomplete), and the near-duplicate index forgets what it loaded.
        # The log says which: "pages rolled back" counts the pages an operator will find recorded as
        # not stored; the run lets a list page's validators go (`SourceRunRecorder.lost`).
        lost, self._batch = self._batch, []
        self._marks.clear()
        recorded = [source.run.lost(page.item if isinstance(page, Record) else page, reason) for source, page in lost]
        pages = sum(recorded)
        lists = len(recorded) - pages
        if pages:
            log.error("%d pages rolled back: %s", pages, reason)
        if lists:
            log.warning(
                "the validators of %d list pages were rolled back (those lists are fetched in full next time): %s",
                lists,
                reason,
            )
        self.deduplicator.forget()

    def shutdown(self) -> None:
        """Commit what is handled and release the database. A source never closed keeps its run
        "running": finishing the crawl run marks it unfinished."""
        self.commit()
        self.sources.clear()
        if isinstance(self.sessions, BatchedSessions):
            self.sessions.close()
        if self.merge is not None:
            self.merge.close()
        if self.owns_engine:
            self.engine.dispose()
