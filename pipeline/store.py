"""Last item stage: write what the deduplicate stage decided, one transaction per record,
and record the source's run (counts, problems, status) and health.

Owns the row-level meaning of each decision (see `pipeline.record`): NEW_STORY creates the
article, its first appearance and snapshot, the search entry and tags; NEW_APPEARANCE attaches a
repost and re-elects the first-published appearance (首发); EDIT keeps the old snapshot as a
version; UNCHANGED refreshes the fetch time; STATE_CHANGE marks the appearance (and the story when
every appearance is gone) but keeps our copy. Problems are data on `source_runs`, never content.

The unique canonical key is the last line of defence against a concurrent crawl storing the same
page: an insert that violates it is rolled back and counted as unchanged. Tags are written by
`pipeline.corpus.tagstore.apply_tags`, the one function shared with the retag command.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from scrapy import signals
from scrapy.exceptions import DropItem
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from crawler.items import GONE_STATES, STATE_OK, ArticleItem, ListPageItem, ProblemItem
from pipeline.ahead import snapshot_parts
from pipeline.corpus.config_sync import sync_config
from pipeline.corpus.corrections import current_tags
from pipeline.corpus.db import DEFERRED, DatabaseError, describe_failure, insert_or_ignore, transaction
from pipeline.corpus.models import Appearance, Article, ListPage, Snapshot, Source, SourceRun, Unit
from pipeline.corpus.runs import finish_crawl_run, start_crawl_run
from pipeline.corpus.search_index import index_article
from pipeline.corpus.tagstore import apply_tags, article_fields, insert_new_article_tags, unit_name
from pipeline.normalize import RejectedItem
from pipeline.record import EDIT, NEW_APPEARANCE, NEW_STORY, STATE_CHANGE, UNCHANGED, Record, Tags
from pipeline.settings_access import config_path, open_sessions, run_id
from pipeline.similarity import SIGNATURE_SCHEME, signature
from pipeline.tagging.rules import merge_tags
from zhuanlan_config import ConfigError, load_config

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sqlalchemy.orm import Session

    from pipeline.corpus.db import SessionSource

log = logging.getLogger(__name__)

BLOCKING_PROBLEMS = frozenset({"blocked", "verification"})
DEFAULT_VERIFICATION_BACKOFF_MINUTES = 30
MAX_PAUSE = timedelta(hours=24)
SUMMARY_CHARS = 200

ARTICLES = cast(Table, Article.__table__)
APPEARANCES = cast(Table, Appearance.__table__)
SNAPSHOTS = cast(Table, Snapshot.__table__)
SOURCE_RUNS = cast(Table, SourceRun.__table__)

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


@functools.cache
def _bump_statement(names: tuple[str, ...]) -> Any:
    """UPDATE source_runs SET name = coalesce(name, 0) + :name …: one statement per set of counters."""
    values = {name: func.coalesce(SOURCE_RUNS.c[name], 0) + bindparam(f"add_{name}") for name in names}
    return update(SOURCE_RUNS).where(SOURCE_RUNS.c.id == bindparam("run")).values(**values)


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


def judge_run(problems: list[dict[str, Any]], fatal_reasons: list[str], fetched: int) -> tuple[str, str | None]:
    """(status, error summary in plain words) of a finished source run."""
    for problem in problems:
        if problem.get("kind") in BLOCKING_PROBLEMS:
            return "blocked", str(problem.get("reason") or problem.get("kind"))
    if fatal_reasons:
        return "error", fatal_reasons[0]
    if fetched == 0:
        if problems:
            return "error", f"nothing could be fetched: {problems[0].get('reason')}"
        return "error", "nothing could be fetched: the spider produced no article and no list page"
    if problems:
        count = len(problems)
        return "ok", f"{count} problem{'s' if count > 1 else ''}; first: {problems[0].get('reason')}"
    return "ok", None


def verification_pause(options: Mapping[str, Any], consecutive_failures: int) -> timedelta:
    """Back-off after a WeChat verification page: the source's base minutes, doubled per
    consecutive failure, at most a day."""
    base = int(options.get("verification_backoff_minutes") or DEFAULT_VERIFICATION_BACKOFF_MINUTES)
    minutes = base * 2 ** max(0, consecutive_failures - 1)
    return min(timedelta(minutes=minutes), MAX_PAUSE)


def update_source_health(
    source: Source, status: str, summary: str | None, now: datetime, *, verification: bool
) -> None:
    if status == "ok":
        source.status = "ok"
        source.last_success_at = now
        source.consecutive_failures = 0
        source.paused_until = None
        return
    source.status = status
    source.last_error_at = now
    source.last_error = summary
    source.consecutive_failures = (source.consecutive_failures or 0) + 1
    if verification and source.kind.startswith("wechat"):
        source.paused_until = now + verification_pause(source.options or {}, source.consecutive_failures)
        source.status = "paused"


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


def write_tags(session: Session, article: Article, tags: Tags | None, now: datetime) -> None:
    """Tags → rows. The one call into the tag storage shared with retag."""
    if tags is not None:
        apply_tags(session, article, tags, now=now)


def _set_content(session: Session, article: Article, record: Record, now: datetime) -> None:
    article.title = record.title
    article.summary = summary_of(record.item, record.body_text)
    article.body_html = record.body_html
    article.body_text = record.body_text
    article.content_hash = record.content_hash
    article.minhash = record.minhash if record.minhash is not None else signature(record.body_text)
    article.minhash_scheme = SIGNATURE_SCHEME
    article.updated_at = now
    session.flush()
    index_article(session, article.id, article.title, article.body_text, split=record.search)


def _add_appearance(session: Session, record: Record, source_id: int, article: Article) -> Appearance:
    item = record.item
    appearance = Appearance(
        article=article,
        source_id=source_id,
        canonical_key=item.canonical_key,
        url=item.url,
        title=record.title,
        published_at=item.published_at,
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


@dataclass(frozen=True)
class SourceInfo:
    """What writing a record needs of the crawled source; read once per crawl, not per item."""

    id: int
    unit_id: int | None
    column: str | None


def _snapshot_id(
    session: Session, item: ArticleItem, appearance_id: int, parts: tuple[str, bytes] | None
) -> int | None:
    """`snapshot_for` in one Core statement (the new-story path): the id of this fetch's snapshot.

    Insert-or-ignore returning the new row's id; only when the same bytes were stored before (rare
    for a new story) a second statement reads the existing row's id.
    """
    if not item.raw_body:
        return None
    digest, content = parts if parts is not None else snapshot_parts(item.raw_body)
    connection = session.connection()
    inserted = connection.execute(
        _insert_snapshot(session.get_bind().dialect.name),
        {
            "appearance_id": appearance_id,
            "sha256": digest,
            "url": item.url,
            "fetched_at": item.fetched_at,
            "http_status": item.http_status,
            "headers": dict(item.headers),
            "encoding": item.encoding,
            "content": content,
            "size": len(item.raw_body),
        },
    ).scalar()
    if inserted is None:
        inserted = connection.execute(_SNAPSHOT_BY_SHA, {"digest": digest}).scalar_one()
    return int(inserted)


@functools.cache
def _insert_snapshot(dialect: str) -> Any:
    return insert_or_ignore(dialect, SNAPSHOTS).returning(SNAPSHOTS.c.id)


def write_new_story(session: Session, record: Record, source: SourceInfo, now: datetime) -> int:
    """A new story, its first (original) appearance, snapshot, search entry and tags; its id.

    Plain Core inserts (the hot path of a backfill): the same rows the ORM wrote before, in about
    ten statements, with the tag fields in the article's INSERT and the tag rows in one executemany.
    """
    item = record.item
    fields: dict[str, Any] = {
        "unit_id": source.unit_id,
        "author": item.author,
        "positions": [],
        "column": item.column or source.column,
    }
    if record.tags is not None:
        fields = article_fields(session, record.tags)
    connection = session.connection()
    inserted = connection.execute(
        _INSERT_ARTICLE,
        {
            "guid": story_guid(item.canonical_key),
            "title": record.title,
            "published_at": item.published_at,
            "summary": summary_of(item, record.body_text),
            "body_html": record.body_html,
            "body_text": record.body_text,
            "content_hash": record.content_hash,
            "minhash": record.minhash if record.minhash is not None else signature(record.body_text),
            "minhash_scheme": SIGNATURE_SCHEME,
            "state": "live",
            "created_at": now,
            "updated_at": now,
            "first_appearance_id": None,
            **fields,
        },
    ).inserted_primary_key
    assert inserted is not None
    article_id = int(inserted[0])
    # The story's only appearance is its original (首发).
    inserted = connection.execute(
        _INSERT_APPEARANCE,
        {
            "article_id": article_id,
            "source_id": source.id,
            "canonical_key": item.canonical_key,  # a concurrent crawl's copy of this key fails here (unique)
            "url": item.url,
            "title": record.title,
            "published_at": item.published_at,
            "fetched_at": item.fetched_at,
            "http_status": item.http_status,
            "etag": item.etag,
            "last_modified": item.last_modified,
            "content_hash": record.content_hash,
            "is_original": True,
            "state": item.state,
            "in_column": item.in_column,
            "meta": appearance_meta(item),
            "snapshot_id": None,
        },
    ).inserted_primary_key
    assert inserted is not None
    appearance_id = int(inserted[0])
    snapshot_id = _snapshot_id(session, item, appearance_id, record.snapshot)
    if snapshot_id is not None:
        connection.execute(_SET_SNAPSHOT, {"appearance": appearance_id, "snapshot": snapshot_id})
    connection.execute(_SET_FIRST_APPEARANCE, {"article": article_id, "appearance": appearance_id})
    index_article(session, article_id, record.title, record.body_text, new=True, split=record.search)
    if record.tags is not None:
        insert_new_article_tags(session, article_id, record.tags)
    return article_id


def write_new_appearance(session: Session, record: Record, source: SourceInfo, article_id: int, now: datetime) -> None:
    article = session.get(Article, article_id)
    if article is None:
        raise StaleDecisionError(f"article {article_id} no longer exists")
    appearance = _add_appearance(session, record, source.id, article)
    original = elect_original(article)
    if original is appearance and len(record.body_text) > len(article.body_text):
        # The story was first published here: its text replaces ours when it is fuller (the copy
        # seen first may have been truncated).
        _set_content(session, article, record, now)
    if record.tags is not None:
        held = current_tags(article, unit_name(session, article.unit_id))
        if original is appearance:
            # The original speaks for the story (byline, unit); what the others gave stays.
            write_tags(session, article, merge_tags(record.tags, held), now)
        else:
            # A repost adds what the story lacked: column membership (the album's copy of a story
            # first seen on a unit site), or a unit when the original named none.
            write_tags(session, article, merge_tags(held, record.tags), now)
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


def write_edit(session: Session, record: Record, appearance_id: int | None, now: datetime) -> None:
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
        _set_content(session, article, record, now)
        article.state = "edited"
        if record.tags is not None:
            # What other appearances gave the story (column membership, a unit) stays.
            held = current_tags(article, unit_name(session, article.unit_id))
            write_tags(session, article, merge_tags(record.tags, held), now)
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


# --- the Scrapy shell ---------------------------------------------------------------------


@dataclass
class _RunState:
    source_id: int
    source_run_id: int
    source: SourceInfo
    fetched: int = 0
    fatal_reasons: list[str] = field(default_factory=list)
    unsaved_problems: list[dict[str, Any]] = field(default_factory=list)  # the database refused them


class StorePipeline:
    """Writes records, problems and list-page validators; records the source run and its health."""

    def __init__(
        self,
        sessions: SessionSource,
        *,
        run_id: int | None = None,
        config_path: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        stats: Any = None,
        owns_engine: bool = False,
    ) -> None:
        self.sessions = sessions
        self.run_id = run_id
        self.config_path = config_path
        self.clock = clock
        self.stats = stats
        self.owns_engine = owns_engine
        self.owns_run = False
        self.crawler: Any = None
        self.state: _RunState | None = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> StorePipeline:
        settings = crawler.settings
        pipeline = cls(
            open_sessions(settings),
            run_id=run_id(settings),
            config_path=config_path(settings),
            stats=crawler.stats,
            owns_engine=True,
        )
        pipeline.crawler = crawler
        # Items rejected by an earlier stage (RejectedItem) are recorded as problems of this run.
        crawler.signals.connect(pipeline.item_dropped, signal=signals.item_dropped)
        # An item that failed in any stage (e.g. deduplication lost its database connection) is
        # recorded as a fatal problem: the run is then incomplete and the next crawl pages fully.
        crawler.signals.connect(pipeline.item_error, signal=signals.item_error)
        return pipeline

    # -- lifecycle

    def _spider(self, spider: Any) -> Any:
        if spider is None and self.crawler is not None:
            spider = self.crawler.spider
        if spider is None:
            raise RuntimeError("StorePipeline needs the spider (its source_key and source)")
        return spider

    def open_spider(self, spider: Any = None) -> None:
        spider = self._spider(spider)
        now = self.clock()
        with transaction(self.sessions) as session:
            if self.run_id is None:
                self.run_id = start_crawl_run(session, "scrapy", now)
                self.owns_run = True
            source = self._ensure_source(session, str(spider.source_key), getattr(spider, "source", None), now)
            source_run = SourceRun(
                crawl_run_id=self.run_id, source_id=source.id, started_at=now, status="running", problems=[]
            )
            session.add(source_run)
            session.flush()
            self.state = _RunState(
                source_id=source.id,
                source_run_id=source_run.id,
                source=SourceInfo(source.id, source.unit_id, source.column),
            )

    def _ensure_source(self, session: Session, key: str, definition: Mapping[str, Any] | None, now: datetime) -> Source:
        source = session.scalar(select(Source).where(Source.key == key))
        if source is None and self.config_path:
            try:
                sync_config(session, load_config(self.config_path), now)
            except ConfigError as exc:
                log.warning("cannot load %s to register source %s: %s", self.config_path, key, exc)
            source = session.scalar(select(Source).where(Source.key == key))
        if source is None:
            if not definition or not definition.get("kind") or not definition.get("url"):
                raise RuntimeError(f"source {key!r} is not in the database and the spider does not define it")
            unit_name = definition.get("unit")
            unit_id = session.scalar(select(Unit.id).where(Unit.name == unit_name)) if unit_name else None
            source = Source(
                key=key,
                kind=str(definition["kind"]),
                url=str(definition["url"]),
                unit_id=unit_id,
                column=definition.get("column"),
                options=dict(definition.get("options") or {}),
                enabled=True,
                status="new",
                consecutive_failures=0,
            )
            session.add(source)
            session.flush()
        return source

    def close_spider(self, spider: Any = None) -> None:
        state = self._require_state()
        try:
            for attempt in range(2):
                try:
                    self._close_run(state)
                    return
                except DatabaseError as exc:
                    if attempt == 0 and _connection_lost(exc):
                        continue  # the server dropped us: a fresh connection may finish the run
                    # The source run stays "running": the next crawl marks it killed and pages fully.
                    log.error("source run %s could not be closed: %s", state.source_run_id, exc)
                    return
        finally:
            if self.owns_engine:
                self.sessions.kw["bind"].dispose()

    def _close_run(self, state: _RunState) -> None:
        now = self.clock()
        requests = int(self.stats.get_value("downloader/request_count", 0)) if self.stats is not None else 0
        with transaction(self.sessions) as session:
            source_run = session.get(SourceRun, state.source_run_id)
            source = session.get(Source, state.source_id)
            assert source_run is not None and source is not None
            if state.unsaved_problems:
                source_run.problems = [*(source_run.problems or []), *state.unsaved_problems]
                source_run.errors = (source_run.errors or 0) + len(state.unsaved_problems)
            problems = list(source_run.problems or [])
            status, summary = judge_run(problems, state.fatal_reasons, state.fetched)
            source_run.status = status
            source_run.error_summary = summary
            source_run.requests = requests
            source_run.finished_at = now
            verification = any(p.get("kind") == "verification" for p in problems)
            update_source_health(source, status, summary, now, verification=verification)
            if self.owns_run and self.run_id is not None:
                finish_crawl_run(session, self.run_id, now)
        state.unsaved_problems.clear()

    def _require_state(self) -> _RunState:
        if self.state is None:
            raise RuntimeError("StorePipeline.open_spider was not called")
        return self.state

    # -- items

    def process_item(self, item: Any, spider: Any = None) -> Any:
        if isinstance(item, Record):
            self.store_record(item)
        elif isinstance(item, ProblemItem):
            self.record_problem(item)
        elif isinstance(item, ListPageItem):
            self.store_list_page(item)
        return item

    def item_dropped(self, item: Any = None, response: Any = None, exception: Any = None, **kwargs: Any) -> None:
        if isinstance(exception, RejectedItem):
            self.record_problem(exception.problem)

    def item_error(self, item: Any = None, response: Any = None, failure: Any = None, **kwargs: Any) -> None:
        if self.state is None:
            return
        page = item.item if isinstance(item, Record) else item
        url = str(getattr(page, "url", "") or getattr(response, "url", "") or "")
        error = getattr(failure, "value", failure)
        cause = error.orig if isinstance(error, DBAPIError) else error
        if isinstance(error, OperationalError):
            reason = describe_failure(error)
        else:
            reason = " ".join(f"{type(cause).__name__}: {cause}".split())
        self.record_problem(
            ProblemItem(
                source_key=str(getattr(page, "source_key", "") or ""),
                url=url,
                kind="database" if isinstance(error, DBAPIError | DatabaseError) else "pipeline",
                reason=f"could not process the page: {reason}",
                fatal=True,
            )
        )

    def _bump(self, session: Session, **counts: int) -> None:
        # One UPDATE of the counters, without loading the run row (and its problems list) per item.
        if not counts:
            return
        run = self._require_state().source_run_id
        params: dict[str, int] = {f"add_{name}": value for name, value in counts.items()}
        deferred = session.info.get(DEFERRED)
        if deferred is not None:
            # In a batch of the pipeline worker: added up, and written once just before the batch
            # commits. Replaced, not updated in place, so a unit that rolls back takes its counts back.
            previous = deferred.get(("bump", run))
            if previous is not None:
                for name, value in previous[1].items():
                    if name.startswith("add_"):
                        params[name] = params.get(name, 0) + value
            names = tuple(sorted(name.removeprefix("add_") for name in params))
            deferred[("bump", run)] = (_bump_statement(names), {**params, "run": run})
            return
        params["run"] = run
        session.connection().execute(_bump_statement(tuple(sorted(counts))), params)

    def record_problem(self, problem: ProblemItem) -> None:
        state = self._require_state()
        if problem.fatal:
            state.fatal_reasons.append(problem.reason)
        entry = {"url": problem.url, "kind": problem.kind, "reason": problem.reason, "http_status": problem.http_status}
        try:
            with transaction(self.sessions) as session:
                source_run = session.get(SourceRun, state.source_run_id)
                assert source_run is not None
                # a new list: JSON columns do not track in-place changes
                source_run.problems = [*(source_run.problems or []), entry]
                source_run.errors = (source_run.errors or 0) + 1
        except DatabaseError as exc:
            # Kept in memory and written when the source run is closed (if the database is back by then).
            log.error("problem of %s not recorded yet: %s", problem.url, exc)
            state.unsaved_problems.append(entry)

    def record_lost(self, item: Any, reason: str) -> None:
        """`item` was handled but its writes were rolled back with their batch (the database failed
        before the commit): a fatal problem kept in memory and written when the run closes, so the
        run is incomplete and the next crawl fetches the page again. A list page's validators are
        not worth one: without them the next crawl only fetches the list again."""
        state = self._require_state()
        page = item.item if isinstance(item, Record) else item
        if isinstance(page, ListPageItem):
            return
        if isinstance(page, ProblemItem):
            entry = {"url": page.url, "kind": page.kind, "reason": page.reason, "http_status": page.http_status}
        else:
            entry = {
                "url": str(getattr(page, "url", "")),
                "kind": "database",
                "reason": f"could not store the page: {reason}",
                "http_status": getattr(page, "http_status", None),
            }
        state.fatal_reasons.append(f"could not store the page: {reason}")
        state.unsaved_problems.append(entry)

    def store_list_page(self, item: ListPageItem) -> None:
        state = self._require_state()
        state.fetched += 1
        for attempt in range(2):
            try:
                with transaction(self.sessions) as session:
                    page = session.scalar(select(ListPage).where(ListPage.url == item.url))
                    if page is None:
                        page = ListPage(url=item.url, source_id=state.source_id)
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

    def _write(self, session: Session, record: Record, now: datetime) -> dict[str, int]:
        decision = record.decision
        assert decision is not None
        source = self._require_state().source
        if decision.kind == NEW_STORY:
            write_new_story(session, record, source, now)
            return {"new_stories": 1, "new_appearances": 1}
        if decision.kind == NEW_APPEARANCE:
            if decision.article_id is None:
                raise StaleDecisionError("a new appearance decision without an article")
            write_new_appearance(session, record, source, decision.article_id, now)
            return {"new_appearances": 1, "reposts": 1}
        if decision.kind == EDIT:
            write_edit(session, record, decision.appearance_id, now)
            return {}
        if decision.kind == UNCHANGED:
            write_unchanged(session, record, decision.appearance_id, now)
            return {"unchanged": 1}
        if decision.kind == STATE_CHANGE:
            write_state_change(session, record, decision.appearance_id, now)
            return {}
        raise ValueError(f"unknown decision kind {decision.kind!r}")

    def store_record(self, record: Record) -> None:
        if record.decision is None:
            raise DropItem(f"no deduplication decision (is DeduplicatePipeline enabled?): {record.item.url}")
        state = self._require_state()
        state.fetched += 1
        key = record.item.canonical_key
        failure = ""
        database_failed = False
        for attempt in range(2):
            now = self.clock()
            try:
                with transaction(self.sessions) as session:
                    self._bump(session, **self._write(session, record, now))
                return
            except IntegrityError as exc:
                failure = str(exc.orig)
            except StaleDecisionError as exc:
                failure = str(exc)
                break
            except DatabaseError as exc:
                # Locked, full or disconnected: the transaction was rolled back, nothing of the page is stored.
                failure, database_failed = str(exc), True
                if attempt == 0 and _connection_lost(exc):
                    continue  # the server dropped us: a fresh connection may store it
                break
            try:
                with transaction(self.sessions) as session:
                    if session.scalar(select(Appearance.id).where(Appearance.canonical_key == key)) is not None:
                        # Another crawl stored this page between our decision and our insert.
                        log.info("%s was stored concurrently; counted as unchanged", key)
                        self._bump(session, unchanged=1)
                        return
            except DatabaseError as exc:
                failure, database_failed = str(exc), True
                break
            # Otherwise (e.g. two crawls inserting the same snapshot bytes) the second attempt reuses their row.
        if database_failed:
            log.error("could not store %s: %s", record.item.url, failure)
        self.record_problem(
            ProblemItem(
                source_key=record.item.source_key,
                url=record.item.url,
                kind="database" if database_failed else "store",
                reason=f"could not store the page: {failure}",
                # The run must not count as complete: the next crawl then pages fully and stores it.
                fatal=database_failed,
            )
        )
