"""A group of pages through the batched ingest, as the pipeline worker hands them over.

On PostgreSQL `Ingest.prepare` reads for the whole group at once (one statement for its dedup
locks, one for the catch-up and every page's lookups, one for its tag names) and a new story is
stored without a SAVEPOINT; a unit that fails then rolls its batch back and the batch is stored
again page by page, where that page fails alone. None of it may change what is stored: the same
stories, grouping and 首发 as pages stored one at a time, and the same record of a failing page.
On SQLite the pages go through as they came (one writer, in-process savepoints).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from archive.search import Filters, search
from crawler.items import ArticleItem
from pipeline.corpus.db import make_engine, upgrade
from pipeline.corpus.models import Appearance, Article, SourceRun
from pipeline.ingest import Ingest
from pipeline.record import Outcome, SourceRef
from pipeline.tagging.rules import Vocabulary
from tests.conftest import fresh_database
from tests.test_pipeline_support import SOURCE, article_item, reformatted, text

SID = 1


def _ingest(url: str, now: datetime) -> Ingest:
    """A batched ingest as the pipeline worker opens it, with the source's run open."""
    ingest = Ingest(
        make_engine(url, immediate_transactions=True), Vocabulary.empty(), clock=lambda: now, owns_engine=True
    )
    ingest.open_source(SID, SourceRef.from_definition(str(SOURCE["key"]), SOURCE))
    return ingest


