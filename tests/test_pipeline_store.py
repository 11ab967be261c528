"""Store stage: rows for each decision, the concurrent-insert defence, problems, run recording
and source health."""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
import scrapy
from scrapy.utils.test import get_crawler
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from crawler.items import STATE_DELETED, ListPageItem, ProblemItem
from pipeline.corpus.models import (
    Appearance,
    Article,
    ArticleTag,
    CrawlRun,
    ListPage,
    Snapshot,
    Source,
    SourceRun,
    Tag,
    Unit,
)
from pipeline.corpus.runs import judge_run, verification_pause
from pipeline.corpus.search_index import indexed_count
from pipeline.normalize import Rejected, normalize
from pipeline.record import NEW_STORY, Outcome, Tags
from pipeline.store import story_guid
from pipeline.worker.shell import IngestPipeline, PipelineSettingsError
from tests.test_pipeline_support import SOURCE, SOURCE_KEY, SOURCE_URL, Crawl, article_item, text, truncated

ORIGINAL = text("original")
WECHAT_URL = "https://mp.weixin.qq.com/mp/appmsgalbum?__biz=MzA&album_id=1"
WECHAT: dict[str, Any] = {"key": "jgdj-wx", "kind": "wechat_album", "url": WECHAT_URL,
          "unit": None, "column": None, "options": {"verification_backoff_minutes": 20}}  # fmt: skip


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def source_run(session: Session) -> SourceRun:
    return session.scalars(select(SourceRun).order_by(SourceRun.id.desc())).first()  # type: ignore[return-value]


def test_new_story_rows(sessions: sessionmaker[Session], now: datetime) -> None:
    with sessions.begin() as s:
        s.add(Unit(name="张掖市财政局", aliases=["市财政局"], sort_order=1))
    chain = Crawl(sessions, now)
    item = article_item("n1", ORIGINAL, published_at=now - timedelta(days=1))
    tags = Tags(
        unit="张掖市财政局", author="顾清远", positions=["党组书记", "局长"], column="学习贯彻党的二十届四中全会精神",
        topics={"财政改革": 2.0}, keywords=["财政", "预算"],
    )  # fmt: skip
    chain.run(item, tags)
    chain.close()
    with sessions() as s:
        article = s.scalars(select(Article)).one()
        appearance = s.scalars(select(Appearance)).one()
        snapshot = s.scalars(select(Snapshot)).one()
        assert article.guid == story_guid(item.canonical_key) == hashlib.sha1(item.canonical_key.encode()).hexdigest()
        assert article.title == "以全会精神为指引 推动财政工作高质量发展" and article.state == "live"
        assert article.published_at == item.published_at and article.first_appearance_id == appearance.id
        assert article.unit is not None and article.unit.name == "张掖市财政局"
        assert (article.author, article.positions) == ("顾清远", ["党组书记", "局长"])
        assert article.minhash is not None and article.minhash_scheme
        assert appearance.is_original and appearance.canonical_key == item.canonical_key
        assert appearance.snapshot_id == snapshot.id and snapshot.appearance_id == appearance.id
        assert zlib.decompress(snapshot.content) == item.raw_body
        assert snapshot.sha256 == hashlib.sha256(item.raw_body).hexdigest() and snapshot.size == len(item.raw_body)
        assert indexed_count(s) == 1
        tag_rows = {(row.tag.kind, row.tag.name, row.origin) for row in article.tags}
        assert ("topic", "财政改革", "rule") in tag_rows and ("keyword", "财政", "keyword") in tag_rows
        assert ("position", "局长", "rule") in tag_rows and (
            "column",
            "学习贯彻党的二十届四中全会精神",
            "rule",
        ) in tag_rows
        run = source_run(s)
        assert (run.new_stories, run.new_appearances, run.reposts, run.unchanged, run.errors) == (1, 1, 0, 0, 0)
        assert (run.status, run.requests) == ("ok", 7)
        source = s.scalars(select(Source)).one()
        assert (source.key, source.status, source.last_success_at) == (SOURCE_KEY, "ok", now)


