"""The archive web app in headless Chromium: the real app on a loopback port, over the invented
corpus plus enough filler stories to need a second page of results.

Search with a two-character term and see highlights, narrow by unit and by date through the
form, page through results, open a story and its appearances, open the archived original and
see that none of its scripts ran (the CSP sandbox), log in to the health page, and take a
screenshot that is not blank."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import zlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import feedparser
import pytest
from sqlalchemy import select

from archive.search import Filters, ranked_ids
from archive.web import create_app
from feeds.publish import publish_feeds
from pipeline.corpus.models import Appearance, Article, Snapshot, Unit
from pipeline.corpus.search_index import index_article
from tests.support import browser_page, serving_app
from tests.test_archive_corpus import SHANGHAI, build_corpus
from zhuanlan_config import parse_config

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page
    from sqlalchemy.orm import Session, sessionmaker

PASSWORD = "口令-browser-test"
FILLERS = 24  # with the corpus' four public 全会 stories: 28 hits for 全会, two pages of 20
HOSTILE_TITLE = "原始页面快照"
HOSTILE_SNAPSHOT = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + HOSTILE_TITLE + "</title>"
    "<script>document.title='pwned';window.pwned=1;document.documentElement.setAttribute('data-pwned','1')</script>"
    "</head><body onload=\"document.title='pwned-onload';document.body.setAttribute('data-onload','1')\">"
    "<h1>以全会精神为指引 推动教育事业高质量发展</h1>"
    "<img src='/nowhere.png' onerror=\"document.body.setAttribute('data-onerror','1')\">"
    "<p>原文内容</p></body></html>"
).encode()


def _seed(sessions: sessionmaker[Session], now: datetime) -> None:
    with sessions() as db, db.begin():
        articles = build_corpus(db, now)
        water = db.scalars(select(Unit).where(Unit.name == "市水务局")).one()
        for i in range(FILLERS):
            body = f"水务局第{i + 1}次专题学习全会精神，推进河湖长制和节水型城市建设。"
            article = Article(
                guid=f"guid-fill-{i:02d}",
                title=f"水务局学习全会精神简报（{i + 1}）",
                author="王建华",
                positions=[],
                unit=water,
                column="学习贯彻党的二十届四中全会精神",
                published_at=datetime(2026, 10, 1, 9, 0, tzinfo=SHANGHAI) + timedelta(days=i),
                body_html=f"<p>{body}</p>",
                body_text=body,
                content_hash=hashlib.sha256(body.encode()).hexdigest(),
                state="live",
                created_at=now,
                updated_at=now,
            )
            db.add(article)
            db.flush()
            index_article(db, article.id, article.title, article.body_text)
        # The edu story's WeChat snapshot becomes a page that tries to run script three ways.
        appearance = db.get(Appearance, articles["edu"].first_appearance_id)
        assert appearance is not None and appearance.snapshot_id is not None
        snapshot = db.get(Snapshot, appearance.snapshot_id)
        assert snapshot is not None
        snapshot.content = zlib.compress(HOSTILE_SNAPSHOT)
        snapshot.sha256 = hashlib.sha256(HOSTILE_SNAPSHOT).hexdigest()
        snapshot.encoding = "utf-8"
        snapshot.size = len(HOSTILE_SNAPSHOT)


@pytest.fixture
def site(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Base URL of the real app, served by werkzeug on a free 127.0.0.1 port in a thread."""
    _seed(sessions, now)
    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "browser-test-secret")
    config = parse_config({"data_dir": "data", "public_dir": "public"}, base_dir=tmp_path)
    publish_feeds(sessions, config, now)
    with serving_app(create_app(config, sessions, now=lambda: now)) as base:
        yield base


@pytest.fixture
def page(chromium: Any) -> Iterator[Page]:
    with browser_page(chromium, 1200, 900) as page:
        yield page


def _search(page: Page, base: str, q: str) -> None:
    page.goto(f"{base}/search")
    page.fill("form.search input[name=q]", q)
    _submit(page)


def _submit(page: Page, selector: str = "form.search button[type=submit]") -> None:
    with page.expect_navigation():
        page.click(selector)


def _hit_titles(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("ol.hits li a.title").all_inner_texts()]


