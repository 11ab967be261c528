"""Feed documents from plain data: RSS 2.0 and Atom 1.0 (feedgen) and JSON Feed 1.1 (json).

Pure: no database, no files, no clock (the caller passes `now`). Owns the feed item's
identity (`urn:zhuanlan:article:<guid>`, never derived from a URL, so it survives new
appearances and rebuilds), the build-time defence (re-sanitising bodies with nh3, removing
XML-illegal and control characters, plain-text fields that stay inert when a reader renders
them as HTML, http(s)-only links), the WeChat image rewrite and the content hash that decides
whether a feed must be rewritten. Must not query the database or write files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from html import escape
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import nh3
from feedgen.feed import FeedGenerator

if TYPE_CHECKING:
    from zhuanlan_config import Config

# Bump when the rendered output changes for the same data, so every feed is rewritten once.
FORMAT_VERSION = "5"  # 5: each entry's own updated time; 4: readable feed URLs in the self links
FEED_EXTENSIONS = ("rss", "atom", "json")
SUMMARY_CHARS = 120
WECHAT_IMAGE_HOSTS = frozenset({"mmbiz.qpic.cn", "mmbiz.qlogo.cn"})
CATEGORY_SCHEME = "urn:zhuanlan:"  # + unit | column | topic
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"

# XML 1.0 allows only TAB, LF, CR below 0x20; surrogates and U+FFFE/U+FFFF are never allowed.
# DEL and the C1 controls are allowed but are never text anyone meant to write: removed too.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# What would open a tag, comment or declaration if a reader took the text for HTML.
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
# Whitespace runs of a summary become one space; a full-width space is the author's text (kept).
_WHITESPACE = re.compile(r"[^\S\u3000]+")
# An <img> start tag; quoted attribute values may contain ">".
_IMG_TAG = re.compile(r"""<img\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
# WeChat pages lazy-load their images from data-src; sections carry its paragraphs' structure.
_ALLOWED_TAGS = nh3.ALLOWED_TAGS | {"section"}


@dataclass(frozen=True)
class FeedSpec:
    """One feed to publish.

    `key` is the feed's identity (`all`, `unit-3`, `column-<hash>`, ...): its FeedState row, its
    Atom id and the file name earlier releases published, which now redirects. `slug` names
    its URL (`feeds.slugs`): the files are `<kind>/<slug>.<ext>`, or `all.<ext>`."""

    key: str
    title: str
    kind: str  # all | column | unit | topic
    filter: str | int | None  # column name, unit id, topic name; None for "all"
    slug: str = ""
    name: str = ""  # what a reader calls it: the unit's, column's or topic's name; "" for "all"

    @property
    def path(self) -> str:
        """The feed's URL path under /feeds/ and file path under <public_dir>/feeds/, no extension."""
        if self.kind == "all" or not self.slug:
            return self.key
        return f"{self.kind}/{self.slug}"


@dataclass(frozen=True)
class FeedItem:
    """One story as a feed shows it (plain data, produced by `feeds.selection`)."""

    guid: str  # Article.guid
    title: str
    link: str  # URL of the first-published appearance
    published: datetime  # tz-aware
    author: str | None
    unit: str | None
    categories: tuple[tuple[str, str], ...]  # (kind, name): kind is unit | column | topic
    text: str  # plain text, for the summary
    body_html: str  # the stored (already sanitized) HTML
    content_hash: str  # Article.content_hash
    updated: datetime | None = None  # the story's last change (`entry_updated`); None: `published`

    @property
    def last_change(self) -> datetime:
        return self.updated or self.published


def entry_updated(published: datetime, created_at: datetime, updated_at: datetime) -> datetime:
    """An entry's Atom `updated`: when the story last changed in what the entry shows. A story
    unchanged since it was stored has its publish time (a backfill stores many at once: they must
    not all claim the crawl's time); an edit, a correction, a retag or a new 首发 after that
    (`Article.updated_at` moved past `created_at`) is the later of the two."""
    if updated_at > created_at:
        return max(published, updated_at)
    return published


def clean_xml_text(value: str) -> str:
    """`value` without the characters XML 1.0 cannot carry (lxml refuses them outright)
    and without DEL / C1 control characters."""
    return _XML_ILLEGAL.sub("", value)


def plain_text(value: str) -> str:
    """A plain-text field (title, name, category, summary) that is inert under either reading.

    Readers disagree on whether RSS <title> and <description> are text or HTML (feedparser
    guesses from the content), so a `<` that would open a tag becomes the fullwidth `＜`:
    read as HTML the value then has no element, no event handler and no link. Chinese text
    does not use ASCII angle brackets as punctuation, so nothing a person wrote is lost.
    """
    return _TAG_OPEN.sub("＜", clean_xml_text(value))


