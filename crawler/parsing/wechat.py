"""WeChat pages (mp.weixin.qq.com) read as plain data: article pages, state pages and albums (合集).

Owns: classifying a fetched page (article / deleted / violation / unavailable / expired /
verification / not an article) BEFORE anything is parsed; reading an article page of any
layout (current type 0, image/text shares of type 8/10 held in `window.cgiDataNew`, the 2018
layout) into a `WechatArticle`; reading the album HTML first screen and the album JSON paging
API into an `AlbumPage`; the URLs the album spider requests; and `extract_wechat` for the
`zhuanlan extract` command.

Must not: fetch anything (image URLs are recorded, never downloaded), read a clock, or import
Scrapy. Article metadata lives in inline JavaScript, read by a small tolerant literal reader
below that never evaluates code.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import lxml.etree  # type: ignore[import-untyped]
import lxml.html  # type: ignore[import-untyped]

from crawler.items import (
    STATE_DELETED,
    STATE_ERROR,
    STATE_EXPIRED,
    STATE_OK,
    STATE_UNAVAILABLE,
    STATE_VERIFY,
    STATE_VIOLATION,
)
from crawler.keys import unescape_until_stable, wechat_key
from crawler.parsing.bylines import find_byline
from crawler.parsing.dates import parse_datetime

SHANGHAI = ZoneInfo("Asia/Shanghai")
WECHAT_HOST = "mp.weixin.qq.com"
ALBUM_PATH = "/mp/appmsgalbum"
# Item types whose body is not in #js_content but in window.cgiDataNew.
SHARE_TYPES = frozenset({8, 10})


class WechatParseError(ValueError):
    """An article page without the fields every article has (title, __biz/mid/idx)."""


class AlbumError(ValueError):
    """The album endpoint refused or returned something that is not an album.

    `ret` is WeChat's `base_resp.ret` (None when the answer was not an album at all);
    `verification` is True when the answer asks for a verification (anti-crawl).
    """

    def __init__(self, ret: int | str | None, message: str, *, verification: bool = False) -> None:
        super().__init__(f"album error (ret={ret}): {message}" if ret is not None else f"album error: {message}")
        self.ret = ret
        self.verification = verification


@dataclass
class WechatArticle:
    """One article page as read from its HTML; datetimes are tz-aware (Asia/Shanghai)."""

    url: str
    title: str
    biz: str
    mid: str
    idx: str
    sn: str | None = None
    account_name: str | None = None
    account_id: str | None = None  # gh_…
    published_at: datetime | None = None
    author: str | None = None
    summary: str | None = None
    cover_url: str | None = None
    original_url: str | None = None  # 阅读原文 (msg_source_url)
    item_show_type: int = 0
    albums: list[dict[str, str]] = field(default_factory=list)  # [{"title", "album_id"}]
    body_html: str = ""
    body_text: str = ""
    image_urls: list[str] = field(default_factory=list)
    byline: str | None = None  # raw "unit + positions + name" line, e.g. 市科学技术局党组书记、局长 叶其炎

    @property
    def canonical_key(self) -> str:
        return wechat_key(self.biz, self.mid, self.idx)


@dataclass
class AlbumEntry:
    """One article listed by an album; `create_time` is minute-aligned and may differ from the page's."""

    msgid: str
    itemidx: str
    title: str
    url: str
    create_time: datetime | None
    item_show_type: int = 0
    cover_url: str | None = None

    @property
    def biz(self) -> str | None:
        return _query(self.url).get("__biz") or None

    def key(self, default_biz: str | None = None) -> str | None:
        """The canonical key, taking __biz from the entry's link or else from the album."""
        biz = self.biz or default_biz
        return wechat_key(biz, self.msgid, self.itemidx) if biz else None


@dataclass
class AlbumPage:
    """One answer of the album endpoint (HTML first screen or one JSON page)."""

    title: str | None
    account_name: str | None
    biz: str | None
    album_id: str | None
    items: list[AlbumEntry]
    continue_flag: bool
    article_count: int | None = None
    account_id: str | None = None


# --------------------------------------------------------------------------------------------
# Page classification
# --------------------------------------------------------------------------------------------

_VERIFY_URL = re.compile(r"wappoc_appmsgcaptcha|/antispider|mp/verify", re.I)
_VERIFY_TEXT = ("环境异常", "完成验证后即可继续访问", "去验证", "您的访问过于频繁", "访问过于频繁", "需要您协助验证")
_VERIFY_MARKUP = ("wappoc_appmsgcaptcha", "antispider", "seccodeImage", "poc_token")
_STATE_TEXTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (STATE_DELETED, ("已被发布者删除", "deleted by the author", "has been deleted", "已自主注销", "已被作者删除")),
    (
        STATE_VIOLATION,
        (
            "因违规无法查看",
            "违规无法查看",
            "涉嫌违反",
            "经平台审核",
            "多人投诉",
            "帐号已被屏蔽",
            "账号已被屏蔽",
            "violat",
        ),
    ),
    (STATE_UNAVAILABLE, ("暂时无法查看", "temporarily unavailable")),
    (STATE_EXPIRED, ("链接已过期", "link has expired", "link expired")),
)
# Elements that carry the message of a WeChat state page.
_MESSAGE_XPATH = (
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' weui-msg__title ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' weui-msg__desc ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' mesg-block ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' global_error_msg ')]"
    " | //title"
)