def test_search_highlights_filters_and_paginates(site: str, page: Page) -> None:
    _search(page, site, "党建")
    assert "共找到 2 篇" in page.inner_text("p.count")
    assert set(_hit_titles(page)) == {"党建引领 凝聚奋进力量", "以全会精神为指引 推动教育事业高质量发展"}
    marks = page.locator("ol.hits mark").all_inner_texts()
    assert marks and set(marks) == {"党建"}
    assert page.locator("ol.hits a.title mark").count() == 1  # the title match (党建引领) is highlighted too

    # The unit filter, chosen in the form, keeps the query.
    page.select_option("select[name=unit]", label="市教育局")
    _submit(page)
    assert "unit=" in page.url and page.input_value("form.search input[name=q]") == "党建"
    assert _hit_titles(page) == ["以全会精神为指引 推动教育事业高质量发展"]

    # A date filter: 2026-11-20 in Shanghai holds only the party story (published 23:30 local).
    _search(page, site, "全会")
    page.fill("input[name=from]", "2026-11-20")
    page.fill("input[name=to]", "2026-11-20")
    _submit(page)
    assert "from=2026-11-20" in page.url
    assert _hit_titles(page) == ["党建引领 凝聚奋进力量"]

    # The 源站已删除 story is not public: no such state to choose (the operator has one).
    assert page.locator("select[name=state] option[value=deleted]").count() == 0

    # Pagination: 28 hits (not the deleted story), 20 then 8, none on both pages, the query kept.
    _search(page, site, "全会")
    assert "共找到 28 篇，第 1 / 2 页" in page.inner_text("p.count")
    first = _hit_titles(page)
    assert len(first) == 20 and "坚持人民至上 提升财政保障能力" not in first
    _submit(page, "nav.pager >> text=下一页")
    assert "page=2" in page.url and "第 2 / 2 页" in page.inner_text("p.count")
    second = _hit_titles(page)
    assert len(second) == 8 and not set(first) & set(second)
    assert page.input_value("form.search input[name=q]") == "全会"


def _hit_days(page: Page) -> list[str]:
    return [m.rsplit("·", 1)[1].strip() for m in page.locator("ol.hits li span.meta").all_inner_texts()]


def _download(page: Page, selector: str) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.click(selector)
    download = info.value
    path = download.path()
    assert path is not None
    with open(path, "rb") as fh:
        return download.suggested_filename, fh.read()


def test_search_sorts_by_relevance_or_date_and_exports_every_hit(
    site: str, page: Page, sessions: sessionmaker[Session]
) -> None:
    # The public's hits for 全会 (not the 源站已删除 story), in each order, as the database ranks them.
    order: dict[str, list[tuple[str, str]]] = {}
    with sessions() as db:
        for sort in ("relevance", "date"):
            ids = db.scalars(ranked_ids(db, "全会", Filters(hide_deleted=True), sort=sort, tz=SHANGHAI)).all()
            articles = [db.get(Article, i) for i in ids]
            order[sort] = [(a.guid, a.title) for a in articles if a is not None]
    assert len(order["date"]) == 28 and "guid-fin" not in {g for g, _ in order["date"]}
    assert order["relevance"] != order["date"]  # the fillers' title matches outrank newer stories

    _search(page, site, "全会")
    assert page.input_value("select[name=sort]") == "relevance"
    by_relevance = _hit_titles(page)
    assert by_relevance == [t for _, t in order["relevance"][:20]]

    page.select_option("select[name=sort]", "date")
    _submit(page)
    assert "sort=date" in page.url and "共找到 28 篇" in page.inner_text("p.count")
    by_date, days = _hit_titles(page), _hit_days(page)
    assert by_date != by_relevance and by_date == [t for _, t in order["date"][:20]]
    assert by_date[0] == "以全会精神为指引 推动教育事业高质量发展"
    assert days == sorted(days, reverse=True) and days[0] == "2026-11-24"
    _submit(page, "nav.pager >> text=下一页")
    assert "sort=date" in page.url  # the pager keeps the order
    assert _hit_titles(page) == [t for _, t in order["date"][20:]]

    # The downloads hold every hit (28, not the 20 or 8 shown), in the order chosen.
    expected = [g for g, _ in order["date"]]
    name, data = _download(page, "a.export-csv")
    assert name.endswith(".csv") and data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert [r["guid"] for r in rows] == expected
    assert next(r for r in rows if r["guid"] == "guid-edu")["body_text"].startswith("党的二十届四中全会")

    name, data = _download(page, "a.export-jsonl")
    assert name.endswith(".jsonl")
    assert [json.loads(line)["guid"] for line in data.decode("utf-8").splitlines()] == expected

    page.select_option("select[name=sort]", "relevance")
    _submit(page)
    _, data = _download(page, "a.export-jsonl")
    assert [json.loads(line)["guid"] for line in data.decode("utf-8").splitlines()] == [
        g for g, _ in order["relevance"]
    ]


def test_story_shows_appearances_and_snapshot_runs_no_script(site: str, page: Page) -> None:
    _search(page, site, "立德树人")
    _submit(page, "ol.hits a.title")
    assert page.url.endswith("/story/guid-edu")
    assert page.inner_text("h1") == "以全会精神为指引 推动教育事业高质量发展"
    rows = page.locator("section.appearances tbody tr")
    assert rows.count() == 2
    first, repost = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert "首发" in first and "https://mp.weixin.qq.com/s?__biz=MzA0" in first
    assert "2026-11-24 10:30" in first and "200" in first  # fetch time in Shanghai, HTTP status
    assert "转载" in repost and "jyj.example.gov.cn" in repost and "2026-11-24 11:30" in repost
    sha = hashlib.sha256(HOSTILE_SNAPSHOT).hexdigest()
    assert sha in first

    _submit(page, f"section.appearances a:text('{sha}')")
    assert page.url.endswith(f"/snapshot/{sha}")
    assert page.inner_text("h1") == "以全会精神为指引 推动教育事业高质量发展"  # the original is shown
    page.wait_for_timeout(300)  # time for an onload / onerror handler, had it been allowed to run
    assert page.title() == HOSTILE_TITLE
    html = page.content()
    assert "data-pwned" not in html.split("<script>")[0]  # no attribute was set on <html>
    for attribute in ("data-pwned", "data-onload", "data-onerror"):
        assert page.locator(f"[{attribute}]").count() == 0, attribute