def safe_link(url: str, fallback: str) -> str:
    """`url` when it is an http(s) URL, else `fallback` (no javascript: or data: links)."""
    url = clean_xml_text(url).strip()
    if url.lower().startswith(("http://", "https://")) and not any(ch.isspace() for ch in url):
        return url
    return fallback


def feed_key(kind: str, value: str | int | None = None) -> str:
    """The file-safe, stable key of a feed: `all`, `unit-<id>`, `column-<h>`, `topic-<h>`.

    Column and topic names are Chinese; a short hash of the name keeps file names and URLs
    ASCII and stays the same across rebuilds and databases (Tag ids would not).
    """
    if kind == "all":
        return "all"
    if kind == "unit":
        return f"unit-{int(value or 0)}"
    if kind in ("column", "topic"):
        digest = hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:12]
        return f"{kind}-{digest}"
    raise ValueError(f"unknown feed kind {kind!r}")


def feed_url(base_url: str, path: str, ext: str) -> str:
    """The public URL of a feed file; `path` is `FeedSpec.path`."""
    return f"{base_url}/feeds/{path}.{ext}"


def item_id(guid: str) -> str:
    return f"urn:zhuanlan:article:{guid}"


def item_link(item: FeedItem, base_url: str) -> str:
    """The item's link: its first-published appearance, or the archive's page of the story."""
    return safe_link(item.link, f"{base_url}/story/{quote(item.guid, safe='')}")


def _title(item: FeedItem) -> str:
    return plain_text(item.title).strip() or "（无标题）"


def _summary(item: FeedItem) -> str:
    """Never empty: with an empty summary feedgen would put the HTML body in RSS <description>."""
    return plain_text(make_summary(item.text)) or _title(item)


def _byline(item: FeedItem) -> str:
    """The item's author, or its unit when no person is named; empty when neither is usable."""
    return plain_text(item.author or "").strip() or plain_text(item.unit or "").strip()