def classify_page(body: bytes | str, url: str = "", status: int = 200) -> str:
    """What a fetched WeChat page is, decided before any parsing (a crawler.items STATE_*).

    An article page is recognised by its structure (#js_content / #js_article / cgiDataNew),
    so an article that merely quotes 环境异常 or 删除 stays an article.
    """
    if status >= 400:
        return STATE_ERROR
    text = decode_body(body)
    if _VERIFY_URL.search(urlsplit(url).path or ""):
        return STATE_VERIFY
    tree = _parse_html(text)
    if tree is not None and _looks_like_article(tree, text):
        return STATE_OK
    message = " ".join(_text_of(el) for el in tree.xpath(_MESSAGE_XPATH)) if tree is not None else ""
    for state, phrases in _STATE_TEXTS:
        if any(p in message for p in phrases):
            return state
    visible = _visible_text(tree) if tree is not None else text
    if any(p in visible for p in _VERIFY_TEXT) or any(m in text for m in _VERIFY_MARKUP):
        return STATE_VERIFY
    for state, phrases in _STATE_TEXTS:
        if any(p in visible for p in phrases):
            return state
    return STATE_ERROR


def _looks_like_article(tree: Any, text: str) -> bool:
    if tree.xpath("//*[@id='js_content' or @id='js_article' or @id='img-content']"):
        return True
    cgi = _cgi_data_new(text, find_assignments(text, ("cgiDataNew",))["cgiDataNew"])
    return bool(cgi.get("title") and (cgi.get("mid") or cgi.get("bizuin")))


# --------------------------------------------------------------------------------------------
# Article pages
# --------------------------------------------------------------------------------------------

_VAR_NAMES = (
    "biz", "mid", "idx", "sn", "appmsgid", "ct", "create_time", "createTime", "publish_time",
    "nickname", "user_name", "author", "msg_title", "msg_desc", "msg_cdn_url", "msg_link",
    "msg_source_url", "item_show_type", "album_info_list", "cgiDataNew",
)  # fmt: skip


def parse_article(body: bytes | str, url: str) -> WechatArticle:
    """Read an article page (call `classify_page` first: only STATE_OK pages are articles)."""
    text = decode_body(body)
    tree = _parse_html(text)
    if tree is None:
        raise WechatParseError(f"empty page: {url}")
    found = find_assignments(text, _VAR_NAMES)
    cgi = _cgi_data_new(text, found.pop("cgiDataNew"))
    var = {name: first_value(text, positions) for name, positions in found.items()}
    meta = _meta(tree)
    link_ids = _ids_from_url(_first_str(var.get("msg_link"), meta.get("og:url"), cgi.get("link")) or "")
    url_ids = _ids_from_url(url)

    title = _clean_line(
        _first_str(
            var.get("msg_title"), meta.get("og:title"), cgi.get("title"),
            _xpath_text(tree, "//*[@id='activity-name']"), _xpath_text(tree, "//*[@id='js_text_title']"),
            _xpath_text(tree, "//h2[contains(@class, 'rich_media_title')]"),
        )
    )  # fmt: skip
    biz = _first_str(var.get("biz"), cgi.get("bizuin"), link_ids.get("__biz"), url_ids.get("__biz"))
    mid = _first_str(var.get("mid"), var.get("appmsgid"), cgi.get("mid"), link_ids.get("mid"), url_ids.get("mid"))
    idx = _first_str(var.get("idx"), cgi.get("idx"), link_ids.get("idx"), url_ids.get("idx"))
    missing = [name for name, value in (("title", title), ("__biz", biz), ("mid", mid), ("idx", idx)) if not value]
    if missing or not str(mid).isdigit() or not str(idx).isdigit():
        raise WechatParseError(f"article page lacks {', '.join(missing) or 'numeric mid/idx'}: {url}")
    assert title and biz and mid and idx  # narrowed above, for the type checker
    show_type = _as_int(_first_value(var.get("item_show_type"), cgi.get("item_show_type"))) or 0

    article = WechatArticle(
        url=url,
        title=title,
        biz=biz,
        mid=str(int(mid)),
        idx=str(int(idx)),
        sn=_first_str(var.get("sn"), cgi.get("sn"), link_ids.get("sn"), url_ids.get("sn")),
        account_name=_clean_line(
            _first_str(
                var.get("nickname"),
                cgi.get("nick_name"),
                _xpath_text(tree, "//*[@id='js_name']"),
                _xpath_text(tree, "//*[@id='post-user']"),
                _xpath_text(tree, "//*[contains(@class, 'wx_follow_nickname')]"),
            )
        ),
        account_id=_first_str(var.get("user_name"), cgi.get("user_name")),
        published_at=_published_at(var, cgi, tree),
        author=_clean_line(
            _first_str(
                meta.get("author"),
                var.get("author"),
                cgi.get("author"),
                _xpath_text(tree, "//*[@id='js_author_name']"),
            )
        ),
        summary=_clean_text(_first_str(var.get("msg_desc"), meta.get("description"), meta.get("og:description"))),
        cover_url=_clean_url(_first_str(var.get("msg_cdn_url"), meta.get("og:image"), cgi.get("cdn_url"))),
        original_url=_clean_url(_first_str(var.get("msg_source_url"), cgi.get("source_url"))),
        item_show_type=show_type,
        albums=_albums(_first_value(var.get("album_info_list"), cgi.get("album_info_list"))),
    )
    if article.summary is None and show_type not in SHARE_TYPES:
        article.summary = _clean_text(_first_str(cgi.get("desc")))
    _fill_body(article, tree, cgi)
    return article


