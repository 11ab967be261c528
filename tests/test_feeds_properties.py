"""Feeds under hostile input and concurrent readers: property-style checks with a seeded generator.

hypothesis is not a dependency, so `nasty()` is a seeded random generator of the Unicode and
markup that break feeds in practice (control characters, lone surrogates, U+FFFE/U+FFFF, bidi
marks, emoji, CJK extension B, `]]>`, `<script>`, event handlers, javascript: URLs). Every
produced RSS / Atom / JSON Feed document must parse (feedparser without bozo, json.loads), carry
its required elements, and stay inert: sanitized HTML only where a field is HTML, and no markup
at all in plain-text fields, whichever way a reader interprets them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import feedparser
import pytest
from sqlalchemy import select

from feeds.build import FeedItem, FeedSpec, build_feed_documents, item_id, plain_text
from feeds.publish import atomic_write, publish_feeds
from feeds.selection import plan_feeds
from pipeline.corpus.models import Appearance, Article, Source
from tests.test_feeds_factory import BASE_URL, COLUMN, SHANGHAI, Factory, make_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

T0 = datetime(2026, 11, 2, 8, 30, tzinfo=SHANGHAI)
ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xmlurl", "htmlurl", "background", "poster", "cite"}
FORBIDDEN_TAGS = {"script", "style", "iframe", "frame", "frameset", "object", "embed", "svg", "math", "form"}
FORBIDDEN_TAGS |= {"input", "button", "base", "meta", "link", "template", "noscript", "textarea"}
BAD_SCHEMES = ("javascript:", "vbscript:", "data:", "livescript:")

FRAGMENTS = (
    *(chr(c) for c in range(0x00, 0x20)),
    "\x7f",
    "\x85",
    "\x9f",
    "\ud800",
    "\udfff",
    "\udc00x",
    "\ufffe",
    "\uffff",
    "\ufffd",
    "\ufeff",
    "\u200b",
    "\u200e",
    "\u200f",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u2028",
    "\u2029",
    "😀",
    "👨‍👩‍👧",
    "🇨🇳",
    "𠀀",
    "𪚥",
    "𫠝",
    "]]>",
    "<![CDATA[",
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//x.example/a.js>",
    "</title>",
    "</content>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">点</a>',
    "<a href='jav&#x09;ascript:alert(1)'>",
    "<svg onload=alert(1)>",
    "<iframe src=//evil.example>",
    "<!--",
    "-->",
    "<?xml version='1.0'?>",
    "<!DOCTYPE x>",
    "javascript:alert(1)",
    "&amp;",
    "&lt;script&gt;",
    "&#0;",
    "&#x1F;",
    "&nbsp;",
    "&",
    "<",
    ">",
    '"',
    "'",
    "\\",
    "%00",
    "\t",
    "学习贯彻",
    "全会精神",
    "党建",
    "（转载）",
    "《决定》",
    "٠١٢ العربية",
    "עברית",
)
HOSTILE_HTML = (
    '<p onclick="steal()" style="x">正文</p>',
    "<script>document.cookie</script>",
    '<img src="data:image/gif;base64,R0lGOD" data-src="https://mmbiz.qpic.cn/mmbiz_jpg/a&quot;b/640?x=1&y=2">',
    '<img src="https://mmbiz.qpic.cn/mmbiz_png/z/0" onerror="alert(1)">',
    '<a href=" JaVaScRiPt:alert(1)">链接</a>',
    '<a href="data:text/html,<script>alert(1)</script>">链接</a>',
    "<iframe src=https://evil.example></iframe>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "<style>body{display:none}</style>",
    '<form action="javascript:alert(1)"><input autofocus onfocus=alert(1)></form>',
    "<object data=x.swf></object><embed src=x.swf>",
    "<p>]]></p><![CDATA[ <script>alert(1)</script> ]]>",
    '<section><img data-src="//mmbiz.qlogo.cn/y.jpg"></section>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "<base href=javascript:alert(1)//>",
)


def nasty(rng: random.Random, max_fragments: int = 12, *, storable: bool = False) -> str:
    """A random string of hostile fragments. `storable`: what a database can hold (no lone
    surrogates, no NUL), i.e. what can really reach the feeds through the pipeline."""
    out = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, max_fragments)))
    if storable:
        out = "".join(ch for ch in out if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)
    return out


def nasty_html(rng: random.Random, *, storable: bool = False) -> str:
    parts = [f"<p>{nasty(rng, storable=storable)}</p>"]
    parts += rng.sample(HOSTILE_HTML, rng.randint(1, 5))
    parts.append(nasty(rng, storable=storable))
    return "".join(parts)


# --- what "inert" means ---------------------------------------------------------------------


class _Markup(HTMLParser):
    """Everything a browser's tokenizer would see as markup in a string."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.other: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.other.append(f"/{tag}")

    def handle_comment(self, data: str) -> None:
        self.other.append("comment")

    def handle_decl(self, decl: str) -> None:
        self.other.append("decl")

    def handle_pi(self, data: str) -> None:
        self.other.append("pi")

    def unknown_decl(self, data: str) -> None:
        self.other.append("cdata")


