"""The wechat_album spider against local HTTP servers that serve the saved WeChat fixtures.

Each scenario gets its own server on 127.0.0.1 (fixture links to mp.weixin.qq.com are rewritten to
it). All crawls run in ONE subprocess (the Twisted reactor cannot restart) with ITEM_PIPELINES
replaced by a collecting pipeline that writes each source's items as JSON lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from crawler.keys import wechat_key
from crawler.spiders.wechat_album import jittered_delay, split_urls

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "wechat"
BIZ = "MzkyMDAwMTIzNA=="
ALBUM_ID = "3920461187654320128"
COLUMN = "学习贯彻党的二十届四中全会精神"

# The album's members, newest first: (mid, idx) -> (sn, title, author, byline, page ct).
ARTICLES: dict[tuple[str, str], tuple[str, str, str, str, str]] = {
    ("2247490012", "1"): ("8c1f4e2a9b7d6c5e3f1a0b9c8d7e6f5a", "坚持创新驱动 加快培育新质生产力", "王立新",
                          "市发展和改革委员会党组书记、主任 王立新", "1763602223"),
    ("2247490012", "2"): ("1b2c3d4e5f60718293a4b5c6d7e8f901", "守正创新 推动文化事业繁荣发展", "赵敏华",
                          "市文化广电和旅游局党组书记、局长 赵敏华", "1763602223"),
    ("2247490008", "1"): ("9a8b7c6d5e4f30211203f4e5d6c7b8a9", "以钉钉子精神抓好全会精神落实", "孙建平",
                          "市财政局党组成员、副局长 孙建平", "1763460031"),
    ("2247490005", "1"): ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "深化改革 提升政务服务效能", "李晓燕",
                          "市政务服务中心党组书记、主任 李晓燕", "1763081129"),
    ("2247490003", "1"): ("5e4d3c2b1a0f9e8d7c6b5a4938271605", "筑牢粮食安全根基", "马国强",
                          "市农业农村局党组书记、局长 马国强", "1762852841"),
    ("2247490001", "1"): ("77a6b5c4d3e2f1009182736455463728", "编者按｜开设“学习贯彻党的二十届四中全会精神”专栏", "",
                          "编者按", "1762480815"),
}  # fmt: skip
OLDEST_FIRST = [
    ("2247490001", "1"), ("2247490003", "1"), ("2247490005", "1"),
    ("2247490008", "1"), ("2247490012", "1"), ("2247490012", "2"),
]  # fmt: skip
# Album JSON answers by exclusive cursor (begin_msgid, begin_itemidx).
JSON_PAGES = {
    ("2247490008", "1"): "album_json_page",
    ("2247490003", "1"): "album_json_single",
    ("2247490001", "1"): "album_json_end",
}


def key(mid: str, idx: str) -> str:
    return wechat_key(BIZ, mid, idx)


def fixture_bytes(name: str) -> bytes:
    folder = FIXTURES / name
    return (folder / ("page.json" if (folder / "page.json").exists() else "page.html")).read_bytes()


def article_page(mid: str, idx: str) -> bytes:
    sn, title, author, byline, ct = ARTICLES[(mid, idx)]
    page = fixture_bytes("spider_article_template").decode("utf-8")
    values = {"MID": mid, "IDX": idx, "SN": sn, "TITLE": title, "AUTHOR": author, "BYLINE": byline, "CT": ct,
              "BODY": f"{author or '本刊'}结合本单位实际，谈学习贯彻全会精神的体会。"}  # fmt: skip
    for name, value in values.items():
        page = page.replace("{{" + name + "}}", value)
    return page.encode("utf-8")


@dataclass
class Scenario:
    """One local WeChat: what it answers, and the requests it saw."""

    name: str
    album_html: str = "album_html"  # fixture name, or "verify" for the verification page
    json_pages: dict[tuple[str, str], str] = field(default_factory=lambda: dict(JSON_PAGES))
    special: dict[tuple[str, str], str] = field(default_factory=dict)  # article -> fixture or "captcha302"
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((path, query))
        if path == "/mp/appmsgalbum" and query.get("f") == "json":
            cursor = (query.get("begin_msgid", ""), query.get("begin_itemidx", ""))
            if cursor not in self.json_pages:
                return 404, {}, b"unknown cursor"
            return (
                200,
                {"Content-Type": "application/json; charset=UTF-8"},
                self.rewrite(fixture_bytes(self.json_pages[cursor])),
            )
        if path == "/mp/appmsgalbum":
            name = "state_verification" if self.album_html == "verify" else self.album_html
            return (
                200,
                {"Content-Type": "text/html; charset=utf-8", "ETag": '"album-v1"'},
                self.rewrite(fixture_bytes(name)),
            )
        if path == "/s":
            article = (query.get("mid", ""), query.get("idx", ""))
            special = self.special.get(article)
            if special == "captcha302":
                target = f"{self.base}/mp/wappoc_appmsgcaptcha?poc_token=abc&target_url=x"
                return 302, {"Location": target}, b""
            if special:
                return 200, {"Content-Type": "text/html; charset=utf-8"}, fixture_bytes(special)
            if article in ARTICLES:
                return 200, {"Content-Type": "text/html; charset=utf-8"}, self.rewrite(article_page(*article))
        if path == "/mp/wappoc_appmsgcaptcha":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, fixture_bytes("state_verification")
        return 404, {}, b"not found"

    def rewrite(self, body: bytes) -> bytes:
        return body.replace(b"http://mp.weixin.qq.com", self.base.encode()).replace(
            b"https://mp.weixin.qq.com", self.base.encode()
        )

    def hits(self, path: str) -> list[dict[str, str]]:
        return [query for seen, query in self.requests if seen == path]

    def article_requests(self) -> list[tuple[str, str]]:
        return [(q["mid"], q["idx"]) for q in self.hits("/s")]


def make_handler(scenario: Scenario) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            status, headers, body = scenario.answer(parts.path, query)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


CRAWL_SCRIPT = r"""
import dataclasses, datetime, json, sys
from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings
from crawler.spiders.wechat_album import WechatAlbumSpider


