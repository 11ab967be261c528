"""The faster ingest path keeps behaviour: the new-story writer gives the rows `apply_tags` gives,
cached tag and unit ids survive only committed transactions, appearances are indexed by content
hash, and keywords are read from the title and the lead of the body (SQLite, or PostgreSQL via
the conftest)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event, func, inspect, select, text

from crawler.items import STATE_OK, ArticleItem
from pipeline.corpus.batch import Batch
from pipeline.corpus.db import shared_rows_engine
from pipeline.corpus.models import Appearance, Article, ArticleTag, Snapshot, Tag, Unit
from pipeline.corpus.runs import SourceRow
from pipeline.corpus.tagstore import apply_tags, tag_ids, unit_id_for
from pipeline.precompute import precompute
from pipeline.record import NEW_STORY, Decision, Record, Tags
from pipeline.store import write_new_story
from pipeline.tagging.rules import KEYWORD_TEXT_CHARS, Vocabulary, compute_tags, keyword_text

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

TAGS = Tags(
    unit="张掖市审计局",
    author="王立新",
    positions=["党组书记", "局长"],
    column="学习贯彻党的二十届四中全会精神",
    topics={"科技创新": 4.0},
    keywords=["审计", "预算", "审计", "监督"],
)


def _record(key: str, text: str, tags: Tags | None) -> Record:
    item = ArticleItem(
        source_key="s",
        source_kind="site_column",
        url=f"http://127.0.0.1/{key}.html",
        canonical_key=f"127.0.0.1/{key}.html",
        fetched_at=datetime(2026, 11, 26, 2, 0, tzinfo=UTC),
        state=STATE_OK,
        title="标题",
        author="作者甲",
        column="来自页面的栏目",
        body_html=f"<p>{text}</p>",
        body_text=text,
        http_status=200,
        headers={"Content-Type": "text/html"},
        raw_body=f"<html>{key}{text}</html>".encode(),
        encoding="utf-8",
    )
    record = Record(item=item, title="标题", body_html=f"<p>{text}</p>", body_text=text, content_hash=key * 8)
    record.tags = tags
    record.decision = Decision(NEW_STORY, reason="test")
    return precompute(record)


def _source(session: Session) -> SourceRow:
    from pipeline.corpus.models import Source

    source = Source(key="s", kind="site_column", url="http://127.0.0.1/", options={}, column="源栏目")
    session.add(source)
    session.flush()
    return SourceRow(source.id, None, source.column)


def _rows(session: Session, article_id: int) -> dict[tuple[str, str], tuple[str, float]]:
    rows = session.execute(
        select(Tag.kind, Tag.name, ArticleTag.origin, ArticleTag.weight)
        .join(Tag, Tag.id == ArticleTag.tag_id)
        .where(ArticleTag.article_id == article_id)
    ).all()
    return {(kind, name): (origin, weight) for kind, name, origin, weight in rows}


def _fields(article: Article) -> tuple[Any, ...]:
    unit = article.unit.name if article.unit is not None else None
    return (unit, article.author, article.positions, article.column)


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs, lowercased, on one line each (on PostgreSQL
    also those of the engine that commits the rows every writer shares)."""
    seen: list[str] = []

    def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()).lower())

    engines = [engine] + ([shared_rows_engine(engine)] if engine.dialect.name == "postgresql" else [])
    for each in engines:
        event.listen(each, "before_cursor_execute", remember)
    try:
        yield seen
    finally:
        for each in engines:
            event.remove(each, "before_cursor_execute", remember)


def test_new_story_writes_what_apply_tags_writes(sessions: sessionmaker[Session], now: datetime) -> None:
    batch = Batch()
    with sessions() as session, session.begin():
        source = _source(session)
        fast_id = write_new_story(session, _record("a", "正文一", TAGS), source, now, batch)
        untagged_id = write_new_story(session, _record("b", "正文二", None), source, now, batch)
        slow = Article(guid="slow", title="t", body_text="x", content_hash="c" * 64, created_at=now, updated_at=now)
        session.add(slow)
        session.flush()
        apply_tags(session, slow, TAGS, now=now, batch=batch)
        slow_id = slow.id
    with sessions() as session:
        fast, slow_article, untagged = (session.get(Article, i) for i in (fast_id, slow_id, untagged_id))
        assert fast is not None and slow_article is not None and untagged is not None
        assert _rows(session, fast_id) == _rows(session, slow_id) and len(_rows(session, fast_id)) == 7
        assert _fields(fast) == _fields(slow_article) == ("张掖市审计局", "王立新", ["党组书记", "局长"], TAGS.column)
        # without tags (no tag stage) the story keeps the page's author and column, as before
        assert _fields(untagged) == (None, "作者甲", [], "来自页面的栏目") and _rows(session, untagged_id) == {}
        appearance = session.get(Appearance, fast.first_appearance_id)
        assert appearance is not None and appearance.is_original and appearance.article_id == fast_id
        snapshot = session.get(Snapshot, appearance.snapshot_id)
        assert snapshot is not None and snapshot.appearance_id == appearance.id
        assert fast.summary == "正文一" and fast.minhash and fast.state == "live" and fast.published_at is None
        # a second apply_tags on the stored story finds nothing to change
        assert apply_tags(session, fast, TAGS, now=now) is False