def _fill_body(article: WechatArticle, tree: Any, cgi: dict[str, Any]) -> None:
    content = tree.xpath("//*[@id='js_content']")
    if article.item_show_type not in SHARE_TYPES and content:
        body_html, body_text, images = clean_body(content[0])
        if body_text or images:
            article.body_html, article.body_text, article.image_urls = body_html, body_text, images
            article.byline = find_byline(body_text, article.title)
            return
    raw = cgi.get("content_noencode")
    if article.item_show_type not in SHARE_TYPES and isinstance(raw, str) and "<" in raw:
        # Some current pages also carry the type-0 body as HTML in cgiDataNew.
        fragment = _parse_html(f"<div id='js_content'>{raw}</div>")
        nodes = fragment.xpath("//*[@id='js_content']") if fragment is not None else []
        if nodes:
            article.body_html, article.body_text, article.image_urls = clean_body(nodes[0])
            article.byline = find_byline(article.body_text, article.title)
            return
    text = raw if isinstance(raw, str) else (cgi.get("desc") if isinstance(cgi.get("desc"), str) else "")
    pictures = cgi.get("picture_page_info_list")
    images = _unique(
        url
        for url in (
            _clean_url(p.get("cdn_url"))
            for p in (pictures if isinstance(pictures, list) else [])
            if isinstance(p, dict)
        )
        if url
    )
    article.body_html, article.body_text, article.image_urls = share_body(str(text or ""), images)
    article.byline = find_byline(article.body_text, article.title)