def test_health_needs_the_password_and_the_cookie_is_httponly_samesite(site: str, page: Page) -> None:
    page.goto(f"{site}/health")
    assert page.url.endswith("/login")  # redirected

    page.fill("input[name=password]", "not-the-password")
    _submit(page, "main button[type=submit]")
    assert "密码不正确" in page.inner_text("p.error")
    page.goto(f"{site}/health")
    assert page.url.endswith("/login")

    page.fill("input[name=password]", PASSWORD)
    _submit(page, "main button[type=submit]")
    assert page.url.endswith("/health")
    assert page.inner_text("h1") == "运行状态"
    sources = page.locator("table").first.inner_text()
    assert "jiguan-wx" in sources and "edu-site" in sources
    cookies = [c for c in page.context.cookies() if c["name"] == "session"]
    assert len(cookies) == 1
    assert cookies[0]["httpOnly"] is True and cookies[0]["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""  # script cannot read it

    _submit(page, "form.logout button")
    page.goto(f"{site}/health")
    assert page.url.endswith("/login")


def test_a_feed_reader_discovers_the_feeds(site: str, page: Page) -> None:
    """What Miniflux or FreshRSS do with the site's address: read <link rel=alternate>, fetch it."""
    atom = 'link[rel=alternate][type="application/atom+xml"]'
    page.goto(f"{site}/")
    hrefs = page.eval_on_selector_all(atom, "els => els.map(e => e.href)")
    assert hrefs == [f"{site}/feeds/all.atom"]
    feed = feedparser.parse(page.request.get(hrefs[0]).body())
    assert not feed.bozo and len(feed.entries) == FILLERS + 4  # every public story, not the deleted one
    # A unit's page announces its own feed first and links it where people see it.
    page.click("#units >> text=市教育局")
    own = page.eval_on_selector_all(atom, "els => els.map(e => e.href)")
    assert own[0].startswith(f"{site}/feeds/unit/") and own[-1] == f"{site}/feeds/all.atom"
    page.click("p.feed-links >> text=Atom")
    assert page.url == own[0]
    # The directory of every feed is one click away from any page.
    page.goto(f"{site}/search")
    page.click("header nav >> text=订阅源")
    assert page.url == f"{site}/feeds/" and "订阅源" in page.title()


def test_the_header_search_box_keeps_its_button_beside_it(site: str, page: Page) -> None:
    """The quick search in the header: the box and its button on one line, on a desk and on a phone."""
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"{site}/")
        box = page.locator("header form.quick input[type=search]").bounding_box()
        button = page.locator("header form.quick button").bounding_box()
        assert box is not None and button is not None
        assert button["x"] >= box["x"] + box["width"] and abs(button["y"] - box["y"]) < box["height"], (
            width,
            box,
            button,
        )
        assert button["x"] + button["width"] <= width and box["width"] >= 150, (width, box, button)
        page.fill("header form.quick input[type=search]", "党建")
        page.click("header form.quick button")
        assert "/search" in page.url and "q=%E5%85%9A%E5%BB%BA" in page.url


def test_search_page_screenshot_is_not_blank(site: str, page: Page, tmp_path: Path) -> None:
    _search(page, site, "党建")
    shot = tmp_path / "search.png"
    data = page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size == len(data) > 5_000
    # Decode in a blank page (no app CSP there) and count pixels that are not near-white.
    page.goto("about:blank")
    stats = page.evaluate(
        """async (src) => {
            const img = new Image();
            img.src = src;
            await img.decode();
            const canvas = document.createElement('canvas');
            canvas.width = img.width; canvas.height = img.height;
            const ctx = canvas.getContext('2d');
            ctx.drawImage(img, 0, 0);
            const px = ctx.getImageData(0, 0, img.width, img.height).data;
            let ink = 0, accent = 0;
            for (let i = 0; i < px.length; i += 4) {
                if (px[i] < 200 || px[i + 1] < 200 || px[i + 2] < 200) ink++;
                if (px[i] > 150 && px[i + 1] < 80 && px[i + 2] < 80) accent++;
            }
            return {w: img.width, h: img.height, ink: ink, accent: accent};
        }""",
        "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
    )
    assert stats["w"] >= 1000 and stats["h"] >= 600
    total = stats["w"] * stats["h"]
    assert stats["ink"] > total * 0.02, stats  # text, the form, the header bar
    assert stats["accent"] > 1000, stats  # the red header of the stylesheet: CSS was served and applied
