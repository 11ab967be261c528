"""WeChat pages of the saved corpus checked against the parsers in `crawler.parsing.wechat`.

For every article page, the parsed title, account and publish time must equal what the page
itself holds (read here by an independent, deliberately simple reader of the page's own
variables); every state page must be classified as its file name says; album pages must list
their items. Reads the corpus folder; the corpus is evaluation data, never committed here.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from crawler.items import (
    STATE_DELETED,
    STATE_EXPIRED,
    STATE_OK,
    STATE_UNAVAILABLE,
    STATE_VERIFY,
    STATE_VIOLATION,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")

# The state each saved state page must be classified as, by a word in its file name.
STATE_BY_NAME = {
    "deleted": STATE_DELETED,
    "violation": STATE_VIOLATION,
    "unavailable": STATE_UNAVAILABLE,
    "expired": STATE_EXPIRED,
    "captcha": STATE_VERIFY,
    "antispider": STATE_VERIFY,
    "verify": STATE_VERIFY,
}


@dataclass
class Row:
    page: str
    check: str
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got


def _first(patterns: list[str], text: str) -> str | None:
    for pattern in patterns:
        m = re.search(pattern, text, re.S)
        if m and m.group(1).strip():
            return m.group(1).strip()
    return None


def page_truth(text: str) -> dict[str, str | None]:
    """What the page itself says, read from its own variables (independent of the parser)."""
    title = _first(
        [
            r'<meta property="og:title" content="([^"]*)"',
            r"var msg_title = '([^']*)'",
            r'var msg_title = "([^"]*)"',
            r"title: JsDecode\('([^']*)'\)",
        ],
        text,
    )
    account = _first(
        [
            r'var nickname = htmlDecode\("([^"]*)"\)',
            r"nick_name: JsDecode\('([^']*)'\)",
            r'id="post-user"[^>]*>([^<]+)<',
        ],
        text,
    )
    epoch = _first([r'var ct = "(\d+)"', r"ori_create_time: '(\d+)'", r"var create_time = \"(\d+)\""], text)
    day = _first([r'var publish_time = "(\d{4}-\d{2}-\d{2})"'], text)
    when: str | None = None
    if epoch:
        when = datetime.fromtimestamp(int(epoch), UTC).astimezone(SHANGHAI).isoformat()
    elif day:
        when = day
    return {
        "title": html.unescape(html.unescape(title)) if title else None,
        "account": html.unescape(account) if account else None,
        "published_at": when,
    }


def eval_wechat(directory: Path) -> list[Row]:
    from crawler.parsing.wechat import classify_page, parse_album_html, parse_album_json, parse_article

    rows: list[Row] = []
    for path in sorted(directory.glob("*")):
        if path.suffix not in {".html", ".json"}:
            continue
        body = path.read_bytes()
        name = path.name
        if name.startswith("album_json"):
            page = parse_album_json(body)
            expected = len(json.loads(body)["getalbum_resp"].get("article_list") or [])
            rows.append(Row(name, "album items", str(expected), str(len(page.items))))
            continue
        if name.startswith("album_"):
            page = parse_album_html(body)
            expected = len(re.findall(rb'class="album__list-item[^"]*js_album_item', body))
            rows.append(Row(name, "album items", str(expected), str(len(page.items))))
            continue
        text = body.decode("utf-8", errors="replace")
        wanted = next((state for word, state in STATE_BY_NAME.items() if word in name), STATE_OK)
        got_state = classify_page(body, "https://mp.weixin.qq.com/s?" + name)
        rows.append(Row(name, "state", wanted, got_state))
        if wanted != STATE_OK or got_state != STATE_OK:
            continue
        truth = page_truth(text)
        article = parse_article(body, "https://mp.weixin.qq.com/s?" + name)
        got_when = article.published_at.astimezone(SHANGHAI).isoformat() if article.published_at else ""
        if truth["published_at"] and len(truth["published_at"]) == 10:
            got_when = got_when[:10]
        rows.append(Row(name, "title", truth["title"] or "", article.title))
        rows.append(Row(name, "account", truth["account"] or "", article.account_name or ""))
        rows.append(Row(name, "published_at", truth["published_at"] or "", got_when))
    return rows


def print_rows(rows: list[Row]) -> None:
    width = max((len(r.page) for r in rows), default=10)
    for r in rows:
        mark = "ok  " if r.ok else "FAIL"
        detail = r.got if r.ok else f"expected {r.expected!r}, got {r.got!r}"
        print(f"{mark} {r.page:{width}}  {r.check:13} {detail[:90]}")
