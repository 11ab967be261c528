"""Publish times a page prints after we fetched it (issue 21, point 9): clamped to the fetch time in
normalize, the printed value kept on the appearance, shown to the operator on the story page and
by `zhuanlan status`, and the schema (migration 0012) in agreement with the models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, inspect, select

from pipeline.corpus.models import Appearance, Article
from pipeline.normalize import CLOCK_SKEW_TOLERANCE, normalize_item, plausible_published
from scheduler import status_report
from tests.test_archive_web import PASSWORD, login, make_app
from tests.test_pipeline_support import Crawl, article_item, text
from zhuanlan_config import parse_config

if TYPE_CHECKING:
    from pathlib import Path

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
    assert "Publish times after the fetch, stored as the fetch time: 1" in report
    (line,) = [line for line in report.splitlines() if guid in line and "printed" in line]
    assert "stored 2026-11-26 10:00" in line and "printed 2026-11-26 14:00" in line and "/art/ahead.html" in line


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
