"""The HTTP download handler of every crawl: Scrapy's HTTP/1.1 handler, keeping idle connections.

Scrapy's pool keeps at most `CONCURRENT_REQUESTS_PER_DOMAIN` idle connections per host (1 here)
and closes any other connection that comes back to it. Without a download delay Scrapy 2.19 sends
several requests to one host at once all the same (its downloader starts every queued request of
a slot before the first counts as transferring; with a delay it starts one at a time), each on a
connection of its own, and all but one of those connections were closed after their response.
Measured against a keep-alive nginx: 1,800 TCP connections for 2,101 requests; keeping 2 idle
connections 1,501, keeping 4 906, keeping 8 or more 8. Each connection costs the crawl and the
site a handshake (and a TLS one on https).

Here a host may keep as many idle connections as the crawl has requests in flight at most
(`CONCURRENT_REQUESTS`), so every connection opened is used again. Nothing else changes: not
how many requests are sent, nor when; the server still closes idle connections when it likes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class KeepAliveHTTPHandler(HTTP11DownloadHandler):
    """`HTTP11DownloadHandler` whose pool keeps up to `CONCURRENT_REQUESTS` idle connections per host."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self._pool.maxPersistentPerHost = max(
            crawler.settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN"), crawler.settings.getint("CONCURRENT_REQUESTS")
        )
