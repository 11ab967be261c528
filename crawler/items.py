"""Items the spiders emit: plain dataclasses, the only contract between crawler and pipeline.

`ArticleItem` is one fetched article page (or a classified state page for an article we
know). `ProblemItem` is a failure of a source, recorded as data. `ListPageItem` carries the
HTTP validators of a list page so the next cycle can make a conditional request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Article page states. Only STATE_OK pages carry content worth storing as a story.
STATE_OK = "ok"
STATE_DELETED = "deleted"  # deleted by the author
STATE_VIOLATION = "violation"  # removed for a policy violation
STATE_UNAVAILABLE = "unavailable"  # temporarily unavailable
STATE_EXPIRED = "expired"  # expired temporary link
STATE_VERIFY = "verification"  # verification / 环境异常 / captcha: never content
STATE_BLOCKED = "blocked"  # JS-challenge anti-crawl (瑞数 412, 加速乐 521)
STATE_ERROR = "error"  # unreadable page

GONE_STATES = frozenset({STATE_DELETED, STATE_VIOLATION})


@dataclass
class ArticleItem:
    """One article page as read by a spider; datetimes are tz-aware."""

    source_key: str
    source_kind: str  # "wechat_album" | "site_column"
    url: str  # the URL fetched (after redirects)
    canonical_key: str  # identity of this appearance: "wx:<biz>:<mid>:<idx>" or canonical URL
    fetched_at: datetime
    state: str = STATE_OK
    title: str = ""
    author: str | None = None  # person's name if known
    byline: str | None = None  # raw byline line, e.g. "市科学技术局党组书记、局长 叶其炎"
    source_label: str | None = None  # the page's 来源 / ContentSource (a unit, not an author)
    account_name: str | None = None  # WeChat account (公众号) name
    account_id: str | None = None  # WeChat gh_… id
    published_at: datetime | None = None
    summary: str | None = None
    cover_url: str | None = None
    original_url: str | None = None  # 原文链接
    body_html: str = ""
    body_text: str = ""
    image_urls: list[str] = field(default_factory=list)
    column: str | None = None  # the column this appearance belongs to, if the source says so
    in_column: bool = True  # False for articles the source lists that are not column members
    http_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes = b""
    encoding: str = "utf-8"
    etag: str | None = None
    last_modified: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProblemItem:
    """A failure met while crawling a source: recorded on the source's run, never stored as content."""

    source_key: str
    url: str
    kind: str  # "http" | "timeout" | "blocked" | "verification" | "parse" | "too_large" | "encoding" | ...
    reason: str  # plain words for the health view
    http_status: int | None = None
    fatal: bool = False  # True when the source could not be crawled at all


@dataclass
class ListPageItem:
    """HTTP validators of a list page, stored so the next cycle can send a conditional GET."""

    source_key: str
    url: str
    etag: str | None
    last_modified: str | None
    fetched_at: datetime
    new_links: int = 0