def _markup(text: str) -> _Markup:
    parser = _Markup()
    parser.feed(text)
    parser.close()
    return parser


def _scheme_is_bad(url: str) -> bool:
    squeezed = "".join(ch for ch in url if not ch.isspace() and ord(ch) >= 0x20).lower()
    return squeezed.startswith(BAD_SCHEMES)


def assert_plain(text: str | None, where: str) -> None:
    """Read as HTML, a plain-text field must contain no element, comment or declaration."""
    if not text:
        return
    found = _markup(text)
    assert not found.tags and not found.other, (where, text)


def assert_safe_html(html: str | None, where: str) -> None:
    """Sanitized HTML: no script-capable element, no event handler, no javascript:/data: URL."""
    if not html:
        return
    assert "<script" not in html.lower(), (where, html)
    for tag, attrs in _markup(html).tags:
        assert tag not in FORBIDDEN_TAGS, (where, tag, html)
        for name, value in attrs:
            assert not name.startswith("on"), (where, name, html)
            assert name != "style", (where, html)
            if name in URL_ATTRIBUTES or name.endswith("href"):
                assert not _scheme_is_bad(value or ""), (where, name, value)
            if tag == "img" and name == "src" and "mmbiz." in (value or ""):
                assert (value or "").startswith(f"{BASE_URL}/img?u="), (where, value)  # WeChat images proxied


def _is_html_field(elem: ET.Element) -> bool:
    if elem.tag == CONTENT_ENCODED:
        return True
    return elem.tag in (f"{ATOM}content", f"{ATOM}summary") and elem.get("type") in ("html", "xhtml")


def assert_inert_xml(raw: bytes) -> ET.Element:
    root = ET.fromstring(raw)  # well-formed: raises on any illegal character
    for elem in root.iter():
        for name, value in elem.attrib.items():
            if name.lower() in URL_ATTRIBUTES:
                assert value.startswith(("http://", "https://")), (elem.tag, name, value)
            else:
                assert_plain(value, f"{elem.tag}@{name}")
        if _is_html_field(elem):
            assert_safe_html(elem.text, elem.tag)
        else:
            assert_plain(elem.text, elem.tag)
        assert_plain(elem.tail, f"{elem.tag} tail")
    return root


def assert_inert_json(raw: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(raw.decode("utf-8"))

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            assert not any(0xD800 <= ord(ch) <= 0xDFFF or ord(ch) < 0x09 for ch in value), (key, value)
            if key == "content_html":
                assert_safe_html(value, key)
            elif key.endswith("url"):
                assert value.startswith(("http://", "https://")), (key, value)
            else:
                assert_plain(value, key)

    walk(doc, "")
    return doc


def assert_valid_feed(docs: dict[str, bytes], ids: list[str]) -> None:
    """Parses everywhere, has the required elements, the ids in order, +08:00 dates, is inert."""
    rss = assert_inert_xml(docs["rss"])
    channel = rss.find("channel")
    assert channel is not None
    for required in ("title", "link", "description"):
        assert (channel.findtext(required) or "").strip(), required
    rss_items = channel.findall("item")
    assert [i.findtext("guid") for i in rss_items] == ids
    for item in rss_items:
        assert (item.findtext("title") or "").strip() and (item.findtext("link") or "").startswith("http")
        assert (item.findtext("pubDate") or "").endswith("+0800")

    atom = assert_inert_xml(docs["atom"])
    for required in ("id", "title", "updated"):
        assert (atom.findtext(f"{ATOM}{required}") or "").strip(), required
    entries = atom.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}id") for e in entries] == ids
    for entry in entries:
        assert (entry.findtext(f"{ATOM}title") or "").strip()
        assert (entry.findtext(f"{ATOM}updated") or "").endswith("+08:00")
        assert (entry.findtext(f"{ATOM}published") or "").endswith("+08:00")

    for ext in ("rss", "atom"):
        parsed = feedparser.parse(docs[ext])
        assert not parsed.bozo, (ext, parsed.get("bozo_exception"))
        assert [e.id for e in parsed.entries] == ids

    doc = assert_inert_json(docs["json"])
    assert doc["version"] == "https://jsonfeed.org/version/1.1" and doc["title"]
    assert [i["id"] for i in doc["items"]] == ids
    for item in doc["items"]:
        assert item["date_published"].endswith("+08:00") and item["title"].strip()


