"""Queued requests in Redis are JSON (crawler.request_codec), never pickle: what a crawl queues
comes back whole, and bytes that would run code when unpickled are refused without running."""

from __future__ import annotations

import pickle
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from scrapy import Request, Spider
from scrapy.utils.request import request_from_dict
from scrapy.utils.test import get_crawler
from scrapy_redis.queue import PriorityQueue

from crawler import request_codec
from crawler.frontier import frontier_keys, redis_settings
from crawler.parsing.site_list import ListLink
from crawler.redis_scheduler import FrontierScheduler
from crawler.spiders.wechat_album import _Pending
from tests.servers import require_redis


class _Spider(Spider):
    name = "codec-test"

    def parse_article(self, response: Any) -> None:
        return None

    def on_error(self, failure: Any) -> None:
        return None


def _request(spider: _Spider) -> Request:
    """A request as our spiders queue them: dataclasses, tuples and limits in its meta."""
    return Request(
        "http://www.example.gov.cn/col/art/2026/11/3/art_1_123.html?from=列表",
        callback=spider.parse_article,
        errback=spider.on_error,
        method="POST",
        body=b"\x00\xffpage=2",
        headers={"Referer": "http://www.example.gov.cn/col/index.html", "Accept-Language": "zh-CN"},
        cookies={"JSESSIONID": "abc"},
        priority=-3,
        dont_filter=True,
        cb_kwargs={"page": 2, "pair": (1, "二")},
        meta={
            "handle_httpstatus_all": True,
            "download_timeout": 20.0,
            "download_maxsize": 5_000_000,
            "zhuanlan_link": ListLink("http://www.example.gov.cn/a.html", "学习贯彻全会精神", date(2026, 11, 3)),
            "zhuanlan_pending": _Pending(url="https://mp.weixin.qq.com/s/abc", key=None, title="标题", redirects=1),
            "zhuanlan_chain": ("http://a.example/1", "http://a.example/2"),
            "zhuanlan_known": False,
            "zhuanlan_seen_at": datetime(2026, 11, 3, 8, 0, tzinfo=timezone(timedelta(hours=8))),
            "$odd key": {b"bytes key": [b"v"]},
        },
    )


def _same(a: Request, b: Request) -> None:
    assert (a.url, a.method, a.body, a.priority, a.dont_filter) == (b.url, b.method, b.body, b.priority, b.dont_filter)
    assert a.headers == b.headers and a.cookies == b.cookies and a.cb_kwargs == b.cb_kwargs
    assert a.meta == b.meta
    assert getattr(a.callback, "__name__", None) == getattr(b.callback, "__name__", None)
    assert getattr(a.errback, "__name__", None) == getattr(b.errback, "__name__", None)


def test_a_queued_request_comes_back_whole() -> None:
    spider = _Spider()
    request = _request(spider)
    data = request_codec.dumps(request.to_dict(spider=spider))
    assert data.startswith(b"{") and b"pickle" not in data
    _same(request, request_from_dict(request_codec.loads(data), spider=spider))


class _Trap:
    """Unpickling this creates a file: what a forged queue entry could do to a pickling crawl."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_a_pickle_in_the_queue_is_refused_without_running(tmp_path: Path) -> None:
    trap = tmp_path / "ran"
    forged = pickle.dumps({"url": "http://x/", "meta": _Trap(trap)})
    with pytest.raises(ValueError, match="not a queued request"):
        request_codec.loads(forged)
    assert not trap.exists()
    for bad in (b'{"$dataclass": "os.system", "fields": {}}', b'{"url": {"$eval": "1"}}', b"[1, 2]"):
        with pytest.raises(ValueError):
            request_codec.loads(bad)


def test_a_value_the_queue_cannot_hold_is_an_error_when_queued() -> None:
    spider = _Spider()
    request = Request("http://x/", meta={"zhuanlan_odd": {1, 2}})
    with pytest.raises(TypeError, match="cannot carry a set"):
        request_codec.dumps(request.to_dict(spider=spider))


def test_the_redis_frontier_stores_json() -> None:
    """Through scrapy-redis' own queue on the Redis server, configured as a crawl configures it."""
    serializer = __import__(redis_settings("redis://unused", keep=False)["SCHEDULER_SERIALIZER"], fromlist=["loads"])
    client = redis.Redis.from_url(require_redis())
    key = f"zh-test-codec-{uuid.uuid4().hex[:10]}"
    spider = _Spider()
    queue = PriorityQueue(client, spider, key, serializer=serializer)
    try:
        request = _request(spider)
        queue.push(request)
        (stored,) = client.zrange(key, 0, -1)
        assert stored.startswith(b"{") and request_codec.loads(stored)["url"] == request.url
        popped = queue.pop()
        assert popped is not None
        _same(request, popped)
    finally:
        client.delete(key)


@pytest.mark.filterwarnings("ignore::scrapy.exceptions.ScrapyDeprecationWarning")  # scrapy-redis' own Spider.log
def test_a_left_behind_frontier_that_cannot_be_read_is_cleared_not_run(tmp_path: Path) -> None:
    """A frontier a dead crawl left, holding a pickle (an older version's, or a forged one): the
    next crawl of the source clears it and starts over; nothing in it runs."""
    url = require_redis()
    client = redis.Redis.from_url(url)
    prefix = f"zh-test-codec-{uuid.uuid4().hex[:10]}"
    settings = {**redis_settings(url, keep=True), "ZHUANLAN_REDIS_PREFIX": prefix, "ZHUANLAN_RUN_ID": 7}
    crawler = get_crawler(_SiteSpider, settings_dict=settings)
    spider = _SiteSpider.from_crawler(crawler)
    crawler.spider = spider
    keys = frontier_keys(prefix, 7, spider.source_key)
    trap = tmp_path / "ran"
    client.zadd(keys.requests, {pickle.dumps({"url": "http://x/", "meta": _Trap(trap)}): 0})
    client.sadd(keys.seen, "f" * 40)
    scheduler = FrontierScheduler.from_crawler(crawler)
    try:
        scheduler.open(spider)
        assert not trap.exists()
        assert client.zcard(keys.requests) == 0 and client.scard(keys.seen) == 0
        assert scheduler.resumed == 0
    finally:
        client.delete(keys.requests, keys.seen)


class _SiteSpider(_Spider):
    name = "site_column"  # a kind whose frontier is resumed
    source_key = "codec-site"
