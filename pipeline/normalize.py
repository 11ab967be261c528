"""First item stage: an `ArticleItem` becomes a `Record` with safe HTML, normalized text and its hash.

Owns HTML sanitizing (nh3 allow-list), text normalization and the content hash. Pure functions
plus a thin Scrapy pipeline; no database, no network. Garbage never goes further: an OK page
without a title or text is rejected (`RejectedItem`, a `DropItem` that carries the problem so the
store records it on the source's run), and a verification / anti-crawl page that reached us as
an article becomes a `ProblemItem`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any
from urllib.parse import urljoin

import lxml.html  # type: ignore[import-untyped]
import nh3
from lxml import etree
from scrapy.exceptions import DropItem

from crawler.items import STATE_BLOCKED, STATE_OK, STATE_VERIFY, ArticleItem, ProblemItem
from pipeline.record import Record

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "section", "div", "span", "strong", "em", "b", "i", "u",
        "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
        "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "colgroup", "col",
        "img", "a",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "img": {"src", "alt", "width", "height"},
    "a": {"href", "title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
# Whole elements (tag and content) removed; everything else outside the allow-list keeps its text.
REMOVED_WITH_CONTENT = frozenset({"script", "style", "template", "noscript", "textarea", "select", "title"})
# No javascript:, data: or vbscript: URLs; relative URLs are made absolute before cleaning.
URL_SCHEMES = frozenset({"http", "https", "mailto"})

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad"))
_SPACES = re.compile(r"\s+")
# Unicode category Cc (controls) is exactly U+0000–U+001F and U+007F–U+009F; a tab is kept.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_BLOCK_END = re.compile(r"(?i)<br\s*/?>|</(?:p|div|section|h[1-6]|li|tr|blockquote|table|ul|ol|caption)\s*>")
_LAZY_SRC_ATTRIBUTES = ("data-src", "data-original", "data-lazy-src")
_IMG_OR_LINK = re.compile(r"(?i)<(?:img|a)\b")


class RejectedItem(DropItem):
    """An item dropped because it is not worth storing; `problem` is what the store records about it."""

    def __init__(self, reason: str, problem: ProblemItem) -> None:
        super().__init__(reason)
        self.problem = problem


# --- pure helpers ---------------------------------------------------------------------


def _promote_lazy_images(fragment: str, base_url: str) -> str:
    """WeChat and many CMSes lazy-load images (`data-src`, a data: placeholder in `src`):
    make the real URL the `src` and make image and link URLs absolute, so feeds show images."""
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return fragment
    for img in root.iter("img"):
        src = (img.get("src") or "").strip()
        if not src or src.startswith("data:"):
            for attr in _LAZY_SRC_ATTRIBUTES:
                lazy = (img.get(attr) or "").strip()
                if lazy:
                    src = lazy
                    break
        if src and not src.startswith("data:"):
            img.set("src", urljoin(base_url, src) if base_url else src)
    for link in root.iter("a"):
        href = (link.get("href") or "").strip()
        if href and base_url and not href.startswith(("#", "javascript:", "mailto:")):
            link.set("href", urljoin(base_url, href))
    inner = [root.text or ""]
    inner.extend(lxml.html.tostring(child, encoding="unicode") for child in root)
    return "".join(inner)


def sanitize_html(fragment: str, base_url: str = "") -> str:
    """Safe HTML for feeds and pages: the allow-listed tags and attributes, no scripts, no event
    handlers, no javascript:/data: URLs; images kept (lazy `data-src` promoted, URLs absolute)."""
    if not fragment.strip():
        return ""
    # Without an image or a link there is nothing to promote or make absolute (and no need to parse).
    prepared = _promote_lazy_images(fragment, base_url) if _IMG_OR_LINK.search(fragment) else fragment
    return nh3.clean(
        prepared,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(REMOVED_WITH_CONTENT),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
    ).strip()


def normalize_line(line: str) -> str:
    """One line: no zero-width or control characters, runs of whitespace as one space, trimmed."""
    line = _CONTROLS.sub("", line.translate(_ZERO_WIDTH))
    return _SPACES.sub(" ", line).strip()


def normalize_text(text: str) -> str:
    """What hashes, shingles and search see: NFKC, one line per paragraph, whitespace collapsed
    within lines, no empty lines, zero-width and control characters removed."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    lines = (normalize_line(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def clean_title(title: str) -> str:
    """A title for display: zero-width and control characters removed, whitespace collapsed (not NFKC:
    full-width punctuation is what the author wrote)."""
    return normalize_line(title.replace("\n", " "))


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, one line per block element (used when the spider gave no text)."""
    if not fragment.strip():
        return ""
    marked = _BLOCK_END.sub(lambda m: m.group(0) + "\n", fragment)
    try:
        root = lxml.html.fragment_fromstring(marked, create_parent="div")
    except (etree.ParserError, ValueError):
        return ""
    return str(root.text_content())


def content_hash(text: str) -> str:
    """sha256 hex of the normalized text without any whitespace (so re-wrapping does not change it)."""
    return hashlib.sha256(_SPACES.sub("", text).encode("utf-8")).hexdigest()


def normalize_item(item: ArticleItem) -> Record:
    """The Record of an article item. Non-OK states carry no content (empty text and hash)."""
    title = clean_title(item.title)
    if item.state != STATE_OK:
        return Record(item=item, title=title, body_html="", body_text="", content_hash="")
    body_html = sanitize_html(item.body_html, item.url)
    body_text = normalize_text(item.body_text or html_to_text(body_html))
    return Record(
        item=item, title=title, body_html=body_html, body_text=body_text, content_hash=content_hash(body_text)
    )


def rejection(item: ArticleItem, record: Record) -> str | None:
    """Why an OK record must not be stored, or None when it is fine."""
    if item.state != STATE_OK:
        return None
    if not record.title:
        return "page has no title"
    if not record.body_text:
        return "page has no article text"
    return None


def problem_for_state_page(item: ArticleItem) -> ProblemItem:
    """A verification / anti-crawl page is a problem of the source, never content."""
    reason = {
        STATE_VERIFY: "the site asked for a verification (环境异常 / captcha) instead of the article",
        STATE_BLOCKED: "the site answered with a JS anti-crawl challenge",
    }.get(item.state, f"page state {item.state}")
    return ProblemItem(
        source_key=item.source_key, url=item.url, kind=item.state, reason=reason, http_status=item.http_status
    )


# --- Scrapy shell -----------------------------------------------------------------------


class NormalizePipeline:
    """ArticleItem → Record; other items pass through untouched."""

    def process_item(self, item: Any, spider: Any = None) -> Any:
        if not isinstance(item, ArticleItem):
            return item
        if item.state in (STATE_VERIFY, STATE_BLOCKED):
            return problem_for_state_page(item)
        record = normalize_item(item)
        reason = rejection(item, record)
        if reason is not None:
            problem = ProblemItem(
                source_key=item.source_key, url=item.url, kind="parse", reason=reason, http_status=item.http_status
            )
            raise RejectedItem(f"{reason}: {item.url}", problem)
        return record
