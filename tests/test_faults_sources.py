"""The source faults matrix: one crawl, in a subprocess, of a healthy site plus one source per fault
served by `tests.faultserver` (list level: the list page is the fault; article level: one article
page of a healthy list is). For every fault the run completes, the healthy sources are unaffected,
the faulty source's health says what happened in plain words, and nothing garbage is stored."""

from __future__ import annotations

import importlib
import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crawler.parsing.encoding import looks_binary, looks_mojibake
from pipeline.corpus import labels
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Appearance, Article, CrawlRun, Source, SourceRun
from tests.faultserver import (
    ARTICLE_FAULTS,
    COLUMN,
    READABLE_FAULTS,
    SITE_FAULTS,
    WECHAT,
    FaultServer,
    PageArticle,
    expected_titles,
    fault_sources,
    make_article,
)
from tests.support import run_cli as zhuanlan

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 3.0
MAX_PAGE_BYTES = 1024 * 1024

# What the source's health must say, in plain words, for each fault (a regex, case-insensitive).
WORDS = {
    "timeout": r"no answer within the time limit",
    "reset": r"connection (reset|dropped|closed)",
    "http403": r"HTTP 403.*(forbidden|refused)",
    "http404": r"HTTP 404.*not found",
    "http500": r"HTTP 500.*server error",
    "http503": r"HTTP 503.*(server error|unavailable)",
    "ruishu412": r"瑞数 JS challenge \(HTTP 412\)",
    "jsl521": r"加速乐 JS challenge \(HTTP 521\)",
    "redirect_loop": r"redirect loop",
    "huge": r"larger than the .*limit",
    "huge_unsized": r"larger than the .*limit",
    "truncated": r"incomplete",
    "binary": r"binary data, not text",
    "mixed_charset": r"garbled",
    "wx-verify-album": r"verification page \(环境异常",
    "wx-ret": r"album error \(ret=-6\): invalid args",
    "wx-timeout-album": r"no answer within the time limit",
    "wx-verify-article": r"verification page \(环境异常",
    "wx-500-article": r"HTTP 500",
    "wx-reset-article": r"connection (reset|dropped|closed)",
}
CHALLENGES = frozenset({"ruishu412", "jsl521"})
# Text that must never be stored as content.
GARBAGE = ("环境异常", "完成验证", "去验证", "$_ts", "__jsl_clearance", "\ufffd", "很长的页面内容")


@dataclass
class Outcome:
    returncode: int
    summary: dict[str, Any]
    stderr: str
    seconds: float
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # source key -> source run + health
    stored: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # source key -> stored stories
    status_output: str = ""
    requests: list[str] = field(default_factory=list)  # every path the fault server was asked for


def config_toml(base: str) -> str:
    lines = [
        'data_dir = "data"',
        "[[units]]",
        'name = "临溪市测试局"',
        'aliases = ["市测试局", "测试局"]',
        "[crawl]",
        f"timeout_seconds = {TIMEOUT_SECONDS}",
        "download_delay_seconds = 0",
        "wechat_delay_seconds = 0",
        f"max_page_bytes = {MAX_PAGE_BYTES}",
        "obey_robots = true",
    ]
    for key, kind, url in fault_sources(base):
        lines += [
            "[[sources]]",
            f'key = "{key}"',
            f'kind = "{kind}"',
            f"url = {json.dumps(url)}",
            'unit = "临溪市测试局"',
            f'column = "{COLUMN}"',
        ]
        if kind == "site_column":
            lines += ["[sources.options]", 'list_type = "html"', 'link_selector = "ul.news-list li a"']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory, module_db_url: str) -> Iterator[Outcome]:
    """ONE crawl of every source at once (the whole matrix), then everything the tests look at."""
    folder = tmp_path_factory.mktemp("faults")
    with FaultServer() as server:
        cfg = folder / "zhuanlan.toml"
        cfg.write_text(config_toml(server.base_url), encoding="utf-8")
        init = zhuanlan(cfg, module_db_url, "init")
        assert init.returncode == 0, init.stderr[-3000:]
        started = time.monotonic()
        crawl = zhuanlan(cfg, module_db_url, "crawl", "--json")
        seconds = time.monotonic() - started
        lines = crawl.stdout.strip().splitlines()
        summary = json.loads(lines[-1]) if lines else {}
        status = zhuanlan(cfg, module_db_url, "status")
        requests = list(server.requests)
    result = Outcome(
        crawl.returncode, summary, crawl.stderr, seconds, status_output=status.stdout + status.stderr, requests=requests
    )
    engine = make_engine(module_db_url)
    try:
        with session_factory(engine)() as s:
            for run in s.scalars(select(SourceRun)):
                source = run.source
                result.runs[source.key] = {
                    "status": run.status,
                    "error_summary": run.error_summary or "",
                    "problems": list(run.problems or []),
                    "source_status": source.status,
                    "last_error": source.last_error or "",
                    "consecutive_failures": source.consecutive_failures,
                }
            rows = s.execute(select(Source.key, Appearance, Article).join(Appearance.source).join(Appearance.article))
            for key, appearance, article in rows:
                result.stored.setdefault(key, []).append(
                    {
                        "title": article.title,
                        "text": article.body_text or "",
                        "html": article.body_html or "",
                        "url": appearance.url,
                    }
                )
            assert s.scalar(select(CrawlRun.status)) == summary.get("status")
    finally:
        engine.dispose()
    yield result