def test_repost_attaches_and_earliest_published_is_original(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    # a truncated repost is crawled first, the fuller original (published earlier) arrives later
    chain.run(article_item("repost", truncated(ORIGINAL), published_at=now - timedelta(days=1)))
    chain.run(article_item("orig", ORIGINAL, published_at=now - timedelta(days=3)))
    chain.run(article_item("repost2", text("repost_header_footer"), published_at=now))
    chain.close()
    with sessions() as s:
        article = s.scalars(select(Article)).one()
        by_key = {a.canonical_key.rsplit("/", 1)[1]: a for a in article.appearances}
        assert sorted(by_key) == ["orig.html", "repost.html", "repost2.html"]
        assert [k for k, a in sorted(by_key.items()) if a.is_original] == ["orig.html"]
        assert article.first_appearance_id == by_key["orig.html"].id
        assert article.published_at == now - timedelta(days=3)
        assert article.body_text == ORIGINAL  # the fuller original text replaced the truncated copy
        assert article.guid == story_guid(by_key["repost.html"].canonical_key)  # the guid never changes
        run = source_run(s)
        assert (run.new_stories, run.new_appearances, run.reposts) == (1, 3, 2)


def test_edit_keeps_old_snapshot_as_version(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    chain.run(article_item("e1", ORIGINAL, published_at=now))
    with sessions() as s:
        old = s.scalars(select(Article)).one()
        old_hash, old_minhash = old.content_hash, old.minhash
    chain.run(article_item("e1", text("small_edits"), published_at=now, fetched_at=now + timedelta(hours=5)))
    with sessions() as s:
        article = s.scalars(select(Article)).one()
        appearance = s.scalars(select(Appearance)).one()
        snapshots = s.scalars(select(Snapshot).order_by(Snapshot.id)).all()
        assert len(snapshots) == 2 and {x.appearance_id for x in snapshots} == {appearance.id}
        assert appearance.snapshot_id == snapshots[1].id
        assert "冲锋在前" in zlib.decompress(snapshots[1].content).decode()
        assert article.state == "edited" and article.content_hash != old_hash and article.minhash != old_minhash
        assert "冲锋在前" in article.body_text and appearance.content_hash == article.content_hash
        assert appearance.fetched_at == now + timedelta(hours=5)
        assert count(s, Article) == 1 and indexed_count(s) == 1


def test_unchanged_refreshes_fetch_time_only(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    chain.run(article_item("u1", ORIGINAL, published_at=now))
    later = now + timedelta(days=1)
    chain.run(article_item("u1", ORIGINAL, published_at=now, fetched_at=later))
    with sessions() as s:
        assert s.scalars(select(Appearance.fetched_at)).one() == later
        assert (count(s, Article), count(s, Appearance), count(s, Snapshot)) == (1, 1, 1)
        assert source_run(s).unchanged == 1


def test_state_change_keeps_our_copy(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    chain.run(article_item("g1", ORIGINAL, published_at=now - timedelta(days=2)))
    chain.run(article_item("g2", text("repost_header_footer"), published_at=now))
    chain.run(article_item("g2", "", published_at=now, state=STATE_DELETED))
    with sessions() as s:
        article = s.scalars(select(Article)).one()
        assert {a.canonical_key.rsplit("/", 1)[1]: a.state for a in article.appearances} == {
            "g1.html": "ok",
            "g2.html": "deleted",
        }
        assert article.state == "live"
    chain.run(article_item("g1", "", published_at=now, state=STATE_DELETED))
    with sessions() as s:
        article = s.scalars(select(Article)).one()
        assert article.state == "deleted" and article.body_text == ORIGINAL and indexed_count(s) == 1


def test_concurrent_insert_of_the_same_key_counts_as_unchanged(sessions: sessionmaker[Session], now: datetime) -> None:
    ours = Crawl(sessions, now)
    record = ours.decide(article_item("race", ORIGINAL, published_at=now))
    assert record.decision is not None and record.decision.kind == NEW_STORY
    # another crawl process stores the same page between our decision and our insert
    theirs = Crawl(sessions, now, source={**SOURCE, "key": "mirror"})
    theirs.run(article_item("race", ORIGINAL, published_at=now, source_key="mirror"))
    ours.ingest.store.write(record, ours.run_recorder, ours.ingest.sources[ours.sid].row)
    with sessions() as s:
        assert (count(s, Article), count(s, Appearance), count(s, Snapshot)) == (1, 1, 1)
        mine = s.get(SourceRun, ours.run_recorder.source_run_id)
        assert mine is not None
        assert (mine.new_stories, mine.unchanged, mine.errors) == (0, 1, 0)


def test_problems_list_pages_and_run_status(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    page = ListPageItem(source_key=SOURCE_KEY, url=SOURCE_URL, etag='"a1"', last_modified=None, fetched_at=now)
    chain.run(page)
    chain.run(ListPageItem(source_key=SOURCE_KEY, url=SOURCE_URL, etag='"a2"', last_modified="Wed", fetched_at=now))
    chain.run(
        ProblemItem(
            source_key=SOURCE_KEY,
            url=SOURCE_URL + "x.html",
            kind="http",
            reason="HTTP 404: 页面不存在",
            http_status=404,
        )
    )
    chain.close()
    with sessions() as s:
        lp = s.scalars(select(ListPage)).one()
        assert (lp.etag, lp.last_modified) == ('"a2"', "Wed")
        run = source_run(s)
        assert run.problems == [
            {"url": SOURCE_URL + "x.html", "kind": "http", "reason": "HTTP 404: 页面不存在", "http_status": 404}
        ]
        assert run.errors == 1 and run.status == "ok" and "HTTP 404" in (run.error_summary or "")


def test_fatal_problem_fails_the_run_and_counts_failures(sessions: sessionmaker[Session], now: datetime) -> None:
    for attempt in (1, 2):
        chain = Crawl(sessions, now)
        chain.run(
            ProblemItem(
                source_key=SOURCE_KEY,
                url=SOURCE_URL,
                kind="connection",
                reason="connection refused: is the site down?",
                fatal=True,
            )
        )
        chain.close()
        with sessions() as s:
            run, source = source_run(s), s.scalars(select(Source)).one()
            assert (run.status, run.error_summary) == ("error", "connection refused: is the site down?")
            assert (source.status, source.consecutive_failures, source.last_error_at) == ("error", attempt, now)
            assert source.paused_until is None
    chain = Crawl(sessions, now)
    chain.run(article_item("ok1", ORIGINAL, published_at=now))
    chain.close()
    with sessions() as s:
        source = s.scalars(select(Source)).one()
        assert (source.status, source.consecutive_failures, source.last_success_at) == ("ok", 0, now)


def test_nothing_fetched_is_an_error(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    chain.close()
    with sessions() as s:
        run = source_run(s)
        assert run.status == "error" and "nothing could be fetched" in (run.error_summary or "")


def test_wechat_verification_pauses_with_doubling_backoff(sessions: sessionmaker[Session], now: datetime) -> None:
    for expected in (20, 40):
        chain = Crawl(sessions, now, source=dict(WECHAT))
        chain.run(ListPageItem(source_key="jgdj-wx", url=WECHAT_URL, etag=None, last_modified=None, fetched_at=now))
        chain.run(
            ProblemItem(
                source_key="jgdj-wx", url=WECHAT_URL, kind="verification", reason="环境异常: 完成验证后即可继续访问"
            )
        )
        chain.close()
        with sessions() as s:
            source = s.scalars(select(Source).where(Source.key == "jgdj-wx")).one()
            assert source_run(s).status == "blocked" and "环境异常" in (source_run(s).error_summary or "")
            assert source.status == "paused" and source.paused_until == now + timedelta(minutes=expected)
    assert verification_pause({}, 1) == timedelta(minutes=30)
    assert verification_pause({}, 20) == timedelta(hours=24)


def test_judge_run() -> None:
    blocked = [{"kind": "http", "reason": "a"}, {"kind": "blocked", "reason": "瑞数 412"}]
    assert judge_run(blocked, [], 5) == ("blocked", "瑞数 412")
    assert judge_run([], ["列表页无法访问"], 5) == ("error", "列表页无法访问")
    assert judge_run([], [], 3) == ("ok", None)


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Await on a loop of its own thread (an earlier test may leave a loop running in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_a_spider_run_on_its_own_records_rejections_on_its_own_crawl_run(
    db_url: str, engine: object, sessions: sessionmaker[Session], now: datetime
) -> None:
    # `scrapy crawl …` outside `zhuanlan crawl`: no run id, the in-process ingest, its own crawl run
    crawler = get_crawler(scrapy.Spider, {"ZHUANLAN_DATABASE_URL": db_url, "ZHUANLAN_INGEST": "in-process"})
    pipeline = IngestPipeline.from_crawler(crawler)
    spider = scrapy.Spider(name="czj")
    spider.source_key = SOURCE_KEY  # type: ignore[attr-defined]
    spider.source = dict(SOURCE)  # type: ignore[attr-defined]
    pipeline.open_spider(spider)
    empty = article_item("empty", "", published_at=now)
    with pytest.raises(Rejected):
        normalize(empty)
    _run(pipeline.process_item(empty, spider))
    crawler.stats.set_value("downloader/request_count", 3)
    _run(pipeline.close_spider(spider))
    with sessions() as s:
        run = source_run(s)
        assert run.problems[0]["kind"] == "parse" and run.problems[0]["url"] == empty.url and run.errors == 1
        assert run.requests == 3 and run.status == "error"  # no article and no list page was usable
        crawl = s.scalars(select(CrawlRun)).one()
        assert (crawl.trigger, crawl.status) == ("scrapy", "failed")


def test_missing_database_url_is_a_clear_error() -> None:
    crawler = get_crawler(scrapy.Spider, {"ZHUANLAN_DATABASE_URL": ""})
    with pytest.raises(PipelineSettingsError, match="ZHUANLAN_DATABASE_URL is not set"):
        IngestPipeline.from_crawler(crawler)


def test_the_ingest_answers_what_it_did(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    assert chain.run(article_item("p1", ORIGINAL, published_at=now)) is Outcome.STORED
    assert chain.run(article_item("p2", "", published_at=now)) is Outcome.REJECTED
    assert chain.run(article_item("never", "", published_at=now, state=STATE_DELETED)) is Outcome.DROPPED
    with sessions() as s:
        # tagged with an empty vocabulary: the byline's positions and keywords, no topic or column
        assert count(s, ArticleTag) > 0 and {t.kind for t in s.scalars(select(Tag))} == {"keyword", "position"}
