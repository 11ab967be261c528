"""Feeds people can find, and stories deleted at source (issue 21, points 6 and 8).

The URLs pinned here are a promise to subscribers: a change that breaks one of them breaks
every reader subscribed to it, so it must be a deliberate change of this test.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import feedparser
import pytest
from sqlalchemy import select

from archive.web import create_app
from feeds.build import feed_key
from feeds.publish import publish_feeds
from feeds.slugs import assign_slugs, pinyin_slug
from pipeline.corpus.models import Article
from tests.test_archive_web import PASSWORD, login
from tests.test_feeds_factory import BASE_URL, COLUMN, SHANGHAI, Factory, make_config

if TYPE_CHECKING:
    from pathlib import Path

    from flask.testing import FlaskClient
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)
UNITS = [{"name": "市科学技术局"}, {"name": "市农业农村局", "slug": "nongye"}, {"name": "市审计局"}]

# The promise: these URLs stay the same across releases.
PINNED = {
    "all": f"{BASE_URL}/feeds/all",
    "科技局": f"{BASE_URL}/feeds/unit/shi-ke-xue-ji-shu-ju",
    "农业农村局": f"{BASE_URL}/feeds/unit/nongye",  # configured slug
    "审计局": f"{BASE_URL}/feeds/unit/shi-shen-ji-ju",
    "专栏": f"{BASE_URL}/feeds/column/xue-xi-guan-che-dang-de-er-shi-jie-si-zhong-quan-hui-jing-shen",
    "科技创新": f"{BASE_URL}/feeds/topic/ke-ji-chuang-xin",
    "乡村振兴": f"{BASE_URL}/feeds/topic/xiang-cun-zhen-xing",
}


def _config(tmp_path: Path, **feeds: Any) -> Config:
    return make_config(tmp_path, units=UNITS, feeds={"items_per_feed": 5, **feeds})


@pytest.fixture
def corpus(sessions: sessionmaker[Session], now: datetime) -> dict[str, Any]:
    with sessions() as session:
        f = Factory(session, now)
        kj = f.unit("市科学技术局", 1)
        nn = f.unit("市农业农村局", 2)
        sj = f.unit("市审计局", 3)
        src = f.source("jiguan-dangjian")
        a1 = f.article("聚力科技创新 赋能产业升级", kj, src, T0, topics=("科技创新",))
        a2 = f.article("扎实推进乡村全面振兴", nn, src, T0 + timedelta(days=1), topics=("乡村振兴",))
        a3 = f.article("以科技之力助推现代农业发展", nn, src, T0 + timedelta(days=2), topics=("科技创新", "乡村振兴"))
        gone = f.article("已被源站删除的科技稿件", kj, src, T0 + timedelta(days=3), topics=("科技创新",))
        gone.state = "deleted"
        session.commit()
        return {
            "units": {"kj": kj.id, "nn": nn.id, "sj": sj.id},
            "live": [a3.guid, a2.guid, a1.guid],
            "gone": gone.guid,
        }


def _client(config: Config, sessions: sessionmaker[Session], now: datetime) -> FlaskClient:
    app = create_app(config, sessions, now=lambda: now)
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def client(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    corpus: dict[str, Any],
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> FlaskClient:
    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "test-secret-key")
    config = _config(tmp_path)
    publish_feeds(sessions, config, now)
    return _client(config, sessions, now)


class _Links(HTMLParser):
    """The <link> and <a> elements of a page, as a feed reader's autodiscovery reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []
        self.anchors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "link":
            self.links.append(values)
        elif tag == "a":
            self.anchors.append(values.get("href", ""))


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _alternates(html: str) -> list[dict[str, str]]:
    feed_types = {"application/atom+xml", "application/rss+xml", "application/feed+json"}
    return [link for link in _parse(html).links if link.get("rel") == "alternate" and link.get("type") in feed_types]


def _ids(raw: bytes) -> list[str]:
    parsed = feedparser.parse(raw)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [e.id for e in parsed.entries]


def _moved_to(location: str) -> str:
    """The path and query a redirect names; it is this site's, never the request's Host header's."""
    parts = urlsplit(location)
    assert parts.netloc in ("", urlsplit(BASE_URL).netloc), location
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _urn(guids: list[str]) -> list[str]:
    return [f"urn:zhuanlan:article:{g}" for g in guids]


