"""The normalize stage: an `ArticleItem` becomes a `Record` with safe HTML, normalized text and its hash.

Owns HTML sanitizing (nh3 allow-list), text normalization, the content hash and `normalize`, the
stage itself. Pure functions; no database, no network, no Scrapy. Garbage never goes further: an
OK page without a title or text is rejected (`Rejected`, carrying the problem its source's run
records), and a verification / anti-crawl page that reached us as an article becomes a
`ProblemItem`.

The stored text keeps the page's own characters (DESIGN.md, Text fidelity): normalizing cleans
layout and invisible characters but never folds full-width punctuation, letters or spaces. The
content hash folds (`pipeline.corpus.textsplit.fold_for_matching`), so equal pages hash equal whatever
their character widths, and it is the same hash as before stored text stopped being folded.
`restore_original_characters` puts the page's characters back into text that older versions
stored folded (migration 0004).

A publish time after the page's fetch time (a typo, a scheduled post shown early, a sample dated
"today" at a later hour) is clamped to the fetch time and the printed value kept
(`Record.printed_published_at`), so a wrong date cannot sort a story first in every list and feed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zlib
from bisect import bisect_left
from datetime import datetime, timedelta
from urllib.parse import urljoin

import lxml.html  # type: ignore[import-untyped]
import nh3
from lxml import etree

from crawler.items import STATE_BLOCKED, STATE_OK, STATE_VERIFY, ArticleItem, ProblemItem
from pipeline.corpus.textsplit import fold_for_matching, fold_pieces
from pipeline.record import Page, Prepared, Record

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

_ZERO_WIDTH_CHARS = "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad"
_ZERO_WIDTH = dict.fromkeys(map(ord, _ZERO_WIDTH_CHARS))
_SPACES = re.compile(r"\s+")
# In article text the ideographic space (U+3000) is written on purpose (padded names, spacing in
# bylines) and browsers do not collapse it either: it is kept; other whitespace runs become one space.
_BODY_SPACES = re.compile(r"[^\S\u3000]+")
# Unicode category Cc (controls) is exactly U+0000–U+001F and U+007F–U+009F; a tab is kept.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# What the content hash leaves out: whitespace, zero-width and control characters (all of them, so
# re-wrapping or invisible characters do not change it).
_HASH_IGNORED = re.compile(rf"[\s\x00-\x1f\x7f-\x9f{_ZERO_WIDTH_CHARS}]+")
_BLOCK_END = re.compile(r"(?i)<br\s*/?>|</(?:p|div|section|h[1-6]|li|tr|blockquote|table|ul|ol|caption)\s*>")
_LAZY_SRC_ATTRIBUTES = ("data-src", "data-original", "data-lazy-src")
_IMG_OR_LINK = re.compile(r"(?i)<(?:img|a)\b")


# A publish time this far after the fetch is our clock and the site's disagreeing, not a wrong date:
# it is kept as printed (servers and PCs drift by seconds to a few minutes). Beyond this, the date
# is clamped to the fetch time and flagged.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)


class Rejected(Exception):
    """A page not worth storing (no title, no text); `problem` is what its source's run records."""

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


def normalize_line(line: str, *, keep_ideographic_spaces: bool = False) -> str:
    """One line: no zero-width or control characters, runs of whitespace as one space, trimmed.
    With `keep_ideographic_spaces` (article text) full-width spaces inside the line stay as written."""
    line = _CONTROLS.sub("", line.translate(_ZERO_WIDTH))
    return (_BODY_SPACES if keep_ideographic_spaces else _SPACES).sub(" ", line).strip()