def share_body(text: str, images: list[str]) -> tuple[str, str, list[str]]:
    """Body of an image/text share (types 8/10): its text as paragraphs, then its pictures."""
    lines = [_clean_line(html.unescape(line)) or "" for line in text.replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    parts = [f"<p>{html.escape(line, quote=False)}</p>" for line in lines]
    parts += [f'<p><img src="{html.escape(url)}"></p>' for url in images]
    return f'<div class="rich_media_content">{"".join(parts)}</div>', "\n".join(lines), images


_HIDDEN_STYLE = re.compile(r"^\s*(visibility\s*:\s*hidden|opacity\s*:\s*0(\.0+)?)\s*(!important)?\s*$", re.I)
_PLACEHOLDER_SRC = re.compile(r"^(data:|about:|javascript:|$)", re.I)
_DROP_TAGS = ("script", "style", "noscript", "template")


def clean_body(element: Any) -> tuple[str, str, list[str]]:
    """(html, text, image URLs) of a #js_content element: WeChat ships it hidden
    (visibility:hidden; opacity:0) with lazy images in data-src, which readers would show blank."""
    for bad in element.xpath(".//" + " | .//".join(_DROP_TAGS)):
        _drop_keep_tail(bad)
    images: list[str] = []
    for node in element.iter():
        if not isinstance(node.tag, str):
            continue
        style = node.get("style")
        if style is not None:
            kept = [d for d in style.split(";") if d.strip() and not _HIDDEN_STYLE.match(d)]
            if kept:
                node.set("style", ";".join(d.strip() for d in kept) + ";")
            else:
                del node.attrib["style"]
        data_src = node.get("data-src")
        if data_src and _PLACEHOLDER_SRC.match(node.get("src") or ""):
            node.set("src", unescape_until_stable(data_src))
        if node.tag == "img":
            src = _clean_url(node.get("src"))
            if src and src.startswith(("http://", "https://", "//")):
                images.append("https:" + src if src.startswith("//") else src)
    tail = element.tail
    element.tail = None
    body_html = lxml.html.tostring(element, encoding="unicode", method="html")
    element.tail = tail
    return body_html, html_to_text(element), _unique(images)


def _drop_keep_tail(node: Any) -> None:
    parent = node.getparent()
    if parent is None:
        return
    if node.tail:
        previous = node.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


_BLOCK_TAGS = frozenset(
    ("p", "div", "section", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "blockquote", "pre", "table", "tr",
     "br", "hr", "figure", "figcaption", "article", "header", "footer", "dd", "dt", "dl", "mpvoice", "mpvideo", "iframe")
)  # fmt: skip
_BREAK = "\x00"


def html_to_text(element: Any) -> str:
    """Plain text of an HTML element: one line per paragraph (block element), spaces collapsed."""
    parts: list[str] = []
    _collect_text(element, parts, top=True)
    lines = (re.sub(r"\s+", " ", chunk).strip() for chunk in "".join(parts).split(_BREAK))
    return "\n".join(line for line in lines if line)


def _collect_text(node: Any, parts: list[str], top: bool = False) -> None:
    tag = node.tag.lower() if isinstance(node.tag, str) else None
    if tag is not None and tag not in _DROP_TAGS:
        block = tag in _BLOCK_TAGS
        if block:
            parts.append(_BREAK)
        if node.text:
            parts.append(node.text)
        for child in node:
            _collect_text(child, parts)
        if block:
            parts.append(_BREAK)
    if node.tail and not top:
        parts.append(node.tail)


def _published_at(var: dict[str, Any], cgi: dict[str, Any], tree: Any) -> datetime | None:
    for epoch in (var.get("ct"), var.get("create_time"), cgi.get("ori_create_time")):
        moment = epoch_to_datetime(epoch)
        if moment is not None:
            return moment
    candidates = (
        cgi.get("create_time"), var.get("create_time"), var.get("createTime"), var.get("publish_time"),
        _xpath_text(tree, "//*[@id='post-date']"), _xpath_text(tree, "//*[@id='publish_time']"),
    )  # fmt: skip
    for raw in candidates:
        moment = local_to_datetime(raw)
        if moment is not None:
            return moment
    return None


def epoch_to_datetime(value: Any) -> datetime | None:
    """Epoch seconds (as WeChat writes them: "1762475508" or a number) to Asia/Shanghai time."""
    number = _as_int(value)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(number, SHANGHAI)


def local_to_datetime(value: Any) -> datetime | None:
    """A page's local date/time text ("2025-11-07 08:31", "2018-03-19") read as Asia/Shanghai."""
    return parse_datetime(value) if isinstance(value, str) else None


def _albums(raw: Any) -> list[dict[str, str]]:
    albums: list[dict[str, str]] = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        link = _clean_url(entry.get("link")) or ""
        album_id = _first_str(entry.get("albumId"), entry.get("album_id"), _query(link).get("album_id"))
        title = _clean_line(_first_str(entry.get("title")))
        if album_id and title and all(a["album_id"] != album_id for a in albums):
            albums.append({"title": title, "album_id": album_id})
    return albums


def album_url_from_article(article: WechatArticle, album_title: str) -> str | None:
    """The album (合集) URL of the article's album named `album_title`, or None when it is not in one."""
    wanted = _title_key(album_title)
    if not wanted:
        return None
    for album in article.albums:
        if _title_key(album["title"]) == wanted:
            return album_url(article.biz, album["album_id"], base=article.url)
    return None


def _title_key(title: str) -> str:
    return re.sub(r"[\s\u3000《》「」“”\"'#＃]", "", html.unescape(title or ""))


def album_url(biz: str | None, album_id: str, base: str = "") -> str:
    """The album page URL, on the host the article came from (mp.weixin.qq.com over https by default)."""
    query = {"action": "getalbum", "album_id": album_id}
    if biz:
        query = {"__biz": biz, **query}
    parts = urlsplit(base)
    scheme, host = (parts.scheme, parts.netloc) if parts.scheme in ("http", "https") and parts.netloc else ("", "")
    if not host or host == WECHAT_HOST:
        scheme, host = "https", WECHAT_HOST
    return urlunsplit((scheme, host, ALBUM_PATH, urlencode(query, safe="="), ""))


# --------------------------------------------------------------------------------------------
# Albums
# --------------------------------------------------------------------------------------------


def parse_album_html(body: bytes | str, url: str = "") -> AlbumPage:
    """The album first screen: `li.js_album_item[data-link]` items, completed by `window.cgiData`."""
    text = decode_body(body)
    tree = _parse_html(text)
    positions = find_assignments(text, ("cgiData",))["cgiData"]
    cgi = read_value(text, positions[0]) if positions else None
    cgi = cgi if isinstance(cgi, dict) else {}
    items_li = (
        tree.xpath("//li[contains(concat(' ', normalize-space(@class), ' '), ' js_album_item ')][@data-link]")
        if tree is not None
        else []
    )
    if not cgi and not items_li:
        raise AlbumError(None, "the page is not an album page (no album items, no cgiData)")
    ret = cgi.get("ret")
    if ret not in (None, "", 0, "0"):
        raise AlbumError(ret, "the album page reports an error")

    from_cgi: dict[tuple[str, str], AlbumEntry] = {}
    for raw in cgi.get("articleList") or []:
        entry = _entry_from_mapping(raw) if isinstance(raw, dict) else None
        if entry is not None:
            from_cgi[(entry.msgid, entry.itemidx)] = entry
    entries: list[AlbumEntry] = []
    for li in items_li:
        link = _clean_url(li.get("data-link")) or ""
        link_ids = _query(link)
        msgid = (li.get("data-msgid") or link_ids.get("mid") or "").strip()
        itemidx = (li.get("data-itemidx") or link_ids.get("idx") or "").strip()
        if not (msgid.isdigit() and itemidx.isdigit()):
            continue
        known = from_cgi.get((msgid, itemidx))
        stamp = epoch_to_datetime(_xpath_text(li, ".//*[contains(@class, 'js_article_create_time')]"))
        title = _clean_line(li.get("data-title")) or _clean_line(
            _xpath_text(li, ".//*[contains(@class, 'album__item-title-wrp')]")
        )
        entries.append(
            AlbumEntry(
                msgid=msgid,
                itemidx=itemidx,
                title=title or (known.title if known else ""),
                url=link,
                create_time=stamp or (known.create_time if known else None),
                item_show_type=known.item_show_type if known else 0,
                cover_url=known.cover_url if known else None,
            )
        )
    if not entries:
        entries = list(from_cgi.values())

    url_ids = _query(unescape_until_stable(url))
    biz = url_ids.get("__biz") or next((e.biz for e in entries if e.biz), None)
    return AlbumPage(
        title=_clean_line(
            _first_str(cgi.get("title"), _xpath_text(tree, "//*[@id='js_tag_name']") if tree is not None else None)
        ),
        account_name=_clean_line(
            _first_str(
                cgi.get("nick_name"),
                _xpath_text(tree, "//*[contains(@class, 'album__author-name')]") if tree is not None else None,
            )
        ),
        biz=biz,
        album_id=_first_str(cgi.get("albumId"), url_ids.get("album_id")),
        items=entries,
        continue_flag=_flag(cgi.get("continue_flag")),
        article_count=_as_int(cgi.get("article_count")),
        account_id=_first_str(cgi.get("user_name")),
    )


def parse_album_json(body: bytes | str, url: str = "") -> AlbumPage:
    """One answer of the album JSON API (`f=json`). All values are strings; `article_list` may be
    a list, a single object, or absent past the end; `base_resp.ret != 0` raises `AlbumError`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlbumError(None, f"the answer is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise AlbumError(None, "the answer is not a JSON object")
    base_resp = _mapping(data.get("base_resp"))
    ret = base_resp.get("ret", 0)
    if _as_int(ret) != 0:
        raise AlbumError(ret, str(base_resp.get("errmsg") or "WeChat refused the album request"))
    resp = data.get("getalbum_resp")
    if not isinstance(resp, dict):
        raise AlbumError(ret, "the answer has no getalbum_resp")
    verify = _as_int(resp.get("verify_status"))
    if verify:
        raise AlbumError(ret, f"verify_status={verify}: WeChat asks for a verification", verification=True)
    raw_list = resp.get("article_list")
    raw_items = [raw_list] if isinstance(raw_list, dict) else raw_list if isinstance(raw_list, list) else []
    entries = [e for e in (_entry_from_mapping(r) for r in raw_items if isinstance(r, dict)) if e is not None]
    info = _mapping(resp.get("base_info"))
    url_ids = _query(unescape_until_stable(url))
    return AlbumPage(
        title=_clean_line(_first_str(info.get("title"), info.get("album_title"))),
        account_name=_clean_line(_first_str(info.get("nickname"), info.get("nick_name"))),
        biz=_first_str(url_ids.get("__biz"), info.get("biz"), next((e.biz for e in entries if e.biz), None)),
        album_id=_first_str(info.get("album_id"), info.get("albumId"), url_ids.get("album_id")),
        items=entries,
        continue_flag=_flag(resp.get("continue_flag")),
        article_count=_as_int(info.get("article_count")),
        account_id=_first_str(info.get("user_name")),
    )


def _entry_from_mapping(raw: dict[str, Any]) -> AlbumEntry | None:
    link = _clean_url(_first_str(raw.get("url"), raw.get("link"))) or ""
    link_ids = _query(link)
    msgid = str(_first_value(raw.get("msgid"), raw.get("mid"), link_ids.get("mid")) or "").strip()
    itemidx = str(_first_value(raw.get("itemidx"), raw.get("idx"), link_ids.get("idx")) or "").strip()
    if not (msgid.isdigit() and itemidx.isdigit()):
        return None
    return AlbumEntry(
        msgid=msgid,
        itemidx=itemidx,
        title=_clean_line(_first_str(raw.get("title"))) or "",
        url=link,
        create_time=epoch_to_datetime(raw.get("create_time")),
        item_show_type=_as_int(raw.get("item_show_type")) or 0,
        cover_url=_clean_url(_first_str(raw.get("cover_img_1_1"), raw.get("cover"))),
    )


def sort_entries(entries: Iterable[AlbumEntry]) -> list[AlbumEntry]:
    """Oldest first by (create_time, msgid, itemidx). Never trust the album's `is_reverse`."""
    floor = datetime.min.replace(tzinfo=SHANGHAI)
    return sorted(entries, key=lambda e: (e.create_time or floor, int(e.msgid), int(e.itemidx)))


def album_json_url(
    album_page_url: str, count: int, begin_msgid: str | None = None, begin_itemidx: str | None = None
) -> str:
    """The JSON paging URL for an album: same path, `f=json`, `count` (<= 20) and the exclusive
    cursor (`begin_msgid`/`begin_itemidx` = the last item of the previous page)."""
    parts = urlsplit(unescape_until_stable(album_page_url))
    keep = {"__biz", "action", "album_id"}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k in keep]
    if not any(k == "action" for k, _ in query):
        query.append(("action", "getalbum"))
    query += [("count", str(max(1, min(int(count), 20)))), ("f", "json")]
    if begin_msgid and begin_itemidx:
        query += [("begin_msgid", begin_msgid), ("begin_itemidx", begin_itemidx)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="="), ""))