def test_new_story_reads_no_tag_rows(sessions: sessionmaker[Session], engine: Engine, now: datetime) -> None:
    batch = Batch()
    with sessions() as session, session.begin():
        source = _source(session)
        write_new_story(session, _record("a", "正文一", TAGS), source, now, batch)
    batch.committed()  # the ids it learnt are shared now
    with _statements(engine) as seen, sessions() as session, session.begin():
        write_new_story(session, _record("b", "正文二", TAGS), source, now, batch)
    assert not [s for s in seen if "from article_tags" in s or "from tags" in s or "from units" in s]
    # the tag rows: their own executemany on SQLite, a CTE of the story's statement on PostgreSQL
    tag_writes = [s for s in seen if "insert into article_tags" in s]
    assert len(tag_writes) == 1
    assert tag_writes[0].startswith("with " if engine.dialect.name == "postgresql" else "insert into article_tags")


def test_new_story_rows_and_new_tags_take_few_statements(
    sessions: sessionmaker[Session], engine: Engine, now: datetime
) -> None:
    batch = Batch()
    with sessions() as session, session.begin():
        source = _source(session)
    with _statements(engine) as seen, sessions() as session, session.begin():
        article_id = write_new_story(session, _record("a", "正文一", TAGS), source, now, batch)
    rows = [s for s in seen if "articles" in s or "appearances" in s or "snapshots" in s]
    if engine.dialect.name == "postgresql":
        # article, appearance, snapshot with their links and the tag rows: one statement
        # (pipeline.corpus.story_rows)
        tables = ("articles", "appearances", "snapshots", "article_tags")
        assert len(rows) == 1 and all(f"insert into {t}" in rows[0] for t in tables)
    else:
        assert [s.split(" (")[0].split(" set ")[0] for s in rows] == [
            "insert into articles",
            "insert into appearances",
            "insert into snapshots",
            "update appearances",
            "update articles",
        ]
    assert [s.split(" (")[0] for s in seen if " tags" in s] == ["insert into tags"]
    with sessions() as session:
        assert len(_rows(session, article_id)) == 7
        appearance = session.scalars(select(Appearance).where(Appearance.article_id == article_id)).one()
        assert appearance.snapshot_id == session.scalars(select(Snapshot.id)).one()


