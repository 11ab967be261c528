"""What every source spider shares: resolving its source, allowed domains, crawl options,
and turning download failures into `ProblemItem`s (a failure is data, not just a log line)."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response, TextResponse
from twisted.python.failure import Failure

from crawler.items import ProblemItem


def load_source(key: str, config_path: str | None) -> dict[str, Any]:
    """A source's definition from the config file, for `scrapy crawl <spider> -a source=KEY`."""
    from zhuanlan_config import load_config

    config = load_config(config_path or os.environ.get("ZHUANLAN_CONFIG", "zhuanlan.toml"))
    source = config.source(key)
    data = asdict(source)
    data["options"] = dict(source.options)
    crawl = asdict(config.crawl)
    data["_crawl"] = crawl
    return data


class SourceSpider(scrapy.Spider):
    """Base of the source spiders. Constructor arguments (all optional except `source`):

    source: the source definition (dict with key, kind, url, unit, column, options) or its key.
    known_keys: canonical keys of appearances already stored for this source.
    validators: list-page URL -> (ETag, Last-Modified) from the previous cycle.
    backfill: page to the end instead of stopping at the first known article.
    refresh: re-fetch stored articles too.
    crawl: crawl options (CrawlConf fields: user_agent, timeout_seconds, download_delay_seconds,
        wechat_delay_seconds, max_page_bytes).
    """

    def __init__(
        self,
        source: Mapping[str, Any] | str,
        known_keys: Collection[str] = (),
        validators: Mapping[str, tuple[str | None, str | None]] | None = None,
        backfill: bool | str = False,
        refresh: bool | str = False,
        crawl: Mapping[str, Any] | None = None,
        config: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        resolved = load_source(source, config) if isinstance(source, str) else dict(source)
        self.source: dict[str, Any] = resolved
        self.source_key: str = str(resolved["key"])
        self.options: dict[str, Any] = dict(resolved.get("options") or {})
        self.crawl_options: dict[str, Any] = dict(crawl or resolved.get("_crawl") or {})
        self.known_keys: frozenset[str] = frozenset(known_keys)
        self.validators: dict[str, tuple[str | None, str | None]] = dict(validators or {})
        self.backfill = _truthy(backfill)
        self.refresh = _truthy(refresh)
        host = urlsplit(str(resolved["url"])).hostname
        # Scrapy's offsite filter silently drops requests to hosts outside allowed_domains.
        self.allowed_domains = [host] if host else []

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> Any:
        spider = super().from_crawler(crawler, *args, **kwargs)
        # The configured user agent, as a setting (the spider attribute is deprecated in Scrapy 2.13+);
        # `zhuanlan crawl` sets the same value at a higher priority.
        if "user_agent" in spider.crawl_options:
            crawler.settings.set("USER_AGENT", str(spider.crawl_options["user_agent"]), priority="spider")
        return spider

    def now(self) -> datetime:
        """Fetch time of a response: the shell's clock, the only place the spiders read it."""
        return datetime.now(UTC)

    def request_meta(self, **extra: Any) -> dict[str, Any]:
        """Meta for every request: the spider classifies HTTP errors itself; size and timeout limits."""
        meta: dict[str, Any] = {"handle_httpstatus_all": True}
        if "max_page_bytes" in self.crawl_options:
            meta["download_maxsize"] = int(self.crawl_options["max_page_bytes"])
        if "timeout_seconds" in self.crawl_options:
            meta["download_timeout"] = float(self.crawl_options["timeout_seconds"])
        meta.update(extra)
        return meta

    def problem(self, url: str, kind: str, reason: str, status: int | None = None, fatal: bool = False) -> ProblemItem:
        return ProblemItem(
            source_key=self.source_key, url=url, kind=kind, reason=reason, http_status=status, fatal=fatal
        )

    def on_error(self, failure: Failure) -> Iterator[ProblemItem]:
        """Errback: a request that never produced a response (timeout, refused, reset, truncated, too large)."""
        request = getattr(failure, "request", None)
        url = request.url if request is not None else str(self.source.get("url"))
        fatal = bool(request is not None and request.meta.get("zhuanlan_fatal_on_error"))
        limits = dict(request.meta) if request is not None else {}
        if "download_maxsize" not in limits and "max_page_bytes" in self.crawl_options:
            limits["download_maxsize"] = int(self.crawl_options["max_page_bytes"])
        yield self.problem(url, *describe_failure(failure, limits), fatal=fatal)


def exception_chain(error: BaseException | None) -> list[BaseException]:
    """`error` and what it wraps: `__cause__`/`__context__`, and the failures that Twisted's
    ResponseFailed / ResponseNeverReceived carry in `reasons` (Scrapy >= 2.13 wraps Twisted errors
    in its own DownloadFailedError, older versions raise them as they are)."""
    found: list[BaseException] = []
    pending: list[Any] = [error]
    while pending and len(found) < 20:
        current = pending.pop(0)
        current = getattr(current, "value", current)  # a twisted Failure -> its exception
        if not isinstance(current, BaseException) or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__, *(getattr(current, "reasons", None) or [])]
    return found