# --- the pure builder, many random feeds ------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def _random_item(rng: random.Random, n: int, published: datetime) -> FeedItem:
    link = rng.choice(
        (
            f"https://mp.weixin.qq.com/s?__biz=MzA&mid={n}&idx=1",
            "javascript:alert(1)",
            " JAVASCRIPT:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            f"https://kjj.example.gov.cn/art/{n}.html\u202e",
            "",
        )
    )
    kinds = ("unit", "column", "topic")
    return FeedItem(
        guid=f"{n:032x}",
        title=nasty(rng),
        link=link,
        published=published,
        author=rng.choice((None, "", nasty(rng, 4))),
        unit=rng.choice((None, nasty(rng, 4))),
        categories=tuple((rng.choice(kinds), nasty(rng, 3)) for _ in range(rng.randint(0, 3))),
        text=nasty(rng, 30),
        body_html=nasty_html(rng),
        content_hash=f"h{n}",
    )


def test_random_hostile_items_always_give_valid_inert_feeds(config: Config) -> None:
    rng = random.Random(20261126)
    n = 0
    for round_ in range(60):
        items = []
        for _ in range(rng.randint(0, 4)):
            n += 1
            items.append(_random_item(rng, n, T0 - timedelta(hours=n)))  # newest first, as the query gives
        spec = FeedSpec(f"topic-{round_}", "专栏·" + nasty(rng, 4), "topic", "x")
        docs = build_feed_documents(spec, items, config, T0)
        assert_valid_feed(docs, [item_id(it.guid) for it in items])


def test_plain_text_is_inert_but_keeps_what_people_write() -> None:
    assert plain_text("学习《决定》：a < b & c > d") == "学习《决定》：a < b & c > d"
    assert plain_text("<script>x</script>") == "＜script>x＜/script>"
    assert plain_text("a\x00b\x85c\ud800d\ufffe") == "abcd"
    assert plain_text("<!-- x --> <?pi?>") == "＜!-- x --> ＜?pi?>"


# --- through the database: storable hostile stories --------------------------------------------


@pytest.fixture
def hostile(sessions: sessionmaker[Session], now: datetime) -> dict[str, Any]:
    rng = random.Random(48)
    with sessions() as session:
        f = Factory(session, now)
        units = [f.unit(f"市{i}局{nasty(rng, 3, storable=True)}"[:200], i) for i in range(3)]
        src = f.source("hostile")
        offsets = list(range(16))
        rng.shuffle(offsets)  # inserted in random order: the feed must still be newest first
        for i, hours in enumerate(offsets):
            # A few stories bring a hostile column or topic name of their own (and so a feed of it).
            column = (nasty(rng, 3, storable=True)[:200] or None) if i % 6 == 0 else rng.choice((COLUMN, None))
            topics = [rng.choice(("科技创新", "乡村振兴"))]
            if i % 6 == 1:
                topics.append(nasty(rng, 3, storable=True)[:200] or "t")
            f.article(
                nasty(rng, storable=True) or "无",
                rng.choice((*units, None)),
                src,
                T0 + timedelta(hours=hours * 7, minutes=i),
                author=rng.choice((None, nasty(rng, 3, storable=True)[:100])),
                lead=nasty(rng, 20, storable=True),
                html=nasty_html(rng, storable=True),
                column=column,
                topics=tuple(topics),
            )
        session.commit()
    return {"source": src.id}


def _ids_by_file(config: Config) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    feeds_dir = config.public_dir / "feeds"
    for path in sorted(feeds_dir.rglob("*.json")):
        if path.name != "index.json":  # the directory, not a feed
            out[path.relative_to(feeds_dir).with_suffix("").as_posix()] = [
                i["id"] for i in json.loads(path.read_bytes())["items"]
            ]
    return out


