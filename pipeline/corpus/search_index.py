"""Keeping the full-text index in step with the articles table.

SQLite: an FTS5 table `article_fts(title, body)` whose rowid is the article id.
PostgreSQL: `article_search(article_id, title_tsv, body_tsv)` with GIN indexes, built with the
`'simple'` configuration over the same pre-split text. Both hold `textsplit.split_text` output,
which is folded (NFKC, titles too) like the queries; nothing shown is read from the index.
Callers run these inside the transaction that changes the article, so the index never drifts.

PostgreSQL's GIN indexes keep a pending list (migration 0010): a batch appends its entries there
and merges them into the index once, just before its commit (`gin_clean_pending_list`), which
costs less than half of writing every article's thousand bigrams into the index one by one; a
write outside a batch merges at once. The ingest of a crawl merges after its commits instead, on
a connection and thread of their own (`BackgroundMerge`): the merge is server work the pipeline
worker would otherwise wait for, batch after batch. So a pending list holds at most the entries
of the last batch or two, for the moment a merge takes, and none outlives the crawl (a long one
made the planner prefer a sequential scan: migration 0002); a query that meets it still finds
its entries.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from pipeline.corpus.textsplit import split_text

if TYPE_CHECKING:
    from pipeline.corpus.batch import Batch

log = logging.getLogger(__name__)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


_PG_UPSERT = text(
    "INSERT INTO article_search (article_id, title_tsv, body_tsv) "
    "VALUES (:id, to_tsvector('simple', :t), to_tsvector('simple', :b)) "
    "ON CONFLICT (article_id) DO UPDATE SET title_tsv = EXCLUDED.title_tsv, body_tsv = EXCLUDED.body_tsv"
)
# Merge the pending lists into the index (a no-op when they are empty).
_PG_MERGE = text(
    "SELECT gin_clean_pending_list('ix_article_search_title'::regclass), "
    "gin_clean_pending_list('ix_article_search_body'::regclass)"
)
_FTS_DELETE = text("DELETE FROM article_fts WHERE rowid = :id")
_FTS_INSERT = text("INSERT INTO article_fts (rowid, title, body) VALUES (:id, :t, :b)")


def index_article(
    session: Session,
    article_id: int,
    title: str,
    body: str,
    *,
    new: bool = False,
    split: tuple[str, str] | None = None,
    batch: Batch | None = None,
) -> None:
    """Insert or replace the index entry of one article (`new`: it has none yet, skip the delete;
    `split`: title and body already in the index's form, as `pipeline.precompute.search_parts` gives).

    With a `batch` (the ingest's), the entry of a new article is written with the batch, just before
    its commit, in one statement for all of them: SQLite's FTS5 writes a segment at every SAVEPOINT
    release otherwise, which cost as much as a commit per article."""
    split_title, split_body = split if split is not None else (split_text(title), split_text(body))
    params = {"id": article_id, "t": split_title, "b": split_body}
    postgresql = _dialect(session) == "postgresql"
    statement = _PG_UPSERT if postgresql else _FTS_INSERT
    if batch is not None:
        if new:
            batch.defer(("search", article_id), statement, params)
            if postgresql:
                _merge_last(batch)
            return
        batch.take(("search", article_id))  # written now instead, after the delete
    if postgresql:
        session.execute(_PG_UPSERT, params)
        if batch is None:
            session.execute(_PG_MERGE)
        else:
            _merge_last(batch)
        return
    if not new:
        session.execute(_FTS_DELETE, {"id": article_id})
    session.execute(_FTS_INSERT, params)


def _merge_last(batch: Batch) -> None:
    """Defer the merge of the pending lists to after every entry the batch defers (re-deferred at
    the end, so it runs after the entries deferred before it); none when the batch's owner merges
    after the commit (`Batch.merges_search_index`)."""
    batch.take(("search", "merge"))
    if batch.merges_search_index:
        batch.defer(("search", "merge"), _PG_MERGE, {})


class BackgroundMerge:
    """Merges the GIN pending lists after a batch committed, on a thread and a connection of its own
    (PostgreSQL), while the batch's owner goes on with the next one.

    `request` after each commit: a merge runs soon after (one merge answers every request made
    before it started). A merge that fails is logged and leaves the entries pending, where queries
    still find them, until the next merge (or autovacuum) takes them. `close` stops the thread and
    merges once more, so no pending list outlives the ingest."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="search-index-merge", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()  # a request made during this merge asks for another
            if self._stopping:
                return
            self.merge()

    def merge(self) -> None:
        try:
            with self._engine.connect() as connection:
                connection.execute(_PG_MERGE)
                connection.commit()
        except DBAPIError as exc:
            log.warning(
                "search index: the pending entries wait for the next merge: %s", " ".join(str(exc.orig).split())
            )

    def close(self) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join()
        self.merge()


def remove_article(session: Session, article_id: int, *, batch: Batch | None = None) -> None:
    if batch is not None:
        batch.take(("search", article_id))
    if _dialect(session) == "postgresql":
        session.execute(text("DELETE FROM article_search WHERE article_id = :id"), {"id": article_id})
    else:
        session.execute(text("DELETE FROM article_fts WHERE rowid = :id"), {"id": article_id})


def indexed_count(session: Session) -> int:
    table = "article_search" if _dialect(session) == "postgresql" else "article_fts"
    return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