def has_paragraphs(story: dict[str, Any], article: PageArticle) -> bool:
    """The stored text holds every paragraph of the page, character for character (stored text is
    not folded: full-width punctuation stays as the page wrote it)."""
    return all(p in story["text"] for p in article.paragraphs)


def all_sources() -> list[str]:
    return ["ok-site"] + [f"list-{f}" for f in SITE_FAULTS] + [f"article-{f}" for f in ARTICLE_FAULTS] + list(WECHAT)


def test_the_run_completes_quickly_and_names_the_partial_result(outcome: Outcome) -> None:
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert outcome.summary["status"] == "partial"
    assert set(outcome.runs) == set(all_sources())
    assert outcome.seconds < 60, f"the fault crawl took {outcome.seconds:.1f} s"
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]


@pytest.mark.parametrize("key", ["ok-site", "wx-ok"])
def test_healthy_sources_are_unaffected(outcome: Outcome, key: str) -> None:
    run = outcome.runs[key]
    assert run["status"] == "ok" and run["error_summary"] == "" and run["problems"] == []
    assert run["source_status"] == "ok" and run["consecutive_failures"] == 0
    stored = outcome.stored[key]
    assert {story["title"] for story in stored} == expected_titles(key)
    name = "ok" if key == "ok-site" else key
    for i in (1, 2, 3):
        article = make_article(name, i)
        story = next(s for s in stored if s["title"] == article.title)
        assert has_paragraphs(story, article), story


@pytest.mark.parametrize("fault", [f for f in SITE_FAULTS if f not in READABLE_FAULTS])
def test_a_faulty_list_page_is_reported_in_plain_words_and_nothing_is_stored(outcome: Outcome, fault: str) -> None:
    key = f"list-{fault}"
    run = outcome.runs[key]
    assert run["status"] in {"error", "blocked"}, run
    assert re.search(WORDS[fault], run["error_summary"], re.I), run
    assert run["source_status"] == run["status"] and run["last_error"] == run["error_summary"]
    assert run["consecutive_failures"] == 1
    assert run["problems"] and all(p["url"].startswith("http://127.0.0.1:") for p in run["problems"])
    assert key not in outcome.stored


@pytest.mark.parametrize("fault", sorted(READABLE_FAULTS))
def test_a_list_page_in_a_misdeclared_charset_is_read_correctly(outcome: Outcome, fault: str) -> None:
    key = f"list-{fault}"
    run = outcome.runs[key]
    assert run["status"] == "ok" and run["problems"] == [], run
    stored = outcome.stored[key]
    assert {story["title"] for story in stored} == expected_titles(key)
    for i in (1, 2, 3):
        article = make_article(f"list-{fault}", i)
        story = next(s for s in stored if s["title"] == article.title)
        assert has_paragraphs(story, article), story