@pytest.fixture
def two_databases(tmp_path: Path) -> Iterator[tuple[str, str]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with fresh_database(tmp_path / "a") as first, fresh_database(tmp_path / "b") as second:
        for url in (first, second):
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
        yield first, second


def _pages(now: datetime) -> list[ArticleItem]:
    """New stories, a near-duplicate (published earlier: the new 首发) and an exact repost of the
    first right behind it, a notice sharing another's formula (kept apart), and the same page
    again, edited: every decision inside one group."""
    day = timedelta(days=1)
    return [
        article_item("a", text("original"), published_at=now - 3 * day),
        article_item("a-near", text("repost_header_footer"), published_at=now - 4 * day),
        article_item("a-copy", reformatted(text("original")), published_at=now - 2 * day),
        article_item("b", text("notice_lecture"), title="关于举办专题讲座的通知", published_at=now - 3 * day),
        article_item("c", text("notice_reading_class"), title="关于举办读书班的通知", published_at=now - day),
        article_item("d", text("same_unit_other"), published_at=now - day),
        article_item(
            "b", text("notice_lecture") + "\n（此文有改动）", title="关于举办专题讲座的通知", published_at=now - 3 * day
        ),
        article_item("e", text("brief_news"), title="简讯", published_at=now),
    ]


def _stored(engine: Engine) -> dict[str, Any]:
    """What a reader sees: each page's story (by the story's guid), which page is the story's 首发,
    and each story's text."""
    with Session(engine) as session:
        rows = session.execute(
            select(Appearance.canonical_key, Article.guid, Appearance.is_original, Article.body_text).join(
                Article, Appearance.article_id == Article.id
            )
        ).all()
    return {
        "pages": sorted((key, guid, original) for key, guid, original, _ in rows),
        "texts": sorted({(guid, body) for _, guid, _, body in rows}),
    }


def _statements(engine: Engine) -> tuple[list[str], Any]:
    said: list[str] = []

    def listener(*args: Any) -> None:
        said.append(" ".join(str(args[2]).split()))

    event.listen(engine, "before_cursor_execute", listener)
    return said, listener


def test_a_group_stores_what_pages_stored_one_at_a_time_store(two_databases: tuple[str, str], now: datetime) -> None:
    one_url, group_url = two_databases
    one, group = _ingest(one_url, now), _ingest(group_url, now)
    for ingest in (one, group):  # builds the near-duplicate index: a group is then read at once on PostgreSQL
        ingest.handle(
            SID,
            article_item(
                "z", text("notice_attachment_formula"), title="附件下载", published_at=now - timedelta(days=9)
            ),
        )
        ingest.commit()
    for page in _pages(now):
        assert one.handle(SID, page) is Outcome.STORED
        one.commit()
    for sid, page in group.prepare([(SID, page) for page in _pages(now)]):
        assert group.handle(sid, page) is Outcome.STORED
    group.commit()
    try:
        expected, got = _stored(one.engine), _stored(group.engine)
        assert got == expected
        # the grouping itself, not only its equality: a and its two copies are one story whose 首发
        # is the near duplicate published first; b is edited in place; the two notices stay apart
        story = {key.rsplit("/", 1)[1]: (guid, original) for key, guid, original in got["pages"]}
        assert story["a.html"][0] == story["a-near.html"][0] == story["a-copy.html"][0]
        assert [name for name in ("a.html", "a-near.html", "a-copy.html") if story[name][1]] == ["a-near.html"]
        assert len({guid for guid, _ in story.values()}) == 6, story
    finally:
        one.shutdown()
        group.shutdown()


def test_a_group_asks_the_server_once_for_what_each_page_asked(two_databases: tuple[str, str], now: datetime) -> None:
    """Five new stories in one group: on PostgreSQL one statement takes their locks, one reads
    their lookups, and no unit has a SAVEPOINT (three round trips less per page); on SQLite every
    page is its own SAVEPOINT as before."""
    url, _ = two_databases
    ingest = _ingest(url, now)
    ingest.handle(
        SID, article_item("first", text("notice_attachment_formula"), title="附件下载", published_at=now)
    )  # builds the index
    ingest.commit()
    names = ["original", "notice_lecture", "same_unit_other", "brief_news", "notice_reading_class"]
    pages = [
        (SID, article_item(name, text(name), title=f"标题{i}", published_at=now - timedelta(hours=i)))
        for i, name in enumerate(names)
    ]
    said, listener = _statements(ingest.engine)
    try:
        for sid, page in ingest.prepare(pages):
            assert ingest.handle(sid, page) is Outcome.STORED
        ingest.commit()
    finally:
        event.remove(ingest.engine, "before_cursor_execute", listener)
        postgresql = ingest.engine.dialect.name == "postgresql"
        ingest.shutdown()
    savepoints = [s for s in said if s.startswith("SAVEPOINT")]
    if postgresql:
        assert sum("pg_try_advisory_xact_lock" in s for s in said) == 1, said
        assert sum("pg_advisory_xact_lock" in s for s in said) == 0, said
        assert sum(s.startswith("SELECT") and "minhash_scheme" in s for s in said) == 1, said  # catch-up + lookups
        assert savepoints == [], said
    else:
        assert len(savepoints) == len(names), said


def test_a_repost_in_a_group_leaves_the_other_pages_reads_alone(two_databases: tuple[str, str], now: datetime) -> None:
    """A repost stored in the middle of a group changes what reads of its key, its hash and its
    story would see, and nothing else: the pages after it keep the lookups their group read (on
    PostgreSQL no page asks again), and the decisions are those of pages stored one at a time."""
    url, _ = two_databases
    ingest = _ingest(url, now)
    ingest.handle(SID, article_item("first", text("original"), published_at=now - timedelta(days=1)))
    ingest.commit()
    names = ["notice_lecture", "same_unit_other", "brief_news", "notice_reading_class"]
    pages = [
        (SID, article_item(name, text(name), title=f"标题{i}", published_at=now - timedelta(hours=i)))
        for i, name in enumerate(names)
    ]
    pages.insert(2, (SID, article_item("copy", text("repost_header_footer"), published_at=now)))
    said, listener = _statements(ingest.engine)
    try:
        for sid, page in ingest.prepare(pages):
            assert ingest.handle(sid, page) is Outcome.STORED
        ingest.commit()
    finally:
        event.remove(ingest.engine, "before_cursor_execute", listener)
        postgresql = ingest.engine.dialect.name == "postgresql"
        stored = _stored(ingest.engine)
        ingest.shutdown()
    story = {key.rsplit("/", 1)[1]: guid for key, guid, _ in stored["pages"]}
    assert story["copy.html"] == story["first.html"]
    assert len(set(story.values())) == len(names) + 1
    catch_ups = [s for s in said if "AS part" in s]  # the catch-up with the lookups, of a group or a page
    assert len(catch_ups) == (1 if postgresql else len(pages)), catch_ups


class Unstorable(dict[str, Any]):
    """What a spider may leave in `extra`: data that cannot become JSON (here: it holds itself)."""


def _unstorable(item: ArticleItem) -> ArticleItem:
    extra: dict[str, Any] = Unstorable()
    extra["self"] = extra
    return replace(item, extra=extra)


@pytest.mark.parametrize("grouped", [True, False], ids=["prepared as a group", "page by page in one batch"])
def test_a_page_that_cannot_be_stored_fails_alone(
    two_databases: tuple[str, str], now: datetime, grouped: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL the failing page's unit had no SAVEPOINT: the batch is rolled back and stored
    again page by page. The pages before and after it are stored once, the failing one is recorded
    once as a fatal problem, and the run counts each page once."""
    url, _ = two_databases
    ingest = _ingest(url, now)
    ingest.handle(SID, article_item("first", text("notice_attachment_formula"), title="附件下载", published_at=now))
    ingest.commit()
    pages = [
        article_item("one", text("original"), published_at=now),
        article_item("two", text("notice_lecture"), title="关于举办专题讲座的通知", published_at=now),
        _unstorable(article_item("bad", text("same_unit_other"), title="无法保存的一页", published_at=now)),
        article_item("three", text("brief_news"), title="简讯", published_at=now),
    ]
    caplog.set_level(logging.WARNING, logger="pipeline")
    handed = ingest.prepare([(SID, page) for page in pages]) if grouped else [(SID, page) for page in pages]
    outcomes = [ingest.handle(sid, page) for sid, page in handed]
    ingest.commit()
    run = ingest.sources[SID].run
    assert run.fetched == 5
    ingest.close_source(SID, requests=6)
    postgresql = ingest.engine.dialect.name == "postgresql"
    try:
        assert outcomes == [Outcome.STORED, Outcome.STORED, Outcome.FAILED, Outcome.STORED]
        with Session(ingest.engine) as session:
            keys = sorted(session.scalars(select(Appearance.canonical_key)))
            source_run = session.scalars(select(SourceRun)).one()
        assert [key.rsplit("/", 1)[1] for key in keys] == ["first.html", "one.html", "three.html", "two.html"]
        assert source_run.new_stories == 4
        assert source_run.errors == 1
        problems = source_run.problems or []
        assert [p["url"].rsplit("/", 1)[1] for p in problems] == ["bad.html"]
        assert "Circular reference" in problems[0]["reason"]
        assert source_run.status != "ok"  # a fatal problem: the next crawl pages fully
        replayed = [r for r in caplog.records if "storing them again one by one" in r.getMessage()]
        assert len(replayed) == (1 if postgresql else 0)
    finally:
        ingest.shutdown()


def test_the_search_index_is_merged_after_commits_and_none_is_left_pending(
    two_databases: tuple[str, str], now: datetime
) -> None:
    """PostgreSQL: the ingest's transactions leave the GIN merge to a thread of their own that runs
    after each commit (the worker no longer waits for it), and nothing is left pending once the
    ingest shuts down. On both databases every stored story is found."""
    url, _ = two_databases
    ingest = _ingest(url, now)
    names = ["original", "notice_lecture", "same_unit_other", "brief_news", "notice_reading_class"]
    threads: list[tuple[str, str]] = []

    def listener(*args: Any) -> None:
        threads.append((threading.current_thread().name, " ".join(str(args[2]).split())))

    event.listen(ingest.engine, "before_cursor_execute", listener)
    pages = [(SID, article_item(name, text(name), title=f"标题{i}", published_at=now)) for i, name in enumerate(names)]
    for sid, page in ingest.prepare(pages):
        assert ingest.handle(sid, page) is Outcome.STORED
    ingest.commit()
    ingest.close_source(SID, requests=6)
    postgresql = ingest.engine.dialect.name == "postgresql"
    crawling = len(threads)
    ingest.shutdown()  # the last merge: on the caller's thread, once the merge thread has stopped
    event.remove(ingest.engine, "before_cursor_execute", listener)
    merges = {name for name, statement in threads[:crawling] if "gin_clean_pending_list" in statement}
    if postgresql:
        assert merges <= {"search-index-merge"}  # never on the ingest's own thread while it stores
        assert any("gin_clean_pending_list" in statement for _, statement in threads[crawling:])
        engine = make_engine(url)
        with engine.connect() as connection:
            left = connection.execute(sql_text("SELECT gin_clean_pending_list('ix_article_search_body'::regclass)"))
            assert left.scalar_one() == 0
        engine.dispose()
    else:
        assert merges == set()
    engine = make_engine(url)
    with Session(engine) as session:
        for name in names:
            phrase = text(name).splitlines()[1][:6]
            found = search(session, phrase, Filters(), tz=now.tzinfo)  # type: ignore[arg-type]
            assert found.total >= 1, (name, phrase)
    engine.dispose()