def make_summary(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The first `limit` characters of `text` with whitespace collapsed, '…' when cut."""
    flat = _WHITESPACE.sub(" ", clean_xml_text(text)).strip()
    return flat if len(flat) <= limit else flat[:limit].rstrip() + "…"


def _proxied(src: str, base_url: str) -> str | None:
    url = "https:" + src if src.startswith("//") else src
    host = (urlsplit(url).hostname or "").lower()
    if host not in WECHAT_IMAGE_HOSTS:
        return None
    return f"{base_url}/img?u={quote(url, safe='')}"


class _StartTag(HTMLParser):
    """Reads the attributes of one start tag (values unescaped, as the browser would see them)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs = attrs

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs = attrs


def _rewrite_img_tag(match: re.Match[str], base_url: str) -> str:
    parser = _StartTag()
    parser.feed(match.group(0))
    parser.close()
    attrs = dict(parser.attrs)
    src = (attrs.get("src") or "").strip()
    lazy = (attrs.get("data-src") or "").strip()
    if (not src or src.startswith("data:")) and lazy:
        src = lazy  # WeChat lazy-loads: the real URL is in data-src, src is a placeholder
    proxied = _proxied(src, base_url) if src else None
    if proxied is None and src == (attrs.get("src") or "").strip():
        return match.group(0)  # nothing to change: keep the tag byte for byte
    attrs["src"] = proxied or src
    attrs.pop("data-src", None)
    rendered = "".join(f' {name}="{escape(value or "", quote=True)}"' for name, value in attrs.items())
    return f"<img{rendered}>"


def rewrite_images(html: str, base_url: str) -> str:
    """Point WeChat images at the web app's proxy: mmbiz.qpic.cn refuses hot-linked requests.

    `src` on hosts mmbiz.qpic.cn / mmbiz.qlogo.cn becomes `<base_url>/img?u=<urlencoded URL>`;
    a lazy `data-src` is promoted when `src` is missing or a data: placeholder. Other images
    and everything outside <img> tags are left exactly as they were.
    """
    if "<img" not in html.lower():
        return html
    return _IMG_TAG.sub(lambda m: _rewrite_img_tag(m, base_url), html)


def sanitize_body(html: str, base_url: str) -> str:
    """Build-time defence in depth: rewrite images, then sanitize again with nh3."""
    return clean_xml_text(nh3.clean(rewrite_images(clean_xml_text(html), base_url), tags=_ALLOWED_TAGS))


def feed_hash(spec: FeedSpec, items: list[FeedItem], base_url: str) -> str:
    """What a feed's output depends on; equal hashes mean the written files need no rewrite."""
    payload: list[Any] = [FORMAT_VERSION, base_url, spec.key, spec.path, spec.title]
    for it in items:
        payload.append(
            [
                it.guid,
                it.content_hash,
                it.title,
                it.link,
                it.published.isoformat(),
                it.last_change.isoformat(),
                it.author,
                it.unit,
                [list(c) for c in it.categories],
                hashlib.sha256(it.body_html.encode("utf-8", "surrogatepass")).hexdigest(),
            ]
        )
    # ensure_ascii: a lone surrogate (which the build removes) must not make hashing fail.
    return hashlib.sha256(json.dumps(payload).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class _Rendered:
    """An item's fields as every format writes them: cleaned, inert, sanitized, in local time."""

    id: str
    title: str
    link: str
    published: datetime
    updated: datetime
    byline: str
    categories: tuple[tuple[str, str], ...]
    summary: str
    content_html: str


# A story shows in several feeds (all, its column, unit and topics) and each feed has three
# formats: render it once. Pure, so caching by value is safe; bounded to a few MB.
@functools.lru_cache(maxsize=1024)
def _render(item: FeedItem, base_url: str, tz: tzinfo) -> _Rendered:
    return _Rendered(
        id=item_id(item.guid),
        title=_title(item),
        link=item_link(item, base_url),
        published=item.published.astimezone(tz),
        updated=item.last_change.astimezone(tz),
        byline=_byline(item),
        categories=tuple((kind, plain_text(term)) for kind, term in item.categories),
        summary=_summary(item),
        content_html=sanitize_body(item.body_html, base_url),
    )


def _generator(spec: FeedSpec, items: list[_Rendered], config: Config, now: datetime, self_url: str) -> FeedGenerator:
    tz = config.tz
    base = config.web.base_url
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)  # RSS <author> needs an email; dc:creator takes a name
    fg.id(f"urn:zhuanlan:feed:{spec.key}")
    fg.title(plain_text(spec.title))
    fg.subtitle(plain_text(f"{spec.title}：文章全文订阅"))
    fg.author({"name": plain_text(config.feeds.title_prefix)})
    fg.link(href=self_url, rel="self")
    fg.link(href=f"{base}/", rel="alternate")  # last: feedgen uses the last link as the RSS <link>
    fg.language("zh-CN")
    fg.updated(now.astimezone(tz))
    for it in items:
        # order="append" plus the caller's newest-first order; feedgen prepends by default.
        fe = fg.add_entry(order="append")
        fe.guid(it.id, permalink=False)  # sets the Atom id too (id() and guid() share it)
        fe.title(it.title)
        fe.link(href=it.link, rel="alternate")
        fe.published(it.published)  # RSS pubDate and Atom published
        fe.updated(it.updated)  # Atom only (RSS items have no updated); unset, feedgen writes the build time
        if it.byline:
            fe.author({"name": it.byline})
            fe.dc.dc_creator(it.byline)
        for kind, term in it.categories:
            # No label: feedgen writes the label, not the term, as the RSS category text.
            fe.category(term=term, scheme=CATEGORY_SCHEME + kind)
        # Both are needed: description alone gives no content:encoded in RSS.
        fe.summary(it.summary)
        fe.content(it.content_html, type="html")
    return fg


def _json_feed(spec: FeedSpec, items: list[_Rendered], config: Config) -> bytes:
    base = config.web.base_url
    doc: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": plain_text(spec.title),
        "home_page_url": f"{base}/",
        "feed_url": feed_url(base, spec.path, "json"),
        "language": "zh-CN",
        "items": [],
    }
    for it in items:
        entry: dict[str, Any] = {
            "id": it.id,
            "url": it.link,
            "title": it.title,
            "content_html": it.content_html,
            "summary": it.summary,
            "date_published": it.published.isoformat(),
            "date_modified": it.updated.isoformat(),
        }
        if it.byline:
            entry["authors"] = [{"name": it.byline}]
        if it.categories:
            entry["tags"] = [term for _, term in it.categories]
        doc["items"].append(entry)
    return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")


def build_feed_documents(spec: FeedSpec, items: list[FeedItem], config: Config, now: datetime) -> dict[str, bytes]:
    """The three documents of one feed, keyed by file extension (`rss`, `atom`, `json`).

    `items` must already be newest first and cut to the feed's length; `now` is the build time
    (the feed-level updated / lastBuildDate) and must be tz-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be tz-aware")
    base = config.web.base_url
    rendered = [_render(it, base, config.tz) for it in items]
    rss = _generator(spec, rendered, config, now, feed_url(base, spec.path, "rss")).rss_str(pretty=True)
    atom = _generator(spec, rendered, config, now, feed_url(base, spec.path, "atom")).atom_str(pretty=True)
    return {"rss": bytes(rss), "atom": bytes(atom), "json": _json_feed(spec, rendered, config)}