def article_fetch_url(url: str) -> str:
    """The URL to request for a listed article: unescaped, without fragment and noise parameters
    (chksm, scene…); https on mp.weixin.qq.com."""
    parts = urlsplit(unescape_until_stable(url.strip()))
    params = parse_qsl(parts.query, keep_blank_values=True)
    names = {k for k, _ in params}
    if "__biz" in names:
        params = [(k, v) for k, v in params if k in {"__biz", "mid", "idx", "sn"}]
    scheme = "https" if parts.hostname == WECHAT_HOST else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(params, safe="="), ""))


def is_album_url(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith(ALBUM_PATH)


# --------------------------------------------------------------------------------------------
# `zhuanlan extract`
# --------------------------------------------------------------------------------------------


def extract_wechat(body: bytes, url: str) -> dict[str, Any]:
    """JSON-ready fields of a saved WeChat page: the state, and for an article all its fields."""
    state = classify_page(body, url)
    fields: dict[str, Any] = {"kind": "wechat", "state": state, "url": url}
    if state != STATE_OK:
        return fields
    try:
        article = parse_article(body, url)
    except WechatParseError as exc:
        fields.update(state=STATE_ERROR, error=str(exc))
        return fields
    fields.update(
        canonical_key=article.canonical_key,
        title=article.title,
        account=article.account_name,
        account_id=article.account_id,
        author=article.author,
        byline=article.byline,
        published_at=article.published_at.isoformat() if article.published_at else None,
        summary=article.summary,
        cover_url=article.cover_url,
        original_url=article.original_url,
        biz=article.biz,
        mid=article.mid,
        idx=article.idx,
        sn=article.sn,
        item_show_type=article.item_show_type,
        albums=article.albums,
        image_urls=article.image_urls,
        body_text=article.body_text,
        body_html=article.body_html,
    )
    return fields


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def decode_body(body: bytes | str) -> str:
    """WeChat serves UTF-8; a page that is not is read as GB18030 before giving up on bytes."""
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        head = body[:2048].lower()
        if b"gb2312" in head or b"gbk" in head or b"gb18030" in head:
            return body.decode("gb18030", errors="replace")
        return body.decode("utf-8", errors="replace")


def _parse_html(text: str) -> Any:
    if not text.strip():
        return None
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True)
    try:
        return lxml.html.document_fromstring(text.encode("utf-8", errors="replace"), parser=parser)
    except (lxml.etree.ParserError, ValueError):
        return None


