"""Scrapy settings shared by every crawl. Per-run values (database URL, config path, run id)
are added by `zhuanlan crawl` or read from the environment by `from_env`."""

from __future__ import annotations

import os

from scrapy.settings.default_settings import EXTENSIONS_BASE as _SCRAPY_EXTENSIONS

BOT_NAME = "zhuanlan"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 1
DOWNLOAD_DELAY = 1.0
DOWNLOAD_DELAY_JITTER = 0.5
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 10 * 1024 * 1024
DOWNLOAD_WARNSIZE = 0
RETRY_ENABLED = True
RETRY_TIMES = 2
REDIRECT_MAX_TIMES = 10
# Pages are read as they are: a <meta refresh> inside crawled content (hostile or not) must not
# send the spider elsewhere; a refresh-only page is recorded as a page without article text.
METAREFRESH_ENABLED = False
# Scrapy re-reads and re-parses a callback's source on every response to warn about generator
# return values (measured 2.1 s per 1,000 pages); our callbacks are tested instead.
WARN_ON_GENERATOR_RETURN_VALUE = False
COOKIES_ENABLED = True
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.cookies.CookiesMiddleware": None,
    "crawler.cookies.OfflineCookiesMiddleware": 700,
    # One delay per host across every crawl process when Redis is configured (off otherwise).
    "crawler.politeness.SharedHostDelay": 50,
}
# Idle keep-alive connections are reused even without a download delay (crawler/http.py).
DOWNLOAD_HANDLERS = {
    "http": "crawler.http.KeepAliveHTTPHandler",
    "https": "crawler.http.KeepAliveHTTPHandler",
}
TELNETCONSOLE_ENABLED = False
# Scrapy 2.19's remote control runs Python code sent over HTTP by any local process holding the
# token it writes to the user's profile directory. A scheduled crawler has no use for it. It is
# left out of the base list, not set to None in EXTENSIONS: Scrapy imports every listed extension,
# None or not, and this one imports aiohttp (about 0.2 s of every crawl's start).
REMOTE_CONTROL_ENABLED = False
EXTENSIONS_BASE = {
    path: order
    for path, order in _SCRAPY_EXTENSIONS.items()
    if path != "scrapy.extensions.remote_control.RemoteControl"
}
LOG_LEVEL = "INFO"
REQUEST_FINGERPRINTER_IMPLEMENTATION = "2.7"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
FEED_EXPORT_ENCODING = "utf-8"
# Log lines name the item by its URL and key only: raw page bytes never reach the log.
LOG_FORMATTER = "crawler.logformatter.QuietLogFormatter"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 zhuanlan/0.1"
)

# One entry, a thin shell: the ingest (normalize → deduplicate → tag → store, `pipeline.ingest`) runs
# in the pipeline worker process on another core while this process fetches and extracts.
ITEM_PIPELINES = {"pipeline.worker.shell.IngestPipeline": 100}
# Items in flight per response. Scrapy starts this many tasks for every response's output (100 by
# default: 1.4 ms per response measured with Scrapy 2.19); a page yields one article, a list page
# one list item plus its links, and the worker handles items one at a time anyway.
CONCURRENT_ITEMS = 4

# Per-run values; `zhuanlan crawl` sets them explicitly.
ZHUANLAN_CONFIG = os.environ.get("ZHUANLAN_CONFIG", "zhuanlan.toml")
ZHUANLAN_DATABASE_URL = os.environ.get("ZHUANLAN_DATABASE_URL", "")
ZHUANLAN_RUN_ID = None
ZHUANLAN_REDIS_URL = None
ZHUANLAN_REDIS_PREFIX = "zhuanlan"