_MAXSIZE_ANNOUNCED = re.compile(r"Expected to receive (\d+) bytes")


def describe_failure(failure: Failure, meta: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(kind, plain reason) for a download failure; `meta` (the request's) names the limits in force."""
    meta = meta or {}
    chain = exception_chain(failure.value)
    names = " ".join(type(error).__name__ for error in chain)
    text = " ".join(str(error) for error in chain)
    first = str(failure.value) or type(failure.value).__name__
    timeout = meta.get("download_timeout")
    maxsize = meta.get("download_maxsize")
    if "Timeout" in names or "TimedOut" in names or "timed out" in text.lower():
        limit = f" ({float(timeout):g} s)" if timeout else ""
        return "timeout", f"no answer within the time limit{limit}: the site is slow or down"
    if "ConnectionRefused" in names:
        return "connection", "connection refused: is the site down?"
    if "DNSLookup" in names or "CannotResolveHost" in names:
        return "connection", "host name not found"
    if "DataLoss" in names:
        return (
            "truncated",
            "the page arrived incomplete: the connection closed before all the bytes its Content-Length "
            "announced had arrived; nothing of it was kept",
        )
    if "Cancelled" in names or "maxsize" in text.lower() or "max size" in text.lower():
        if maxsize or "max size" in text.lower():
            announced = _MAXSIZE_ANNOUNCED.search(text)
            size = f" (it announced {int(announced.group(1))} bytes)" if announced else ""
            limit = f"{int(maxsize)}-byte " if maxsize else ""
            return "too_large", f"page larger than the {limit}size limit{size}: download stopped, nothing kept"
        return "fetch", f"download cancelled ({first})"
    if any(marker in names for marker in ("ConnectionLost", "ConnectionDone", "ResponseNeverReceived", "Reset")) or (
        "reset by peer" in text.lower()
    ):
        return "connection", "connection dropped before the page arrived: the site closed or reset the connection"
    if "redirect" in text.lower() or "IgnoreRequest" in names:
        return "redirect", f"request abandoned ({first})"
    return "fetch", f"{type(failure.value).__name__}: {first[:300]}"


def text_response(response: Response) -> TextResponse | None:
    """Spider callbacks receive `Response`; narrow to `TextResponse` (None for binary bodies)."""
    return response if isinstance(response, TextResponse) else None


def validators_of(response: Response) -> tuple[str | None, str | None]:
    etag = response.headers.get(b"ETag")
    last_modified = response.headers.get(b"Last-Modified")
    return (
        etag.decode("latin-1") if etag else None,
        last_modified.decode("latin-1") if last_modified else None,
    )


def headers_of(response: Response) -> dict[str, str]:
    return {k.decode("latin-1"): b", ".join(v).decode("latin-1") for k, v in response.headers.items()}


def _truthy(value: bool | str) -> bool:
    if isinstance(value, bool):
        return value
    return value.strip().lower() in {"1", "true", "yes", "on"}