def _cgi_data_new(text: str, positions: list[int]) -> dict[str, Any]:
    for pos in positions:
        value = read_value(text, pos)
        if isinstance(value, dict):
            return value
    return {}


def _meta(tree: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in tree.xpath("//meta[@content]"):
        key = (node.get("property") or node.get("name") or "").strip().lower()
        content = js_decode(node.get("content", "")).strip()  # WeChat leaves \x0a escapes in meta text
        if key and key not in found and content:
            found[key] = content
    return found


def _visible_text(tree: Any) -> str:
    body = tree.find("body")
    return html_to_text(body if body is not None else tree)


def _text_of(node: Any) -> str:
    return re.sub(r"\s+", " ", node.text_content()).strip()


def _xpath_text(tree: Any, path: str) -> str | None:
    for node in tree.xpath(path):
        text = _text_of(node)
        if text:
            return text
    return None


def _ids_from_url(url: str) -> dict[str, str]:
    params = _query(url)
    return {
        "__biz": params.get("__biz", ""),
        "mid": params.get("mid") or params.get("appmsgid", ""),
        "idx": params.get("idx") or params.get("itemidx", ""),
        "sn": params.get("sn") or params.get("sign", ""),
    }


def _query(url: str) -> dict[str, str]:
    if not url:
        return {}
    return dict(parse_qsl(urlsplit(unescape_until_stable(url)).query, keep_blank_values=True))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first_value(*values: Any) -> Any:
    for value in values:
        if truthy(value):
            return value
    return None


def _first_str(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, bool) or not truthy(value):
            continue
        if isinstance(value, int | float | str):
            text = str(value).strip()
            if text:
                return text
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _flag(value: Any) -> bool:
    return _as_int(value) == 1 or value is True


def _clean_line(value: str | None) -> str | None:
    if value is None:
        return None
    text = re.sub(r"\s+", " ", html.unescape(value)).strip()
    return text or None


def _clean_text(value: str | None) -> str | None:
    if value is None:
        return None
    lines = [re.sub(r"[ \t\u3000\xa0]+", " ", line).strip() for line in html.unescape(value).splitlines()]
    text = "\n".join(line for line in lines if line)
    return text or None


def _clean_url(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return unescape_until_stable(value.strip())


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)


# --------------------------------------------------------------------------------------------
# A tolerant reader of inline JavaScript data literals
# --------------------------------------------------------------------------------------------
# It understands string literals (with JS escapes), numbers, arrays, objects, `JsDecode(…)`,
# `htmlDecode(…)`, `'…'.html(false)`, `'…' * 1` and `a || b`. Any other expression (calls,
# ternaries, identifiers) reads as UNKNOWN instead of failing: these objects mix data with code.

_WS = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/)+", re.S)
_STRINGS = {
    "'": re.compile(r"'((?:[^'\\\n]|\\.)*)'", re.S),
    '"': re.compile(r'"((?:[^"\\\n]|\\.)*)"', re.S),
}
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|u[0-9a-fA-F]{4}|\r\n|.)", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
# JsDecode() in WeChat pages undoes a second, textual layer of \xNN escapes.
_JSDECODE = re.compile(r"\\x(5c|0d|22|26|27|3c|3e|0a)", re.I)
_SKIP_TOKEN = re.compile(r"['\"`()\[\]{},;\n]")


