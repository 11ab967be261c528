"""Feeds: building (RSS, Atom, JSON Feed), identity, change detection, hygiene, OPML."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import feedparser
import pytest
from sqlalchemy import select

from feeds.build import FeedItem, FeedSpec, build_feed_documents, feed_key, make_summary, rewrite_images
from feeds.publish import publish_feeds
from pipeline.corpus.models import Article, FeedState, Source, Unit
from tests.test_feeds_factory import BASE_URL, COLUMN, SHANGHAI, Factory, make_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def corpus(sessions: sessionmaker[Session], now: datetime) -> dict[str, Any]:
    with sessions() as session:
        f = Factory(session, now)
        kj = f.unit("市科学技术局", 1)
        nn = f.unit("市农业农村局", 2)
        sj = f.unit("市审计局", 3)
        src = f.source("jiguan-dangjian")
        a1 = f.article("聚力科技创新 赋能产业升级", kj, src, T0, author="赵明远", topics=("科技创新",))
        a2 = f.article("扎实推进乡村全面振兴", nn, src, T0 + timedelta(days=1), author="李春华", topics=("乡村振兴",))
        a3 = f.article(
            "以科技之力助推现代农业发展",
            nn,
            src,
            T0 + timedelta(days=2),
            author="孙建国",
            topics=("科技创新", "乡村振兴"),
            lead="市农业农村局党组书记、局长 孙建国\n以科技之力助推现代农业发展。",
        )
        session.commit()
        return {
            "units": {"kj": kj.id, "nn": nn.id, "sj": sj.id},
            "guids": [a3.guid, a2.guid, a1.guid],  # newest first
            "source": src.id,
        }


# The factory's config sets no slugs: units, columns and topics are named by their pinyin.
PATHS = {
    "all": "all",
    "unit:市科学技术局": "unit/shi-ke-xue-ji-shu-ju",
    "unit:市农业农村局": "unit/shi-nong-ye-nong-cun-ju",
    "unit:市审计局": "unit/shi-shen-ji-ju",
    "topic:科技创新": "topic/ke-ji-chuang-xin",
    "topic:乡村振兴": "topic/xiang-cun-zhen-xing",
}


def _read(config: Config, path: str, ext: str) -> bytes:
    return (config.public_dir / "feeds" / f"{PATHS.get(path, path)}.{ext}").read_bytes()


def _mtimes(config: Config) -> dict[str, int]:
    out = config.public_dir / "feeds"
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_all_feeds_are_written_and_parse_back(
    sessions: sessionmaker[Session], config: Config, corpus: dict[str, Any], now: datetime
) -> None:
    result = publish_feeds(sessions, config, now)
    kj = corpus["units"]["kj"]
    expected = {
        "all",
        feed_key("column", COLUMN),
        f"unit-{kj}",
        f"unit-{corpus['units']['nn']}",
        f"unit-{corpus['units']['sj']}",
        feed_key("topic", "科技创新"),
        feed_key("topic", "乡村振兴"),
    }
    assert set(result.written) == expected and result.unchanged == 0
    index = json.loads(_read(config, "index", "json"))
    assert {f["key"] for f in index["feeds"]} == expected
    for feed in index["feeds"]:
        for ext in ("rss", "atom", "json"):
            assert (config.public_dir / "feeds" / f"{feed['path']}.{ext}").is_file()
    assert set(PATHS.values()) < {f["path"] for f in index["feeds"]}
    assert not [p for p in (config.public_dir / "feeds").rglob("*") if p.suffix == ".tmp"]

    ids = [f"urn:zhuanlan:article:{g}" for g in corpus["guids"]]
    for ext in ("rss", "atom"):
        parsed = feedparser.parse(_read(config, "all", ext))
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert [e.id for e in parsed.entries] == ids  # newest first, stable ids
        first = parsed.entries[0]
        assert first.title == "以科技之力助推现代农业发展"
        assert first.link == f"https://mp.example.org/s/{corpus['guids'][0]}"
        assert "二是坚持问题导向" in first.content[0].value  # the full text, not just the summary
        assert first.summary.startswith("以科技之力助推现代农业发展。")  # the byline above it left out
        assert {t.term for t in first.tags} >= {"市农业农村局", COLUMN, "科技创新", "乡村振兴"}
        assert first.author == "孙建国"

    rss = _read(config, "all", "rss").decode()
    assert f"<link>{BASE_URL}/</link>" in rss and f'href="{BASE_URL}/feeds/all.rss" rel="self"' in rss
    assert 'isPermaLink="false"' in rss and "<content:encoded>" in rss and "+0800" in rss
    atom = _read(config, "all", "atom").decode()
    assert '<content type="html">' in atom and "CDATA" not in atom
    assert "2026-11-26T09:00:00+08:00" in atom
    assert f'href="{BASE_URL}/feeds/all.atom" rel="self"' in atom

    doc = json.loads(_read(config, "all", "json"))
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["feed_url"] == f"{BASE_URL}/feeds/all.json"
    assert [i["id"] for i in doc["items"]] == ids
    for item in doc["items"]:
        assert {"id", "url", "title", "content_html", "summary", "date_published"} <= set(item)
    assert doc["items"][0]["date_published"] == "2026-11-26T09:00:00+08:00"

    unit_feed = feedparser.parse(_read(config, "unit:市科学技术局", "atom"))
    assert [e.title for e in unit_feed.entries] == ["聚力科技创新 赋能产业升级"]
    topic_feed = feedparser.parse(_read(config, "topic:科技创新", "rss"))
    assert len(topic_feed.entries) == 2
    empty = feedparser.parse(_read(config, "unit:市审计局", "atom"))
    assert not empty.bozo and empty.entries == []


def test_only_changed_feeds_are_rewritten_and_guids_stay(
    sessions: sessionmaker[Session], config: Config, corpus: dict[str, Any], now: datetime
) -> None:
    publish_feeds(sessions, config, now)
    before = _mtimes(config)
    all_before = _read(config, "all", "atom")

    # A repost of the oldest story: a new appearance, the same story, nothing visible changes.
    with sessions() as session:
        f = Factory(session, now)
        source = session.get(Source, corpus["source"])
        unit = session.get(Unit, corpus["units"]["kj"])
        assert source is not None and unit is not None
        repost_source = f.source("kjj-site", unit, kind="site_column")
        oldest = session.scalars(select(Article).where(Article.guid == corpus["guids"][2])).one()
        f.appearance(oldest, repost_source, "https://kjj.example.org/art/2026/11/27/1.html", T0 + timedelta(days=3))
        session.commit()
    result = publish_feeds(sessions, config, now + timedelta(hours=1))
    assert result.written == [] and result.unchanged == 7
    assert _mtimes(config) == before
    assert _read(config, "all", "atom") == all_before

    # A new story of one unit: only the feeds that show it change.
    with sessions() as session:
        f = Factory(session, now)
        source = session.get(Source, corpus["source"])
        unit = session.get(Unit, corpus["units"]["kj"])
        assert source is not None and unit is not None
        new = f.article("深化科技体制改革 激发创新活力", unit, source, T0 + timedelta(days=3), topics=("科技创新",))
        new_guid = new.guid
        session.commit()
    result = publish_feeds(sessions, config, now + timedelta(hours=2))
    assert set(result.written) == {
        "all",
        feed_key("column", COLUMN),
        f"unit-{corpus['units']['kj']}",
        feed_key("topic", "科技创新"),
    }
    assert result.unchanged == 3
    after = _mtimes(config)
    untouched = "unit/shi-nong-ye-nong-cun-ju.atom"
    assert after[untouched] == before[untouched]
    ids = [e.id for e in feedparser.parse(_read(config, "all", "atom")).entries]
    assert ids == [f"urn:zhuanlan:article:{g}" for g in [new_guid, *corpus["guids"]]]
    with sessions() as session:
        state = session.scalars(select(FeedState).where(FeedState.key == "all")).one()
        assert state.item_count == 4

    # A forced rebuild rewrites everything with the very same ids.
    result = publish_feeds(sessions, config, now + timedelta(hours=3), force=True)
    assert len(result.written) == 7
    assert [e.id for e in feedparser.parse(_read(config, "all", "rss")).entries] == ids


def test_missing_file_is_rewritten_even_if_state_matches(
    sessions: sessionmaker[Session], config: Config, corpus: dict[str, Any], now: datetime
) -> None:
    publish_feeds(sessions, config, now)
    (config.public_dir / "feeds" / "all.json").unlink()
    assert publish_feeds(sessions, config, now).written == ["all"]


def test_items_per_feed_keeps_the_newest(
    sessions: sessionmaker[Session], tmp_path: Path, corpus: dict[str, Any], now: datetime
) -> None:
    config = make_config(tmp_path, feeds={"items_per_feed": 2})
    publish_feeds(sessions, config, now)
    entries = feedparser.parse(_read(config, "all", "atom")).entries
    assert [e.id for e in entries] == [f"urn:zhuanlan:article:{g}" for g in corpus["guids"][:2]]


def test_hostile_titles_and_bodies_keep_feeds_well_formed(
    sessions: sessionmaker[Session], config: Config, now: datetime
) -> None:
    with sessions() as session:
        f = Factory(session, now)
        unit = f.unit("市财政局")
        html = (
            '<p onclick="steal()">财政资金\x0b直达基层</p><script>alert("x")</script>'
            '<img src="data:image/gif;base64,R0lGOD" data-src="https://mmbiz.qpic.cn/mmbiz_jpg/abc/640?wx_fmt=jpeg">'
            '<a href="javascript:alert(1)">链接</a><iframe src="https://evil.example"></iframe>'
        )
        # (NUL itself cannot be stored in PostgreSQL text; the pure build test covers it.)
        f.article("财政\x01保障\x08有力\x1b 😀 𠀀 «引号» &amp; <b>", unit, f.source("czj", unit), T0, html=html)
        session.commit()
    publish_feeds(sessions, config, now)
    for ext in ("rss", "atom"):
        raw = _read(config, "all", ext)
        ET.fromstring(raw)  # well-formed XML
        parsed = feedparser.parse(raw)
        assert not parsed.bozo, parsed.get("bozo_exception")
        # A "<" that would open a tag is written fullwidth: inert whether a reader takes the title as text or HTML.
        assert parsed.entries[0].title == "财政保障有力 😀 𠀀 «引号» &amp; ＜b>"
        lowered = raw.decode().lower()
        for bad in ("<script", "&lt;script", "onclick", "javascript:", "<iframe", "&lt;iframe", "\x0b"):
            assert bad not in lowered
        assert "/img?u=https%3a%2f%2fmmbiz.qpic.cn%2fmmbiz_jpg" in lowered
    doc = json.loads(_read(config, "all", "json"))
    assert "<script" not in doc["items"][0]["content_html"]
    assert doc["items"][0]["title"].startswith("财政保障有力")


def test_opml_and_directory_page(
    sessions: sessionmaker[Session], config: Config, corpus: dict[str, Any], now: datetime
) -> None:
    result = publish_feeds(sessions, config, now)
    assert result.directory_written
    root = ET.fromstring((config.public_dir / "feeds" / "index.opml").read_bytes())
    groups = {g.get("text"): g for g in root.find("body") or []}
    assert list(groups) == ["全部", "专栏", "单位", "主题"]
    units = [o.get("text") for o in groups["单位"]]
    assert units == ["专栏·市科学技术局", "专栏·市农业农村局", "专栏·市审计局"]
    for outline in root.iter("outline"):
        if outline.get("type") == "rss":
            assert (outline.get("xmlUrl") or "").startswith(f"{BASE_URL}/feeds/")
            assert (outline.get("xmlUrl") or "").isascii()
    page = (config.public_dir / "feeds" / "index.html").read_text(encoding="utf-8")
    assert "专栏订阅源" in page and f"{BASE_URL}/feeds/unit/shi-ke-xue-ji-shu-ju.atom" in page
    # Unchanged set of feeds: the directory is not rewritten.
    assert not publish_feeds(sessions, config, now).directory_written


def test_file_names_are_ascii_and_stable() -> None:
    assert feed_key("column", COLUMN) == feed_key("column", COLUMN)
    assert feed_key("column", COLUMN).isascii() and feed_key("topic", "乡村振兴").isascii()
    assert feed_key("column", COLUMN) != feed_key("topic", COLUMN)
    assert feed_key("unit", 7) == "unit-7"
    assert os.sep not in feed_key("topic", "a/b")


def test_rewrite_images_only_touches_wechat_images() -> None:
    html = (
        '<p>正文</p><img src="https://mmbiz.qpic.cn/sz_mmbiz_png/x/640?wx_fmt=png&amp;from=appmsg" alt="图">'
        '<img src="https://www.example.gov.cn/a.jpg"><img data-src="//mmbiz.qlogo.cn/y.jpg">'
    )
    out = rewrite_images(html, BASE_URL)
    assert (
        f'{BASE_URL}/img?u=https%3A%2F%2Fmmbiz.qpic.cn%2Fsz_mmbiz_png%2Fx%2F640%3Fwx_fmt%3Dpng%26from%3Dappmsg"' in out
    )
    assert '<img src="https://www.example.gov.cn/a.jpg">' in out
    assert f"{BASE_URL}/img?u=https%3A%2F%2Fmmbiz.qlogo.cn%2Fy.jpg" in out
    assert "data-src" not in out and out.startswith("<p>正文</p>")
    assert rewrite_images("<p>无图</p>", BASE_URL) == "<p>无图</p>"


def test_build_is_pure_and_needs_aware_now(config: Config) -> None:
    item = FeedItem(
        guid="g1",
        title="标题",
        link="https://mp.example.org/s/g1",
        published=T0,
        author=None,
        unit="市科学技术局",
        categories=(("unit", "市科学技术局"),),
        text="短文",
        body_html="<p>短文</p>",
        content_hash="h",
    )
    spec = FeedSpec("all", "专栏·全部文章", "all", None)
    docs = build_feed_documents(spec, [item], config, T0)
    assert docs == build_feed_documents(spec, [item], config, T0)
    nul = replace(item, title="标\x00题\ufffe", body_html="<p>正\x00文</p>", text="正\x00文")
    for ext in ("rss", "atom"):
        raw = build_feed_documents(spec, [nul], config, T0)[ext]
        ET.fromstring(raw)
        assert feedparser.parse(raw).entries[0].title == "标题"
    assert feedparser.parse(docs["atom"]).entries[0].author == "市科学技术局"  # unit when no person
    with pytest.raises(ValueError):
        build_feed_documents(spec, [item], config, T0.replace(tzinfo=None))
    assert make_summary("一" * 200).endswith("…") and len(make_summary("一" * 200)) == 121
