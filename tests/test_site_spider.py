"""The `site_column` spider against a local HTTP server: paging, incremental runs, blocked sources.

Each crawl runs in a subprocess (the Twisted reactor cannot restart) that executes this module as
a script with ITEM_PIPELINES replaced by `CollectPipeline`, which writes every item as a JSON line.
The server runs in the test process and logs every request it receives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

PARAGRAPHS = [
    "全会对全面依法治国作出新的部署。司法行政机关要坚持以学铸魂、以学促干，切实把全会精神贯彻到法治建设各方面。",
    "我们将深化法治政府建设，严格规范公正文明执法，持续优化法治化营商环境，为高质量发展提供有力法治保障。",
    "我们将完善公共法律服务体系，推动法律援助扩面提质，让人民群众在每一个司法案件和法律服务中感受到公平正义。",
]
TITLES = [
    "以法治之力护航高质量发展",
    "深化法治政府建设 优化营商环境",
    "专题党课深入解读全会精神",
    "公共法律服务进社区活动启动",
    "党组扩大会议传达学习全会精神",
    "律师行业党建工作推进会召开",
    "法治宣传月活动全面启动",
    "普法志愿者走进乡村学校",
]


def article_page(title: str, day: int, author: str) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in PARAGRAPHS)
    return (
        f'<html><head><meta charset="utf-8"><title>{title}_河阳市司法局</title></head><body>'
        f'<div class="nav"><a href="/">首页</a></div><h1>{title}</h1>'
        f"<div class='info'><!-- <span>来源：河阳日报</span> --><span>发布时间：2025-11-{day:02d} 09:00</span>"
        f"<span>来源：市司法局</span></div>"
        f'<div class="article-content"><p>市司法局党组成员、副局长 {author}</p>{body}</div>'
        "<div>上一篇：<a href='/x.html'>上一篇文章</a></div></body></html>"
    ).encode()


@dataclass
class Site:
    """In-memory sites under path prefixes; `articles[prefix]` is newest first."""

    articles: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    log: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def trs_list(self, prefix: str, page: int) -> bytes:
        items = self.articles[prefix]
        pages = [items[i : i + 3] for i in range(0, len(items), 3)]
        lis = "".join(
            f'<li><a href="./202511/{slug}.html">{title}</a><span>2025-11-{day:02d}</span></li>'
            for slug, title, day in pages[page]
        )
        return (
            f'<html><head><meta charset="utf-8"><title>司法动态</title></head><body><div class="nav">'
            f'<a href="./202401/t20240101_1.html">领导简介</a></div><ul class="list">{lis}</ul>'
            f'<script>createPageHTML({len(pages)}, {page}, "index", "html");</script></body></html>'
        ).encode()

    def respond(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.log.append((path, headers))
        html = {"Content-Type": "text/html; charset=utf-8"}
        if path == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"
        if path == "/rs/index.html":
            return (
                412,
                html,
                b"<html><head><script>$_ts=window['$_ts'];if(!$_ts)$_ts={};$_ts.nsd=84;</script></head></html>",
            )
        if path == "/jsl/index.html":
            script = b"<script>document.cookie=('__jsl_clearance_s=1764100000.2|0|Xyz%3D');location.href=location.pathname</script>"
            return 521, {**html, "Set-Cookie": "__jsluid_s=abc123; path=/"}, script
        prefix, _, rest = path.strip("/").partition("/")
        if prefix in self.articles:
            if rest in {"sfdt/index.html", "sfdt/index_1.html", "sfdt/index_2.html"}:
                page = 0 if rest.endswith("index.html") else int(rest[-6])
                etag = self.etags.get(prefix, '"v1"')
                if page == 0 and headers.get("if-none-match") == etag:
                    return 304, {"ETag": etag}, b""
                pages = (len(self.articles[prefix]) + 2) // 3
                if page >= pages:
                    return 404, html, b"not found"
                extra = {"ETag": etag, "Last-Modified": "Wed, 26 Nov 2025 01:00:00 GMT"} if page == 0 else {}
                return 200, {**html, **extra}, self.trs_list(prefix, page)
            for slug, title, day in self.articles[prefix]:
                if rest == f"sfdt/202511/{slug}.html":
                    if slug.endswith("_404"):
                        return 404, html, b"<html><body>404</body></html>"
                    return 200, html, article_page(title, day, "孙立恒")
        if path.startswith("/jgdj/"):
            return self.html_column(path)
        return 404, html, b"not found"

    def html_column(self, path: str) -> tuple[int, dict[str, str], bytes]:
        html = {"Content-Type": "text/html"}  # no charset: bytes are UTF-8
        if path in {"/jgdj/list_1.html", "/jgdj/list_2.html"}:
            page = int(path[-6])
            items = [
                (
                    f"/jgdj/2025/11{20 + page}/c{page}{i}.html",
                    f"学习贯彻党的二十届四中全会精神 | 第{page}页第{i}篇心得",
                    20 + page,
                )
                for i in range(2)
            ]
            lis = "".join(f"<li><a href='{u}'>{t}</a> [2025-11-{d:02d}]</li>" for u, t, d in items)
            pager = "<a href='list_2.html'>下一页</a>" if page == 1 else "<span>下一页</span>"
            return (
                200,
                html,
                f"<html><body><ul class='news'>{lis}</ul><div class='pg'>{pager}</div></body></html>".encode(),
            )
        if path == "/jgdj/2025/1121/c10.html":
            return 302, {**html, "Location": "/jgdj/2025/1121/c10-moved.html"}, b""
        if path.startswith("/jgdj/2025/"):
            title = "学习贯彻党的二十届四中全会精神心得"
            return 200, html, article_page(title, 22, "周明远")
        return 404, html, b"not found"


@pytest.fixture
def site() -> Iterator[tuple[Site, str]]:
    state = Site()
    state.articles["sfj"] = [(f"t202511{21 - i:02d}_{5120 - i}", t, 21 - i) for i, t in enumerate(TITLES)]
    state.articles["sfk"] = list(state.articles["sfj"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = state.respond(self.path, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def source(key: str, url: str, list_type: str, **options: Any) -> dict[str, Any]:
    return {
        "key": key,
        "kind": "site_column",
        "url": url,
        "unit": "市司法局",
        "column": "学习贯彻党的二十届四中全会精神",
        "options": {"list_type": list_type, **options},
    }


def crawl(tmp_path: Path, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the spider once per job in one subprocess; return the collected items."""
    job_file, out_file = tmp_path / f"jobs{len(list(tmp_path.iterdir()))}.json", tmp_path / "items.jsonl"
    out_file.unlink(missing_ok=True)
    job_file.write_text(json.dumps({"out": str(out_file), "jobs": jobs}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.test_site_spider", str(job_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    if not out_file.exists():
        return []
    return [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]


def of(items: list[dict[str, Any]], kind: str, key: str) -> list[dict[str, Any]]:
    return [i for i in items if i["type"] == kind and i["source_key"] == key]


def requests_to(state: Site, prefix: str) -> list[str]:
    return [path for path, _ in state.log if path.startswith(prefix)]


def test_first_run_then_incremental_run(site: tuple[Site, str], tmp_path: Path) -> None:
    state, base = site
    state.articles["sfj"][5] = ("t20251116_5115_404", TITLES[5], 16)  # one listed article is gone
    jobs = [
        {"source": source("sfj", f"{base}/sfj/sfdt/index.html", "trs_js_pager")},
        {"source": source("sfk", f"{base}/sfk/sfdt/index.html", "trs_js_pager")},
        {"source": source("jgdj", f"{base}/jgdj/list_1.html", "html")},
        {"source": source("rs", f"{base}/rs/index.html", "html")},
        {"source": source("jsl", f"{base}/jsl/index.html", "html")},
    ]
    items = crawl(tmp_path, jobs)

    # TRS column: three list pages from the pager script, every article once.
    articles = of(items, "ArticleItem", "sfj")
    assert len(articles) == 7
    first = next(a for a in articles if a["title"] == TITLES[0])
    assert first["canonical_key"] == f"{base}/sfj/sfdt/202511/t20251121_5120.html"
    assert first["published_at"] == "2025-11-21T09:00:00+08:00"
    assert first["source_label"] == "市司法局"
    assert first["byline"] == "市司法局党组成员、副局长 孙立恒"
    assert first["author"] is None  # no author field on the page: the tagger reads the byline
    assert first["column"] == "学习贯彻党的二十届四中全会精神" and first["in_column"] is True
    assert first["source_kind"] == "site_column" and first["state"] == "ok" and first["encoding"] == "utf-8"
    assert first["raw_body"] > 0 and "上一篇" not in first["body_text"] and PARAGRAPHS[1] in first["body_text"]
    assert first["extra"]["method"]["body"] == "container .article-content"
    lists = of(items, "ListPageItem", "sfj")
    assert sorted(p["url"].rsplit("/", 1)[1] for p in lists) == ["index.html", "index_1.html", "index_2.html"]
    assert next(p for p in lists if p["url"].endswith("/index.html"))["etag"] == '"v1"'
    problems = of(items, "ProblemItem", "sfj")
    assert [(p["kind"], p["http_status"], p["fatal"]) for p in problems] == [("http", 404, False)]
    assert problems[0]["reason"] == "HTTP 404: page not found"

    # HTML column: the 下一页 anchor leads to page 2, which has no further link.
    assert len(of(items, "ListPageItem", "jgdj")) == 2
    column = of(items, "ArticleItem", "jgdj")
    assert len(column) == 4
    assert f"{base}/jgdj/2025/1121/c10-moved.html" in {a["canonical_key"] for a in column}  # redirect followed

    # Anti-crawl challenges: reported in plain words, fatal for the source, never stored as content.
    (rs,) = of(items, "ProblemItem", "rs")
    assert (rs["kind"], rs["http_status"], rs["fatal"]) == ("blocked", 412, True)
    assert "瑞数" in rs["reason"] and "412" in rs["reason"]
    (jsl,) = of(items, "ProblemItem", "jsl")
    assert (jsl["kind"], jsl["http_status"], jsl["fatal"]) == ("blocked", 521, True)
    assert "加速乐" in jsl["reason"] and "521" in jsl["reason"]
    assert not of(items, "ArticleItem", "rs") and not of(items, "ArticleItem", "jsl")
    assert any(path == "/robots.txt" for path, _ in state.log)

    # Second cycle: sfj unchanged (304 on the validators); sfk has one new article on top.
    keys = {key: [a["canonical_key"] for a in of(items, "ArticleItem", key)] for key in ("sfj", "sfk")}
    validators = {
        key: {p["url"]: [p["etag"], p["last_modified"]] for p in of(items, "ListPageItem", key)}
        for key in ("sfj", "sfk")
    }
    state.articles["sfk"].insert(0, ("t20251125_5130", "全面从严治党 锻造过硬司法行政队伍", 25))
    state.etags["sfk"] = '"v2"'
    state.log.clear()
    second = crawl(
        tmp_path,
        [
            {
                "source": source(key, f"{base}/{key}/sfdt/index.html", "trs_js_pager"),
                "known_keys": keys[key],
                "validators": validators[key],
            }
            for key in ("sfj", "sfk")
        ],
    )
    assert requests_to(state, "/sfj/") == ["/sfj/sfdt/index.html"]
    conditional = next(headers for path, headers in state.log if path == "/sfj/sfdt/index.html")
    assert conditional.get("if-none-match") == '"v1"'
    assert not of(second, "ArticleItem", "sfj")
    assert [p["new_links"] for p in of(second, "ListPageItem", "sfj")] == [0]

    # sfk: page 1 brings one new article, page 2 nothing new, so paging stops there.
    assert sorted(requests_to(state, "/sfk/")) == [
        "/sfk/sfdt/202511/t20251125_5130.html",
        "/sfk/sfdt/index.html",
        "/sfk/sfdt/index_1.html",
    ]
    (new,) = of(second, "ArticleItem", "sfk")
    assert new["title"] == "全面从严治党 锻造过硬司法行政队伍"


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; notes each request's path and connection (the client's port)."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, int]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.client_address[1]))
        if self.path == "/robots.txt":
            status, body = 200, b"User-agent: *\nAllow: /\n"
        elif self.path == "/ka/list_1.html":
            links = "".join(
                f"<li><a href='/ka/2025/1121/c{i}.html'>学习贯彻党的二十届四中全会精神 | 第{i}篇心得</a> [2025-11-21]</li>"
                for i in range(100)
            )
            status, body = 200, f"<html><body><ul class='news'>{links}</ul></body></html>".encode()
        elif self.path.startswith("/ka/2025/1121/c"):
            status, body = 200, article_page(f"第{self.path[16:-5]}篇学习心得", 21, "周明远")
        else:
            status, body = 404, b"not found"
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_connections_to_a_keep_alive_site_are_reused(tmp_path: Path) -> None:
    # Without a download delay Scrapy sends several requests to a host at once, and its own pool
    # kept one idle connection per host and closed the others: about 90 connections for these 102
    # requests, 1,800 for 2,101 in the ingest benchmark. At most one per request in flight now.
    _KeepAliveHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        items = crawl(tmp_path, [{"source": source("ka", f"{base}/ka/list_1.html", "html")}])
    finally:
        server.shutdown()
        server.server_close()
    assert len(of(items, "ArticleItem", "ka")) == 100
    paths = [path for path, _ in _KeepAliveHandler.seen]
    assert len(paths) == 102 and paths[0] == "/robots.txt"
    connections = {port for _, port in _KeepAliveHandler.seen}
    assert len(connections) <= 16, f"{len(connections)} connections for {len(paths)} requests"  # CONCURRENT_REQUESTS


# -- subprocess side ----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class CollectPipeline:
    """Writes every item as one JSON line (bytes as their length)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def from_crawler(cls, crawler: Any) -> CollectPipeline:
        return cls(str(crawler.settings.get("SITE_TEST_OUT")))

    def process_item(self, item: Any, spider: Any = None) -> Any:
        record = {"type": type(item).__name__, **_jsonable(asdict(item))}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return item


def _run_jobs(job_file: str) -> None:
    from scrapy.crawler import CrawlerProcess
    from scrapy.utils.project import get_project_settings

    from crawler.spiders.site_column import SiteColumnSpider

    spec = json.loads(Path(job_file).read_text())
    settings = get_project_settings()
    settings.setdict(
        {
            "ITEM_PIPELINES": {"tests.test_site_spider.CollectPipeline": 100},
            "SITE_TEST_OUT": spec["out"],
            "ROBOTSTXT_OBEY": True,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "RETRY_ENABLED": False,
            "LOG_LEVEL": "WARNING",
            "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        },
        priority="cmdline",
    )
    process = CrawlerProcess(settings)
    for job in spec["jobs"]:
        validators = {url: tuple(pair) for url, pair in job.get("validators", {}).items()}
        process.crawl(
            SiteColumnSpider,
            source=job["source"],
            known_keys=job.get("known_keys", []),
            validators=validators,
            crawl={"download_delay_seconds": 0, "timeout_seconds": 10},
        )
    process.start()


if __name__ == "__main__":
    _run_jobs(sys.argv[1])
