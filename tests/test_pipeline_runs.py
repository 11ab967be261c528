"""Crawl run recording, known-state queries and the config → database sync."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.corpus.config_sync import sync_config
from pipeline.corpus.models import Appearance, Article, CrawlRun, ListPage, Recipient, Source, SourceRun, Unit
from pipeline.corpus.runs import (
    finish_crawl_run,
    known_state,
    last_run_complete,
    mark_killed_runs,
    recent_wechat_urls,
    start_crawl_run,
)
from zhuanlan_config import Config, parse_config


def config(tmp_path: Path, **overrides: Any) -> Config:
    data: dict[str, Any] = {
        "units": [
            {"name": "张掖市财政局", "short_name": "财政局", "aliases": ["市财政局"]},
            {"name": "张掖市科学技术局", "aliases": ["市科学技术局", "市科技局"]},
        ],
        "sources": [
            {"key": "jgdj-wx", "kind": "wechat_album", "url": "https://mp.weixin.qq.com/mp/appmsgalbum?album_id=1",
             "column": "学习贯彻党的二十届四中全会精神", "options": {"verification_backoff_minutes": 20}},
            {"key": "czj-site", "kind": "site_column", "url": "https://czj.example.gov.cn/xxgk/", "unit": "张掖市财政局"},
        ],
        "recipients": [
            {"unit": "张掖市财政局", "name": "顾清远", "email": "gqy@example.org"},
            {"unit": "张掖市科学技术局", "name": "许明哲", "email": "xmz@example.org"},
        ],
    }  # fmt: skip
    data.update(overrides)
    return parse_config(data, base_dir=tmp_path)


def add_source_run(session: Session, run_id: int, source_id: int, now: datetime, status: str, **counts: int) -> None:
    session.add(
        SourceRun(crawl_run_id=run_id, source_id=source_id, started_at=now, status=status, problems=[], **counts)
    )


def test_crawl_run_summary_and_status(sessions: sessionmaker[Session], now: datetime, tmp_path: Path) -> None:
    with sessions.begin() as s:
        sync_config(s, config(tmp_path), now)
        wx, site = (s.scalars(select(Source.id).where(Source.key == k)).one() for k in ("jgdj-wx", "czj-site"))
        run_id = start_crawl_run(s, "schedule", now)
        add_source_run(s, run_id, wx, now, "ok", new_stories=2, reposts=1)
        add_source_run(s, run_id, site, now, "blocked", new_stories=0, reposts=0)
    with sessions.begin() as s:
        summary = finish_crawl_run(s, run_id, now + timedelta(minutes=5))
    assert summary == {
        "sources": 2,
        "ok": 1,
        "failed": 1,
        "new_stories": 2,
        "reposts": 1,
        "problems": 0,
        "failed_sources": [{"source": "czj-site", "status": "blocked", "reason": "原因不明"}],
        "status": "partial",
    }
    with sessions() as s:
        run = s.get(CrawlRun, run_id)
        assert run is not None and (run.status, run.trigger, run.finished_at) == (
            "partial",
            "schedule",
            now + timedelta(minutes=5),
        )
        assert run.summary == summary
    with sessions.begin() as s:
        all_ok = start_crawl_run(s, "manual", now)
        add_source_run(s, all_ok, wx, now, "ok")
        none_ok = start_crawl_run(s, "manual", now)
        add_source_run(s, none_ok, wx, now, "error")
        empty = start_crawl_run(s, "manual", now)
    with sessions.begin() as s:
        assert finish_crawl_run(s, all_ok, now)["status"] == "ok"
        assert finish_crawl_run(s, none_ok, now)["status"] == "failed"
        assert finish_crawl_run(s, empty, now)["status"] == "ok"


def test_mark_killed_runs(sessions: sessionmaker[Session], now: datetime, tmp_path: Path) -> None:
    with sessions.begin() as s:
        sync_config(s, config(tmp_path), now)
        source_id = s.scalars(select(Source.id)).first()
        assert source_id is not None
        dead = start_crawl_run(s, "schedule", now - timedelta(hours=3))
        add_source_run(s, dead, source_id, now, "running", new_stories=1)
        done = start_crawl_run(s, "schedule", now - timedelta(hours=5))
    with sessions.begin() as s:
        finish_crawl_run(s, done, now - timedelta(hours=4))
        assert mark_killed_runs(s, now, started_before=now - timedelta(hours=4)) == 0  # may still be alive
        assert mark_killed_runs(s, now) == 1
    with sessions() as s:
        statuses = {r.id: r.status for r in s.scalars(select(CrawlRun))}
        assert statuses == {dead: "killed", done: "ok"}
        orphan = s.scalars(select(SourceRun)).one()
        assert (
            orphan.status == "error"
            and orphan.new_stories == 1
            and "before this source finished" in (orphan.error_summary or "")
        )
    with sessions.begin() as s:
        assert mark_killed_runs(s, now) == 0


def test_known_state_and_recent_wechat_urls(sessions: sessionmaker[Session], now: datetime, tmp_path: Path) -> None:
    with sessions.begin() as s:
        sync_config(s, config(tmp_path), now)
        wx = s.scalars(select(Source).where(Source.key == "jgdj-wx")).one()
        site = s.scalars(select(Source).where(Source.key == "czj-site")).one()
        article = Article(guid="g", title="t", content_hash="h", created_at=now, updated_at=now, positions=[])
        s.add(article)
        s.flush()

        def appear(source: Source, key: str, published: datetime | None, state: str = "ok") -> None:
            s.add(Appearance(article_id=article.id, source_id=source.id, canonical_key=key, url=f"https://u/{key}",
                             published_at=published, fetched_at=now - timedelta(days=1), content_hash="h", state=state))  # fmt: skip

        appear(wx, "wx:B:1:1", now - timedelta(days=2))
        appear(wx, "wx:B:2:1", now - timedelta(days=20))
        appear(wx, "wx:B:3:1", now - timedelta(days=1), state="deleted")
        appear(wx, "wx:B:4:1", None)
        appear(wx, "wx:B:5:1", now - timedelta(hours=1))
        appear(site, "https://czj.example.gov.cn/a.html", now)
        s.add(
            ListPage(
                source_id=site.id,
                url="https://czj.example.gov.cn/xxgk/",
                etag='"e"',
                last_modified="Mon",
                fetched_at=now,
            )
        )
    with sessions() as s:
        keys, validators = known_state(s, "czj-site")
        assert keys == frozenset({"https://czj.example.gov.cn/a.html"})
        assert validators == {"https://czj.example.gov.cn/xxgk/": ('"e"', "Mon")}
        assert known_state(s, "no-such-source") == (frozenset(), {})
        assert recent_wechat_urls(s, now - timedelta(days=7)) == [
            "https://u/wx:B:5:1",
            "https://u/wx:B:4:1",
            "https://u/wx:B:1:1",
        ]
        assert recent_wechat_urls(s, now - timedelta(days=7), source_key="czj-site") == []
        assert last_run_complete(s, "czj-site")  # never ran: nothing to resume

    # After an interrupted run its list pages may list articles it never stored: no validators,
    # so the next crawl pages fully; a completed run restores them.
    for status, trusted in (("killed", False), ("error", False), ("running", False), ("ok", True)):
        with sessions.begin() as s:
            site_id = s.scalars(select(Source.id).where(Source.key == "czj-site")).one()
            run = CrawlRun(started_at=now, status="ok", trigger="test", summary={})
            s.add(run)
            s.flush()
            s.add(SourceRun(crawl_run_id=run.id, source_id=site_id, started_at=now, status=status))
        with sessions() as s:
            assert last_run_complete(s, "czj-site") is trusted, status
            assert bool(known_state(s, "czj-site")[1]) is trusted, status
            assert known_state(s, "czj-site")[0] == frozenset({"https://czj.example.gov.cn/a.html"})


def test_sync_config_upserts_and_never_deletes(sessions: sessionmaker[Session], now: datetime, tmp_path: Path) -> None:
    with sessions.begin() as s:
        sync_config(s, config(tmp_path), now)
    with sessions() as s:
        units = s.scalars(select(Unit).order_by(Unit.sort_order)).all()
        assert [(u.name, u.short_name, u.aliases, u.sort_order) for u in units] == [
            ("张掖市财政局", "财政局", ["市财政局"], 0),
            ("张掖市科学技术局", None, ["市科学技术局", "市科技局"], 1),
        ]
        site = s.scalars(select(Source).where(Source.key == "czj-site")).one()
        assert site.unit is not None and site.unit.name == "张掖市财政局" and site.options == {"list_type": "html"}
        wx = s.scalars(select(Source).where(Source.key == "jgdj-wx")).one()
        assert wx.column == "学习贯彻党的二十届四中全会精神" and wx.options == {"verification_backoff_minutes": 20}
        tokens = {r.email: r.unsubscribe_token for r in s.scalars(select(Recipient))}
        assert len(tokens) == 2 and all(len(t) >= 32 for t in tokens.values())
    with sessions.begin() as s:
        s.scalars(select(Recipient).where(Recipient.email == "xmz@example.org")).one().opted_out_at = now
        s.scalars(select(Recipient).where(Recipient.email == "xmz@example.org")).one().active = False
    changed = config(
        tmp_path,
        units=[{"name": "张掖市科学技术局", "aliases": ["市科技局"]}, {"name": "张掖市财政局"}],
        sources=[
            {"key": "jgdj-wx", "kind": "wechat_album", "url": "https://mp.weixin.qq.com/mp/appmsgalbum?album_id=2"}
        ],
        recipients=[{"unit": "张掖市科学技术局", "name": "许明哲", "email": "xmz@example.org"}],
    )
    with sessions.begin() as s:
        sync_config(s, changed, now)
    with sessions() as s:
        assert [u.name for u in s.scalars(select(Unit).order_by(Unit.sort_order))] == [
            "张掖市科学技术局",
            "张掖市财政局",
        ]
        sources = {x.key: x for x in s.scalars(select(Source))}
        assert sources["czj-site"].enabled is False  # removed from the config: disabled, kept
        assert (
            sources["jgdj-wx"].enabled
            and sources["jgdj-wx"].url.endswith("album_id=2")
            and sources["jgdj-wx"].column is None
        )
        recipients = {r.email: r for r in s.scalars(select(Recipient))}
        assert recipients["xmz@example.org"].active is False  # the opt-out survives the sync
        assert recipients["xmz@example.org"].unsubscribe_token == tokens["xmz@example.org"]
        assert recipients["gqy@example.org"].active is False  # no longer in the config
