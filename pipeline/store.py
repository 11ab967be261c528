"""The store stage: the rows each deduplication decision means.

Owns the row-level meaning of each decision (see `pipeline.record`): NEW_STORY creates the
article, its first appearance and snapshot, the search entry and tags; NEW_APPEARANCE attaches a
repost, re-elects the first-published appearance (首发) and adds what the repost knows that the
story lacked (column membership, a unit); EDIT keeps the old snapshot as a version; UNCHANGED
refreshes the fetch time; STATE_CHANGE marks the appearance (and the story when every appearance
is gone) but keeps our copy. `Store.write` stores one record as one unit of work (a SAVEPOINT of
the ingest's batch) and counts it on its source's run; a list page's validators are kept for
the next cycle's conditional request.

The unique canonical key is the last line of defence against a concurrent crawl storing the same
page: an insert that violates it is rolled back and counted as unchanged. Tags are written by
`pipeline.corpus.tagstore.apply_tags`, the one function shared with retag and corrections.
Problems and run bookkeeping are `pipeline.corpus.runs`'.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from crawler.items import GONE_STATES, STATE_OK, ArticleItem, ListPageItem, ProblemItem
from pipeline.corpus.corrections import current_tags
from pipeline.corpus.db import DatabaseError, batch_of, insert_or_ignore, transaction
from pipeline.corpus.models import Appearance, Article, ArticleTag, ListPage, Snapshot
from pipeline.corpus.runs import SourceRow, SourceRunRecorder, count
from pipeline.corpus.search_index import index_article
from pipeline.corpus.story_rows import insert_story_rows
from pipeline.corpus.tagstore import (
    apply_tags,
    article_fields,
    insert_new_article_tags,
    new_article_tag_rows,
    unit_name,
)
from pipeline.precompute import snapshot_parts
from pipeline.record import EDIT, NEW_APPEARANCE, NEW_STORY, STATE_CHANGE, UNCHANGED, Record, Tags
from pipeline.similarity import SIGNATURE_SCHEME
from pipeline.tagging.rules import merge_tags

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from pipeline.corpus.batch import Batch
    from pipeline.corpus.db import SessionSource

log = logging.getLogger(__name__)

SUMMARY_CHARS = 200

ARTICLES = cast(Table, Article.__table__)
APPEARANCES = cast(Table, Appearance.__table__)
SNAPSHOTS = cast(Table, Snapshot.__table__)

# Built once: a statement made per item costs more in SQLAlchemy than SQLite takes to run it.
_INSERT_ARTICLE = insert(ARTICLES)
_INSERT_APPEARANCE = insert(APPEARANCES)
_SNAPSHOT_BY_SHA = select(SNAPSHOTS.c.id).where(SNAPSHOTS.c.sha256 == bindparam("digest"))
_SET_SNAPSHOT = (
    update(APPEARANCES).where(APPEARANCES.c.id == bindparam("appearance")).values(snapshot_id=bindparam("snapshot"))
)
_SET_FIRST_APPEARANCE = (
    update(ARTICLES).where(ARTICLES.c.id == bindparam("article")).values(first_appearance_id=bindparam("appearance"))
)


class StaleDecisionError(LookupError):
    """The row a decision points at is gone (deleted between deciding and storing)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _connection_lost(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    return bool(getattr(cause, "connection_invalidated", False))


# --- pure helpers ---------------------------------------------------------------------


def story_guid(canonical_key: str) -> str:
    """Stable story id: sha1 of the first appearance's canonical key; never changes afterwards."""
    return hashlib.sha1(canonical_key.encode("utf-8")).hexdigest()


def summary_of(item: ArticleItem, body_text: str) -> str | None:
    if item.summary and item.summary.strip():
        return item.summary.strip()
    first = body_text[:SUMMARY_CHARS]
    return first or None


def appearance_meta(item: ArticleItem) -> dict[str, Any]:
    """What an appearance says about itself beyond its columns (read by retag: "source_label")."""
    meta: dict[str, Any] = {
        "byline": item.byline,
        "source_label": item.source_label,
        "account_name": item.account_name,
        "account_id": item.account_id,
        "author": item.author,
        "cover_url": item.cover_url,
        "original_url": item.original_url,
        "column": item.column,
        "image_urls": list(item.image_urls) or None,
        # spiders may put anything in `extra`; the JSON column only takes plain data
        "extra": json.loads(json.dumps(item.extra, default=str)) if item.extra else None,
    }
    return {key: value for key, value in meta.items() if value}


def original_order(appearance: Appearance) -> tuple[bool, datetime, datetime, int]:
    """首发 = the earliest published appearance; ties (and undated ones, last) by fetch time, then id."""
    published = appearance.published_at or datetime.max.replace(tzinfo=UTC)
    return (appearance.published_at is None, published, appearance.fetched_at, appearance.id or 0)


# --- writing decisions ------------------------------------------------------------------


def snapshot_for(
    session: Session, item: ArticleItem, appearance_id: int, parts: tuple[str, bytes] | None = None
) -> Snapshot | None:
    """The snapshot of this fetch's raw bytes (an existing one when the same bytes were stored before);
    `parts`: the bytes' digest and compressed form when computed ahead (`Record.snapshot`)."""
    if not item.raw_body:
        return None
    digest, content = parts if parts is not None else snapshot_parts(item.raw_body)
    existing = session.scalar(select(Snapshot).where(Snapshot.sha256 == digest))
    if existing is not None:
        return existing
    snapshot = Snapshot(
        appearance_id=appearance_id,
        sha256=digest,
        url=item.url,
        fetched_at=item.fetched_at,
        http_status=item.http_status,
        headers=dict(item.headers),
        encoding=item.encoding,
        content=content,
        size=len(item.raw_body),
    )
    session.add(snapshot)
    session.flush()
    return snapshot


def write_tags(session: Session, article: Article, tags: Tags | None, now: datetime, batch: Batch | None) -> None:
    """Tags → rows. The one call into the tag storage shared with retag."""
    if tags is not None:
        apply_tags(session, article, tags, now=now, batch=batch)


def _signature(record: Record) -> bytes:
    if record.minhash is None:
        raise ValueError(f"{record.item.url}: no signature (the ingest precomputes it before deduplicating)")
    return record.minhash


def _set_content(session: Session, article: Article, record: Record, now: datetime, batch: Batch | None) -> None:
    article.title = record.title
    article.summary = summary_of(record.item, record.body_text)
    article.body_html = record.body_html
    article.body_text = record.body_text
    article.content_hash = record.content_hash
    article.minhash = _signature(record)
    article.minhash_scheme = SIGNATURE_SCHEME
    article.updated_at = now
    session.flush()
    index_article(session, article.id, article.title, article.body_text, split=record.search, batch=batch)


def _add_appearance(session: Session, record: Record, source_id: int, article: Article) -> Appearance:
    item = record.item
    appearance = Appearance(
        article=article,
        source_id=source_id,
        canonical_key=item.canonical_key,
        url=item.url,
        title=record.title,
        published_at=item.published_at,
        printed_published_at=record.printed_published_at,
        fetched_at=item.fetched_at,
        http_status=item.http_status,
        etag=item.etag,
        last_modified=item.last_modified,
        content_hash=record.content_hash,
        is_original=False,
        state=item.state,
        in_column=item.in_column,
        meta=appearance_meta(item),
    )
    session.add(appearance)
    session.flush()  # a concurrent crawl's copy of this key fails here (unique canonical_key)
    snapshot = snapshot_for(session, item, appearance.id, record.snapshot)
    appearance.snapshot_id = snapshot.id if snapshot is not None else None
    return appearance


def elect_original(article: Article) -> Appearance:
    """Mark the first-published appearance as the original (首发) and the others as reposts."""
    original = min(article.appearances, key=original_order)
    for appearance in article.appearances:
        appearance.is_original = appearance is original
    article.first_appearance_id = original.id
    article.published_at = original.published_at
    return original


@functools.cache
def _insert_snapshot(dialect: str) -> Any:
    return insert_or_ignore(dialect, SNAPSHOTS).returning(SNAPSHOTS.c.id)


def _snapshot_row(item: ArticleItem, parts: tuple[str, bytes] | None) -> dict[str, Any] | None:
    """The snapshot row of this fetch's raw bytes (without its appearance); None without bytes."""
    if not item.raw_body:
        return None
    digest, content = parts if parts is not None else snapshot_parts(item.raw_body)
    return {
        "sha256": digest,
        "url": item.url,
        "fetched_at": item.fetched_at,
        "http_status": item.http_status,
        "headers": dict(item.headers),
        "encoding": item.encoding,
        "content": content,
        "size": len(item.raw_body),
    }


def _insert_rows_one_by_one(
    session: Session, article: dict[str, Any], appearance: dict[str, Any], snapshot: dict[str, Any] | None
) -> tuple[int, int]:
    """`story_rows.insert_story_rows` for SQLite: the article, its appearance and snapshot, then
    the two links between them."""
    connection = session.connection()
    inserted = connection.execute(_INSERT_ARTICLE, {**article, "first_appearance_id": None}).inserted_primary_key
    assert inserted is not None
    article_id = int(inserted[0])
    inserted = connection.execute(
        _INSERT_APPEARANCE, {**appearance, "article_id": article_id, "snapshot_id": None}
    ).inserted_primary_key
    assert inserted is not None
    appearance_id = int(inserted[0])
    if snapshot is not None:
        snapshot_id = connection.execute(
            _insert_snapshot(session.get_bind().dialect.name), {**snapshot, "appearance_id": appearance_id}
        ).scalar()
        if snapshot_id is None:  # the same bytes were stored before (rare for a new story)
            snapshot_id = connection.execute(_SNAPSHOT_BY_SHA, {"digest": snapshot["sha256"]}).scalar_one()
        connection.execute(_SET_SNAPSHOT, {"appearance": appearance_id, "snapshot": snapshot_id})
    connection.execute(_SET_FIRST_APPEARANCE, {"article": article_id, "appearance": appearance_id})
    return article_id, appearance_id


def write_new_story(session: Session, record: Record, source: SourceRow, now: datetime, batch: Batch | None) -> int:
    """A new story, its first (original) appearance, snapshot, search entry and tags; its id.

    Plain Core statements (the hot path of a backfill): on PostgreSQL the rows and the tag rows in
    one statement (`pipeline.corpus.story_rows`); on SQLite the rows one at a time and the tag rows
    in one executemany. The tag fields are in the article's row.
    """
    item = record.item
    fields: dict[str, Any] = {
        "unit_id": source.unit_id,
        "author": item.author,
        "positions": [],
        "column": item.column or source.column,
    }
    if record.tags is not None:
        fields = article_fields(session, record.tags, batch)
    article = {
        "guid": story_guid(item.canonical_key),
        "title": record.title,
        "published_at": item.published_at,
        "summary": summary_of(item, record.body_text),
        "body_html": record.body_html,
        "body_text": record.body_text,
        "content_hash": record.content_hash,
        "minhash": _signature(record),
        "minhash_scheme": SIGNATURE_SCHEME,
        "state": "live",
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    # The story's only appearance is its original (首发).
    appearance = {
        "source_id": source.id,
        "canonical_key": item.canonical_key,  # a concurrent crawl's copy of this key fails here (unique)
        "url": item.url,
        "title": record.title,
        "published_at": item.published_at,
        "printed_published_at": record.printed_published_at,
        "fetched_at": item.fetched_at,
        "http_status": item.http_status,
        "etag": item.etag,
        "last_modified": item.last_modified,
        "content_hash": record.content_hash,
        "is_original": True,
        "state": item.state,
        "in_column": item.in_column,
        "meta": appearance_meta(item),
    }
    snapshot = _snapshot_row(item, record.snapshot)
    if session.get_bind().dialect.name == "postgresql":
        tag_rows = new_article_tag_rows(session, record.tags, batch) if record.tags is not None else []
        article_id, _ = insert_story_rows(session.connection(), article, appearance, snapshot, tag_rows)
    else:
        article_id, _ = _insert_rows_one_by_one(session, article, appearance, snapshot)
        if record.tags is not None:
            insert_new_article_tags(session, article_id, record.tags, batch)
    index_article(session, article_id, record.title, record.body_text, new=True, split=record.search, batch=batch)
    return article_id


def write_new_appearance(
    session: Session, record: Record, source: SourceRow, article_id: int, now: datetime, batch: Batch | None
) -> None:
    # The tag rows with their tags in one more statement: read row by row (`current_tags`), each
    # tag would be a lazy load of its own.
    article = session.get(Article, article_id, options=[selectinload(Article.tags).joinedload(ArticleTag.tag)])
    if article is None:
        raise StaleDecisionError(f"article {article_id} no longer exists")
    appearance = _add_appearance(session, record, source.id, article)
    first_before = article.first_appearance_id
    original = elect_original(article)
    if original is appearance and len(record.body_text) > len(article.body_text):
        # The story was first published here: its text replaces ours when it is fuller (the copy
        # seen first may have been truncated).
        _set_content(session, article, record, now, batch)
    if record.tags is not None:
        held = current_tags(article, unit_name(session, article.unit_id))
        if original is appearance:
            # The original speaks for the story (byline, unit); what the others gave stays.
            write_tags(session, article, merge_tags(record.tags, held), now, batch)
        else:
            # A repost adds what the story lacked: column membership (the album's copy of a story
            # first seen on a unit site), or a unit when the original named none.
            write_tags(session, article, merge_tags(held, record.tags), now, batch)
    if article.first_appearance_id != first_before:
        # A new 首发: the story's link and date changed. (New text and new tags set `updated_at`
        # themselves; a repost that changes nothing a reader sees leaves it: feeds show it.)
        article.updated_at = now


def _known(session: Session, appearance_id: int | None) -> Appearance:
    appearance = session.get(Appearance, appearance_id) if appearance_id is not None else None
    if appearance is None:
        raise StaleDecisionError(f"appearance {appearance_id} no longer exists")
    return appearance


def _refresh_fetch(appearance: Appearance, item: ArticleItem) -> None:
    appearance.fetched_at = item.fetched_at
    appearance.http_status = item.http_status
    appearance.etag = item.etag
    appearance.last_modified = item.last_modified


def write_edit(session: Session, record: Record, appearance_id: int | None, now: datetime, batch: Batch | None) -> None:
    appearance = _known(session, appearance_id)
    article = appearance.article
    _refresh_fetch(appearance, record.item)
    # the previous snapshot stays as a version
    snapshot = snapshot_for(session, record.item, appearance.id, record.snapshot)
    if snapshot is not None:
        appearance.snapshot_id = snapshot.id
    appearance.content_hash = record.content_hash
    appearance.title = record.title
    appearance.state = STATE_OK
    appearance.meta = appearance_meta(record.item)
    # The story's text follows its original; an edited repost only changes the repost's own row.
    if appearance.is_original or article.first_appearance_id == appearance.id:
        _set_content(session, article, record, now, batch)
        article.state = "edited"
        if record.tags is not None:
            # What other appearances gave the story (column membership, a unit) stays.
            held = current_tags(article, unit_name(session, article.unit_id))
            write_tags(session, article, merge_tags(record.tags, held), now, batch)
    elif article.state == "deleted":
        article.state = "live"


def write_unchanged(session: Session, record: Record, appearance_id: int | None, now: datetime) -> None:
    appearance = _known(session, appearance_id)
    _refresh_fetch(appearance, record.item)
    if appearance.state != STATE_OK:
        appearance.state = STATE_OK  # back at the source (e.g. after "temporarily unavailable")
        if appearance.article.state == "deleted":
            appearance.article.state = "live"
            appearance.article.updated_at = now


def write_state_change(session: Session, record: Record, appearance_id: int | None, now: datetime) -> None:
    appearance = _known(session, appearance_id)
    appearance.state = record.item.state
    appearance.fetched_at = record.item.fetched_at
    appearance.http_status = record.item.http_status
    article = appearance.article
    if all(a.state in GONE_STATES for a in article.appearances):
        article.state = "deleted"  # gone everywhere at the source; our copy stays
        article.updated_at = now


# --- the stage -----------------------------------------------------------------------------------


def _write(
    session: Session, record: Record, source: SourceRow, now: datetime, batch: Batch | None
) -> tuple[dict[str, int], int | None]:
    """The rows of one decided record; the counts it adds to its source's run, and the id of the
    story it made (a new story only)."""
    decision = record.decision
    assert decision is not None
    if decision.kind == NEW_STORY:
        return {"new_stories": 1, "new_appearances": 1}, write_new_story(session, record, source, now, batch)
    return _write_to_known(session, record, source, now, batch), None


def _write_to_known(
    session: Session, record: Record, source: SourceRow, now: datetime, batch: Batch | None
) -> dict[str, int]:
    decision = record.decision
    assert decision is not None
    if decision.kind == NEW_APPEARANCE:
        if decision.article_id is None:
            raise StaleDecisionError("a new appearance decision without an article")
        write_new_appearance(session, record, source, decision.article_id, now, batch)
        return {"new_appearances": 1, "reposts": 1}
    if decision.kind == EDIT:
        write_edit(session, record, decision.appearance_id, now, batch)
        return {}
    if decision.kind == UNCHANGED:
        write_unchanged(session, record, decision.appearance_id, now)
        return {"unchanged": 1}
    if decision.kind == STATE_CHANGE:
        write_state_change(session, record, decision.appearance_id, now)
        return {}
    raise ValueError(f"unknown decision kind {decision.kind!r}")


class Store:
    """The store stage of one ingest: decided records and list pages become rows."""

    def __init__(self, sessions: SessionSource, clock: Callable[[], datetime] = utc_now) -> None:
        self.sessions = sessions
        self.clock = clock

    def write(self, record: Record, run: SourceRunRecorder, source: SourceRow) -> int | None:
        """Store one decided record as one unit of work and count it on its source's run; the id of
        the story it made when it was a new one and is stored. A failure is recorded on the run
        (fatal when the database failed: the next crawl pages fully)."""
        run.fetched += 1
        batch = batch_of(self.sessions)
        key = record.item.canonical_key
        failure = ""
        database_failed = False
        # A new story is one statement (`story_rows`) whose conflicts the dedup locks rule out: on
        # PostgreSQL its unit has no SAVEPOINT (`db.BatchedSessions`), and a failure replays the batch.
        optimistic = record.decision is not None and record.decision.kind == NEW_STORY
        for attempt in range(2):
            now = self.clock()
            try:
                with transaction(self.sessions, optimistic=optimistic) as session:
                    counts, story_id = _write(session, record, source, now, batch)
                    count(session, run.source_run_id, counts, batch)
                return story_id
            except IntegrityError as exc:
                failure = str(exc.orig)
            except StaleDecisionError as exc:
                failure = str(exc)
                break
            except DatabaseError as exc:
                # Locked, full or disconnected: the unit was rolled back, nothing of the page is stored.
                failure, database_failed = str(exc), True
                if attempt == 0 and _connection_lost(exc):
                    continue  # the server dropped us: a fresh connection may store it
                break
            try:
                with transaction(self.sessions) as session:
                    if session.scalar(select(Appearance.id).where(Appearance.canonical_key == key)) is not None:
                        # Another crawl stored this page between our decision and our insert.
                        log.info("%s was stored concurrently; counted as unchanged", key)
                        count(session, run.source_run_id, {"unchanged": 1}, batch)
                        return None
            except DatabaseError as exc:
                failure, database_failed = str(exc), True
                break
            # Otherwise (e.g. two crawls inserting the same snapshot bytes) the second attempt reuses their row.
        if database_failed:
            log.error("could not store %s: %s", record.item.url, failure)
        run.problem(
            ProblemItem(
                source_key=record.item.source_key,
                url=record.item.url,
                kind="database" if database_failed else "store",
                reason=f"could not store the page: {failure}",
                fatal=database_failed,
            )
        )
        return None

    def list_page(self, item: ListPageItem, run: SourceRunRecorder) -> None:
        """Keep a list page's validators for the next cycle's conditional request."""
        run.fetched += 1
        for attempt in range(2):
            try:
                with transaction(self.sessions) as session:
                    page = session.scalar(select(ListPage).where(ListPage.url == item.url))
                    if page is None:
                        page = ListPage(url=item.url, source_id=run.source_id)
                        session.add(page)
                    page.etag = item.etag
                    page.last_modified = item.last_modified
                    page.fetched_at = item.fetched_at
                return
            except IntegrityError:
                continue  # another crawl inserted the same URL first: the second attempt updates it
            except DatabaseError as exc:
                if attempt == 0 and _connection_lost(exc):
                    continue
                # Validators only save requests next time: losing them loses no content.
                log.error("validators of %s not stored: %s", item.url, exc)
                return
