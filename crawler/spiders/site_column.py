"""`site_column`: a unit website's column, list pages then article pages.

A thin shell over `crawler.parsing` (encoding, site_list, site_article): it schedules requests
(conditional GET on list pages, stop paging when nothing new appears, never refetch a stored
article unless refreshing), classifies failures into `ProblemItem`s and turns parsed pages into
`ArticleItem`s. It reads no config and no clock except through `SourceSpider`.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import scrapy

from crawler.items import STATE_DELETED, STATE_OK, ArticleItem, ListPageItem, ProblemItem
from crawler.keys import site_key
from crawler.parsing.encoding import EncodingError, decode_checked
from crawler.parsing.site_article import SHANGHAI, detect_block, extract_article
from crawler.parsing.site_list import ListLink, ListParseError, dataproxy_url, parse_list
from crawler.spiders.base import SourceSpider, headers_of, validators_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from scrapy.http import Response

DEFAULT_PAGE_LIMIT = 5
BACKFILL_PAGE_LIMIT = 100
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class SiteColumnSpider(SourceSpider):
    """Options (source.options): list_type, link_selector, next_page, include, exclude,
    title_include, title_exclude, keep_non_column, page_limit, selectors, encoding, column_id,
    unit_id, dataproxy_url, per_page."""

    name = "site_column"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.list_type = str(self.options.get("list_type") or "html")
        configured = self.options.get("page_limit")
        limit = int(configured) if configured else DEFAULT_PAGE_LIMIT
        self.page_limit = max(limit, BACKFILL_PAGE_LIMIT) if self.backfill else limit
        self.selectors: dict[str, str] = dict(self.options.get("selectors") or {})
        self.encoding_override: str | None = self.options.get("encoding")
        self._seen_links: set[str] = set()  # list links met in this run, across pages
        self._visited_lists: set[str] = set()

    # -- scheduling -------------------------------------------------------------------------

    def first_list_url(self) -> str:
        url = str(self.source["url"])
        if self.list_type == "hanweb_dataproxy" and self.options.get("dataproxy_url"):
            return dataproxy_url(url, self.options, 1) or url
        return url

    async def start(self) -> AsyncIterator[Any]:
        for request in self.start_requests():
            yield request

    def start_requests(self) -> Iterator[scrapy.Request]:
        yield self._list_request(self.first_list_url(), page=1)

    def _list_request(self, url: str, page: int, redirects: int = 0, chain: tuple[str, ...] = ()) -> scrapy.Request:
        headers: dict[str, str] = {}
        etag, last_modified = self.validators.get(url, (None, None))
        if not self.backfill and not self.refresh:
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
        self._visited_lists.add(site_key(url))
        return scrapy.Request(
            url,
            callback=self.parse_list_page,
            errback=self.on_error,
            headers=headers,
            dont_filter=redirects > 0,
            meta=self.request_meta(
                zhuanlan_page=page,
                zhuanlan_redirects=redirects,
                zhuanlan_chain=chain,
                zhuanlan_fatal_on_error=page == 1,
            ),
        )

    def _article_request(
        self, link: ListLink, known: bool, redirects: int = 0, url: str | None = None, chain: tuple[str, ...] = ()
    ) -> scrapy.Request:
        return scrapy.Request(
            url or link.url,
            callback=self.parse_article,
            errback=self.on_error,
            dont_filter=redirects > 0,
            meta=self.request_meta(
                zhuanlan_link=link, zhuanlan_known=known, zhuanlan_redirects=redirects, zhuanlan_chain=chain
            ),
        )

    def _redirect_target(self, response: Response) -> str | None:
        # handle_httpstatus_all turns Scrapy's redirect middleware off, so redirects are followed here.
        if response.status not in _REDIRECTS:
            return None
        location = response.headers.get(b"Location")
        if not location or int(response.meta.get("zhuanlan_redirects", 0)) >= MAX_REDIRECTS:
            return None
        target = urljoin(response.url, location.decode("latin-1"))
        if target == response.url or target in response.meta.get("zhuanlan_chain", ()):
            return None  # a loop: reported by `_redirect_problem`
        return target

    def _redirect_problem(self, response: Response) -> str | None:
        """Plain words for a redirect that is not followed (a loop, too many hops, no target)."""
        if response.status not in _REDIRECTS:
            return None
        location = response.headers.get(b"Location")
        if not location:
            return f"HTTP {response.status} redirect without a Location: nowhere to go"
        target = urljoin(response.url, location.decode("latin-1"))
        chain = (*response.meta.get("zhuanlan_chain", ()), response.url)
        if target in chain:
            return f"redirect loop: {response.url} redirects back to {target}, a page already visited"
        return f"too many redirects: still redirected after {MAX_REDIRECTS} hops (last to {target})"

    def _chain(self, response: Response) -> tuple[str, ...]:
        return (*response.meta.get("zhuanlan_chain", ()), response.url)

    # -- list pages -------------------------------------------------------------------------

    def parse_list_page(self, response: Response) -> Iterator[Any]:
        page = int(response.meta.get("zhuanlan_page", 1))
        fatal = page == 1
        target = self._redirect_target(response)
        if target is not None:
            redirects = int(response.meta.get("zhuanlan_redirects", 0)) + 1
            yield self._list_request(target, page, redirects, self._chain(response))
            return
        redirect_problem = self._redirect_problem(response)
        if redirect_problem is not None:
            yield self.problem(response.url, "redirect", redirect_problem, response.status, fatal)
            return
        if response.status == 304:
            # Unchanged since the last cycle: nothing new on this list, so nothing further either.
            etag, last_modified = self.validators.get(response.url, (None, None))
            yield ListPageItem(self.source_key, response.url, etag, last_modified, self.now(), 0)
            return
        reason = detect_block(response.status, response.body, headers_of(response))
        if reason is not None:
            yield self._problem_for(response.url, response.status, reason, fatal)
            return
        try:
            decoded = decode_checked(response.body, _content_type(response), self.encoding_override)
            listing = parse_list(decoded.text, response.url, self.list_type, self.options)
        except EncodingError as exc:
            yield self.problem(response.url, "encoding", f"list page unreadable: {exc}", response.status, fatal)
            return
        except ListParseError as exc:
            yield self.problem(response.url, "parse", f"list page not understood: {exc}", response.status, fatal)
            return
        etag, last_modified = validators_of(response)
        new_links = [link for link in listing.links if site_key(link.url) not in self.known_keys]
        yield ListPageItem(self.source_key, response.url, etag, last_modified, self.now(), len(new_links))
        if page == 1 and not listing.links:
            yield self.problem(
                response.url,
                "parse",
                f"the column list has no article links (list_type {self.list_type}): check the source options",
                response.status,
                fatal=True,
            )
            return
        # Links the column rules dropped still tell whether this page repeats an earlier one.
        page_keys = [site_key(link.url) for link in listing.links] + [site_key(url) for url in listing.skipped]
        fresh = [key for key in page_keys if key not in self._seen_links]
        self._seen_links.update(site_key(url) for url in listing.skipped)
        # Incremental stop: a page that lists stored articles and nothing new. A page of only
        # non-column links (a mixed list) says nothing about what lies further on.
        reached_known = any(site_key(link.url) in self.known_keys for link in listing.links)
        for link in listing.links:
            key = site_key(link.url)
            if key in self._seen_links:
                continue
            self._seen_links.add(key)
            known = key in self.known_keys
            if known and not self.refresh:
                continue
            yield self._article_request(link, known)
        # Stop when the page brought nothing new (incremental), repeats itself, or the limit is hit.
        if not fresh or (not new_links and reached_known and not self.backfill) or page >= self.page_limit:
            return
        for next_url in listing.next_urls:
            if site_key(next_url) not in self._visited_lists:
                yield self._list_request(next_url, page + 1)

    # -- article pages ----------------------------------------------------------------------

    def parse_article(self, response: Response) -> Iterator[Any]:
        link: ListLink = response.meta["zhuanlan_link"]
        known = bool(response.meta.get("zhuanlan_known"))
        target = self._redirect_target(response)
        if target is not None:
            redirects = int(response.meta.get("zhuanlan_redirects", 0)) + 1
            yield self._article_request(link, known, redirects, url=target, chain=self._chain(response))
            return
        redirect_problem = self._redirect_problem(response)
        if redirect_problem is not None:
            yield self.problem(response.url, "redirect", redirect_problem, response.status)
            return
        if response.status in {404, 410} and known:
            # A stored article that is gone at the source: our copy stays, marked deleted there.
            yield self._state_item(response, link, STATE_DELETED)
            return
        headers = headers_of(response)
        reason = detect_block(response.status, response.body, headers)
        if reason is not None:
            yield self._problem_for(response.url, response.status, reason, False)
            return
        limit = self.crawl_options.get("max_page_bytes")
        if limit and len(response.body) > int(limit):
            yield self.problem(
                response.url,
                "too_large",
                f"page of {len(response.body)} bytes exceeds the {limit}-byte limit",
                response.status,
            )
            return
        try:
            decoded = decode_checked(response.body, _content_type(response), self.encoding_override)
        except EncodingError as exc:
            yield self.problem(response.url, "encoding", f"article not stored: {exc}", response.status)
            return
        article = extract_article(decoded.text, response.url, self.selectors)
        if not article.body_text.strip():
            yield self.problem(response.url, "parse", "no article text found on the page", response.status)
            return
        published_at = article.published_at
        extra: dict[str, Any] = {"method": article.method, "encoding_source": decoded.source}
        if published_at is None and link.date is not None:
            published_at = datetime.combine(link.date, time(0), tzinfo=SHANGHAI)
            extra["method"] = {**article.method, "published_at": "list page date"}
        if article.written_at is not None:
            extra["written_at"] = article.written_at.isoformat()
        if article.notes:
            extra["notes"] = article.notes
        if link.in_column and (self.source.get("options") or {}).get("title_include"):
            # Listed in a mixed list and kept by the source's title rule: a column candidate only.
            extra["column_rule"] = "title"
        etag, last_modified = validators_of(response)
        yield ArticleItem(
            source_key=self.source_key,
            source_kind="site_column",
            url=response.url,
            canonical_key=site_key(response.url),
            fetched_at=self.now(),
            state=STATE_OK,
            title=article.title or link.title,
            author=article.author_field,
            byline=article.byline,
            source_label=article.source_label,
            published_at=published_at,
            body_html=article.body_html,
            body_text=article.body_text,
            column=self.source.get("column"),
            in_column=link.in_column,
            http_status=response.status,
            headers=headers,
            raw_body=response.body,
            encoding=decoded.encoding,
            etag=etag,
            last_modified=last_modified,
            extra=extra,
        )

    def _state_item(self, response: Response, link: ListLink, state: str) -> ArticleItem:
        return ArticleItem(
            source_key=self.source_key,
            source_kind="site_column",
            url=response.url,
            canonical_key=site_key(link.url),
            fetched_at=self.now(),
            state=state,
            title=link.title,
            column=self.source.get("column"),
            in_column=link.in_column,
            http_status=response.status,
            headers=headers_of(response),
        )

    def _problem_for(self, url: str, status: int, reason: str, fatal: bool) -> ProblemItem:
        kind = "blocked" if "challenge" in reason else ("empty" if reason == "empty page" else "http")
        return self.problem(url, kind, reason, status, fatal)


def _content_type(response: Response) -> str | None:
    value = response.headers.get(b"Content-Type")
    return value.decode("latin-1") if value else None