def test_hostile_stories_through_the_database(
    sessions: sessionmaker[Session], config: Config, hostile: dict[str, Any], now: datetime
) -> None:
    result = publish_feeds(sessions, config, now)
    feeds_dir = config.public_dir / "feeds"
    with sessions() as session:
        specs = plan_feeds(session, config)
    assert sorted(result.written) == sorted(s.key for s in specs)
    checked = 0
    for spec in specs:
        docs = {ext: (feeds_dir / f"{spec.path}.{ext}").read_bytes() for ext in ("rss", "atom", "json")}
        doc = json.loads(docs["json"])
        ids = [i["id"] for i in doc["items"]]
        assert_valid_feed(docs, ids)
        dates = [datetime.fromisoformat(i["date_published"]) for i in doc["items"]]
        assert dates == sorted(dates, reverse=True), spec.key  # newest first
        checked += len(ids)
    assert checked > 16
    everything = json.loads((feeds_dir / "all.json").read_bytes())
    assert len(everything["items"]) == 16
    tagged = [i for i in everything["items"] if "科技创新" in i.get("tags", [])]
    assert tagged, "topics become categories"
    topic_ids = [i["id"] for i in json.loads((feeds_dir / "topic" / "ke-ji-chuang-xin.json").read_bytes())["items"]]
    assert topic_ids == [i["id"] for i in tagged]
    root = assert_inert_xml((feeds_dir / "index.opml").read_bytes())
    assert len([o for o in root.iter("outline") if o.get("type") == "rss"]) == len(specs)
    page = (feeds_dir / "index.html").read_text(encoding="utf-8")
    page_tags = _markup(page).tags
    assert {tag for tag, _ in page_tags} <= {
        "html",
        "head",
        "meta",
        "title",
        "link",  # the site-wide feed, for autodiscovery
        "style",
        "body",
        "h1",
        "h2",
        "p",
        "ul",
    } | {
        "li",
        "a",
    }
    for tag, attrs in page_tags:
        assert not any(name.startswith("on") for name, _ in attrs)
        if tag == "a":
            assert (dict(attrs).get("href") or "").startswith(f"{BASE_URL}/feeds/")


def test_guids_survive_new_appearances_and_a_rebuild_from_nothing(
    sessions: sessionmaker[Session], config: Config, hostile: dict[str, Any], now: datetime
) -> None:
    publish_feeds(sessions, config, now)
    before = _ids_by_file(config)
    links_before = {
        i["id"]: i["url"] for i in json.loads((config.public_dir / "feeds" / "all.json").read_bytes())["items"]
    }

    # Every story gains a repost; one also turns out to have appeared first somewhere else.
    with sessions() as session:
        f = Factory(session, now)
        source = session.get(Source, hostile["source"])
        assert source is not None
        repost = f.source("repost-site", kind="site_column")
        articles = session.scalars(select(Article).order_by(Article.id)).all()
        for a in articles:
            f.appearance(a, repost, f"https://repost.example.gov.cn/art/{a.guid}.html", T0 + timedelta(days=30))
        earliest = f.appearance(
            articles[0], repost, f"https://first.example.gov.cn/{articles[0].guid}.html", T0 - timedelta(days=1)
        )
        for app in session.scalars(select(Appearance).where(Appearance.article_id == articles[0].id)):
            app.is_original = app.id == earliest.id
        articles[0].first_appearance_id = earliest.id
        moved = item_id(articles[0].guid)
        session.commit()
    result = publish_feeds(sessions, config, now + timedelta(hours=1))
    assert "all" in result.written  # the link of one story changed ...
    assert _ids_by_file(config) == before  # ... and no id did
    links = {i["id"]: i["url"] for i in json.loads((config.public_dir / "feeds" / "all.json").read_bytes())["items"]}
    assert links[moved].startswith("https://first.example.gov.cn/")
    assert {k: v for k, v in links.items() if k != moved} == {k: v for k, v in links_before.items() if k != moved}

    # A full rebuild from an empty public directory gives the very same ids and items.
    rss_before = (config.public_dir / "feeds" / "all.rss").read_bytes()
    shutil.rmtree(config.public_dir)
    result = publish_feeds(sessions, config, now + timedelta(hours=1))
    assert len(result.written) == len(before)
    assert _ids_by_file(config) == before
    assert (config.public_dir / "feeds" / "all.rss").read_bytes() == rss_before  # same data, same build time


