"""When two pages whose bodies match are one story: the rule the deduplicate stage applies after an
exact content-hash match or a confirmed near duplicate (DESIGN.md, Identity and deduplication).

A long body shared word for word is one story whatever the titles say: units retitle the reposts
they run. A *short* shared body is not enough. 公示 and 通知 pages whose substance is an attached
file carry the same two or three sentences under different titles ("现将有关情况予以公示，详见附件"),
and each of them is a document of its own. So a short body merges only with other evidence: titles
that agree once the decorations a repost adds are stripped, the same attached file, one page naming
the other as its origin (原文链接), or a 转载 / 来源 note naming where the other was published. A bare
【转载】 mark says the page is a repost of *something*, not of which notice: alone it proves nothing.

Pure functions over plain data; no database (`pipeline.dedup` reads the rows and calls `same_story`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from urllib.parse import urlsplit

from crawler.parsing.positions import UNIT_ENDINGS, alternation
from pipeline.corpus.textsplit import fold_for_matching
from pipeline.similarity import compact

# A shared body shorter than this (characters of `similarity.compact`: folded, no whitespace or
# punctuation) is "short": it needs more than itself to make two pages one story. The notices that
# merged wrongly are 150-400 characters of formula around an attachment; the column's study articles
# run from about 900 to 3,000. A short news item (简讯, 150-500) or a repost cut to its first half
# falls under the line too: those are matched by their titles, which reposts keep recognisably.
# Wrongly apart, a story shows twice; wrongly merged, a notice vanishes from every feed and count.
SHORT_BODY_CHARS = 600

# A title shorter than this (compact characters) is too generic to prove anything by containment:
# 「通知」 is inside every 「关于…的通知」.
MIN_CONTAINED_TITLE = 6
# Titles this similar (difflib ratio of the normalised titles) are one title edited, when they also
# name the same numbers: 「第一批」 and 「第二批」 make a family of notices, not a repost.
MIN_TITLE_RATIO = 0.9

_ATTACHMENT = re.compile(
    r"""href="([^"]+?\.(?:pdf|docx?|xlsx?|pptx?|wps|et|dps|ofd|zip|rar|7z|csv|txt))(?:[?#][^"]*)?\"""",
    re.IGNORECASE,
)
# A line saying where a page was taken from: 「转自：青川机关党建网」, 「本文转载自…」, 「来源：市民政局」.
_REPOST_NOTE = re.compile(r"^\s*(?:本文)?(?:转载自|转载|转自|来源|信息来源|稿件来源)\s*[:：]?\s*(.+)$")

# Decorations a repost adds to a title (on folded text: full-width forms are ASCII here).
# (Not 「」: a title that opens with a quotation, 「三个务必」的时代内涵, keeps it.)
_BRACKETED_HEAD = re.compile(r"^\s*[【\[〔(][^】\]〕)]{1,20}[】\]〕)]\s*")
_BRACKETED_TAIL = re.compile(r"\s*[【\[〔(][^【\[〔(]{0,20}(?:转载|来源|转自|原创)[^】\]〕)]{0,20}[】\]〕)]\s*$")
_REPOST_HEAD = re.compile(r"^\s*(?:转载|转自|来源)\s*[:：]?\s*")
# A column or campaign name before a bar: 「学习贯彻党的二十届四中全会精神｜…」, 「…丨…」.
_COLUMN_HEAD = re.compile(r"^[^|丨]{1,40}[|丨]\s*")
# A unit before a colon: 「市财政局：…」 (only a name that ends like an organisation's: the byline
# reader's vocabulary).
_UNIT_HEAD = re.compile(rf"^\s*[^\s:,。]{{1,20}}?(?:{alternation(UNIT_ENDINGS)})\s*:\s*")
# A site name after the title: 「…_张掖市财政局」, 「… - 市人民政府门户网站」, 「…|学习强国」.
_SITE_TAIL = re.compile(
    r"\s*(?:_|\s-\s|-{1,2}|—{1,2}|\|)\s*"
    r"[^_|—]{1,24}(?:网|网站|门户|政府|局|委|办|报|公众号|微信|在线|发布|平台|客户端|头条|新闻|学习强国)\s*$"
)
_NUMBERS = re.compile(r"[0-9]+|[〇零一二三四五六七八九十百千两]+")


@dataclass(frozen=True)
class Copy:
    """What the rule reads of one side: the incoming page, or a stored story with all its places."""

    titles: tuple[str, ...]  # a stored story: its title and the title of each appearance
    body_html: str = ""  # sanitized HTML (attachment links)
    body_text: str = ""
    addresses: frozenset[str] = field(default_factory=frozenset)  # URLs and canonical keys it is known at
    cites: frozenset[str] = field(default_factory=frozenset)  # URLs it names as its origin (原文链接)
    names: frozenset[str] = field(default_factory=frozenset)  # who published it: accounts, 来源 labels


def body_chars(text: str) -> int:
    """The length that decides whether a body is short: characters of `similarity.compact`."""
    return len(compact(text))


def title_key(title: str) -> str:
    """A title without what reposts add to it, folded and compact: no 【转载】/〔来源〕 marks, no
    column prefix before ｜ or 丨, no 「单位：」 prefix, no trailing site name, no punctuation,
    spaces or width differences."""
    t = fold_for_matching(title).strip()
    for _ in range(3):  # decorations stack: 「【转载】学习贯彻…｜市财政局：…」
        before = t
        t = _BRACKETED_HEAD.sub("", t)
        t = _REPOST_HEAD.sub("", t)
        t = _BRACKETED_TAIL.sub("", t)
        t = _SITE_TAIL.sub("", t)
        head = _COLUMN_HEAD.sub("", t)
        t = head if compact(head) else t
        head = _UNIT_HEAD.sub("", t)
        t = head if compact(head) else t
        if t == before:
            break
    return compact(t)


def titles_agree(a: str, b: str) -> bool:
    """Whether two titles name one story: equal once normalised (`title_key`), one inside the other
    (not a generic word), or one edited slightly into the other with the same numbers in it."""
    ka, kb = title_key(a), title_key(b)
    if not ka or not kb:
        return False
    if ka == kb:
        return True
    shorter, longer = sorted((ka, kb), key=len)
    if len(shorter) >= MIN_CONTAINED_TITLE and shorter in longer:
        return True
    return _NUMBERS.findall(ka) == _NUMBERS.findall(kb) and SequenceMatcher(None, ka, kb).ratio() >= MIN_TITLE_RATIO


def attachments(body_html: str) -> frozenset[str]:
    """The attached files a page links to (documents and archives, by their URL)."""
    return frozenset(match.group(1) for match in _ATTACHMENT.finditer(body_html))


def repost_notes(body_text: str) -> list[str]:
    """What the 转自 / 转载自 / 来源 lines of a text name as its origin."""
    notes = (_REPOST_NOTE.match(line) for line in body_text.splitlines())
    return [note.group(1).strip() for note in notes if note is not None]


def _origins(copy: Copy) -> set[str]:
    """Who published a copy, as a note would name them: its accounts and 来源 labels, its hosts."""
    hosts = {urlsplit(address).hostname for address in copy.addresses}
    return {fold_for_matching(name) for name in copy.names if len(name) >= 2} | {h for h in hosts if h}


def _names_origin(copy: Copy, other: Copy) -> bool:
    """Whether a 转载 / 来源 note of `copy` names where `other` was published, someone other than
    `copy`'s own publisher (a notice family of one office all end 「来源：市直机关工委」)."""
    origins = _origins(other) - _origins(copy)
    return any(origin in fold_for_matching(note) for note in repost_notes(copy.body_text) for origin in origins)


def same_story(incoming: Copy, stored: Copy, shared_chars: int) -> str | None:
    """Why two pages whose bodies match (`shared_chars`: the shorter body's `body_chars`) are one
    story, or None when they are different documents that share a short body."""
    if shared_chars >= SHORT_BODY_CHARS:
        return "long shared body"
    if any(titles_agree(a, b) for a in incoming.titles for b in stored.titles):
        return "same title"
    if attachments(incoming.body_html) & attachments(stored.body_html):
        return "same attachment"
    if incoming.cites & stored.addresses or stored.cites & incoming.addresses:
        return "names the other as its origin"
    if _names_origin(incoming, stored) or _names_origin(stored, incoming):
        return "转载 note names the other"
    return None