def test_new_story_statement_is_one_psycopg_keeps_parsed(
    sessions: sessionmaker[Session], engine: Engine, now: datetime
) -> None:
    """psycopg parses a statement's text again for every execution when it has more than 50
    parameters or 4,096 characters (`psycopg._queries`); the new-story statement runs once per
    article of a backfill, so it must stay inside both, with a snapshot and tag rows."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the one-statement story insert is PostgreSQL's")
    from psycopg import _queries

    sent: list[tuple[str, Any]] = []

    def remember(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if "insert into article_tags" in statement.lower():
            sent.append((statement, params))

    with sessions() as session, session.begin():
        source = _source(session)
    event.listen(engine, "before_cursor_execute", remember)
    try:
        with sessions() as session, session.begin():
            write_new_story(session, _record("a", "正文一", TAGS), source, now, Batch())
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    [(statement, params)] = sent
    assert "insert into snapshots" in statement.lower()
    assert len(params) <= _queries.MAX_CACHED_STATEMENT_PARAMS
    assert len(statement.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH


def test_new_story_with_bytes_stored_before_shares_their_snapshot(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    first, second = _record("a", "正文一", TAGS), _record("b", "正文二", TAGS)
    second.item.raw_body = first.item.raw_body  # the same response under another address
    second.snapshot = first.snapshot
    batch = Batch()
    with sessions() as session, session.begin():
        source = _source(session)
        ids = [write_new_story(session, record, source, now, batch) for record in (first, second)]
    with sessions() as session:
        snapshot = session.scalars(select(Snapshot)).one()
        appearances = session.scalars(select(Appearance).where(Appearance.article_id.in_(ids))).all()
        assert [a.snapshot_id for a in appearances] == [snapshot.id, snapshot.id]
        assert snapshot.appearance_id == appearances[0].id


def test_bytes_committed_by_a_concurrent_writer_meanwhile_are_shared(
    sessions: sessionmaker[Session], engine: Engine, now: datetime
) -> None:
    """The one case the single statement of pipeline.corpus.story_rows cannot see: the same bytes
    inserted by another transaction that commits while the statement waits for it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("one writer at a time on SQLite: no concurrent transaction to wait for")
    first, second = _record("a", "正文一", TAGS), _record("b", "正文二", TAGS)
    second.item.raw_body = first.item.raw_body
    second.snapshot = first.snapshot
    with sessions() as session, session.begin():
        source = _source(session)
    ids: list[int] = []
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with sessions() as session, session.begin():
                ids.append(write_new_story(session, second, source, now, Batch()))
        except BaseException as exc:  # re-raised by the test below
            errors.append(exc)

    with sessions() as holder:
        holder.begin()
        ids.append(write_new_story(holder, first, source, now, Batch()))
        writer = threading.Thread(target=second_writer)
        writer.start()
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        deadline = time.monotonic() + 10
        with engine.connect() as probe:
            while not probe.execute(waiting).scalar_one() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert probe.execute(waiting).scalar_one() == 1, "the second writer never waited for the first"
        holder.commit()
    writer.join(10)
    assert not errors and not writer.is_alive()
    with sessions() as session:
        snapshot = session.scalars(select(Snapshot)).one()
        appearances = session.scalars(select(Appearance).where(Appearance.article_id.in_(ids))).all()
        assert len(appearances) == 2 and {a.snapshot_id for a in appearances} == {snapshot.id}


def test_ids_of_a_rolled_back_transaction_are_not_cached(sessions: sessionmaker[Session]) -> None:
    class Boom(Exception):
        pass

    batch = Batch()
    with pytest.raises(Boom), sessions() as session, session.begin():
        tag_ids(session, [("keyword", "回滚的词")], batch)
        unit_id_for(session, "回滚的单位", batch)
        raise Boom
    batch.abandoned()
    tag, unit_cached = batch.tag_id(("keyword", "回滚的词")), batch.unit_id("回滚的单位")
    if sessions.kw["bind"].dialect.name == "postgresql":
        # New tag and unit names are committed at once there (concurrent writers): still right.
        with sessions() as session:
            assert tag is not None and session.get(Tag, tag) is not None
            assert unit_cached is not None and session.get(Unit, unit_cached) is not None
    else:
        assert tag is None and unit_cached is None
    with sessions() as session, session.begin():
        ids = tag_ids(session, [("keyword", "回滚的词")], batch)
        unit = unit_id_for(session, "回滚的单位", batch)
    with sessions() as session:
        assert session.get(Tag, ids[("keyword", "回滚的词")]) is not None
        assert session.scalar(select(Unit.name).where(Unit.id == unit)) == "回滚的单位"
        assert session.scalar(select(func.count()).select_from(Tag)) == 1


def test_ids_of_other_writers_are_found(sessions: sessionmaker[Session]) -> None:
    batch = Batch()
    with sessions() as session, session.begin():
        first = tag_ids(session, [("topic", "甲")], batch)
    batch.committed()
    with sessions() as session, session.begin():  # another crawl or a retag made this one
        session.add(Tag(kind="topic", name="乙"))
    with sessions() as session, session.begin():
        both = tag_ids(session, [("topic", "甲"), ("topic", "乙")], batch)
    assert both[("topic", "甲")] == first[("topic", "甲")] and len(set(both.values())) == 2


def test_appearances_are_indexed_by_content_hash(engine: Engine) -> None:
    indexes = inspect(engine).get_indexes("appearances")
    assert any(index["column_names"] == ["content_hash"] for index in indexes)


def test_keywords_come_from_the_title_and_the_lead() -> None:
    lead = "科技创新成果转化。" * (KEYWORD_TEXT_CHARS // 9)
    tail = "乡村振兴农业农村。" * 400
    assert keyword_text("标题", lead + tail) == "标题\n" + (lead + tail)[:KEYWORD_TEXT_CHARS]
    tags = compute_tags(title="标题", body_text=lead + tail, vocab=Vocabulary.empty())
    assert "成果" in tags.keywords and not {"乡村", "振兴", "农业", "农村"} & set(tags.keywords)
    assert tags == compute_tags(title="标题", body_text=lead + tail, vocab=Vocabulary.empty())
