"""Running spiders for a set of sources in this process (the Twisted reactor runs once per process).

`zhuanlan crawl` is that process: it asks the corpus what is known, then calls `run_jobs`.
This module knows only spiders and Scrapy settings; it never touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings
from scrapy.utils.misc import load_object
from scrapy.utils.project import get_project_settings

# What a crawl process sets up before Scrapy is imported lives in crawler.launch; named here too.
from crawler.launch import (
    CRAWL_LOG,
    CRAWL_LOG_BACKUPS,
    CRAWL_LOG_MAX_BYTES,
    LOG_FORMAT,
    YOUNG_THRESHOLD,
    SourceJob,
    log_to_file,
    settle_collector,
)

__all__ = [
    "CRAWL_LOG",
    "CRAWL_LOG_BACKUPS",
    "CRAWL_LOG_MAX_BYTES",
    "LOG_FORMAT",
    "YOUNG_THRESHOLD",
    "SourceJob",
    "crawl_settings",
    "log_to_file",
    "run_jobs",
    "settle_collector",
    "spider_class",
]


def spider_class(kind: str) -> type[Any]:
    """The spider for a source kind (imported here so importing this module stays cheap)."""
    if kind == "wechat_album":
        from crawler.spiders.wechat_album import WechatAlbumSpider

        return WechatAlbumSpider
    if kind == "site_column":
        from crawler.spiders.site_column import SiteColumnSpider

        return SiteColumnSpider
    raise ValueError(f"no spider for source kind {kind!r}")


def crawl_settings(
    *,
    database_url: str,
    config_path: str,
    run_id: int | None,
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


# Components Scrapy loads by name for a crawl besides the ones in priority dictionaries.
_NAMED_COMPONENTS = ("SCHEDULER", "DUPEFILTER_CLASS", "STATS_CLASS", "SCHEDULER_PRIORITY_QUEUE", "LOG_FORMATTER")


def preload(settings: Settings) -> None:
    """Import every component Scrapy will load for a crawl with `settings` (middlewares, extensions,
    item pipelines, download handlers, scheduler…) without making any: 0.2 s of imports that
    `zhuanlan crawl` does while its pipeline worker plans the run rather than after. A component
    that cannot be imported is left for Scrapy to report, as it would anyway."""
    names: list[object] = []
    for setting in ("DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "EXTENSIONS", "ITEM_PIPELINES"):
        names += settings.get_component_priority_dict_with_base(setting)
    names += settings.getwithbase("DOWNLOAD_HANDLERS").values()
    names += [settings.get(name) for name in _NAMED_COMPONENTS]
    for name in names:
        if isinstance(name, str):
            try:
                load_object(name)
            except Exception:
                continue


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