# --- slugs ------------------------------------------------------------------------------


def test_pinyin_slugs() -> None:
    assert pinyin_slug("市科学技术局") == "shi-ke-xue-ji-shu-ju"
    assert pinyin_slug("中共张掖市直机关工委") == "zhong-gong-zhang-ye-shi-zhi-ji-guan-gong-wei"
    assert pinyin_slug("２０２５年 ＡＢＣ·党建/廉政") == "2025-nian-abc-dang-jian-lian-zheng"
    assert pinyin_slug("绿色发展") == "lv-se-fa-zhan"
    assert re.fullmatch(r"n-[0-9a-f]{6}", pinyin_slug("😀《》"))
    long = pinyin_slug("学习贯彻" * 20)
    assert len(long) <= 80 and not long.endswith("-") and long.startswith("xue-xi-guan-che")


def test_slugs_are_unique_per_kind_and_stable() -> None:
    # 市商务局 and 市尚武局 read the same: the first keeps the plain slug, the later one a suffix of its own name.
    slugs = assign_slugs([("市商务局", None), ("市尚武局", None), ("市审计局", "shi-shen-ji-ju-x")])
    assert slugs["市商务局"] == "shi-shang-wu-ju"
    assert re.fullmatch(r"shi-shang-wu-ju-[0-9a-f]{6}", slugs["市尚武局"])
    assert slugs["市审计局"] == "shi-shen-ji-ju-x"
    # A configured slug wins over a name whose pinyin it is, whatever the order.
    taken = assign_slugs([("市审计局", None), ("审计局", "shi-shen-ji-ju")])
    assert taken["审计局"] == "shi-shen-ji-ju" and taken["市审计局"] != "shi-shen-ji-ju"
    # Adding a name later never changes the slugs already given.
    more = assign_slugs([("市商务局", None), ("市尚武局", None), ("市审计局", "shi-shen-ji-ju-x"), ("市上午局", None)])
    assert {k: more[k] for k in slugs} == slugs and len(set(more.values())) == 4


# --- the pinned URLs ---------------------------------------------------------------------


def test_feed_urls_are_pinned(
    sessions: sessionmaker[Session], tmp_path: Path, corpus: dict[str, Any], now: datetime
) -> None:
    config = _config(tmp_path)
    publish_feeds(sessions, config, now)
    out = config.public_dir / "feeds"
    index = json.loads((out / "index.json").read_bytes())
    urls = {f"{BASE_URL}/feeds/{f['path']}" for f in index["feeds"]}
    assert urls == set(PINNED.values())
    for url in PINNED.values():
        path = url.removeprefix(f"{BASE_URL}/feeds/")
        for ext in ("rss", "atom", "json"):
            assert (out / f"{path}.{ext}").is_file(), (path, ext)
        atom = (out / f"{path}.atom").read_text(encoding="utf-8")
        assert f'href="{url}.atom" rel="self"' in atom
        rss = (out / f"{path}.rss").read_text(encoding="utf-8")
        assert f'href="{url}.rss" rel="self"' in rss
        assert json.loads((out / f"{path}.json").read_bytes())["feed_url"] == f"{url}.json"
    # The OPML and the directory page list the new URLs, never the old file names.
    opml = (out / "index.opml").read_text(encoding="utf-8")
    page = (out / "index.html").read_text(encoding="utf-8")
    for url in PINNED.values():
        assert f'xmlUrl="{url}.rss"' in opml
        assert f'href="{url}.atom"' in page
    assert "unit-" not in opml + page and "topic-" not in opml + page
    assert (
        f'<link rel="alternate" type="application/atom+xml" title="专栏·全部文章" href="{BASE_URL}/feeds/all.atom">'
        in page
    )
    # The old file names are what redirects from: the feeds keep their identity (FeedState, Atom id).
    keys = {f["key"] for f in index["feeds"]}
    assert f"unit-{corpus['units']['kj']}" in keys and feed_key("topic", "科技创新") in keys


# --- the web app: autodiscovery, links, redirects, ?limit ------------------------------------


