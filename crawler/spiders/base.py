"""What every source spider shares: resolving its source, allowed domains, crawl options,
and turning download failures into `ProblemItem`s (a failure is data, not just a log line)."""

from __future__ import annotations

import os
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
        if "user_agent" in self.crawl_options:
            self.user_agent = str(self.crawl_options["user_agent"])

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
        """Errback: a request that never produced a response (timeout, refused, too large, redirect loop)."""
        request = getattr(failure, "request", None)
        url = request.url if request is not None else str(self.source.get("url"))
        fatal = bool(request is not None and request.meta.get("zhuanlan_fatal_on_error"))
        yield self.problem(url, *describe_failure(failure), fatal=fatal)


def describe_failure(failure: Failure) -> tuple[str, str]:
    """(kind, plain reason) for a download failure."""
    name = type(failure.value).__name__
    text = str(failure.value) or name
    if "Timeout" in name or "timed out" in text.lower():
        return "timeout", f"no answer within the time limit ({text})"
    if "ConnectionRefused" in name:
        return "connection", "connection refused: is the site down?"
    if "DNSLookup" in name:
        return "connection", "host name not found"
    if "ConnectionLost" in name or "ResponseNeverReceived" in name or "ConnectionDone" in name:
        return "connection", f"connection dropped before the page arrived ({text})"
    if "maxsize" in text.lower() or "Cancelled" in name:
        return "too_large", f"page larger than the size limit or download cancelled ({text})"
    if "redirect" in text.lower() or "IgnoreRequest" in name:
        return "redirect", f"request abandoned ({text})"
    return "fetch", f"{name}: {text}"


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