@pytest.mark.parametrize("fault", ARTICLE_FAULTS)
def test_a_faulty_article_page_is_reported_and_the_others_are_stored(outcome: Outcome, fault: str) -> None:
    key = f"article-{fault}"
    run = outcome.runs[key]
    # A JS challenge even on one article page marks the run "blocked" (the site has started to
    # challenge us); any other article fault leaves the run "ok" with the problem listed.
    expected_status = {"blocked"} if fault in CHALLENGES else {"ok"}
    assert run["status"] in expected_status and run["source_status"] == run["status"], run
    stored = outcome.stored.get(key, [])
    assert {story["title"] for story in stored} == expected_titles(key)
    if fault in READABLE_FAULTS:
        assert run["problems"] == []
        article = make_article(key, 2)
        story = next(s for s in stored if s["title"] == article.title)
        assert has_paragraphs(story, article), story
        return
    bad = [p for p in run["problems"] if "/a2" in p["url"]]
    assert len(bad) == 1 and len(run["problems"]) == 1, run["problems"]
    assert re.search(WORDS[fault], bad[0]["reason"], re.I), bad
    assert re.search(WORDS[fault], run["error_summary"], re.I), run


@pytest.mark.parametrize("key", ["wx-verify-album", "wx-ret", "wx-timeout-album"])
def test_a_faulty_album_is_reported_and_nothing_is_stored(outcome: Outcome, key: str) -> None:
    run = outcome.runs[key]
    assert run["status"] in {"error", "blocked"}, run
    assert re.search(WORDS[key], run["error_summary"], re.I), run
    if key == "wx-verify-album":
        # The source pauses with a growing back-off; its health says until when and why.
        assert run["status"] == "blocked" and run["source_status"] == "paused"
        assert "paused until" in run["last_error"] and "环境异常" in run["last_error"]
    else:
        assert run["source_status"] == "error" and run["last_error"] == run["error_summary"]
    assert key not in outcome.stored


@pytest.mark.parametrize("key", ["wx-verify-article", "wx-500-article", "wx-reset-article"])
def test_a_faulty_wechat_article_is_reported_and_the_others_are_stored(outcome: Outcome, key: str) -> None:
    run = outcome.runs[key]
    assert re.search(WORDS[key], run["error_summary"], re.I), run
    assert {story["title"] for story in outcome.stored.get(key, [])} == expected_titles(key)
    if key == "wx-verify-article":
        assert run["status"] == "blocked" and run["source_status"] == "paused"
    else:
        assert run["status"] == "ok" and run["source_status"] == "ok"
        assert len(run["problems"]) == 1


def test_the_spiders_stop_asking_where_they_should(outcome: Outcome) -> None:
    """After a WeChat verification page nothing more is asked of that album; a redirect loop is left
    at the first repeat; an album whose JSON paging failed fetches none of its articles."""
    asked = outcome.requests
    verify_article = [p for p in asked if p.startswith("/wx/wx-verify-article/")]
    assert verify_article[-1].startswith("/wx/wx-verify-article/s?")  # the verification page was the last
    assert sum(p.startswith("/wx/wx-verify-article/s?") for p in asked) == 2
    assert [p for p in asked if p.startswith("/wx/wx-verify-album/")] == [
        p for p in asked if p.startswith("/wx/wx-verify-album/mp/appmsgalbum")
    ]
    assert len([p for p in asked if p.startswith("/wx/wx-verify-album/")]) == 1
    assert not any(p.startswith("/wx/wx-ret/s?") for p in asked)
    assert any(p.startswith("/wx/wx-ret/mp/appmsgalbum") and "f=json" in p for p in asked)
    for page in ("/list/redirect_loop/index", "/article/redirect_loop/a2"):  # X.html -> X_loop.html -> X.html
        assert sorted(p for p in asked if p.startswith(page)) == [f"{page}.html", f"{page}_loop.html"]