def test_a_feed_reader_finds_the_feed_from_the_home_page(client: FlaskClient, corpus: dict[str, Any]) -> None:
    home = client.get("/").get_data(as_text=True)
    found = _alternates(home)
    assert found, "no <link rel=alternate> on the home page"
    # What Miniflux and FreshRSS do: take the advertised href, resolve it against the page, fetch, parse.
    response = client.get(found[0]["href"])
    assert response.status_code == 200 and response.mimetype == "application/atom+xml"
    parsed = feedparser.parse(response.data)
    assert not parsed.bozo and parsed.feed.title == "专栏·全部文章"
    assert [e.id for e in parsed.entries] == _urn(corpus["live"])
    # Every page carries it, the error page too.
    for url in ("/search", "/digests", "/story/" + corpus["live"][0], "/nowhere"):
        assert {link["href"] for link in _alternates(client.get(url).get_data(as_text=True))} >= {"/feeds/all.atom"}


def test_pages_link_their_feeds_by_name(client: FlaskClient, corpus: dict[str, Any]) -> None:
    home = client.get("/").get_data(as_text=True)
    anchors = _parse(home).anchors
    assert "/feeds/" in anchors  # the directory, from the navigation
    section = home[home.index('id="feeds"') :]
    for name in ("全部文章", "市科学技术局", "市农业农村局", "市审计局", COLUMN, "科技创新", "乡村振兴"):
        assert name in section, name
    for url in PINNED.values():
        assert url.removeprefix(BASE_URL) + ".atom" in anchors
    assert not re.search(r"(unit|topic|column)-[0-9a-f]+\.atom", home)

    unit = client.get(f"/unit/{corpus['units']['kj']}").get_data(as_text=True)
    own = "/feeds/unit/shi-ke-xue-ji-shu-ju.atom"
    assert _alternates(unit)[0]["href"] == own  # the page's own feed first, then the site's
    assert own in _parse(unit).anchors and "/feeds/unit/shi-ke-xue-ji-shu-ju.rss" in _parse(unit).anchors
    topic = client.get("/search", query_string={"topic": "科技创新"}).get_data(as_text=True)
    assert _alternates(topic)[0]["href"] == "/feeds/topic/ke-ji-chuang-xin.atom"
    assert "/feeds/topic/ke-ji-chuang-xin.atom" in _parse(topic).anchors and "订阅主题「科技创新」" in topic
    column = client.get("/search", query_string={"column": COLUMN}).get_data(as_text=True)
    assert _alternates(column)[0]["href"] == PINNED["专栏"].removeprefix(BASE_URL) + ".atom"
    for url in (f"/unit/{corpus['units']['kj']}", "/search?topic=科技创新"):
        href = _alternates(client.get(url).get_data(as_text=True))[0]["href"]
        assert not feedparser.parse(client.get(href).data).bozo


def test_old_file_names_redirect_to_the_new_urls(client: FlaskClient, corpus: dict[str, Any]) -> None:
    kj = corpus["units"]["kj"]
    old_to_new = {
        f"/feeds/unit-{kj}.atom": PINNED["科技局"] + ".atom",
        f"/feeds/unit-{corpus['units']['nn']}.rss": PINNED["农业农村局"] + ".rss",
        f"/feeds/{feed_key('topic', '科技创新')}.json": PINNED["科技创新"] + ".json",
        f"/feeds/{feed_key('column', COLUMN)}.atom": PINNED["专栏"] + ".atom",
    }
    for old, new in old_to_new.items():
        response = client.get(old, headers={"Host": "evil.example"})
        assert response.status_code == 301, old
        assert _moved_to(response.headers["Location"]) == new.removeprefix(BASE_URL), old
        assert client.get(new.removeprefix(BASE_URL)).status_code == 200
    kept = client.get(f"/feeds/unit-{kj}.atom?limit=2")
    assert _moved_to(kept.headers["Location"]) == PINNED["科技局"].removeprefix(BASE_URL) + ".atom?limit=2"
    assert client.get("/feeds/all.atom").status_code == 200  # "all" kept its name
    assert client.get("/feeds/unit-999.atom").status_code == 404