def normalize_text(text: str) -> str:
    """What is stored and shown: the page's own characters (not folded: full-width ，：（）and spaces
    stay), one line per paragraph, whitespace collapsed within lines (full-width spaces kept), no
    empty lines, zero-width and control characters removed. Matching folds it for itself."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    lines = (normalize_line(line, keep_ideographic_spaces=True) for line in text.split("\n"))
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
    """sha256 hex of the folded text (`fold_for_matching`: NFKC) without any whitespace, zero-width or
    control characters, so re-wrapping, invisible characters and character widths do not change it.

    Of a page's text as extracted, this is exactly the hash earlier versions stored (they hashed
    their NFKC-folded normalized text without whitespace), so new crawls still find those stories.
    Of the normalized text it is the same (`normalize_text` removes only what the hash ignores),
    unless removing an invisible character let NFKC compose the two around it (e + U+200B + U+0301)."""
    return hashlib.sha256(_HASH_IGNORED.sub("", fold_for_matching(text)).encode("utf-8")).hexdigest()


# --- putting the page's characters back into text stored folded (migration 0004) --------------

# The old normalize_text folded first and collapsed whitespace after: a run of spaces inside a line,
# full-width ones included, became one ASCII space.
_LINE_SPACES = re.compile(r"[^\S\n]+")
# Characters that must agree to pick the walk up again after the texts diverged: a few just after a
# small difference; more after a jump, so that a phrase the article repeats is not taken for the place.
_NEAR_ANCHOR = 4
_FAR_ANCHOR = 16
_NEAR = 3  # characters changed, missing or added that are tried before looking further
_MAX_MISSES = 64  # characters in a row that agree with nothing before the rest is kept as stored


class _Folded:
    """`original` as the old normalize_text would have stored it, and where each changed piece went.

    `text` is the folded original; `pieces` are (start in `text`, end in `text`, original piece) of
    the pieces whose fold differs from them, ascending; everywhere else `text` equals `original`."""

    def __init__(self, original: str) -> None:
        changed: list[tuple[int, int, str]] = []
        for match in _LINE_SPACES.finditer(original):
            if match.group(0) != " ":
                changed.append((match.start(), match.end(), " "))
        runs = [(start, end) for start, end, _ in changed]
        for start, end, folded in fold_pieces(original):
            if not _inside(runs, start):  # a full-width space is part of its whitespace run
                changed.append((start, end, folded))
        changed.sort()
        parts: list[str] = []
        self.pieces: list[tuple[int, int, str]] = []
        pos = length = 0
        for start, end, folded in changed:
            parts.append(original[pos:start])
            length += start - pos
            parts.append(folded)
            self.pieces.append((length, length + len(folded), original[start:end]))
            length += len(folded)
            pos = end
        parts.append(original[pos:])
        self.text = "".join(parts)
        self.piece_starts = [start for start, _, _ in self.pieces]


def _inside(spans: list[tuple[int, int]], position: int) -> bool:
    index = bisect_left(spans, (position + 1,)) - 1
    return index >= 0 and spans[index][0] <= position < spans[index][1]


def _common_length(a: str, i: int, b: str, j: int) -> int:
    """Length of the longest common prefix of a[i:] and b[j:] (slice comparisons, not a loop per character)."""
    low, high = 0, min(len(a) - i, len(b) - j)
    while low < high:
        middle = (low + high + 1) // 2
        if a[i : i + middle] == b[j : j + middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _restore_span(stored: str, i: int, folded: _Folded, p: int, length: int) -> str:
    """stored[i:i+length], equal to folded.text[p:p+length], with the original of every changed piece
    that lies wholly inside the span."""
    out: list[str] = []
    cursor = p
    k = bisect_left(folded.piece_starts, p)
    while k < len(folded.pieces) and folded.pieces[k][1] <= p + length:
        start, end, original = folded.pieces[k]
        out.append(stored[i + cursor - p : i + start - p])
        out.append(original)
        cursor = end
        k += 1
    out.append(stored[i + cursor - p : i + length])
    return "".join(out)


def _only_place(text: str, anchor: str, start: int) -> int:
    """Where `anchor` occurs in text[start:], if it occurs there once; else -1 (a passage the text
    repeats says nothing about where the walk is)."""
    found = text.find(anchor, start)
    if found >= 0 and text.find(anchor, found + 1) >= 0:
        return -1
    return found


def _resync(stored: str, i: int, folded: str, p: int) -> tuple[int, int] | None:
    """The nearest (i', p') from which both texts go on alike for a few characters: after a few
    characters that differ, or a passage only the stored text has (i' > i) or only the original has
    (p' > p); None when there is none. Small differences are tried first: a phrase that comes again
    later (the column's name) must not pull the walk past the text in between."""
    for step in range(1, _NEAR + 1):
        for di, dp in ((step, step), (step, 0), (0, step)):
            ahead = stored[i + di : i + di + _NEAR_ANCHOR]
            if ahead and ahead == folded[p + dp : p + dp + _NEAR_ANCHOR]:
                return i + di, p + dp
    in_folded = _only_place(folded, stored[i : i + _FAR_ANCHOR], p)
    in_stored = _only_place(stored, folded[p : p + _FAR_ANCHOR], i)
    if in_folded < 0 and in_stored < 0:
        return None
    if in_stored < 0 or (in_folded >= 0 and in_folded - p <= in_stored - i):
        return i, in_folded
    return in_stored, p


def _squashed(text: str) -> str:
    return _LINE_SPACES.sub(" ", fold_for_matching(text))


def restore_original_characters(stored: str, original: str) -> str:
    """`stored`, text an older `normalize_text` folded with NFKC (full-width ，：（） and spaces made
    ASCII), with the page's own characters put back from `original`: the same page's text as
    `normalize_text` makes it now (for instance from the stored HTML).

    The two are walked together: where a piece of the original folds to exactly the stored
    characters in its place, the piece goes back; where the texts differ (a line only one of them
    has, other line breaks, an edit) the stored text stays as it is. The result never loses or adds
    anything: it folds to what `stored` folds to and keeps its lines; `stored` comes back unchanged
    when that would not hold."""
    if not stored or not original or stored == original:
        return stored
    folded = _Folded(original)
    text = folded.text
    out: list[str] = []
    i = p = misses = 0
    while i < len(stored) and p < len(text):
        same = _common_length(stored, i, text, p)
        if same:
            out.append(_restore_span(stored, i, folded, p, same))
            i, p, misses = i + same, p + same, 0
        elif stored[i].isspace():  # the stored text breaks or spaces here, the original does not
            out.append(stored[i])
            i += 1
        elif text[p].isspace():
            p += 1
        elif misses < _MAX_MISSES and (found := _resync(stored, i, text, p)) is not None:
            out.append(stored[i : found[0]])
            i, p = found
            misses += 1
        elif misses < _MAX_MISSES:  # one character differs in both (an edit): keep the stored one
            out.append(stored[i])
            i, p, misses = i + 1, p + 1, misses + 1
        else:
            break
    out.append(stored[i:])
    restored = "".join(out)
    if restored.count("\n") != stored.count("\n") or _squashed(restored) != _squashed(stored):
        return stored
    return restored


def stored_html_text(body_html: str) -> str:
    """The text of a stored article's sanitized HTML as `normalize_text` makes it."""
    return normalize_text(html_to_text(body_html))


def snapshot_text(content: bytes, encoding: str) -> str:
    """The visible text of a stored snapshot (zlib-compressed page bytes), as `normalize_text` makes
    it; empty when the bytes cannot be read."""
    try:
        raw = zlib.decompress(content)
    except zlib.error:
        return ""
    try:
        page = raw.decode(encoding or "utf-8", errors="replace")
    except LookupError:
        page = raw.decode("utf-8", errors="replace")
    return stored_html_text(sanitize_html(page))


def plausible_published(published: datetime | None, fetched: datetime) -> tuple[datetime | None, bool]:
    """(the publish time to store, whether it was clamped): a time more than `CLOCK_SKEW_TOLERANCE`
    after `fetched` becomes `fetched` (a page cannot have been published after we read it).
    ValueError for a naive datetime: "ahead" means nothing without a time zone."""
    if fetched.tzinfo is None or fetched.utcoffset() is None:
        raise ValueError(f"the fetch time {fetched.isoformat()} has no time zone")
    if published is None:
        return None, False
    if published.tzinfo is None or published.utcoffset() is None:
        raise ValueError(f"the publish time {published.isoformat()} has no time zone")
    if published - fetched > CLOCK_SKEW_TOLERANCE:
        return fetched, True
    return published, False


def normalize_item(item: ArticleItem) -> Record:
    """The Record of an article item. Non-OK states carry no content (empty text and hash).
    A publish time after the fetch is clamped to it (`plausible_published`), the printed value kept."""
    title = clean_title(item.title)
    if item.state != STATE_OK:
        return Record(item=item, title=title, body_html="", body_text="", content_hash="")
    published, clamped = plausible_published(item.published_at, item.fetched_at)
    printed = item.published_at if clamped else None
    if clamped:
        item = dataclasses.replace(item, published_at=published)
    body_html = sanitize_html(item.body_html, item.url)
    text = item.body_text or html_to_text(body_html)
    # Hashed as extracted: folding first and cleaning after is how the stored hashes were made.
    return Record(
        item=item,
        title=title,
        body_html=body_html,
        body_text=normalize_text(text),
        content_hash=content_hash(text),
        printed_published_at=printed,
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


# --- the stage -------------------------------------------------------------------------


def normalize(page: Page | Prepared) -> Prepared:
    """The normalize stage: an article page becomes a `Record`; a verification or anti-crawl page
    becomes the `ProblemItem` of its source; a record, a problem or a list page passes as it is.
    Raises `Rejected` for an article not worth storing."""
    if not isinstance(page, ArticleItem):
        return page
    if page.state in (STATE_VERIFY, STATE_BLOCKED):
        return problem_for_state_page(page)
    record = normalize_item(page)
    reason = rejection(page, record)
    if reason is not None:
        problem = ProblemItem(
            source_key=page.source_key, url=page.url, kind="parse", reason=reason, http_status=page.http_status
        )
        raise Rejected(f"{reason}: {page.url}", problem)
    return record
