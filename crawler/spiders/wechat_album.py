"""The WeChat album (合集) spider: lists a column's album and fetches its new article pages.

Owns the order and politeness of requests to mp.weixin.qq.com for one source: the album HTML
first screen, then the JSON paging API with the exclusive (begin_msgid, begin_itemidx) cursor
while `continue_flag` says there is more, stopping at the first already-stored article unless
backfilling; then one article page at a time, oldest first, several seconds apart. Re-check mode
(`recheck_urls`) fetches only the given article pages, to see deletions and edits.

Every page is classified before it is parsed (`crawler.parsing.wechat`). A verification page
(环境异常 / 去验证) stops the source for the rest of the run with a ProblemItem: the back-off
across runs is the store's business. Requests form one chain (each callback yields the next
request), so stopping means simply not yielding another request, and at most one request is in
flight. Must not: parse pages itself, fetch images, or store anything.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import scrapy
from scrapy.http import Response
from scrapy.settings import default_settings
from twisted.python.failure import Failure

from crawler.items import (
    GONE_STATES,
    STATE_DELETED,
    STATE_ERROR,
    STATE_EXPIRED,
    STATE_OK,
    STATE_UNAVAILABLE,
    STATE_VERIFY,
    STATE_VIOLATION,
    ArticleItem,
    ListPageItem,
)
from crawler.keys import wechat_key_from_url
from crawler.parsing.wechat import (
    AlbumEntry,
    AlbumError,
    AlbumPage,
    WechatParseError,
    album_json_url,
    album_url_from_article,
    article_fetch_url,
    classify_page,
    is_album_url,
    parse_album_html,
    parse_album_json,
    parse_article,
    sort_entries,
)
from crawler.spiders.base import SourceSpider, headers_of, text_response, validators_of

SOURCE_KIND = "wechat_album"
DEFAULT_DELAY_SECONDS = 5.0
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 20  # the album JSON API answers at most 20 items
JITTER = 0.2  # ±20 % around the per-source delay
MAX_REDIRECTS = 5
# Scrapy 2.19+ jitters download delays by a given magnitude (DOWNLOAD_DELAY_JITTER).
NATIVE_JITTER = hasattr(default_settings, "DOWNLOAD_DELAY_JITTER")
STATE_WORDS = {
    STATE_DELETED: "deleted by its author",
    STATE_VIOLATION: "removed by WeChat for a policy violation",
    STATE_UNAVAILABLE: "temporarily unavailable",
    STATE_EXPIRED: "an expired temporary link",
}


def jittered_delay(base: float, rng: random.Random) -> float:
    """The per-source delay with ±20 % jitter, so requests do not arrive on a fixed beat."""
    return max(0.0, base * rng.uniform(1 - JITTER, 1 + JITTER))


def split_urls(value: Any) -> list[str]:
    """`recheck_urls` as given on the command line (comma-separated) or by code (a list)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


@dataclass
class _Pending:
    """An article page still to fetch: its URL and what we already know of it."""

    url: str
    key: str | None  # canonical key expected from the list (None for a short link)
    title: str = ""
    redirects: int = 0