class _Unknown:
    """An expression the reader does not evaluate (distinct from JS null)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


def js_unescape(raw: str) -> str:
    """The value of a JS string literal's body (the text between the quotes)."""

    def repl(match: re.Match[str]) -> str:
        seq = match.group(1)
        if seq[0] == "x":
            return chr(int(seq[1:], 16))
        if seq.startswith("u{"):
            return chr(int(seq[2:-1], 16))
        if seq[0] == "u" and len(seq) == 5:
            return chr(int(seq[1:], 16))
        if seq in ("\n", "\r\n"):
            return ""  # line continuation
        return _SIMPLE_ESCAPES.get(seq, seq)

    return _ESCAPE.sub(repl, raw) if "\\" in raw else raw


def js_decode(value: str) -> str:
    """WeChat's `JsDecode`: replaces textual `\\x26`-style escapes left after JS string parsing."""
    return _JSDECODE.sub(lambda m: chr(int(m.group(1), 16)), value)


def html_decode(value: str) -> str:
    """WeChat's `htmlDecode` (and `String.prototype.html(false)`): entities and <br> to text."""
    return html.unescape(re.sub(r"<br\s*/?\s*>", "\n", value))


def truthy(value: Any) -> bool:
    """JavaScript truthiness of a read value (UNKNOWN is falsy: it is never data we trust)."""
    if value is UNKNOWN or value is None or value is False:
        return False
    if isinstance(value, int | float):
        return value == value and value != 0  # NaN and 0 are falsy
    if isinstance(value, str):
        return value != ""
    return True


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)

    def ws(self, pos: int) -> int:
        match = _WS.match(self.text, pos)
        return match.end() if match else pos

    def at(self, pos: int, token: str) -> bool:
        return self.text.startswith(token, pos)

    def expr(self, pos: int, stops: str) -> tuple[Any, int]:
        """An expression up to (not including) a stop character at bracket depth 0."""
        value, pos = self.term(pos, stops)
        while True:
            after = self.ws(pos)
            if self.at(after, "||"):
                other, pos = self.term(after + 2, stops)
                if not truthy(value):
                    value = other
                continue
            if "\n" in stops and "\n" in self.text[pos:after]:
                return value, pos  # a statement ended at a line break without a semicolon
            pos = after
            if pos >= self.n or self.text[pos] in stops:
                return value, pos
            # Anything else (?:, ===, +, &&, member access): not data we evaluate.
            return UNKNOWN, self.skip(pos, stops)

    def term(self, pos: int, stops: str) -> tuple[Any, int]:
        value, pos = self.primary(self.ws(pos), stops)
        while True:
            after = self.ws(pos)
            if self.at(after, "*") and not self.at(after, "*/"):
                number = _NUMBER.match(self.text, self.ws(after + 1))
                if not number:
                    return value, pos
                value = _times(value, number.group())
                pos = number.end()
                continue
            if self.at(after, ".html("):
                close = self.text.find(")", after)
                if close < 0:
                    return value, pos
                if isinstance(value, str):
                    value = html_decode(value)
                pos = close + 1
                continue
            return value, pos

    def primary(self, pos: int, stops: str) -> tuple[Any, int]:
        if pos >= self.n:
            return UNKNOWN, pos
        char = self.text[pos]
        if char in _STRINGS:
            match = _STRINGS[char].match(self.text, pos)
            if not match:
                return UNKNOWN, self.skip(pos, stops)
            return js_unescape(match.group(1)), match.end()
        if char == "[":
            return self.array(pos + 1)
        if char == "{":
            return self.obj(pos + 1)
        if char == "(":
            value, end = self.expr(pos + 1, ")")
            end = self.ws(end)
            return value, (end + 1 if self.at(end, ")") else end)
        number = _NUMBER.match(self.text, pos)
        if number:
            text = number.group()
            return (float(text) if any(c in text for c in ".eE") else int(text)), number.end()
        ident = _IDENT.match(self.text, pos)
        if ident:
            name = ident.group()
            if name in ("true", "false"):
                return name == "true", ident.end()
            if name in ("null", "undefined"):
                return None, ident.end()
            after = self.ws(ident.end())
            if name in ("JsDecode", "htmlDecode") and self.at(after, "("):
                inner, end = self.expr(after + 1, ")")
                end = self.ws(end)
                end = end + 1 if self.at(end, ")") else end
                if isinstance(inner, str):
                    inner = js_decode(inner) if name == "JsDecode" else html_decode(inner)
                return inner, end
        return UNKNOWN, self.skip(pos, stops)

    def array(self, pos: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        while True:
            pos = self.ws(pos)
            if pos >= self.n:
                return items, pos
            if self.text[pos] == "]":
                return items, pos + 1
            if self.text[pos] == ",":
                pos += 1
                continue
            start = pos
            value, pos = self.expr(pos, ",]")
            items.append(value)
            if pos == start:  # no progress: a stray closing bracket
                return items, pos + 1

    def obj(self, pos: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        while True:
            pos = self.ws(pos)
            if pos >= self.n:
                return result, pos
            char = self.text[pos]
            if char == "}":
                return result, pos + 1
            if char == ",":
                pos += 1
                continue
            start = pos
            key: str | None = None
            if char in _STRINGS:
                match = _STRINGS[char].match(self.text, pos)
                if match:
                    key, pos = js_unescape(match.group(1)), match.end()
            else:
                ident = _IDENT.match(self.text, pos) or _NUMBER.match(self.text, pos)
                if ident:
                    key, pos = ident.group(), ident.end()
            pos = self.ws(pos)
            if key is None or not self.at(pos, ":"):
                # A method definition, spread or something else: skip the member.
                pos = self.skip(pos, ",}")
                if pos == start:  # a stray closing bracket
                    return result, pos + 1
                continue
            value, pos = self.expr(pos + 1, ",}")
            result[key] = value

    def skip(self, pos: int, stops: str) -> int:
        """Skips an expression we do not read: to the next stop character at bracket depth 0."""
        depth = 0
        while pos < self.n:
            match = _SKIP_TOKEN.search(self.text, pos)
            if not match:
                return self.n
            pos = match.start()
            char = self.text[pos]
            if depth == 0 and char in stops:
                return pos
            if char in "'\"`":
                pos = _string_end(self.text, pos)
                continue
            if char in "([{":
                depth += 1
            elif char in ")]}":
                if depth == 0:
                    return pos  # an enclosing bracket closes here
                depth -= 1
            pos += 1
        return pos


def _string_end(text: str, pos: int) -> int:
    quote = text[pos]
    i = pos + 1
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == quote or (char == "\n" and quote != "`"):
            return i + 1
        i += 1
    return n


def _times(value: Any, factor_text: str) -> Any:
    """JS `value * n` for the `'123' * 1` idiom: numeric strings become numbers, others NaN (None)."""
    factor: int | float = float(factor_text) if any(c in factor_text for c in ".eE") else int(factor_text)
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return 0
        try:
            value = float(stripped) if any(c in stripped for c in ".eE") else int(stripped)
        except ValueError:
            return None
    if isinstance(value, int | float):
        return value * factor
    return None


def read_value(text: str, pos: int, stops: str = ";\n") -> Any:
    """The value of the JS expression starting at `pos` (UNKNOWN when it is not plain data)."""
    value, _ = _Reader(text).expr(pos, stops)
    return value


def find_assignments(text: str, names: Iterable[str]) -> dict[str, list[int]]:
    """Offsets just after `var NAME =` / `window.NAME =` for each name, in page order."""
    wanted = sorted(set(names), key=len, reverse=True)
    found: dict[str, list[int]] = {name: [] for name in wanted}
    pattern = re.compile(r"(?:\bvar\s+|\bwindow\.)(" + "|".join(map(re.escape, wanted)) + r")\s*=(?![=>])\s*")
    for match in pattern.finditer(text):
        found[match.group(1)].append(match.end())
    return found


def first_value(text: str, positions: list[int], stops: str = ";\n") -> Any:
    """The first truthy value among the assignments at `positions` (None when there is none)."""
    for pos in positions:
        value = read_value(text, pos, stops)
        if truthy(value):
            return value
    return None
