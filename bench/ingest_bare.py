"""The baseline of the ingest benchmark: a bare Scrapy spider over the generated site.

It fetches the same list pages and article pages as the project's `site_column` spider and only
parses title and body with CSS selectors (no pipeline, no database), with the same concurrency
settings. Run as `python -m bench.ingest_bare LIST_URL CONCURRENT PER_DOMAIN [ITEMS [keep-alive]]`
(ITEMS: CONCURRENT_ITEMS, Scrapy's default when left out or "-"; `keep-alive`: with the project's
download handler, `crawler.http.KeepAliveHTTPHandler`, for reference); prints one JSON line
(articles, requests, seconds of the crawl itself, without starting Python and importing Scrapy) to stdout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response, TextResponse


class BareSpider(scrapy.Spider):
    name = "bare_site"

    def __init__(self, list_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.list_url = list_url
        self.articles = 0
        self.chars = 0

    async def start(self) -> Any:
        yield scrapy.Request(self.list_url, callback=self.parse)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[scrapy.Request]:
        assert isinstance(response, TextResponse)
        for href in response.css("ul.news-list li a::attr(href)").getall():
            yield response.follow(href, callback=self.parse_article)
        for anchor in response.css("div.pages a"):
            if anchor.css("::text").get() == "下一页":
                yield response.follow(str(anchor.attrib["href"]), callback=self.parse)

    def parse_article(self, response: Response) -> Iterator[dict[str, Any]]:
        assert isinstance(response, TextResponse)
        title = response.css("h1.title::text").get() or ""
        body = "\n".join(response.css("#zoom p::text").getall())
        self.articles += 1
        self.chars += len(body)
        yield {"url": response.url, "title": title, "body": body}


def main(argv: list[str]) -> int:
    list_url, concurrent, per_domain = argv[0], int(argv[1]), int(argv[2])
    items: dict[str, Any] = {"CONCURRENT_ITEMS": int(argv[3])} if len(argv) > 3 and argv[3] != "-" else {}
    if argv[4:] == ["keep-alive"]:
        handler = "crawler.http.KeepAliveHTTPHandler"
        items["DOWNLOAD_HANDLERS"] = {"http": handler, "https": handler}
    process = CrawlerProcess(
        {
            **items,
            "ROBOTSTXT_OBEY": True,
            "CONCURRENT_REQUESTS": concurrent,
            "CONCURRENT_REQUESTS_PER_DOMAIN": per_domain,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "TELNETCONSOLE_ENABLED": False,
            "LOG_LEVEL": "WARNING",
            "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
            "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        },
    )
    crawler = process.create_crawler(BareSpider)
    process.crawl(crawler, list_url=list_url)
    start = time.perf_counter()
    process.start()
    seconds = time.perf_counter() - start
    spider = crawler.spider
    assert isinstance(spider, BareSpider)
    requests = int(crawler.stats.get_value("downloader/request_count", 0)) if crawler.stats else 0
    print(json.dumps({"articles": spider.articles, "chars": spider.chars, "requests": requests, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
