"""Dates (issue 21, point 9). Publish times a page prints after we fetched it: clamped to the fetch
time in normalize, the printed value kept on the appearance, shown to the operator on the story
page and by `zhuanlan status`, the schema (migration 0012) in agreement with the models. Feed
entries: each carries its story's own last change as Atom `updated` / JSON `date_modified`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import feedparser
import pytest
from sqlalchemy import Engine, inspect, select

from feeds.build import build_feed_documents, entry_updated
from feeds.selection import load_feed_items, plan_feeds
from pipeline.corpus.corrections import Change, correct_story
from pipeline.corpus.models import Appearance, Article
from pipeline.normalize import CLOCK_SKEW_TOLERANCE, normalize_item, plausible_published
from pipeline.record import Author
from scheduler import status_report
from tests.test_archive_web import PASSWORD, login, make_app
from tests.test_pipeline_support import Crawl, article_item, text
from zhuanlan_config import parse_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


def test_a_publish_time_after_the_fetch_is_clamped_to_it(now: datetime) -> None:
    ahead = now + timedelta(hours=4)
    assert plausible_published(ahead, now) == (now, True)
    # clock skew within the tolerance is kept as printed; the past is never touched
    assert plausible_published(now + CLOCK_SKEW_TOLERANCE, now) == (now + CLOCK_SKEW_TOLERANCE, False)
    assert plausible_published(now - timedelta(days=3), now) == (now - timedelta(days=3), False)
    assert plausible_published(None, now) == (None, False)
    # the same instant in another zone is the same instant
    assert plausible_published(ahead.astimezone(UTC), now) == (now, True)
    assert plausible_published(now.astimezone(UTC) + timedelta(minutes=1), now)[1] is False


def test_naive_times_are_refused_with_a_clear_error(now: datetime) -> None:
    with pytest.raises(ValueError, match="no time zone"):
        plausible_published(now.replace(tzinfo=None), now)
    with pytest.raises(ValueError, match="no time zone"):
        plausible_published(now, now.replace(tzinfo=None))


def test_normalize_keeps_the_printed_value(now: datetime) -> None:
    printed = now + timedelta(hours=4)
    record = normalize_item(article_item("ahead", text("original"), published_at=printed, fetched_at=now))
    assert record.item.published_at == now and record.printed_published_at == printed
    fine = normalize_item(article_item("fine", text("original"), published_at=now - timedelta(hours=1), fetched_at=now))
    assert fine.item.published_at == now - timedelta(hours=1) and fine.printed_published_at is None


def _ingest_one_ahead(sessions: sessionmaker[Session], now: datetime) -> tuple[str, datetime]:
    printed = now + timedelta(hours=4)
    chain = Crawl(sessions, now)
    chain.run(article_item("ahead", text("original"), published_at=printed, fetched_at=now))
    chain.run(article_item("other", text("same_unit_other"), published_at=now - timedelta(hours=2), fetched_at=now))
    chain.close()
    with sessions() as s:
        guid = s.scalars(select(Article.guid).order_by(Article.id)).first()
        assert guid is not None
    return guid, printed


def test_the_ingest_stores_the_fetch_time_and_the_printed_value(sessions: sessionmaker[Session], now: datetime) -> None:
    guid, printed = _ingest_one_ahead(sessions, now)
    with sessions() as s:
        article = s.scalars(select(Article).where(Article.guid == guid)).one()
        (place,) = article.appearances
        assert article.published_at == now and place.published_at == now
        assert place.printed_published_at == printed
        other = s.scalars(select(Appearance).where(Appearance.id != place.id)).one()
        assert other.printed_published_at is None and other.published_at == now - timedelta(hours=2)


def test_status_lists_the_clamped_publish_times(
    tmp_path: Path, engine: Engine, sessions: sessionmaker[Session], now: datetime
) -> None:
    guid, _printed = _ingest_one_ahead(sessions, now)
    config = parse_config({}, base_dir=tmp_path)
    report = status_report(config, engine, sessions, now)
    assert "发布时间晚于抓取时间、已按抓取时间保存的页面：1 个" in report
    (line,) = [line for line in report.splitlines() if guid in line and "页面所印" in line]
    assert "保存为 2026-11-26 10:00" in line and "页面所印 2026-11-26 14:00" in line and "/art/ahead.html" in line


def test_the_installed_status_command_lists_them(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], now: datetime
) -> None:
    guid, _printed = _ingest_one_ahead(sessions, now)
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text('data_dir = "data"\n', encoding="utf-8")
    (tmp_path / "data").mkdir()
    status = subprocess.run(
        [str(Path(sys.executable).with_name("zhuanlan")), "--config", str(cfg), "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "ZHUANLAN_DATABASE_URL": db_url},
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert "发布时间晚于抓取时间、已按抓取时间保存的页面：1 个" in status.stdout
    assert any(guid in line and "页面所印 2026-11-26 14:00" in line for line in status.stdout.splitlines())


def test_the_story_page_shows_the_flag_to_the_operator_only(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    guid, _printed = _ingest_one_ahead(sessions, now)
    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "test-secret-key")
    client = make_app(tmp_path, sessions, now).test_client()
    public = client.get(f"/story/{guid}").get_data(as_text=True)
    assert "发布时间已校正" not in public
    login(client)
    page = client.get(f"/story/{guid}").get_data(as_text=True)
    assert "发布时间已校正" in page
    assert "2026-11-26 14:00" in page and "晚于抓取时间" in page


def test_migration_and_models_agree_on_appearances(engine: Engine) -> None:
    columns = {c["name"] for c in inspect(engine).get_columns("appearances")}
    assert columns == set(Appearance.__table__.columns.keys())
    assert "printed_published_at" in columns


# --- feeds: each entry's own updated time ---------------------------------------------------------


def test_entry_updated_is_the_publish_time_until_the_story_changes(now: datetime) -> None:
    published = now - timedelta(days=5)
    assert entry_updated(published, now, now) == published  # stored by a backfill today, never changed
    assert entry_updated(published, now, now + timedelta(hours=3)) == now + timedelta(hours=3)
    # a change stored before the (later) publish time of a new 首发 cannot move the entry back
    assert entry_updated(now + timedelta(hours=5), now, now + timedelta(hours=3)) == now + timedelta(hours=5)


def _feeds(tmp_path: Path, sessions: sessionmaker[Session], built: datetime) -> dict[str, Any]:
    config = parse_config({}, base_dir=tmp_path)
    with sessions() as s:
        spec = next(spec for spec in plan_feeds(s, config) if spec.kind == "all")
        docs = build_feed_documents(spec, load_feed_items(s, spec, config), config, built)
    atom, rss = feedparser.parse(docs["atom"]), feedparser.parse(docs["rss"])
    assert not atom.bozo and not rss.bozo
    return {
        "atom": {e.title: (_parsed(e.published), _parsed(e.updated)) for e in atom.entries},
        "rss": {e.title: _parsed(e.published) for e in rss.entries},
        "json": {i["title"]: datetime.fromisoformat(i["date_modified"]) for i in json.loads(docs["json"])["items"]},
    }


def _parsed(value: str) -> datetime:
    """An Atom (RFC 3339) or RSS (RFC 2822) date as written."""
    return parsedate_to_datetime(value) if "," in value else datetime.fromisoformat(value)


def test_feed_entries_carry_their_own_updated_time(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime
) -> None:
    # a backfill: two stories published days apart, stored by one crawl at `now`
    chain = Crawl(sessions, now)
    chain.run(article_item("a", text("original"), title="甲文", published_at=now - timedelta(days=3)))
    chain.run(article_item("b", text("same_unit_other"), title="乙文", published_at=now - timedelta(days=2)))
    chain.close()
    built = now + timedelta(days=1)
    feeds = _feeds(tmp_path, sessions, built)
    assert feeds["atom"] == {
        "甲文": (now - timedelta(days=3), now - timedelta(days=3)),
        "乙文": (now - timedelta(days=2), now - timedelta(days=2)),
    }  # not the build time, not the crawl time
    assert feeds["rss"] == {"甲文": now - timedelta(days=3), "乙文": now - timedelta(days=2)}
    assert feeds["json"] == {"甲文": now - timedelta(days=3), "乙文": now - timedelta(days=2)}

    # a repost that changes nothing the entry shows leaves it; a correction moves it
    later = now + timedelta(hours=6)
    repost = Crawl(
        sessions, later, source={"key": "other-site", "kind": "site_column", "url": "https://mz.example.gov.cn/"}
    )
    repost.run(article_item("a-copy", text("original"), title="甲文", published_at=now - timedelta(days=1)))
    repost.close()
    assert _feeds(tmp_path, sessions, built)["atom"]["甲文"][1] == now - timedelta(days=3)
    corrected = now + timedelta(hours=8)
    with sessions() as s, s.begin():
        guid = s.scalars(select(Article.guid).where(Article.title == "乙文")).one()
        correct_story(s, guid, Change(authors=(Author("顾清远", ("局长",)),)), actor="office", now=corrected)
    feeds = _feeds(tmp_path, sessions, built)
    assert feeds["atom"]["乙文"] == (now - timedelta(days=2), corrected)
    assert feeds["json"]["乙文"] == corrected
    assert feeds["atom"]["甲文"][1] == now - timedelta(days=3)


def test_a_new_original_moves_the_entry(tmp_path: Path, sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    chain.run(article_item("copy", text("original"), title="甲文", published_at=now - timedelta(days=1)))
    chain.close()
    found = now + timedelta(hours=2)
    first = Crawl(
        sessions, found, source={"key": "other-site", "kind": "site_column", "url": "https://mz.example.gov.cn/"}
    )
    first.run(article_item("first", text("original"), title="甲文", published_at=now - timedelta(days=2)))
    first.close()
    assert _feeds(tmp_path, sessions, now + timedelta(days=1))["atom"]["甲文"] == (now - timedelta(days=2), found)
