"""Running spiders for a set of sources in this process (the Twisted reactor runs once per process).

`zhuanlan crawl` is that process: it asks the corpus what is known, then calls `run_jobs`.
This module knows only spiders and Scrapy settings; it never touches the database.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings
from scrapy.utils.project import get_project_settings


@dataclass(frozen=True)
class SourceJob:
    """One source to crawl and what the corpus already knows of it."""

    source: Mapping[str, Any]  # key, kind, url, unit, column, options
    known_keys: frozenset[str] = frozenset()
    validators: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    backfill: bool = False
    refresh: bool = False
    recheck_urls: tuple[str, ...] = ()


def spider_class(kind: str) -> type[Any]:
    """The spider for a source kind (imported here so importing this module stays cheap)."""
    if kind == "wechat_album":
        from crawler.spiders.wechat_album import WechatAlbumSpider

        return WechatAlbumSpider
    if kind == "site_column":
        from crawler.spiders.site_column import SiteColumnSpider

        return SiteColumnSpider
    raise ValueError(f"no spider for source kind {kind!r}")


# The crawl's log: data_dir/logs/crawl.log, rotated at the start of a crawl once it passes the size.
CRAWL_LOG = Path("logs") / "crawl.log"
CRAWL_LOG_MAX_BYTES = 5 * 1024 * 1024
CRAWL_LOG_BACKUPS = 5
LOG_FORMAT = "%(asctime)s %(process)d [%(name)s] %(levelname)s: %(message)s"


def log_to_file(data_dir: Path, level: str) -> Path:
    """Send this process's log (Scrapy's, Twisted's, warnings, tracebacks) to the crawl log, and
    nothing to the terminal; returns the file's path.

    The file is rotated here, before the crawl starts, when it is over CRAWL_LOG_MAX_BYTES (five
    older files kept): the pipeline worker appends to it too, and two processes must not rotate."""
    path = data_dir / CRAWL_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        path, maxBytes=CRAWL_LOG_MAX_BYTES, backupCount=CRAWL_LOG_BACKUPS, encoding="utf-8", delay=True
    )
    if path.is_file() and path.stat().st_size >= CRAWL_LOG_MAX_BYTES:
        handler.doRollover()
    handler.maxBytes = 0  # no rollover during the run
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.root.addHandler(handler)
    logging.root.setLevel(logging.NOTSET)
    logging.captureWarnings(True)
    return path


def crawl_settings(
    *,
    database_url: str,
    config_path: str,
    run_id: int,
    crawl: Mapping[str, Any],
    log_level: str = "WARNING",
    log_file: Path | None = None,
    redis: tuple[str | None, str] = (None, "zhuanlan"),
    keep_frontier: bool = False,
) -> Settings:
    """The settings of one crawl process. With a Redis URL the requests of every source wait in
    Redis (`crawler.frontier`); `keep_frontier`: a crawl worker's child, whose frontier stays in
    Redis until the worker is done with the source (a process that takes the source over resumes it)."""
    settings = get_project_settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.set("ZHUANLAN_DATABASE_URL", database_url, priority="cmdline")
    settings.set("ZHUANLAN_CONFIG", config_path, priority="cmdline")
    settings.set("ZHUANLAN_RUN_ID", run_id, priority="cmdline")
    settings.set("USER_AGENT", crawl["user_agent"], priority="cmdline")
    settings.set("DOWNLOAD_TIMEOUT", crawl["timeout_seconds"], priority="cmdline")
    settings.set("DOWNLOAD_DELAY", crawl["download_delay_seconds"], priority="cmdline")
    settings.set("DOWNLOAD_MAXSIZE", crawl["max_page_bytes"], priority="cmdline")
    settings.set("ROBOTSTXT_OBEY", crawl["obey_robots"], priority="cmdline")
    if float(crawl["download_delay_seconds"]) == 0:
        settings.set("AUTOTHROTTLE_ENABLED", False, priority="cmdline")
    settings.set("LOG_LEVEL", log_level, priority="cmdline")
    if log_file is not None:  # the caller logs to this file (`log_to_file`): Scrapy adds no handler
        settings.set("LOG_ENABLED", False, priority="cmdline")
        settings.set("ZHUANLAN_LOG_FILE", str(log_file), priority="cmdline")
    # With Redis, every process fetching a host keeps one shared delay (crawler.politeness).
    settings.set("ZHUANLAN_REDIS_URL", redis[0], priority="cmdline")
    settings.set("ZHUANLAN_REDIS_PREFIX", redis[1], priority="cmdline")
    if redis[0]:
        from crawler.frontier import redis_settings

        for name, value in redis_settings(redis[0], keep=keep_frontier).items():
            settings.set(name, value, priority="cmdline")
    return settings


# The young generation's size for a crawl's processes (this one and its pipeline worker; 700 by
# default). Each page allocates tens of thousands of objects that live only until the next one:
# with 700 the collector ran about 700 times per 2,000 pages in the crawl process and spent 0.3 s
# there, with 20,000 it runs 12-16 times for 0.11-0.15 s (measured with gc.callbacks; peak
# RSS the same). The older generations keep their defaults, so cyclic garbage still goes.
YOUNG_THRESHOLD = 20_000


def settle_collector() -> None:
    """What start-up loaded (Scrapy, the parsers, the pipeline's modules) lives as long as the crawl:
    frozen out of the collector's way (the crawl's collections cost about a third less, 0.2 s per
    2,000 pages measured), and the young generation enlarged.

    Not collected first: a full collection at that point found 0 to 20 unreachable objects in either
    process and cost 60 ms, on the crawl's critical path before its first request (measured)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def run_jobs(jobs: Sequence[SourceJob], settings: Settings, crawl: Mapping[str, Any]) -> None:
    """Crawl every job's source concurrently; returns when all spiders have closed."""
    process = CrawlerProcess(settings)
    for job in jobs:
        kwargs: dict[str, Any] = {
            "source": dict(job.source),
            "known_keys": job.known_keys,
            "validators": dict(job.validators),
            "backfill": job.backfill,
            "refresh": job.refresh,
            "crawl": dict(crawl),
        }
        if job.recheck_urls:
            kwargs["recheck_urls"] = list(job.recheck_urls)
        process.crawl(spider_class(str(job.source["kind"])), **kwargs)
    settle_collector()
    process.start()