class CollectPipeline:
    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item):
        data = dataclasses.asdict(item)
        for name, value in list(data.items()):
            if isinstance(value, datetime.datetime):
                data[name] = value.isoformat()
            elif isinstance(value, bytes):
                data[name] = len(value)
        data["_type"] = type(item).__name__
        spider = self.crawler.spider
        with open(f"{spider.settings.get('TEST_OUT_DIR')}/{spider.source_key}.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps(data, ensure_ascii=False) + "\n")
        return item


job = json.load(sys.stdin)
settings = Settings()
settings.setmodule("crawler.settings", priority="project")
settings.set("ITEM_PIPELINES", {"__main__.CollectPipeline": 100}, priority="cmdline")
for name, value in {"ROBOTSTXT_OBEY": False, "DOWNLOAD_DELAY": 0, "RETRY_ENABLED": False, "LOG_LEVEL": "WARNING",
                    "TELNETCONSOLE_ENABLED": False, "TEST_OUT_DIR": job["out_dir"]}.items():
    settings.set(name, value, priority="cmdline")
process = CrawlerProcess(settings)
for run in job["runs"]:
    process.crawl(WechatAlbumSpider, **run)
process.start()
"""


def source(name: str, url: str, **options: Any) -> dict[str, Any]:
    return {"key": name, "kind": "wechat_album", "url": url, "unit": None, "column": None,
            "options": {"delay_seconds": 0, "page_size": 5, **options}}  # fmt: skip


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Scenario, list[dict[str, Any]]]]]:
    scenarios = {
        "full": Scenario("full"),
        "incremental": Scenario("incremental"),
        "partial": Scenario("partial"),
        "verify_article": Scenario("verify_article", special={("2247490001", "1"): "captcha302"}),
        "verify_page": Scenario("verify_page", special={("2247490005", "1"): "state_verification"}),
        "verify_album": Scenario("verify_album", album_html="verify"),
        "json_error": Scenario("json_error", json_pages={("2247490008", "1"): "album_json_error"}),
        "recheck": Scenario(
            "recheck", special={("2247490003", "1"): "state_deleted", ("2247490005", "1"): "state_violation"}
        ),
        "seed": Scenario("seed"),
    }
    threads = []
    for scenario in scenarios.values():
        scenario.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(scenario))
        thread = threading.Thread(target=scenario.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        threads.append(thread)
    album = f"/mp/appmsgalbum?__biz={BIZ}&action=getalbum&album_id={ALBUM_ID}#wechat_redirect"

    def album_source(name: str, **options: Any) -> dict[str, Any]:
        return source(name, scenarios[name].base + album, **options)

    def article_url(name: str, mid: str, idx: str) -> str:
        sn = ARTICLES[(mid, idx)][0]
        return f"{scenarios[name].base}/s?__biz={BIZ}&mid={mid}&idx={idx}&sn={sn}&chksm=cf04aa10b873&scene=126#rd"

    runs = [
        {"source": album_source("full")},
        {"source": album_source("incremental"), "known_keys": [key("2247490012", "1")]},
        {"source": album_source("partial"), "known_keys": [key("2247490008", "1"), key("2247490001", "1")]},
        {"source": album_source("verify_article")},
        {"source": album_source("verify_page")},
        {"source": album_source("verify_album")},
        {"source": album_source("json_error")},
        {
            "source": album_source("recheck"),
            "recheck_urls": ",".join(
                article_url("recheck", *a) for a in [("2247490003", "1"), ("2247490005", "1"), ("2247490012", "2")]
            ),
        },
        {
            "source": source("seed", article_url("seed", "2247490012", "1"), album_title=COLUMN),
            "known_keys": [key("2247490008", "1")],
        },
    ]
    out_dir = tmp_path_factory.mktemp("wechat_crawl")
    job = {"out_dir": str(out_dir), "runs": runs}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", CRAWL_SCRIPT], input=json.dumps(job), cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        results = {}
        for name, scenario in scenarios.items():
            path = out_dir / f"{name}.jsonl"
            items = (
                [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
            )
            results[name] = (scenario, items)
        yield results
    finally:
        for scenario in scenarios.values():
            assert scenario.server is not None
            scenario.server.shutdown()
            scenario.server.server_close()


def of_type(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in items if item["_type"] == kind]


def test_full_listing_pages_with_exclusive_cursor(crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]]) -> None:
    scenario, items = crawled["full"]
    album_pages = scenario.hits("/mp/appmsgalbum")
    assert "f" not in album_pages[0]  # the HTML first screen, as configured
    cursors = [(q.get("begin_msgid"), q.get("begin_itemidx")) for q in album_pages[1:]]
    assert cursors == [("2247490008", "1"), ("2247490003", "1"), ("2247490001", "1")]
    assert all(q["f"] == "json" and q["count"] == "5" and q["album_id"] == ALBUM_ID for q in album_pages[1:])
    # Every member once (both articles of the multi-article push 2247490012), oldest first.
    assert scenario.article_requests() == OLDEST_FIRST
    articles = of_type(items, "ArticleItem")
    assert [a["canonical_key"] for a in articles] == [key(*a) for a in OLDEST_FIRST]
    assert of_type(items, "ProblemItem") == []
    (listing,) = of_type(items, "ListPageItem")
    assert listing["new_links"] == 6 and listing["etag"] == '"album-v1"' and listing["url"].endswith(album_path())


def album_path() -> str:
    return f"/mp/appmsgalbum?__biz={BIZ}&action=getalbum&album_id={ALBUM_ID}#wechat_redirect"


def test_article_items_carry_the_page_fields(crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]]) -> None:
    scenario, items = crawled["full"]
    by_key = {a["canonical_key"]: a for a in of_type(items, "ArticleItem")}
    item = by_key[key("2247490012", "2")]
    assert item["source_key"] == "full" and item["source_kind"] == "wechat_album"
    assert item["state"] == "ok" and item["in_column"] is True and item["column"] == COLUMN
    assert item["title"] == "守正创新 推动文化事业繁荣发展"
    assert item["author"] == "赵敏华" and item["byline"] == "市文化广电和旅游局党组书记、局长 赵敏华"
    assert item["account_name"] == "市直机关党建" and item["account_id"] == "gh_5a1c3e7d9b20"
    assert item["published_at"] == "2025-11-20T09:30:23+08:00"  # the page's ct, not the album's minute
    assert item["image_urls"] == [
        "https://mmbiz.qpic.cn/sz_mmbiz_jpg/Zh0uMockSpider22474900122/640?wx_fmt=jpeg&from=appmsg"
    ]
    assert "visibility: hidden" not in item["body_html"] and "赵敏华结合本单位实际" in item["body_text"]
    assert item["extra"]["item_show_type"] == 0 and item["extra"]["sn"] == ARTICLES[("2247490012", "2")][0]
    assert item["extra"]["albums"] == [{"title": COLUMN, "album_id": ALBUM_ID}]
    assert item["raw_body"] > 0 and item["fetched_at"]
    assert "chksm" not in item["url"] and item["url"].startswith(scenario.base + "/s?__biz=")
    assert not any("mmbiz.qpic.cn" in path for path, _ in scenario.requests)  # images are never fetched


def test_incremental_run_with_nothing_new_costs_one_request(
    crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]],
) -> None:
    scenario, items = crawled["incremental"]
    assert len(scenario.requests) == 1 and scenario.requests[0][0] == "/mp/appmsgalbum"
    assert of_type(items, "ArticleItem") == [] and of_type(items, "ProblemItem") == []
    (listing,) = of_type(items, "ListPageItem")
    assert listing["new_links"] == 0


def test_incremental_stop_keeps_both_articles_of_a_push(
    crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]],
) -> None:
    scenario, items = crawled["partial"]
    assert len(scenario.hits("/mp/appmsgalbum")) == 1  # the known 2247490008 is on the first screen
    assert scenario.article_requests() == [("2247490012", "1"), ("2247490012", "2")]
    assert sorted(a["canonical_key"] for a in of_type(items, "ArticleItem")) == [
        key("2247490012", "1"),
        key("2247490012", "2"),
    ]


def test_verification_redirect_stops_the_source(crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]]) -> None:
    scenario, items = crawled["verify_article"]
    assert scenario.article_requests() == [("2247490001", "1")]  # nothing more after the first
    assert scenario.hits("/mp/wappoc_appmsgcaptcha") == []  # the captcha page itself is not fetched
    (problem,) = of_type(items, "ProblemItem")
    assert problem["kind"] == "verification" and "环境异常" in problem["reason"]
    assert of_type(items, "ArticleItem") == []


def test_verification_page_mid_run_stops_the_source(crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]]) -> None:
    scenario, items = crawled["verify_page"]
    assert scenario.article_requests() == [("2247490001", "1"), ("2247490003", "1"), ("2247490005", "1")]
    assert [a["canonical_key"] for a in of_type(items, "ArticleItem")] == [
        key("2247490001", "1"),
        key("2247490003", "1"),
    ]
    assert [p["kind"] for p in of_type(items, "ProblemItem")] == ["verification"]


def test_verification_on_the_album_page(crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]]) -> None:
    scenario, items = crawled["verify_album"]
    assert len(scenario.requests) == 1
    assert [p["kind"] for p in of_type(items, "ProblemItem")] == ["verification"]
    assert of_type(items, "ArticleItem") == []


def test_album_api_error_is_fatal_and_fetches_nothing(
    crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]],
) -> None:
    scenario, items = crawled["json_error"]
    (problem,) = of_type(items, "ProblemItem")
    assert problem["kind"] == "album" and problem["fatal"] is True and "-6" in problem["reason"]
    assert scenario.article_requests() == []


def test_recheck_mode_yields_states(crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]]) -> None:
    scenario, items = crawled["recheck"]
    assert scenario.hits("/mp/appmsgalbum") == []
    states = {a["canonical_key"]: (a["state"], a["body_text"]) for a in of_type(items, "ArticleItem")}
    assert states == {
        key("2247490003", "1"): ("deleted", ""),
        key("2247490005", "1"): ("violation", ""),
        key("2247490012", "2"): ("ok", states[key("2247490012", "2")][1]),
    }
    assert states[key("2247490012", "2")][1]
    assert of_type(items, "ProblemItem") == []


def test_article_url_source_resolves_its_album(crawled: dict[str, tuple[Scenario, list[dict[str, Any]]]]) -> None:
    scenario, items = crawled["seed"]
    assert [path for path, _ in scenario.requests] == ["/s", "/mp/appmsgalbum", "/s", "/s"]
    assert scenario.hits("/mp/appmsgalbum")[0]["album_id"] == ALBUM_ID
    articles = of_type(items, "ArticleItem")
    assert [a["canonical_key"] for a in articles] == [key("2247490012", "1"), key("2247490012", "2")]
    assert all(a["column"] == COLUMN for a in articles)


def test_delay_settings_come_from_the_source() -> None:
    from scrapy.crawler import Crawler
    from scrapy.settings import Settings

    from crawler.spiders.wechat_album import JITTER, NATIVE_JITTER, WechatAlbumSpider

    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.set("DOWNLOAD_DELAY", 1.0, priority="cmdline")  # as `zhuanlan crawl` sets the site delay
    crawler = Crawler(WechatAlbumSpider, settings)
    spider = WechatAlbumSpider.from_crawler(
        crawler, source=source("k", "https://mp.weixin.qq.com/mp/appmsgalbum?album_id=1", delay_seconds=7),
        crawl={"download_delay_seconds": 1.0},
    )  # fmt: skip
    assert spider.delay_seconds == 7 and "download_delay" not in spider.__dict__
    assert crawler.settings.getfloat("DOWNLOAD_DELAY") == 7.0
    assert crawler.settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN") == 1
    if NATIVE_JITTER:
        assert crawler.settings.getfloat("DOWNLOAD_DELAY_JITTER") == JITTER


def test_delay_jitter_and_recheck_argument() -> None:
    import random

    rng = random.Random(7)
    delays = [jittered_delay(5.0, rng) for _ in range(200)]
    assert all(4.0 <= d <= 6.0 for d in delays) and max(delays) - min(delays) > 1.0
    assert split_urls(" https://a/s?x=1 , https://b/s?y=2,") == ["https://a/s?x=1", "https://b/s?y=2"]
    assert split_urls(["https://a/s"]) == ["https://a/s"] and split_urls(None) == []


def test_spider_options_and_politeness_settings() -> None:
    from crawler.spiders.wechat_album import WechatAlbumSpider

    spider = WechatAlbumSpider(
        source={"key": "k", "kind": "wechat_album", "url": "https://mp.weixin.qq.com/mp/appmsgalbum?album_id=1",
                "options": {"page_size": 50}},
        crawl={"wechat_delay_seconds": 8},
    )  # fmt: skip
    assert spider.page_size == 20 and spider.delay_seconds == 8.0
    assert spider.allowed_domains == ["mp.weixin.qq.com"]
    assert WechatAlbumSpider.custom_settings["CONCURRENT_REQUESTS_PER_DOMAIN"] == 1
    default = WechatAlbumSpider(source={"key": "k", "kind": "wechat_album", "url": "https://mp.weixin.qq.com/s/x"})
    assert default.delay_seconds == 5.0 and default.page_size == 10
