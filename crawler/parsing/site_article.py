"""Article pages of unit websites: title, dates, 来源, author, byline and body from decoded text.

Owns the order of trust for each field: a source's configured selectors, then the government
meta tags (ArticleTitle, PubDate, ContentSource, Author), then label patterns on the visible text
(comments and scripts stripped first: templates keep stale fields in comments), then generic
extraction (known body containers, trafilatura on the decoded text, a text-density fallback).
Also classifies anti-crawl and error pages (`detect_block`). Pure: no I/O, no clock; every
datetime it returns is tz-aware Asia/Shanghai.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import lxml.html  # type: ignore[import-untyped]
from lxml import etree
from lxml.cssselect import CSSSelector  # type: ignore[import-untyped]

from crawler.parsing.bylines import author_names, read_credits
from crawler.parsing.dates import DATETIME, parse_datetime
from crawler.parsing.encoding import EncodingError, decode_checked
from crawler.parsing.site_list import select
from crawler.parsing.tree import html_tree

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass
class SiteArticle:
    title: str
    published_at: datetime | None
    source_label: str | None  # 来源: a unit or a newspaper, never a person
    author: str | None  # the authors' names, space-separated: the byline's, else the author field's
    body_html: str
    body_text: str
    written_at: datetime | None = None  # 成文日期 of a document, kept apart from 发布日期
    byline: str | None = None  # the byline as printed (top or end of the body), raw
    author_field: str | None = None  # the page's own author field (作者 label, meta Author, selector)
    method: dict[str, str] = field(default_factory=dict)  # field -> which path found it
    notes: list[str] = field(default_factory=list)  # disagreements worth a look (meta vs visible date)


# -- dates -------------------------------------------------------------------------------------

_URL_DATE = re.compile(
    r"/t((?:19|20)\d{2})(\d{2})(\d{2})_|/((?:19|20)\d{2})/(\d{1,2})/(\d{1,2})/|/((?:19|20)\d{2})-(\d{2})/(\d{2})/"
)


def _url_date(url: str) -> datetime | None:
    match = _URL_DATE.search(url)
    if not match:
        return None
    parts = [int(g) for g in match.groups() if g]
    try:
        return datetime(parts[0], parts[1], parts[2], tzinfo=SHANGHAI)
    except ValueError:
        return None


# -- tree helpers --------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "tr",
        "table",
        "tbody",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "header",
        "footer",
        "blockquote",
        "dd",
        "dt",
        "dl",
        "pre",
        "hr",
        "center",
        "form",
        "main",
        "aside",
        "nav",
        "figure",
        "figcaption",
        "td",
        "th",
    }
)
_INLINE_TAGS = frozenset({"span", "font", "strong", "b", "em", "i", "u", "sub", "sup", "small", "big", "label", "code"})
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_CLOSERS = re.compile(r"</(?:html|body)\s*>", re.IGNORECASE)
_DROP_XPATH = "//script|//style|//noscript|//template|//comment()|//processing-instruction()"
# Compiled once: lxml's `.xpath(str)` and `.cssselect(str)` compile (CSS: translate) on every call.
_DROP = etree.XPath(_DROP_XPATH)
_HEADINGS = etree.XPath("//h1|//h2|//h3|//*[contains(@class,'title')]")


@lru_cache(maxsize=256)
def _css(selector: str) -> Any:
    return CSSSelector(selector, translator="html")


def _select(root: Any, selector: str) -> list[Any]:
    """`site_list.select` with each CSS selector compiled once (configured ones repeat on every page)."""
    stripped = selector.strip()
    if stripped.startswith(("/", "(", "./")):
        return select(root, stripped)
    return list(_css(stripped)(root))


def parse_html(text: str) -> Any:
    """An lxml tree of decoded page text; an empty document for an empty or unparsable page."""
    cleaned = _XML_DECLARATION.sub("", text)
    # Server-side includes can close </html> early (a header fragment): libxml2 would then drop
    # the article that follows, so closing html/body tags are removed; the parser re-closes them.
    cleaned = _CLOSERS.sub("", cleaned)
    if cleaned and not cleaned.isspace():
        try:
            return html_tree(cleaned)
        except (etree.ParserError, ValueError):
            pass
    return html_tree("<html><body></body></html>")


def strip_invisible(root: Any) -> Any:
    """Remove comments, scripts and styles in place, keeping the text that follows them."""
    for node in _DROP(root):
        if node.getparent() is not None:
            node.drop_tree()
    return root


def _walk_text(element: Any, out: list[str]) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""
    block = tag in _BLOCK_TAGS
    if block:
        out.append("\n")
    if element.text and tag != "br":
        out.append(element.text)
    for child in element:
        _walk_text(child, out)
        if child.tail:
            out.append(child.tail)
    if block:
        out.append("\n")


def block_text(element: Any) -> str:
    """Visible text with one line per block element, whitespace collapsed inside lines."""
    parts: list[str] = []
    _walk_text(element, parts)
    # str.split() splits on exactly the characters `\s` matches (U+3000 and U+00A0 among them):
    # `" ".join(line.split())` is the line with whitespace runs collapsed and the ends stripped.
    return "\n".join([" ".join(line.split()) for line in "".join(parts).split("\n") if line and not line.isspace()])


def _text_of(found: Any) -> str:
    if isinstance(found, str):
        return " ".join(found.split())
    return " ".join(found.text_content().split())


def _meta(root: Any) -> dict[str, str]:
    values: dict[str, str] = {}
    for meta in root.iter("meta"):
        name = (meta.get("name") or meta.get("property") or "").strip().lower()
        content = (meta.get("content") or "").strip()
        if name and content and name not in values:
            values[name] = content
    return values


# -- widgets and bylines -------------------------------------------------------------------------

_WIDGET_LINE = re.compile(
    r"^(?:"
    r"[【\[]?\s*(?:字号|字体)\s*[:：]?.*"
    r"|.*[【\[]?\s*打印\s*(?:本页|此页|文章)?\s*[】\]]?\s*[【\[]?\s*关闭\s*(?:窗口|本页)?\s*[】\]]?.*"
    r"|[【\[]?\s*(?:打印|关闭|打印本页|关闭窗口|返回顶部|收藏|纠错)\s*[】\]]?"
    r"|(?:上一篇|下一篇|上一条|下一条)\s*[:：]?.*"
    r"|(?:分享到\s*[:：]?|分享\s*[:：]).{0,40}"  # a share bar, not a paragraph 「分享会上，…」
    r"|扫一扫.*|(?:浏览次数|点击数|阅读次数|访问量|浏览量)\s*[:：].*"
    r"|[【\[]?\s*[大中小]\s*[】\]]?(?:\s*[【\[]?\s*[大中小]\s*[】\]]?){0,2}"
    r")$"
)


def clean_body_text(text: str) -> str:
    """Body text without navigation widgets (字号 大中小, 打印/关闭, 上一篇/下一篇, share bars)."""
    return "\n".join(line for line in text.split("\n") if not _WIDGET_LINE.match(line))


# -- labels -------------------------------------------------------------------------------------

_EXPLICIT_PUB = ("发布日期", "发布时间", "发表日期", "发表时间", "发稿时间", "公开日期")
_DATE_LABEL = re.compile(r"(发布日期|发布时间|发表日期|发表时间|发稿时间|公开日期|成文日期|日期|时间)\s*[:：]\s*")
# 日期/时间 after these words is not the publication date (成文日期 is the document's own date).
_NOT_PUB_PREFIX = (
    "成文",
    "生效",
    "实施",
    "印发",
    "开始",
    "截止",
    "结束",
    "活动",
    "会议",
    "报名",
    "办公",
    "受理",
    "更新",
    "施行",
    "废止",
)
_SOURCE_LABEL = re.compile(r"(?:信息来源|文章来源|稿件来源|新闻来源|内容来源|稿源|来源)\s*[:：]\s*([^\s|｜]{1,40})")
# One name: 2-4 ideographs that are not the start of the next label (「作者：陈晓峰 浏览次数：12」 is two
# labelled spans separated by one space, not two names).
_NAME = r"[\u4e00-\u9fff·]{2,4}(?![\u4e00-\u9fff·]|\s*[:：])"
_AUTHOR_LABEL = re.compile(
    rf"(?:作者|撰稿|撰文)\s*[:：]\s*({_NAME}(?:[ 、，,]{_NAME}){{0,3}})"
    rf"|(?<![\u4e00-\u9fff])文\s*[/／]\s*({_NAME}(?:[ 、]{_NAME}){{0,3}})"
)
# （记者邹伟）, 记者：王明, 记者 王明 李华; not 记者 王明 摄 (a photo credit).
_REPORTER = re.compile(
    r"[（(]\s*(?:本报|本台|新华社)?记者\s*([\u4e00-\u9fff· 、，,]{2,30}?)\s*[）)]"
    # Not 「…告诉记者：…」: a label 记者 starts a line or follows 本报/本台/新华社.
    r"|(?<![\u4e00-\u9fff])(?:本报|本台|新华社)?记者\s*[:：]\s*([\u4e00-\u9fff·]{2,4}(?:[ 、，,]+[\u4e00-\u9fff·]{2,4}){0,3})"
    r"|(?<![\u4e00-\u9fff])(?:本报|本台|新华社)?记者\s+([\u4e00-\u9fff·]{2,4}(?:[ 、，,]+[\u4e00-\u9fff·]{2,4}){0,3})(?=\s*(?:$|\n|[）)。，]))",
    re.MULTILINE,
)
# A selector may point at "来源：X" / "稿源　X" rather than at the value alone.
_SOURCE_PREFIX = re.compile(r"^\s*(?:信息来源|文章来源|稿件来源|新闻来源|内容来源|稿源|来源)\s*[:：]?\s*")
_AUTHOR_PREFIX = re.compile(r"^\s*(?:作者|撰稿|撰文|记者|文)\s*[:：/／]?\s*")
# Words that end a list of names: credits and the labels that follow an author on one line.
_NAME_STOP = (
    "通讯员",
    "实习生",
    "摄影",
    "报道",
    "摄",
    "编辑",
    "责任编辑",
    "来源",
    "发布",
    "记者",
    "浏览",
    "点击",
    "阅读",
    "访问",
    "次数",
    "字号",
    "时间",
    "日期",
    "信息来源",
    "文章来源",
    "稿件来源",
    "审核",
    "校对",
    "供稿",
    "录入",
    "打印",
    "分享",
)
_LABEL_TAIL = re.compile(r"(发布时间|发布日期|作者|编辑|责任编辑|浏览|点击|字号|时间|日期).*$")


_LABEL_TRIM = re.compile(r"^[\s【\[(（]+|[\s】\])）:：|]+$")
_NAME_SEPARATORS = re.compile(r"[ 、，,]+")


def _clean_label_value(value: str) -> str | None:
    value = _LABEL_TAIL.sub("", value)
    value = _LABEL_TRIM.sub("", value)
    return value or None


def _clean_names(raw: str) -> str | None:
    names: list[str] = []
    for token in _NAME_SEPARATORS.split(raw):
        if not token or any(token.startswith(s) for s in _NAME_STOP):
            break
        names.append(token)
    return " ".join(names) or None


def _label_dates(text: str) -> tuple[tuple[datetime, str] | None, datetime | None, tuple[datetime, str] | None]:
    """(explicit 发布日期/时间, 成文日期, generic 日期/时间) found after labels in visible text."""
    explicit: tuple[datetime, str] | None = None
    generic: tuple[datetime, str] | None = None
    written: datetime | None = None
    for match in _DATE_LABEL.finditer(text):
        label = match.group(1)
        value = parse_datetime(text[match.end() : match.end() + 30])
        if value is None or not DATETIME.match(text[match.end() : match.end() + 30].lstrip()):
            continue
        before = text[max(0, match.start() - 2) : match.start()]
        if label == "成文日期":
            written = written or value
        elif label in _EXPLICIT_PUB:
            explicit = explicit or (value, label)
        elif before not in _NOT_PUB_PREFIX:
            generic = generic or (value, label)
    return explicit, written, generic


_PERSON = re.compile(r"[\u4e00-\u9fff·]{2,4}(?:[ 、，,][\u4e00-\u9fff·]{2,4}){0,3}")
_ORGANISATION_WORD = re.compile(r"网|报|社|局|厅|委|办|公司|集团|中心|政府|部门")


def _looks_like_person(value: str) -> bool:
    return bool(_PERSON.fullmatch(value)) and not _ORGANISATION_WORD.search(value)


# -- body ---------------------------------------------------------------------------------------

_BODY_CONTAINERS = (
    "#zoom",
    ".TRS_Editor",
    "#js_content",
    ".article-content",
    "#UCAP-CONTENT",
    ".pages_content",
    "#content",
    ".article-body",
    ".article_content",
    ".content",
    "#article",
    "article",
)
_HANWEB_MARKERS = (
    re.compile(
        r"<meta\s+name=[\"']?ContentStart[\"']?\s*/?>(.*?)<meta\s+name=[\"']?ContentEnd[\"']?\s*/?>", re.S | re.I
    ),
    re.compile(r"<!--\s*<\$\[信息内容\]>begin\s*-->(.*?)<!--\s*<\$\[信息内容\]>end\s*-->", re.S),
)
_MIN_BODY = 50


def _link_density(element: Any, total: int | None = None) -> float:
    if total is None:
        total = len(_text_of(element))
    if not total:
        return 1.0
    links = sum(len(_text_of(a)) for a in element.iter("a"))
    return links / total


def _container(root: Any) -> tuple[Any, str] | None:
    for selector in _BODY_CONTAINERS:
        found = [e for e in _select(root, selector) if hasattr(e, "tag")]
        if not found:
            continue
        # Some templates nest or repeat the container; the one with most text (the first of equals) is the article.
        sizes = [len(_text_of(e)) for e in found]
        best = max(range(len(found)), key=sizes.__getitem__)
        if sizes[best] >= _MIN_BODY and _link_density(found[best], sizes[best]) < 0.3:
            return found[best], f"container {selector}"
    return None


def _direct_text(element: Any) -> str:
    parts = [element.text or ""]
    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag in _INLINE_TAGS:
            parts.append(child.text_content())
        parts.append(child.tail or "")
    return "".join("".join(parts).split())


_PUNCTUATION = re.compile(r"[，。；！？、,.;]")


def density_body(root: Any) -> Any | None:
    """The element holding most paragraph text (punctuation-weighted), discounting link-heavy blocks.

    Our own fallback for pages where trafilatura returns nothing or a fragment: paragraph scores
    flow to the parent in full and to the grandparent in half, as in readability-style scorers.
    """
    scores: dict[Any, float] = {}
    for element in root.iter():
        if not isinstance(element.tag, str) or element.tag not in {
            "p",
            "div",
            "td",
            "section",
            "article",
            "span",
            "font",
            "pre",
        }:
            continue
        text = _direct_text(element)
        if len(text) < 20:
            continue
        score = len(text) + 10 * len(_PUNCTUATION.findall(text))
        parent = element.getparent()
        if element.tag in {"p", "span", "font"} and parent is not None:
            scores[parent] = scores.get(parent, 0.0) + score
            grand = parent.getparent()
            if grand is not None:
                scores[grand] = scores.get(grand, 0.0) + score / 2
        else:
            scores[element] = scores.get(element, 0.0) + score
            if parent is not None:
                scores[parent] = scores.get(parent, 0.0) + score / 2
    if not scores:
        return None
    return max(scores, key=lambda e: scores[e] * (1 - min(_link_density(e), 0.9)))


def _trafilatura(text: str, url: str) -> tuple[str, str] | None:
    """(html, text) of trafilatura's main content, run on the decoded str (it misreads GB bytes).

    Imported here: most pages have a known body container, and importing trafilatura (with
    htmldate, courlan, justext and babel) costs every crawl process about 0.2 s before its first request.
    """
    import trafilatura

    html_out = trafilatura.extract(
        text, url=url, include_comments=False, include_tables=True, output_format="html", favor_precision=False
    )
    if not html_out:
        return None
    root = parse_html(html_out)
    body = root.find("body")
    element = body if body is not None else root
    return lxml.html.tostring(element, encoding="unicode"), block_text(element)


def _outer_html(element: Any) -> str:
    return str(lxml.html.tostring(element, encoding="unicode", with_tail=False))


def _body(root: Any, raw_text: str, url: str, selectors: Mapping[str, str]) -> tuple[str, str, str]:
    """(body_html, body_text, method)."""
    if selectors.get("body"):
        found = [e for e in _select(root, selectors["body"]) if hasattr(e, "tag")]
        if found:
            return _outer_html(found[0]), block_text(found[0]), "selector"
    for marker in _HANWEB_MARKERS:
        match = marker.search(raw_text)
        if match:
            fragment = strip_invisible(parse_html(f"<div>{match.group(1)}</div>"))
            text = block_text(fragment)
            if len(text) >= _MIN_BODY:
                return _outer_html(fragment), text, "hanweb content markers"
    found_container = _container(root)
    if found_container is not None:
        element, how = found_container
        return _outer_html(element), block_text(element), how
    extracted = _trafilatura(raw_text, url)
    dense = density_body(root)
    dense_text = block_text(dense) if dense is not None else ""
    if extracted is not None and len(extracted[1]) >= _MIN_BODY and len(extracted[1]) * 3 >= len(dense_text):
        return extracted[0], extracted[1], "trafilatura"
    if dense is not None and dense_text:
        return _outer_html(dense), dense_text, "density"
    if extracted is not None:
        return extracted[0], extracted[1], "trafilatura"
    return "", "", "none"


# -- title --------------------------------------------------------------------------------------

_TITLE_SUFFIX = re.compile(r"\s*(?:_+|-{1,2}|——|\s[|｜]\s|[|｜])\s*([^_|｜]{1,30}?)\s*$")


def strip_site_suffix(title: str, site_name: str | None = None) -> str:
    """A <title> without its `_站点名` / `-站点名` / `|站点名` tail (at most three levels)."""
    title = " ".join(title.split())
    if site_name:
        for sep in ("_", "-", "--", "|", "｜", " - ", " | ", "——"):
            if title.endswith(sep + site_name) and len(title) > len(sep + site_name):
                title = title[: -len(sep + site_name)].rstrip(" _-|｜")
                break
    for _ in range(3):
        match = _TITLE_SUFFIX.search(title)
        if not match or len(title[: match.start()].strip()) < 4:
            break
        title = title[: match.start()].strip()
    return title


def _title(root: Any, meta: Mapping[str, str], selectors: Mapping[str, str]) -> tuple[str, str]:
    if selectors.get("title"):
        found = _select(root, selectors["title"])
        if found and _text_of(found[0]):
            return _text_of(found[0]), "selector"
    if meta.get("articletitle"):
        return " ".join(meta["articletitle"].split()), "meta ArticleTitle"
    title_tag = root.find(".//title")
    page_title = _text_of(title_tag) if title_tag is not None else ""
    headings = [_text_of(h) for h in _HEADINGS(root)]
    headings = [h for h in headings if len(h) >= 4]
    if page_title:
        # A heading the <title> starts with is the title without the site suffix, exactly.
        prefixes = [h for h in headings if page_title.startswith(h) and len(h) < len(page_title)]
        if prefixes:
            return max(prefixes, key=len), "heading matching <title>"
        return strip_site_suffix(page_title, meta.get("sitename")), "<title>"
    h1 = [_text_of(h) for h in root.iter("h1") if _text_of(h)]
    if h1:
        return h1[0], "h1"
    return "", "none"


# -- the article ----------------------------------------------------------------------------------


def _select_text(root: Any, selector: str | None) -> str | None:
    if not selector:
        return None
    found = _select(root, selector)
    return _text_of(found[0]) or None if found else None


def extract_article(text: str, url: str, selectors: Mapping[str, str] | None = None) -> SiteArticle:
    """All fields of one article page (decoded text), each with the path that found it in `method`."""
    selectors = selectors or {}
    root = parse_html(text)
    meta = _meta(root)
    strip_invisible(root)
    method: dict[str, str] = {}
    notes: list[str] = []
    body_el = root.find("body")
    visible = block_text(body_el if body_el is not None else root)

    title, method["title"] = _title(root, meta, selectors)

    # Dates: selector > visible 发布日期 disagreeing with meta PubDate > meta PubDate > labels > text near title > URL.
    # Labels far from the heading (sidebars, an agenda inside the body) are not the page's dates.
    start = _title_position(visible, title)
    window = visible[max(0, start - 300) : start + 1500] if start >= 0 else visible
    explicit, written_at, generic = _label_dates(window)
    meta_date = parse_datetime(meta.get("pubdate", "") or meta.get("publishdate", "") or meta.get("pubtime", ""))
    published_at: datetime | None = None
    selected = _select_text(root, selectors.get("date"))
    if selected and parse_datetime(selected):
        published_at, method["published_at"] = parse_datetime(selected), "selector"
    elif meta_date and explicit and explicit[0].date() != meta_date.date():
        published_at, method["published_at"] = explicit[0], f"label {explicit[1]}"
        notes.append(f"meta PubDate {meta_date.date()} disagrees with visible {explicit[1]} {explicit[0].date()}")
    elif meta_date:
        published_at, method["published_at"] = meta_date, "meta PubDate"
    elif explicit or generic:
        found = explicit or generic
        assert found is not None
        published_at, method["published_at"] = found[0], f"label {found[1]}"
    else:
        published_at, how = _date_near_title(visible, title, url)
        if published_at is not None:
            method["published_at"] = how
    if written_at is not None:
        method["written_at"] = "label 成文日期"

    source_label = _select_text(root, selectors.get("source"))
    if source_label:
        source_label = _clean_label_value(_SOURCE_PREFIX.sub("", source_label)) or source_label
        method["source_label"] = "selector"
    elif meta.get("contentsource"):
        source_label, method["source_label"] = meta["contentsource"].strip(), "meta ContentSource"
    else:
        match = _SOURCE_LABEL.search(visible)
        source_label = _clean_label_value(match.group(1)) if match else None
        if source_label:
            method["source_label"] = "label 来源"

    body_html, body_text, method["body"] = _body(root, text, url, selectors)
    body_text = clean_body_text(body_text)
    lines = body_text.split("\n")
    if lines and title and lines[0] == title:
        lines = lines[1:]  # containers often repeat the heading
        body_text = "\n".join(lines)
    credits = read_credits(body_text, title)
    byline = credits.byline.text if credits.byline else (credits.note.text if credits.note else None)

    # The page's own author field: a configured selector, a person-like meta Author, a 作者/撰稿/文/
    # label, a 记者 label. Bylines, credits and sign-offs in the body are the byline reader's.
    author_field = _select_text(root, selectors.get("author"))
    if author_field:
        author_field = _clean_names(_AUTHOR_PREFIX.sub("", author_field)) or author_field
        method["author"] = "selector"
    elif meta.get("author") and _looks_like_person(meta["author"].strip()):
        author_field, method["author"] = meta["author"].strip(), "meta Author"
    else:
        author_field = None
        for pattern, how in ((_AUTHOR_LABEL, "label 作者"), (_REPORTER, "label 记者")):
            for match in pattern.finditer(visible):
                author_field = _clean_names(next(g for g in match.groups() if g))
                if author_field:
                    method["author"] = how
                    break
            if author_field:
                break
    if author_field and source_label and author_field == source_label:
        author_field = None  # 来源 is a unit, never the author
        method.pop("author", None)
    names = author_names(credits)
    author = " ".join(names) or author_field
    if names:
        method["author"] = "byline" if credits.byline is not None else "credits"
    if author_field and author_field in credits.editors:
        author = " ".join(names) or None  # the field holds an editor's name

    return SiteArticle(
        title=title,
        published_at=published_at,
        source_label=source_label,
        author=author,
        body_html=body_html,
        body_text=body_text,
        written_at=written_at,
        byline=byline,
        author_field=author_field,
        method=method,
        notes=notes,
    )


def _title_position(visible: str, title: str) -> int:
    """Where the heading stands in the visible text: the occurrence followed soonest by a date
    (the first one is often in a breadcrumb), or -1."""
    if not title:
        return -1
    positions: list[int] = []  # non-overlapping occurrences, as re.finditer would find them
    found = visible.find(title)
    while found >= 0:
        positions.append(found)
        found = visible.find(title, found + len(title))
    for position in positions:
        if DATETIME.search(visible[position + len(title) : position + len(title) + 200]):
            return position
    return positions[0] if positions else -1


def _date_near_title(visible: str, title: str, url: str) -> tuple[datetime | None, str]:
    start = _title_position(visible, title)
    if start >= 0:
        found = parse_datetime(visible[start + len(title) : start + len(title) + 200])
        if found is not None:
            return found, "text after title"
        before = list(DATETIME.finditer(visible[max(0, start - 80) : start]))
        if before:
            found = parse_datetime(before[-1].group(0))
            if found is not None:
                return found, "text before title"
    found = _url_date(url)
    return (found, "url") if found is not None else (None, "none")


# -- blocked and error pages ----------------------------------------------------------------------


def detect_block(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> str | None:
    """A plain reason when a response is not an article page we can read, else None."""
    head = body[:200_000]
    if b"$_ts" in head and status in {202, 412}:
        return f"瑞数 JS challenge (HTTP {status}): the site needs a browser; not attempted"
    if b"__jsl_clearance" in head and status in {512, 521}:
        return f"加速乐 JS challenge (HTTP {status}): the site needs a browser; not attempted"
    if status == 403:
        return "HTTP 403: the site refused the request (forbidden)"
    if status in {404, 410}:
        return f"HTTP {status}: page not found"
    if status == 429:
        return "HTTP 429: too many requests (rate limited)"
    if 400 <= status < 500:
        return f"HTTP {status}: the site rejected the request"
    if status >= 500:
        return f"HTTP {status}: server error at the site"
    if not body.strip():
        return "empty page"
    return None


def challenge_marker(body: bytes) -> str | None:
    """For pages whose HTTP status is unknown (saved files): a JS-challenge shell, by its markers."""
    head = body[:200_000]
    if b"$_ts" in head and len(body) < 200_000 and b"<p" not in head.lower():
        return "瑞数 JS challenge page"
    if b"__jsl_clearance" in head:
        return "加速乐 JS challenge page"
    return None


def extract_site(body: bytes, url: str, content_type: str | None = None) -> dict[str, Any]:
    """JSON-ready fields of one saved article page, for the `zhuanlan extract` command."""
    blocked = challenge_marker(body) or detect_block(200, body)
    if blocked:
        return {"state": "blocked" if "challenge" in blocked else "error", "reason": blocked, "url": url}
    try:
        decoded = decode_checked(body, content_type)
    except EncodingError as exc:
        return {"state": "error", "reason": str(exc), "url": url}
    article = extract_article(decoded.text, url)
    return {
        "state": "ok",
        "url": url,
        "title": article.title,
        "author": article.author,
        "author_field": article.author_field,
        "byline": article.byline,
        "source_label": article.source_label,
        "published_at": article.published_at.isoformat() if article.published_at else None,
        "written_at": article.written_at.isoformat() if article.written_at else None,
        "body_text": article.body_text,
        "encoding": decoded.encoding,
        "encoding_source": decoded.source,
        "method": article.method,
        "notes": article.notes,
    }


def iter_dates(text: str) -> Iterator[date]:
    """Every date in `text` (for diagnostics and tests)."""
    for match in DATETIME.finditer(text):
        found = parse_datetime(match.group(0))
        if found is not None:
            yield found.date()