def test_limit_serves_the_newest_entries(client: FlaskClient, corpus: dict[str, Any]) -> None:
    for ext in ("atom", "rss"):
        assert _ids(client.get(f"/feeds/all.{ext}?limit=2").data) == _urn(corpus["live"][:2])
        assert _ids(client.get(f"/feeds/all.{ext}?limit=5").data) == _urn(corpus["live"])
    doc = json.loads(client.get("/feeds/topic/xiang-cun-zhen-xing.json?limit=1").data)
    assert [i["id"] for i in doc["items"]] == _urn(corpus["live"][:1])
    assert doc["feed_url"] == PINNED["乡村振兴"] + ".json"
    limited = client.get("/feeds/all.atom?limit=1")
    assert limited.mimetype == "application/atom+xml" and limited.headers["ETag"]
    assert client.get("/feeds/all.atom?limit=1", headers={"If-None-Match": limited.headers["ETag"]}).status_code == 304
    assert limited.headers["ETag"] != client.get("/feeds/all.atom?limit=2").headers["ETag"]
    for bad in ("0", "6", "-1", "abc", "", "1e3", "９"):  # items_per_feed is 5
        response = client.get("/feeds/all.atom", query_string={"limit": bad})
        assert response.status_code == 400, bad
        assert "limit" in response.get_data(as_text=True)
    assert client.get("/feeds/unit/nope.atom?limit=1").status_code == 404
    assert client.get("/feeds/../secret.atom?limit=1", follow_redirects=True).status_code == 404


# --- stories deleted at source -------------------------------------------------------------


def test_deleted_stories_leave_public_feeds_and_pages(
    client: FlaskClient, tmp_path: Path, sessions: sessionmaker[Session], corpus: dict[str, Any]
) -> None:
    gone = corpus["gone"]
    out = tmp_path / "public" / "feeds"
    for path in (
        "all",
        "unit/shi-ke-xue-ji-shu-ju",
        "topic/ke-ji-chuang-xin",
        "column/" + PINNED["专栏"].rsplit("/", 1)[1],
    ):
        for ext in ("atom", "rss", "json"):
            assert gone not in (out / f"{path}.{ext}").read_text(encoding="utf-8"), (path, ext)
    assert _ids((out / "all.atom").read_bytes()) == _urn(corpus["live"])

    title = "已被源站删除的科技稿件"
    home = client.get("/").get_data(as_text=True)
    assert title not in home and "共收录 3 篇" in home
    assert title not in client.get(f"/unit/{corpus['units']['kj']}").get_data(as_text=True)
    for params in ({"q": "删除"}, {"q": ""}, {"state": "deleted"}, {"topic": "科技创新"}):
        page = client.get("/search", query_string=params).get_data(as_text=True)
        assert title not in page, params
    assert "源站已删除" not in client.get("/search").get_data(as_text=True)  # no such filter for the public
    story = client.get(f"/story/{gone}")
    assert story.status_code == 410
    notice = story.get_data(as_text=True)
    assert "原发布处删除" in notice and "赋能" not in notice and title not in notice

    # The operator still sees it everywhere in the archive.
    login(client)
    assert client.get(f"/story/{gone}").status_code == 200
    assert title in client.get(f"/story/{gone}").get_data(as_text=True)
    assert title in client.get("/").get_data(as_text=True)
    assert title in client.get(f"/unit/{corpus['units']['kj']}").get_data(as_text=True)
    assert title in client.get("/search", query_string={"state": "deleted"}).get_data(as_text=True)
    with sessions() as db:
        assert db.scalars(select(Article.state).where(Article.guid == gone)).one() == "deleted"


def test_show_deleted_keeps_them_public(
    tmp_path: Path, sessions: sessionmaker[Session], corpus: dict[str, Any], now: datetime
) -> None:
    config = _config(tmp_path, show_deleted=True)
    publish_feeds(sessions, config, now)
    assert _ids((config.public_dir / "feeds" / "all.atom").read_bytes()) == _urn([corpus["gone"], *corpus["live"]])
    client = _client(config, sessions, now)
    assert client.get(f"/story/{corpus['gone']}").status_code == 200
    assert "已被源站删除的科技稿件" in client.get("/").get_data(as_text=True)
