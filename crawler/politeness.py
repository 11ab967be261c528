"""Per-host politeness across crawl workers: no host is fetched faster than its delay, whichever
worker fetches it (issue 20).

Scrapy's DOWNLOAD_DELAY spaces the requests of one process; `zhuanlan worker` processes on several
machines would each keep their own spacing and together fetch a host several times as fast. This
downloader middleware asks Redis before every request: one key per host holds the earliest time
(Redis server clock, milliseconds) of the next fetch. `_GATE` reads it and, when that time has
come, sets it to now + delay and lets the request go; otherwise it answers how long to wait, and
the request asks again after that wait.

Why it holds: Redis runs a script atomically (no other command runs between its GET and SET), so
two workers can never both read an expired time and both go: the first moves the time forward
before the second reads it. Every worker reads the same clock (Redis' TIME), so machines whose
clocks disagree still space their fetches by the delay. The key expires a minute after it would
have mattered, so Redis holds only hosts being crawled. A request with a zero delay skips Redis.

Enabled when the crawl is given a Redis URL (`ZHUANLAN_REDIS_URL`: `zhuanlan worker` sets it).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy.exceptions import NotConfigured

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

_GATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = tonumber(redis.call('GET', KEYS[1]) or '0')
if due > now then
  return due - now
end
redis.call('SET', KEYS[1], now + tonumber(ARGV[1]), 'PX', tonumber(ARGV[1]) + 60000)
return 0
"""


class HostGate:
    """The shared next-fetch time of each host, in Redis (see the module docstring)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.prefix = prefix
        self._gate = client.register_script(_GATE)

    def wait_ms(self, host: str, delay_seconds: float) -> int:
        """0 when a fetch of `host` may go now (and is counted as gone); else milliseconds to wait."""
        return int(self._gate(keys=[f"{self.prefix}:host:{host}"], args=[round(delay_seconds * 1000)]))


class SharedHostDelay:
    """Downloader middleware: holds each request until its host's shared delay has passed."""

    def __init__(self, crawler: Crawler, gate: HostGate) -> None:
        self.crawler = crawler
        self.gate = gate

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SharedHostDelay:
        url = crawler.settings.get("ZHUANLAN_REDIS_URL")
        if not url:
            raise NotConfigured("no Redis: politeness is per process (DOWNLOAD_DELAY)")
        import redis

        prefix = crawler.settings.get("ZHUANLAN_REDIS_PREFIX") or "zhuanlan"
        return cls(crawler, HostGate(redis.Redis.from_url(url), prefix))

    async def process_request(self, request: Request, spider: Any = None) -> None:
        # The spider's own DOWNLOAD_DELAY (a WeChat source sets its slower one on its crawler).
        assert self.crawler.settings is not None
        delay = self.crawler.settings.getfloat("DOWNLOAD_DELAY")
        if delay <= 0:
            return None
        host = (urlsplit(request.url).hostname or "").lower()
        # A short blocking call (one round trip on the local network) between fetches that are a
        # delay apart anyway; the wait itself does not block the reactor.
        while (wait := self.gate.wait_ms(host, delay)) > 0:
            await asyncio.sleep(wait / 1000)
        return None