def test_opml_groups_every_feed_and_the_directory_links_every_file(
    sessions: sessionmaker[Session], config: Config, hostile: dict[str, Any], now: datetime
) -> None:
    publish_feeds(sessions, config, now)
    feeds_dir = config.public_dir / "feeds"
    with sessions() as session:
        specs = plan_feeds(session, config)
    root = ET.fromstring((feeds_dir / "index.opml").read_bytes())
    body = root.find("body")
    assert body is not None
    groups = {g.get("text"): [o.get("xmlUrl") for o in g] for g in body}
    assert list(groups) == ["全部", "专栏", "单位", "主题"]
    labels = {"all": "全部", "column": "专栏", "unit": "单位", "topic": "主题"}
    for spec in specs:
        url = f"{BASE_URL}/feeds/{spec.path}.rss"
        assert groups[labels[spec.kind]].count(url) == 1, spec
    assert sum(len(v) for v in groups.values()) == len(specs)
    column_slug = "xue-xi-guan-che-dang-de-er-shi-jie-si-zhong-quan-hui-jing-shen"
    assert f"{BASE_URL}/feeds/column/{column_slug}.rss" in groups["专栏"]
    assert f"{BASE_URL}/feeds/topic/xiang-cun-zhen-xing.rss" in groups["主题"]
    page = (feeds_dir / "index.html").read_text(encoding="utf-8")
    hrefs = [dict(attrs).get("href") or "" for tag, attrs in _markup(page).tags if tag == "a"]
    for spec in specs:
        for ext in ("rss", "atom", "json"):
            assert f"{BASE_URL}/feeds/{spec.path}.{ext}" in hrefs
            assert (feeds_dir / f"{spec.path}.{ext}").is_file()
    assert f"{BASE_URL}/feeds/index.opml" in hrefs


# --- atomic writes ------------------------------------------------------------------------------


def _document(tag: str, size: int) -> bytes:
    body = "".join(f"<item><title>{tag} {i} 学习贯彻全会精神</title></item>" for i in range(size))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>{body}</channel></rss>\n'.encode()


def test_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "all.rss"
    versions = [_document("A", 4_000), _document("B", 1_000), _document("C", 8_000)]  # 50-400 kB
    atomic_write(target, versions[0])
    stop = threading.Event()
    seen: list[int] = []
    failures: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            try:
                ET.fromstring(data)
            except ET.ParseError as exc:
                failures.append(f"{len(data)} bytes: {exc}")
            if data not in versions:
                failures.append(f"unknown content of {len(data)} bytes")
            seen.append(len(data))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(30):
            atomic_write(target, versions[i % 3])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert len(seen) > 20 and len(set(seen)) > 1  # the readers really overlapped the writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.rss"]  # no temporary file left
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "all.atom"
    atomic_write(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write(target, b"new and longer")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["all.atom"]


def test_publishing_while_a_reader_polls(
    sessions: sessionmaker[Session], config: Config, hostile: dict[str, Any], now: datetime
) -> None:
    publish_feeds(sessions, config, now)
    path = config.public_dir / "feeds" / "all.rss"
    stop = threading.Event()
    reads: list[bool] = []

    def reader() -> None:
        while not stop.is_set():
            root = ET.fromstring(path.read_bytes())
            reads.append(len(root.findall("channel/item")) == 16)
            time.sleep(0.002)  # leave the publisher the GIL most of the time

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(3):
            publish_feeds(sessions, config, now + timedelta(minutes=i), force=True)
    finally:
        stop.set()
        thread.join()
    assert reads and all(reads)


def test_unsafe_links_fall_back_to_the_story_page(config: Config) -> None:
    item = _random_item(random.Random(1), 7, T0)
    spec = FeedSpec("all", "专栏·全部文章", "all", None)
    for link in ("javascript:alert(1)", " data:text/html,x", "https://a.example/x y", "", "//mp.weixin.qq.com/s/x"):
        doc = json.loads(build_feed_documents(spec, [replace(item, link=link)], config, T0)["json"])
        assert doc["items"][0]["url"] == f"{BASE_URL}/story/{item.guid}", link
    good = "https://mp.weixin.qq.com/s?__biz=MzA&mid=7&idx=1"
    doc = json.loads(build_feed_documents(spec, [replace(item, link=good)], config, T0)["json"])
    assert doc["items"][0]["url"] == good
