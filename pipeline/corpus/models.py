"""The corpus schema: SQLAlchemy 2.x typed models.

A story is an `Article`; every place it appeared is an `Appearance` (one unique canonical
key each); the raw bytes of every fetch are `Snapshot`s. Health and history live in
`CrawlRun`/`SourceRun`; the digest's exactly-once sending rests on the unique
(digest, recipient) of `Delivery`. The search index tables are created by the migration
(dialect-specific) and maintained by `pipeline.corpus.search_index`.

Must not import crawler spiders, feeds or archive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on both databases: stored as UTC, returned tz-aware (UTC).

    SQLite has no time zone type; refusing naive datetimes here keeps every stored time honest.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass a tz-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[dict[str, Any]]: JSON,
    }


class Unit(Base):
    __tablename__ = "units"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    short_name: Mapped[str | None] = mapped_column(String(100))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class Recipient(Base):
    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribe_token: Mapped[str] = mapped_column(String(64), unique=True)
    # The columns whose digest this person gets (`[[recipients]] columns`); None: every column.
    columns: Mapped[list[str] | None] = mapped_column(JSON)

    unit: Mapped[Unit] = relationship()


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    column: Mapped[str | None] = mapped_column(String(200))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # health
    status: Mapped[str] = mapped_column(String(20), default="new")  # new | ok | error | blocked | paused
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    unit: Mapped[Unit | None] = relationship()


class Article(Base):
    """A story: one piece of writing, whatever number of places it appeared in."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    guid: Mapped[str] = mapped_column(String(64), unique=True)  # stable: feeds' GUID, URLs
    title: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(100))  # the authors' names, 「、」-joined
    positions: Mapped[list[str]] = mapped_column(JSON, default=list)
    # [{"name": ..., "positions": [...]}] in byline order
    authors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Looked up through ix_articles_unit_story_date, whose first column it is (migration 0017).
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))  # None: unattributed
    # where the unit was read: byline | label | title | author_field | source_owner | manual
    unit_from: Mapped[str | None] = mapped_column(String(20))
    column: Mapped[str | None] = mapped_column(String(200), index=True)  # the column it is in (counts)
    column_candidate: Mapped[str | None] = mapped_column(String(200))  # proposed by a title rule: unconfirmed
    column_reason: Mapped[str | None] = mapped_column(String(20))  # album | list | title | banner | manual
    # The operator's corrections in force ({"unit": ..., "authors": [...], "column": {...}}): they win
    # over the tagging rules at every retag and re-crawl. Their history is in `corrections`.
    corrected: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    minhash: Mapped[bytes | None] = mapped_column(LargeBinary)
    minhash_scheme: Mapped[str | None] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(20), default="live")  # live | deleted | edited
    first_appearance_id: Mapped[int | None] = mapped_column(
        ForeignKey("appearances.id", use_alter=True, name="fk_articles_first_appearance")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    unit: Mapped[Unit | None] = relationship()
    appearances: Mapped[list[Appearance]] = relationship(
        back_populates="article", foreign_keys="Appearance.article_id", order_by="Appearance.id"
    )
    tags: Mapped[list[ArticleTag]] = relationship(back_populates="article", cascade="all, delete-orphan")


# Search's date walk: newest first with the id breaking ties, read from the index alone (migration 0014).
Index("ix_articles_published_at_id", Article.published_at, Article.id)
# "A story's date" (feeds.selection): the newest stories of a feed, of a unit's feed and a digest
# week are read down these indexes instead of sorting the corpus (issue 20; migration 0010).
Index("ix_articles_story_date", func.coalesce(Article.published_at, Article.created_at), Article.id)
Index(
    "ix_articles_unit_story_date", Article.unit_id, func.coalesce(Article.published_at, Article.created_at), Article.id
)
# The stories deleted at source, few: search subtracts them from a term's count (migration 0013).
Index(
    "ix_articles_deleted",
    Article.id,
    sqlite_where=text("state = 'deleted'"),
    postgresql_where=text("state = 'deleted'"),
)


class Correction(Base):
    """One correction by the operator: who, when, which field, old → new (the audit trail)."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), index=True)
    field: Mapped[str] = mapped_column(String(20))  # unit | authors | column
    old_value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    new_value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Appearance(Base):
    """One URL where a story appeared."""

    __tablename__ = "appearances"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    canonical_key: Mapped[str] = mapped_column(String(500), unique=True)
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The publish time the page printed when it was after the fetch: published_at then holds the
    # fetch time, and the date is flagged for the operator (migration 0012). None: as printed.
    printed_published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    http_status: Mapped[int] = mapped_column(Integer, default=200)
    etag: Mapped[str | None] = mapped_column(String(200))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    is_original: Mapped[bool] = mapped_column(Boolean, default=False)  # 首发 (True) or 转载
    state: Mapped[str] = mapped_column(String(20), default="ok")  # ok | deleted | violation | ...
    in_column: Mapped[bool] = mapped_column(Boolean, default=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # account, byline, 来源, cover, ...
    snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey("snapshots.id", use_alter=True, name="fk_appearances_snapshot")
    )

    article: Mapped[Article] = relationship(back_populates="appearances", foreign_keys=[article_id])
    source: Mapped[Source] = relationship()
    snapshot: Mapped[Snapshot | None] = relationship(foreign_keys=[snapshot_id])


class Snapshot(Base):
    """Raw bytes as fetched (zlib-compressed); every version of an appearance is kept."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    appearance_id: Mapped[int | None] = mapped_column(ForeignKey("appearances.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    http_status: Mapped[int] = mapped_column(Integer, default=200)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    encoding: Mapped[str] = mapped_column(String(40), default="utf-8")
    content: Mapped[bytes] = mapped_column(LargeBinary)  # zlib.compress(raw bytes)
    size: Mapped[int] = mapped_column(Integer, default=0)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("kind", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # topic | keyword | column | position
    name: Mapped[str] = mapped_column(String(200))


class ArticleTag(Base):
    __tablename__ = "article_tags"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id"), primary_key=True, index=True)
    origin: Mapped[str] = mapped_column(String(20), default="rule")  # rule | keyword | manual
    weight: Mapped[float] = mapped_column(Float, default=1.0)

    article: Mapped[Article] = relationship(back_populates="tags")
    tag: Mapped[Tag] = relationship()


class ListPage(Base):
    """HTTP validators of a list page, for conditional GET on the next cycle."""

    __tablename__ = "list_pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    url: Mapped[str] = mapped_column(String(1000), unique=True)
    etag: Mapped[str | None] = mapped_column(String(200))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CrawlRun(Base):
    __tablename__ = "crawl_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | ok | partial | failed | killed
    trigger: Mapped[str] = mapped_column(String(40), default="manual")
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    source_runs: Mapped[list[SourceRun]] = relationship(back_populates="crawl_run", order_by="SourceRun.id")


class SourceRun(Base):
    __tablename__ = "source_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    crawl_run_id: Mapped[int] = mapped_column(ForeignKey("crawl_runs.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | ok | error | blocked | handed_over
    requests: Mapped[int] = mapped_column(Integer, default=0)
    new_stories: Mapped[int] = mapped_column(Integer, default=0)
    new_appearances: Mapped[int] = mapped_column(Integer, default=0)
    reposts: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error_summary: Mapped[str | None] = mapped_column(Text)
    # The `zhuanlan worker` that ran it (NULL: `zhuanlan crawl` itself); set on a run whose worker
    # lost its lease: {"from", "lease_ended_at", "to", "at"} (migration 0009).
    worker: Mapped[str | None] = mapped_column(String(200))
    handover: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    crawl_run: Mapped[CrawlRun] = relationship(back_populates="source_runs")
    source: Mapped[Source] = relationship()


class Digest(Base):
    """One column's digest of one week: its deliveries make sending it exactly-once."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("column", "week", name="uq_digest_column_week"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    column: Mapped[str] = mapped_column(String(200), server_default="")
    week: Mapped[str] = mapped_column(String(10))  # ISO week, e.g. 2026-W48
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    article_count: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Delivery(Base):
    """One delivery per (digest, recipient), so per (column, week, recipient): the row that makes
    sending exactly-once."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("digest_id", "recipient_id", name="uq_delivery_digest_recipient"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | sending | sent | failed | skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    digest: Mapped[Digest] = relationship()
    recipient: Mapped[Recipient] = relationship()


class DigestReview(Base):
    """The office's review of one issue, keyed by (column, ISO week): the intro, the stories
    pinned or left out, and the approval (who, when, and the mark of the content approved).
    See `feeds.review` for the rules and `feeds.review_store` for the writes."""

    __tablename__ = "digest_reviews"
    __table_args__ = (UniqueConstraint("column", "week", name="uq_digest_review_column_week"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    column: Mapped[str] = mapped_column(String(200))
    week: Mapped[str] = mapped_column(String(10))
    intro: Mapped[str | None] = mapped_column(Text)
    pinned: Mapped[list[str]] = mapped_column(JSON, default=list)  # story guids, in order
    excluded: Mapped[list[str]] = mapped_column(JSON, default=list)  # story guids
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_mark: Mapped[str | None] = mapped_column(String(64))  # feeds.review.content_mark when approved
    reminder_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminder_message_id: Mapped[str | None] = mapped_column(String(300))
    skipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the deadline passed unapproved
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # {at, by, what}: the audit trail
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FeedState(Base):
    """What each published feed was last built from, so only changed feeds are rebuilt."""

    __tablename__ = "feed_states"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)  # e.g. all, column/<name>, unit/<id>, topic/<name>
    content_hash: Mapped[str] = mapped_column(String(64))
    built_at: Mapped[datetime] = mapped_column(UTCDateTime)
    item_count: Mapped[int] = mapped_column(Integer, default=0)


PUBLISHED_PATH_LENGTH = 400  # the longest path a published file may have


class PublishedFile(Base):
    """A file `zhuanlan feeds` published under `<public_dir>/feeds/` (a feed, or the directory's
    index.html, index.opml, index.json), kept in the database as well, so that a web app on any
    machine serves the same bytes under the same validators (`archive.views.feeds`), not only the
    one beside the scheduler's disk."""

    __tablename__ = "published_files"

    path: Mapped[str] = mapped_column(String(PUBLISHED_PATH_LENGTH), primary_key=True)  # under feeds/: unit/<slug>.rss
    sha256: Mapped[str] = mapped_column(String(64))  # of `content`: the ETag every web app gives
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when `content` last changed: Last-Modified
    content: Mapped[bytes] = mapped_column(LargeBinary)


class OperatorSession(Base):
    """An operator's login to the web app, kept server-side so that it can be revoked.

    The cookie carries only a random id; the row keeps its SHA-256 (a stolen database yields no
    usable cookie) and a fingerprint of the admin password it was made under (an HMAC keyed with
    the app's secret key), so changing the password ends every older session."""

    __tablename__ = "operator_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    password_mark: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))  # the address it logged in from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginLock(Base):
    """Failed logins counted per key (`addr:<client address>` or `account:<name>`) and the lock
    they led to; in the database, so a restart does not clear it and every thread sees it."""

    __tablename__ = "login_locks"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # since the last lock or success
    lockouts: Mapped[int] = mapped_column(Integer, default=0)  # since the last success: the delay grows with it
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoginEvent(Base):
    """A failed login or a lockout, for the health page (the log has them too)."""

    __tablename__ = "login_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(20))  # failure | lockout
    client: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SchedulerHeartbeat(Base):
    """The scheduler's sign of life: one row, rewritten every `interval_seconds` while it runs, so
    `zhuanlan status` and the health page (maybe on another machine) can tell whether one runs."""

    __tablename__ = "scheduler_heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1: one scheduler per database
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    interval_seconds: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set by a clean shutdown