class WechatAlbumSpider(SourceSpider):
    """Source options: album_title, delay_seconds, page_size (<= 20), max_pages,
    verification_backoff_minutes, verification_max_retries. Spider argument recheck_urls."""

    name = "wechat_album"
    custom_settings = {
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        # The delay is the per-source WeChat delay (see from_crawler), not a latency-driven
        # AutoThrottle delay that could shrink it.
        "AUTOTHROTTLE_ENABLED": False,
    }

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> WechatAlbumSpider:
        spider: WechatAlbumSpider = super().from_crawler(crawler, *args, **kwargs)
        # Settings are still open here; the spider-level download_delay attribute is deprecated.
        # "cmdline" priority: the per-source WeChat delay must beat the generic site delay that
        # `zhuanlan crawl` sets for every spider at that priority.
        crawler.settings.set("DOWNLOAD_DELAY", spider.delay_seconds, priority="cmdline")
        if NATIVE_JITTER:
            crawler.settings.set("DOWNLOAD_DELAY_JITTER", JITTER, priority="cmdline")
        else:  # older Scrapy: no ±x % setting, so turn its 50-150 % off and re-jitter per request
            crawler.settings.set("RANDOMIZE_DOWNLOAD_DELAY", False, priority="cmdline")
        return spider

    def __init__(self, *args: Any, recheck_urls: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.options
        default_delay = self.crawl_options.get("wechat_delay_seconds", DEFAULT_DELAY_SECONDS)
        self.delay_seconds = float(options.get("delay_seconds", default_delay))
        self.page_size = max(1, min(int(options.get("page_size", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE))
        self.max_pages = int(options.get("max_pages", 0)) or None  # album pages per run, 0 = no cap
        self.album_title: str | None = options.get("album_title") or None
        self.backoff_minutes = int(options.get("verification_backoff_minutes", 30))
        self.max_retries = int(options.get("verification_max_retries", 3))
        self.recheck_urls = split_urls(recheck_urls)
        self._rng = random.Random()
        # The base class may have set the generic site delay; WeChat gets its own (from_crawler).
        self.__dict__.pop("download_delay", None)
        self.stopped = False
        self.column: str | None = self.source.get("column") or self.album_title
        self._queue: deque[_Pending] = deque()
        # Album listing state.
        self._album_url: str | None = None
        self._album_biz: str | None = None
        self._album_validators: tuple[str | None, str | None] = (None, None)
        self._album_fetched = False
        self._list_item_sent = False
        self._pages = 0
        self._listed: set[str] = set()
        self._new: list[AlbumEntry] = []

    # ---------------------------------------------------------------- start

    async def start(self) -> AsyncIterator[Any]:
        for request in self._first_requests():
            yield request

    def _first_requests(self) -> Iterator[scrapy.Request]:
        if self.recheck_urls:
            for url in self.recheck_urls:
                fetch = article_fetch_url(url)
                self._queue.append(_Pending(url=fetch, key=wechat_key_from_url(fetch)))
            yield from self._next_article()
            return
        url = str(self.source["url"])
        if is_album_url(url):
            yield self._album_request(url)
        else:
            # An article URL: its album_info_list names the album to follow.
            yield self._request(article_fetch_url(url), self.parse_seed_article, self._stop_on_error, fatal=True)

    def _request(self, url: str, callback: Any, errback: Any, fatal: bool = False, **meta: Any) -> scrapy.Request:
        self._rejitter()
        # dont_filter: the chain must never lose a link to the dupe filter (the seed article may be
        # listed again); duplicates are avoided by canonical key instead.
        return scrapy.Request(
            url,
            callback=callback,
            errback=errback,
            dont_filter=True,
            headers={"Referer": (self._album_url or str(self.source["url"])).split("#", 1)[0]},
            meta=self.request_meta(zhuanlan_fatal_on_error=fatal, **meta),
        )

    def _rejitter(self) -> None:
        """Older Scrapy only: a fresh ±20 % delay before each request (one delay per download slot)."""
        if NATIVE_JITTER:
            return
        delay = jittered_delay(self.delay_seconds, self._rng)
        crawler = getattr(self, "crawler", None)
        downloader = getattr(getattr(crawler, "engine", None), "downloader", None)
        for slot in getattr(downloader, "slots", {}).values():
            slot.delay = delay

    # ---------------------------------------------------------------- seed article → album

    def parse_seed_article(self, response: Response) -> Iterator[Any]:
        redirect = self._redirect(response, self.parse_seed_article, self._stop_on_error, fatal=True)
        if redirect is not None:
            yield from redirect
            return
        state = self._page_state(response)
        if state == STATE_VERIFY:
            yield from self._verification(response.url)
            return
        if response.status >= 400 or state != STATE_OK:
            reason = f"the seed article answered HTTP {response.status} ({state}); cannot find its album"
            yield self.problem(response.url, "album", reason, response.status, fatal=True)
            return
        try:
            article = parse_article(response.body, response.url)
        except WechatParseError as exc:
            yield self.problem(response.url, "album", f"the seed article could not be read: {exc}", fatal=True)
            return
        album = album_url_from_article(article, self.album_title or "") if self.album_title else None
        if album is None:
            listed = "、".join(a["title"] for a in article.albums) or "none"
            reason = f"the seed article is in no album titled {self.album_title!r} (its albums: {listed})"
            yield self.problem(response.url, "album", reason, fatal=True)
            return
        yield self._album_request(album)

    # ---------------------------------------------------------------- album listing

    def _album_request(self, url: str) -> scrapy.Request:
        self._album_url = url
        headers: dict[str, str] = {}
        etag, last_modified = self.validators.get(url, (None, None))
        if not (self.backfill or self.refresh):
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
        request = self._request(url, self.parse_album_page, self._stop_on_error, fatal=True)
        request.headers.update(headers)
        return request

    def parse_album_page(self, response: Response) -> Iterator[Any]:
        redirect = self._redirect(response, self.parse_album_page, self._stop_on_error, fatal=True)
        if redirect is not None:
            yield from redirect
            return
        if response.status == 304:  # unchanged since the last cycle: nothing new
            self._album_fetched = True
            self._album_validators = self.validators.get(self._album_url or response.url, (None, None))
            yield from self._finish_listing()
            return
        if response.status >= 400:
            reason = f"the album page answered HTTP {response.status}"
            yield self.problem(response.url, "http", reason, response.status, fatal=True)
            return
        if self._page_state(response) == STATE_VERIFY:
            yield from self._verification(response.url)
            return
        try:
            page = parse_album_html(response.body, response.url)
        except AlbumError as exc:
            yield self.problem(response.url, "album", str(exc), response.status, fatal=True)
            return
        self._album_fetched = True
        self._album_validators = validators_of(response)
        self._album_biz = page.biz
        self.column = self.source.get("column") or page.title or self.album_title
        yield from self._after_page(page, response.url)

    def parse_album_json(self, response: Response) -> Iterator[Any]:
        if response.status >= 400:
            reason = f"the album JSON API answered HTTP {response.status}; listing abandoned"
            yield self.problem(response.url, "http", reason, response.status, fatal=True)
            yield from self._abandon_listing()
            return
        if 300 <= response.status < 400:
            target = self._redirect_target(response) or ""
            if _is_captcha(target):
                yield from self._verification(response.url)
                return
            reason = f"the album JSON API redirected to {target or 'nowhere'}; listing abandoned"
            yield self.problem(response.url, "redirect", reason, response.status, fatal=True)
            yield from self._abandon_listing()
            return
        if self._page_state(response) == STATE_VERIFY:
            yield from self._verification(response.url)
            return
        try:
            page = parse_album_json(response.body, response.url)
        except AlbumError as exc:
            if exc.verification:
                yield from self._verification(response.url)
                return
            yield self.problem(response.url, "album", f"{exc}; listing abandoned", response.status, fatal=True)
            yield from self._abandon_listing()
            return
        yield from self._after_page(page, response.url)

    def _after_page(self, page: AlbumPage, url: str) -> Iterator[Any]:
        self._pages += 1
        more = self._take_entries(page)
        capped = self.max_pages is not None and self._pages >= self.max_pages
        if more and page.items and not capped and self._album_url:
            last = page.items[-1]  # the cursor is exclusive: the next page starts after it
            next_url = album_json_url(self._album_url, self.page_size, last.msgid, last.itemidx)
            yield self._request(next_url, self.parse_album_json, self._album_json_failed)
            return
        yield from self._finish_listing()

    def _take_entries(self, page: AlbumPage) -> bool:
        """Collects the new entries of one page; False once the listing should stop here."""
        for entry in page.items:
            key = entry.key(self._album_biz or page.biz)
            if key is None or key in self._listed:
                continue  # a repeated entry (some pages overlap) is taken once
            self._listed.add(key)
            if key in self.known_keys:
                if not (self.backfill or self.refresh):
                    return False  # incremental: everything older is already stored
                if not self.refresh:
                    continue
            self._new.append(entry)
        return page.continue_flag

    def _finish_listing(self) -> Iterator[Any]:
        yield from self._list_page_item()
        biz = self._album_biz
        for entry in sort_entries(self._new):  # oldest first: a stop leaves no gap behind the newest stored
            self._queue.append(_Pending(url=article_fetch_url(entry.url), key=entry.key(biz), title=entry.title))
        yield from self._next_article()

    def _abandon_listing(self) -> Iterator[Any]:
        """A failed page mid-listing: fetch nothing, so the next run lists again from the top
        (fetching the newer half now would make the incremental stop skip the older half later)."""
        self._new.clear()
        yield from self._list_page_item()

    def _list_page_item(self) -> Iterator[ListPageItem]:
        if self._album_fetched and not self._list_item_sent and self._album_url:
            self._list_item_sent = True
            etag, last_modified = self._album_validators
            yield ListPageItem(
                source_key=self.source_key,
                url=self._album_url,
                etag=etag,
                last_modified=last_modified,
                fetched_at=self.now(),
                new_links=len(self._new),
            )

    def _album_json_failed(self, failure: Failure) -> Iterator[Any]:
        yield from self.on_error(failure)
        yield from self._abandon_listing()

    def _stop_on_error(self, failure: Failure) -> Iterator[Any]:
        yield from self.on_error(failure)

    # ---------------------------------------------------------------- articles

    def _next_article(self) -> Iterator[scrapy.Request]:
        if self.stopped or not self._queue:
            return
        pending = self._queue.popleft()
        yield self._request(pending.url, self.parse_article_page, self._article_failed, zhuanlan_pending=pending)

    def _article_failed(self, failure: Failure) -> Iterator[Any]:
        yield from self.on_error(failure)
        yield from self._next_article()

    def parse_article_page(self, response: Response) -> Iterator[Any]:
        pending: _Pending = response.meta.get("zhuanlan_pending") or _Pending(url=response.url, key=None)
        if 300 <= response.status < 400 and pending.redirects < MAX_REDIRECTS:
            target = self._redirect_target(response)
            if target is not None and not _is_captcha(target):
                moved = _Pending(url=target, key=pending.key, title=pending.title, redirects=pending.redirects + 1)
                yield self._request(target, self.parse_article_page, self._article_failed, zhuanlan_pending=moved)
                return
        yield from self._article_items(response, pending)
        yield from self._next_article()

    def _article_items(self, response: Response, pending: _Pending) -> Iterator[Any]:
        if 300 <= response.status < 400:
            target = self._redirect_target(response) or ""
            if _is_captcha(target):
                yield from self._verification(response.url)
            else:
                reason = f"too many redirects or a redirect without a target (HTTP {response.status})"
                yield self.problem(response.url, "redirect", reason, response.status)
            return
        if response.status >= 400:
            reason = f"the article page answered HTTP {response.status}"
            yield self.problem(response.url, "http", reason, response.status)
            return
        state = self._page_state(response)
        if state == STATE_VERIFY:
            yield from self._verification(response.url)
            return
        if state == STATE_ERROR:
            yield self.problem(response.url, "parse", "the page is not a WeChat article page", response.status)
            return
        if state != STATE_OK:
            yield from self._state_item(response, pending, state)
            return
        try:
            article = parse_article(response.body, response.url)
        except WechatParseError as exc:
            yield self.problem(response.url, "parse", str(exc), response.status)
            return
        if pending.key and pending.key != article.canonical_key:
            self.logger.warning(
                "%s: listed as %s but the page says %s", response.url, pending.key, article.canonical_key
            )
        yield self._article_item(response, article)

    def _article_item(self, response: Response, article: Any) -> ArticleItem:
        text = text_response(response)
        etag, last_modified = validators_of(response)
        return ArticleItem(
            source_key=self.source_key,
            source_kind=SOURCE_KIND,
            url=response.url,
            canonical_key=article.canonical_key,
            fetched_at=self.now(),
            state=STATE_OK,
            title=article.title,
            author=article.author,
            byline=article.byline,
            account_name=article.account_name,
            account_id=article.account_id,
            published_at=article.published_at,
            summary=article.summary,
            cover_url=article.cover_url,
            original_url=article.original_url,
            body_html=article.body_html,
            body_text=article.body_text,
            image_urls=list(article.image_urls),
            column=self.column,
            in_column=True,
            http_status=response.status,
            headers=headers_of(response),
            raw_body=response.body,
            encoding=text.encoding if text is not None else "utf-8",
            etag=etag,
            last_modified=last_modified,
            extra={"item_show_type": article.item_show_type, "sn": article.sn, "albums": list(article.albums)},
        )

    def _state_item(self, response: Response, pending: _Pending, state: str) -> Iterator[Any]:
        """Deleted / violation / unavailable / expired: an empty ArticleItem carrying the state for an
        article we have stored (or are re-checking); for anything else only a ProblemItem."""
        words = STATE_WORDS.get(state, state)
        if pending.key and (pending.key in self.known_keys or self.recheck_urls):
            yield ArticleItem(
                source_key=self.source_key,
                source_kind=SOURCE_KIND,
                url=response.url,
                canonical_key=pending.key,
                fetched_at=self.now(),
                state=state,
                title=pending.title,
                column=self.column,
                in_column=True,
                http_status=response.status,
                headers=headers_of(response),
            )
            if state in GONE_STATES:
                return
        yield self.problem(response.url, state, f"the article is {words}", response.status)

    # ---------------------------------------------------------------- shared

    def _page_state(self, response: Response) -> str:
        return classify_page(response.body, response.url, response.status)

    def _verification(self, url: str) -> Iterator[Any]:
        """WeChat's anti-crawl page: report it and send nothing more to WeChat in this run."""
        self.stopped = True
        self._queue.clear()
        yield from self._list_page_item()
        reason = (
            f"WeChat answered with its verification page (环境异常 / 去验证) instead of {url}; "
            f"nothing more was asked of WeChat in this run. The source pauses (back-off from "
            f"{self.backoff_minutes} minutes) and is blocked after {self.max_retries} such runs in a row."
        )
        yield self.problem(url, "verification", reason)

    def _redirect_target(self, response: Response) -> str | None:
        location = response.headers.get(b"Location")
        if not location:
            return None
        return urljoin(response.url, location.decode("latin-1"))

    def _redirect(self, response: Response, callback: Any, errback: Any, fatal: bool) -> Iterator[Any] | None:
        """Follows a 3xx of a list/seed page ourselves (handle_httpstatus_all turns Scrapy's off);
        a redirect to the captcha page is the verification page."""
        if not 300 <= response.status < 400 or response.status == 304:
            return None
        target = self._redirect_target(response)
        if target is None or _is_captcha(target):
            return self._verification(response.url)
        hops = int(response.meta.get("zhuanlan_redirects", 0)) + 1
        if hops > MAX_REDIRECTS:
            reason = f"redirect loop or chain: still redirected after {MAX_REDIRECTS} hops (last to {target})"
            return iter([self.problem(response.url, "redirect", reason, response.status, fatal=fatal)])
        if callback == self.parse_album_page:
            self._album_url = target
        return iter([self._request(target, callback, errback, fatal=fatal, zhuanlan_redirects=hops)])


def _is_captcha(url: str) -> bool:
    path = urlsplit(url).path.lower()
    return "captcha" in path or "antispider" in path
