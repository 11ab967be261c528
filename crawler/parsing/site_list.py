"""Column list pages of unit websites: which article links a page lists and where the next page is.

Owns the list types of the `site_column` source (`html`, `trs_js_pager`, `hanweb_datastore`,
`hanweb_dataproxy`, `page_num`) and the column-membership rules (`include`/`exclude` URL
patterns, `title_include`/`title_exclude` title patterns). Pure: decoded text in, links out;
deciding what to fetch against what is already stored is the spider's job.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from lxml import etree  # type: ignore[import-untyped]

from crawler.keys import site_key
from crawler.parsing.tree import html_tree

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

LIST_TYPES = ("html", "trs_js_pager", "hanweb_datastore", "hanweb_dataproxy", "page_num")


@dataclass(frozen=True)
class ListLink:
    url: str
    title: str
    date: date | None
    in_column: bool = True  # False only for links kept by `keep_non_column` despite the title rules


@dataclass(frozen=True)
class ListPage:
    links: list[ListLink]
    next_urls: list[str]
    total_pages: int | None
    total_records: int | None = None
    skipped: list[str] = field(default_factory=list)  # URLs dropped by the column rules, for the log


class ListParseError(ValueError):
    """The page is not a list of the configured type (e.g. no pager script on a TRS list)."""


# URLs that look like article pages on Chinese government CMSs (TRS t2025…_id, Hanweb art_…,
# gov.cn content_…, Kaipuyun 32-hex uuid, dated paths) rather than columns or navigation.
_ARTICLE_URL = re.compile(
    r"/t\d{8}_\d+\.s?html?$"
    r"|/art_\d+_\d+\.html$"
    r"|/content_\d+\.s?html?$"
    r"|/[0-9a-f]{32}\.s?html?$"
    r"|/20\d{2}[-_/]?[01]\d(?:[-_/]?[0-3]\d)?/[^/]+\.s?html?$"
    r"|/\d{5,}\.s?html?$"
    r"|/(?:art|article|detail|details|content|info|show|view|news)[^/]*\.(?:jsp|aspx?|php|do)\?.*\bid=",
    re.IGNORECASE,
)
_DOCUMENT = re.compile(r"\.(?:pdf|docx?|xlsx?|wps|zip|rar|jpe?g|png)$", re.IGNORECASE)
_PAGER_WORDS = re.compile(r"上一页|下一页|首页|尾页|末页|更多|prev|next|more", re.IGNORECASE)
_NEXT_TEXTS = ("下一页", "下页", "›", "»", "下一頁")
_DATE = re.compile(r"((?:19|20)\d{2})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})")
_BOILERPLATE_CLASS = re.compile(
    r"nav|menu|footer|header|banner|breadcrumb|crumb|position|location|topbar|sidebar|side", re.I
)

_CDATA_RECORD = re.compile(r"<record[^>]*>\s*(?:<!\[CDATA\[(.*?)\]\]>|(.*?))\s*</record>", re.DOTALL | re.IGNORECASE)
_NEXTGROUP = re.compile(r"<nextgroup[^>]*>\s*(?:<!\[CDATA\[(.*?)\]\]>|(.*?))\s*</nextgroup>", re.DOTALL | re.IGNORECASE)
_TOTALRECORD = re.compile(r"<totalrecord>\s*(\d+)\s*</totalrecord>", re.IGNORECASE)
_TOTALPAGE = re.compile(r"<totalpage>\s*(\d+)\s*</totalpage>", re.IGNORECASE)
_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_CREATE_PAGE = re.compile(r"createPageHTML\s*\(([^)]*)\)")
_VAR_INT = re.compile(r"\bvar\s+(\w+)\s*=\s*(\d+)")


def parse_list(text: str, url: str, list_type: str, options: Mapping[str, Any]) -> ListPage:
    """The article links and next-page URLs of one list page, after the column rules."""
    if list_type == "html":
        page = _parse_html_list(text, url, options)
    elif list_type == "trs_js_pager":
        page = _parse_trs(text, url, options)
    elif list_type == "hanweb_datastore":
        page = _parse_hanweb(text, url, options, proxy=False)
    elif list_type == "hanweb_dataproxy":
        page = _parse_hanweb(text, url, options, proxy=True)
    elif list_type == "page_num":
        page = _parse_page_num(text, url, options)
    else:
        raise ListParseError(f"unknown list type {list_type!r}; expected one of {', '.join(LIST_TYPES)}")
    return apply_column_rules(page, options)


# -- column rules ---------------------------------------------------------------------------


def _patterns(options: Mapping[str, Any], name: str) -> list[re.Pattern[str]]:
    value = options.get(name) or []
    if isinstance(value, str):
        value = [value]
    return [re.compile(p) for p in value]


def apply_column_rules(page: ListPage, options: Mapping[str, Any]) -> ListPage:
    """Drop links failing the URL rules; title-rule failures are dropped, or kept as non-members
    when `keep_non_column` is set (so the store knows the unit published them outside the column)."""
    include, exclude = _patterns(options, "include"), _patterns(options, "exclude")
    title_include, title_exclude = _patterns(options, "title_include"), _patterns(options, "title_exclude")
    keep = bool(options.get("keep_non_column"))
    kept: list[ListLink] = []
    skipped = list(page.skipped)
    for link in page.links:
        if (include and not any(p.search(link.url) for p in include)) or any(p.search(link.url) for p in exclude):
            skipped.append(link.url)
            continue
        member = (not title_include or any(p.search(link.title) for p in title_include)) and not any(
            p.search(link.title) for p in title_exclude
        )
        if member:
            kept.append(link)
        elif keep:
            kept.append(ListLink(link.url, link.title, link.date, in_column=False))
        else:
            skipped.append(link.url)
    return ListPage(kept, page.next_urls, page.total_pages, page.total_records, skipped)


# -- helpers ---------------------------------------------------------------------------------


def _tree(text: str) -> Any:
    # lxml refuses str input that carries an XML encoding declaration.
    cleaned = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    if not cleaned.strip():
        return html_tree("<html><body></body></html>")
    try:
        return html_tree(cleaned)
    except etree.ParserError:
        return html_tree("<html><body></body></html>")


def select(root: Any, selector: str) -> list[Any]:
    """Elements (or strings, for XPath attribute/text results) a CSS or XPath selector finds."""
    selector = selector.strip()
    if selector.startswith(("/", "(", "./")):
        result = root.xpath(selector)
        return list(result) if isinstance(result, list) else [result]
    return list(root.cssselect(selector))


def _clean_text(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


def parse_date(text: str) -> date | None:
    match = _DATE.search(text)
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _usable_href(href: str | None) -> bool:
    if not href:
        return False
    lowered = href.strip().lower()
    return not lowered.startswith(("javascript:", "mailto:", "#", "tel:"))


def _link_from_anchor(anchor: Any, base: str) -> ListLink | None:
    href = anchor.get("href")
    if not _usable_href(href):
        return None
    absolute = urljoin(base, href.strip())
    if urlsplit(absolute).scheme not in {"http", "https"}:
        return None
    title = _clean_text(anchor.get("title") or anchor.text_content() or "")
    # A list row (li / tr / dd) usually carries the date next to the link.
    row = anchor
    for _ in range(3):
        parent = row.getparent()
        if parent is None:
            break
        row = parent
        if isinstance(row.tag, str) and row.tag in {"li", "tr", "dd", "dl", "p"}:
            break
    return ListLink(absolute, title, parse_date(row.text_content() if row is not anchor else ""))


def _dedupe(links: Iterable[ListLink]) -> list[ListLink]:
    seen: set[str] = set()
    out: list[ListLink] = []
    for link in links:
        key = site_key(link.url)
        if key in seen:
            continue
        seen.add(key)
        out.append(link)
    return out


def _in_boilerplate(element: Any) -> bool:
    node = element
    while node is not None:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in {"nav", "header", "footer"}:
            return True
        marker = f"{node.get('class') or ''} {node.get('id') or ''}"
        if tag not in {"html", "body"} and _BOILERPLATE_CLASS.search(marker):
            return True
        node = node.getparent()
    return False


def _list_container(anchor: Any) -> Any:
    node = anchor.getparent()
    while node is not None:
        if isinstance(node.tag, str) and node.tag in {"ul", "ol", "table", "dl"}:
            return node
        node = node.getparent()
    parent = anchor.getparent()
    grand = parent.getparent() if parent is not None else None
    return grand if grand is not None else parent


def _anchors_by_selector(root: Any, selector: str) -> list[Any]:
    anchors: list[Any] = []
    for element in select(root, selector):
        if not hasattr(element, "tag"):
            continue
        if element.tag == "a":
            anchors.append(element)
        else:
            anchors.extend(element.iter("a"))
    return anchors


def _candidates(root: Any, url: str, *, by_title: bool) -> list[Any]:
    host = urlsplit(url).hostname
    found = []
    for anchor in root.iter("a"):
        href = anchor.get("href")
        if not _usable_href(href):
            continue
        parts = urlsplit(urljoin(url, href.strip()))
        if parts.hostname != host:
            continue
        if by_title:
            # Fallback for CMSs with opaque article URLs: a list item's anchor carries a sentence-long title.
            title = _clean_text(anchor.get("title") or anchor.text_content() or "")
            if len(title) < 8 or _DOCUMENT.search(parts.path) or _PAGER_WORDS.search(title):
                continue
        elif not (
            _ARTICLE_URL.search(parts.path)  # a tracking query (?from=…) does not make it less an article
            or (parts.query and _ARTICLE_URL.search(f"{parts.path}?{parts.query}"))
        ):
            continue
        if not _in_boilerplate(anchor):
            found.append(anchor)
    return found


def _auto_anchors(root: Any, url: str) -> list[Any]:
    """Article-like anchors of the main list area: the list container holding most of them."""
    candidates = _candidates(root, url, by_title=False) or _candidates(root, url, by_title=True)
    if not candidates:
        return []
    containers = [_list_container(a) for a in candidates]
    counts = Counter(id(c) for c in containers)
    best_id, _ = counts.most_common(1)[0]
    best = next(c for c in containers if id(c) == best_id)
    best_parent = best.getparent()
    # A list split over several sibling <ul>s (e.g. groups of five) stays one list.
    keep = {best_id} | {
        id(c)
        for c in containers
        if c is not None and best_parent is not None and c.getparent() is best_parent and c.tag == best.tag
    }
    return [a for a, c in zip(candidates, containers, strict=True) if id(c) in keep]


def _html_links(root: Any, url: str, options: Mapping[str, Any]) -> list[ListLink]:
    selector = options.get("link_selector")
    anchors = _anchors_by_selector(root, str(selector)) if selector else _auto_anchors(root, url)
    links = [link for link in (_link_from_anchor(a, url) for a in anchors) if link is not None]
    return _dedupe(links)


def _next_by_anchor(root: Any, url: str, options: Mapping[str, Any]) -> list[str]:
    selector = options.get("next_page")
    hrefs: list[str] = []
    if selector:
        for found in select(root, str(selector)):
            if isinstance(found, str):
                hrefs.append(found)
            elif hasattr(found, "get") and found.get("href"):
                hrefs.append(found.get("href"))
    else:
        for anchor in root.iter("a"):
            label = _clean_text(anchor.text_content() or "")
            if label and any(label == t or label.startswith(("下一页", "下页")) for t in _NEXT_TEXTS):
                hrefs.append(anchor.get("href") or "")
    current = site_key(url)
    out: list[str] = []
    for href in hrefs:
        if not _usable_href(href):
            continue
        absolute = urljoin(url, href.strip())
        if site_key(absolute) != current and absolute not in out:
            out.append(absolute)
    return out[:1]


# -- list types ------------------------------------------------------------------------------


def _parse_html_list(text: str, url: str, options: Mapping[str, Any]) -> ListPage:
    root = _tree(text)
    return ListPage(_html_links(root, url, options), _next_by_anchor(root, url, options), None)


def _js_args(raw: str, text: str) -> list[str | int]:
    """Arguments of a `createPageHTML(...)` call; identifiers resolved through `var x = N`."""
    variables = {name: int(value) for name, value in _VAR_INT.findall(text)}
    args: list[str | int] = []
    for part in raw.split(","):
        token = part.strip().strip("\"'")
        if token.isdigit():
            args.append(int(token))
        elif token in variables:
            args.append(variables[token])
        else:
            args.append(token)
    return args


def trs_pager(text: str) -> tuple[int, int, str, str] | None:
    """(countPage, currentPage, file prefix, extension) from a TRS pager script, if any.

    Forms: createPageHTML(count, current, "index", "html"); createPageHTML('page_div', count,
    current, 'fg', 'shtml', total); and `var countPage = N` / `var currentPage = M` with an
    argument-less or variable call.
    """
    for match in _CREATE_PAGE.finditer(text):
        args = _js_args(match.group(1), text)
        ints = [i for i, a in enumerate(args) if isinstance(a, int)]
        if len(ints) >= 2:
            first = ints[0]
            if first + 3 < len(args) and isinstance(args[first + 1], int):
                count, current = int(args[first]), int(args[first + 1])
                prefix, ext = str(args[first + 2]), str(args[first + 3])
                return count, current, prefix or "index", ext or "html"
    variables = {name: int(value) for name, value in _VAR_INT.findall(text)}
    if "countPage" in variables:
        return variables["countPage"], variables.get("currentPage", 0), "index", "html"
    return None


def _parse_trs(text: str, url: str, options: Mapping[str, Any]) -> ListPage:
    root = _tree(text)
    links = _html_links(root, url, options)
    pager = trs_pager(text)
    if pager is None:
        # A one-page column may have no pager at all; no anchors are followed either way.
        return ListPage(links, [], 1 if links else None)
    count, current, prefix, ext = pager
    next_urls = [urljoin(url, f"{prefix}_{current + 1}.{ext}")] if current + 1 < count else []
    return ListPage(links, next_urls, count)


def _record_links(fragments: Iterable[str], url: str) -> list[ListLink]:
    links: list[ListLink] = []
    for fragment in fragments:
        if not fragment.strip():
            continue
        root = _tree(f"<div>{fragment}</div>")
        anchors = list(root.iter("a"))
        if not anchors:
            continue
        anchor = anchors[0]
        link = _link_from_anchor(anchor, url)
        if link is None:
            continue
        found = parse_date(root.text_content())
        links.append(ListLink(link.url, link.title, found or link.date))
    return _dedupe(links)


def _replace_query(url: str, **values: str | int) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update({k: str(v) for k, v in values.items()})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def dataproxy_url(base: str, options: Mapping[str, Any], page: int) -> str | None:
    """A GET URL of page `page` (1-based) of a Hanweb data proxy, from the source options.

    `dataproxy_url` may hold `{page}`, `{startrecord}`, `{endrecord}` and `{perpage}` fields; without
    them, page/columnid/unitid/perpage are added as query parameters.
    """
    template = options.get("dataproxy_url")
    if not template:
        return None
    per_page = int(options.get("per_page") or 20)
    start = (page - 1) * per_page + 1
    fields = {"page": page, "startrecord": start, "endrecord": start + per_page - 1, "perpage": per_page}
    template = str(template)
    if "{" in template:
        return urljoin(base, template.format(**fields))
    extra: dict[str, str | int] = {"page": page, "perpage": per_page}
    if options.get("column_id"):
        extra["columnid"] = str(options["column_id"])
    if options.get("unit_id"):
        extra["unitid"] = str(options["unit_id"])
    return _replace_query(urljoin(base, template), **extra)


def _next_dataproxy(url: str, total_records: int | None, total_pages: int | None) -> list[str]:
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    if (
        "startrecord" in query
        and "endrecord" in query
        and query["startrecord"].isdigit()
        and query["endrecord"].isdigit()
    ):
        start, end = int(query["startrecord"]), int(query["endrecord"])
        if total_records is not None and end >= total_records:
            return []
        step = end - start + 1
        return [_replace_query(url, startrecord=end + 1, endrecord=end + step)]
    if "page" in query and query["page"].isdigit():
        page = int(query["page"])
        if total_pages is not None and page >= total_pages:
            return []
        return [_replace_query(url, page=page + 1)]
    return []


def _parse_hanweb(text: str, url: str, options: Mapping[str, Any], *, proxy: bool) -> ListPage:
    """Hanweb JCMS: records are HTML fragments in CDATA inside a `<datastore>`, which an HTML
    parser never shows (it would read them as one script string)."""
    scope = text
    # Pages reached through a datastore's nextgroup link are data-proxy answers.
    proxy = proxy or "dataproxy" in urlsplit(url).path
    if not proxy:
        store = re.search(r"<datastore>(.*?)</datastore>", text, re.DOTALL | re.IGNORECASE)
        if store is None:
            raise ListParseError("no <datastore> block on this Hanweb column page")
        scope = store.group(1)
    fragments = [m.group(1) if m.group(1) is not None else m.group(2) for m in _CDATA_RECORD.finditer(scope)]
    links = _record_links(fragments, url)
    total_records = int(m.group(1)) if (m := _TOTALRECORD.search(scope)) else None
    total_pages = int(m.group(1)) if (m := _TOTALPAGE.search(scope)) else None
    next_urls: list[str] = []
    group = _NEXTGROUP.search(scope)
    if group is not None:
        href = _HREF.search(group.group(1) or group.group(2) or "")
        if href and _usable_href(href.group(1)):
            next_urls = [urljoin(url, href.group(1).replace("&amp;", "&"))]
    if not next_urls and proxy:
        next_urls = _next_dataproxy(url, total_records, total_pages)
    if not next_urls and not proxy and options.get("dataproxy_url"):
        built = dataproxy_url(url, options, 2)
        next_urls = [built] if built else []
    return ListPage(links, next_urls, total_pages, total_records)


def _parse_page_num(text: str, url: str, options: Mapping[str, Any]) -> ListPage:
    root = _tree(text)
    links = _html_links(root, url, options)
    if not links:
        return ListPage(links, [], None)
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    current = int(query["pageNum"]) if query.get("pageNum", "").isdigit() else 1
    extra: dict[str, str | int] = {"pageNum": current + 1}
    if options.get("unit_id") and "uid" not in query:
        extra["uid"] = str(options["unit_id"])
    return ListPage(links, [_replace_query(url, **extra)], None)