def test_nothing_garbage_is_stored(outcome: Outcome) -> None:
    stored = [story for stories in outcome.stored.values() for story in stories]
    assert len(stored) == sum(len(expected_titles(key)) for key in all_sources())
    for story in stored:
        for text in (story["title"], story["text"], story["html"]):
            assert not looks_mojibake(text), story["url"]
            assert not any(marker in text for marker in GARBAGE), story["url"]
    assert {key for key, stories in outcome.stored.items() if stories} == {
        key for key in all_sources() if expected_titles(key)
    }


def test_status_shows_each_broken_source_with_its_reason(outcome: Outcome) -> None:
    """`zhuanlan status`, the operator's view: each broken source with its status and reason."""
    rows = {line.split()[0]: line for line in outcome.status_output.splitlines() if line.startswith("  ")}
    broken = [f"list-{f}" for f in SITE_FAULTS if f not in READABLE_FAULTS] + ["wx-ret", "wx-timeout-album"]
    for key in broken:
        run = outcome.runs[key]
        assert key in rows, outcome.status_output
        reason = labels.reason(run["last_error"])
        assert f" | {labels.source_status(run['source_status'])} | " in rows[key] and reason[:30] in rows[key], rows[
            key
        ]
        assert "其他错误" not in reason, reason  # every reason a fault produces has its Chinese
    for key in ("ok-site", "wx-ok", "list-lying_charset", "article-timeout"):
        assert " | 正常 | " in rows[key], rows[key]


def test_binary_detection_spares_real_pages() -> None:
    """The binary check that refuses garbage served as text/html never refuses a saved real page."""
    rng = random.Random(7)
    assert looks_binary(bytes(rng.getrandbits(8) for _ in range(4096)))
    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    assert not looks_binary(("<p>正文一段，" * 40 + "\x00一处杂字节</p>").encode() * 5)
    pages = [p for p in (ROOT / "tests" / "fixtures").rglob("*") if p.suffix in {".html", ".htm", ".json"}]
    assert len(pages) > 20
    assert [p.name for p in pages if looks_binary(p.read_bytes())] == []


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        # Scrapy >= 2.13 raises its own exceptions, wrapping Twisted's; older versions raise Twisted's.
        ("scrapy.exceptions:DownloadTimeoutError", "timeout", "time limit (3 s)"),
        ("twisted.internet.error:TimeoutError", "timeout", "time limit (3 s)"),
        ("scrapy.exceptions:ResponseDataLossError", "truncated", "arrived incomplete"),
        ("twisted.web._newclient:ResponseFailed:_DataLoss", "truncated", "arrived incomplete"),
        ("twisted.web._newclient:ResponseNeverReceived:ConnectionLost", "connection", "connection dropped"),
        ("scrapy.exceptions:DownloadFailedError:ConnectionLost", "connection", "connection dropped"),
        ("scrapy.exceptions:DownloadCancelledError", "too_large", "1048576-byte size limit"),
        ("twisted.internet.defer:CancelledError", "too_large", "1048576-byte size limit"),
        ("scrapy.exceptions:DownloadConnectionRefusedError", "connection", "refused"),
    ],
)
def test_download_failures_in_plain_words(error: str, kind: str, words: str) -> None:
    from twisted.internet.error import ConnectionLost

    from crawler.spiders.base import describe_failure

    failure: Any = importlib.import_module("twisted.python.failure").Failure  # untyped constructor
    module, name, *inner = error.split(":")
    cls = getattr(importlib.import_module(module), name)
    data_loss = importlib.import_module("twisted.web._newclient")._DataLoss  # private, as Twisted raises it
    wrapped = {"_DataLoss": data_loss, "ConnectionLost": ConnectionLost}
    if inner and name in {"ResponseFailed", "ResponseNeverReceived"}:
        exc = cls([failure(wrapped[inner[0]]())])
    elif inner:
        exc = cls(str([failure(wrapped[inner[0]]())]))
        exc.__cause__ = wrapped[inner[0]]()
    else:
        exc = cls()
    got_kind, reason = describe_failure(failure(exc), {"download_timeout": 3.0, "download_maxsize": 1048576})
    assert (got_kind, words in reason) == (kind, True), reason
    assert "twisted" not in reason and "<" not in reason
