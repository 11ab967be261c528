"""The Redis keys and Scrapy settings of a crawl's request frontier (issue 20): scrapy-redis keeps
each source's requests and seen-set in Redis; `crawler.redis_scheduler` is the Scrapy side and
says why a frontier left by a dead crawl can be resumed. Plain data only: the source queue
(`crawler.queue`) imports this without Scrapy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The source kinds whose spiders can take over a persisted queue (see crawler.redis_scheduler).
RESUMABLE_KINDS = frozenset({"site_column"})

FRONTIER_SCHEDULER = "crawler.redis_scheduler.FrontierScheduler"

# Requests a spider takes from its frontier before they are done (Scrapy's CONCURRENT_REQUESTS, 16
# by default). Scrapy takes requests until its downloader holds that many, though one host is
# fetched one request at a time (CONCURRENT_REQUESTS_PER_DOMAIN = 1) and a source is mostly one
# host: the others only wait in the downloader, where a dead crawl loses them. Four keep the
# downloader busy and leave the rest of the frontier in Redis, for a takeover to resume.
IN_FLIGHT = 4


@dataclass(frozen=True)
class FrontierKeys:
    requests: str  # scrapy-redis' request queue (a sorted set)
    seen: str  # scrapy-redis' dupefilter (a set of request fingerprints)


def frontier_keys(prefix: str, run_id: int, source_key: str) -> FrontierKeys:
    """The Redis keys of one source's frontier in one crawl run."""
    # scrapy-redis formats its keys with `%` (for the spider name): config validation keeps `%` out
    # of the prefix and the source keys; a key with one would be mangled, so refuse it here.
    if "%" in prefix or "%" in source_key:
        raise ValueError(f"'%' in a frontier key: {prefix!r}, {source_key!r}")
    base = f"{prefix}:frontier:{run_id}:{source_key}"
    return FrontierKeys(requests=f"{base}:requests", seen=f"{base}:seen")


def resumes(kind: str) -> bool:
    """Whether a crawl of this source kind fetches the requests a dead crawl left queued."""
    return kind in RESUMABLE_KINDS


def redis_settings(redis_url: str, *, keep: bool) -> dict[str, Any]:
    """The Scrapy settings that put a crawl's frontier in Redis; `keep`: a crawl worker's child,
    whose frontier outlives it until the job is done."""
    return {
        "SCHEDULER": FRONTIER_SCHEDULER,
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",  # Request.priority, as Scrapy's
        "SCHEDULER_SERIALIZER": "crawler.request_codec",  # JSON: unpickling would run what Redis holds
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "REDIS_URL": redis_url,
        "SCHEDULER_PERSIST": keep,
        "CONCURRENT_REQUESTS": IN_FLIGHT,
    }


def frontiers_by_run(client: Any, prefix: str) -> dict[int, list[str]]:
    """Crawl run id → the frontier keys under `prefix` in Redis (SCAN, a page at a time: never KEYS)."""
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + ":frontier:*"  # the prefix taken literally
    start = len(prefix) + len(":frontier:")
    found: dict[int, list[str]] = {}
    for raw in client.scan_iter(match=pattern, count=1000):
        key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        run = key[start:].partition(":")[0]
        if run.isdigit():
            found.setdefault(int(run), []).append(key)
    return found
