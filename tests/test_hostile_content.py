"""Hostile content: XSS vectors in the titles, authors, bodies and URLs of crawled pages never reach
feeds, web pages, digest mails or exports in executable form — checked by parsing every output
as a browser would, and in headless Chromium by loading the pages and watching for script."""

from __future__ import annotations

import csv
import html
import json
import os
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import lxml.etree  # type: ignore[import-untyped]
import pytest
from sqlalchemy import select

from archive.web import create_app
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Article, Unit
from tests.hostile import XSS_VECTORS, all_executable, executable_parts
from tests.support import free_port, run_cli
from zhuanlan_config import load_config

FORMULAS = ('=HYPERLINK("http://127.0.0.1:9/","点")', "@SUM(1+1)*cmd|' /C calc'!A0", "+1+cmd|' /C calc'!A0")
WORDS = "学习 贯彻 全会 精神 党建 高质量 发展 科技 创新 乡村 振兴 生态 文明 法治 民生 保障 教育 作风 基层 服务".split()


def hostile_site() -> dict[str, bytes]:
    """A column list and 30 article pages, each carrying vectors in title, author, 来源, body and URL."""
    rng = random.Random(5)
    pages: dict[str, bytes] = {}
    links = []
    vectors = list(XSS_VECTORS)
    for i in range(30):
        title_vec = vectors[i % len(vectors)]
        title = (FORMULAS[i] if i < len(FORMULAS) else title_vec) + f" 学习体会{i}"
        author = vectors[(i + 7) % len(vectors)]
        body_vecs = [vectors[(i * 2 + 13) % len(vectors)], vectors[(i * 2 + 14) % len(vectors)]]
        paragraphs = ["".join(rng.choice(WORDS) for _ in range(60)) + "。" for _ in range(5)]
        body = (
            f"<p>{paragraphs[0]}</p>{body_vecs[0]}<p>{paragraphs[1]}</p><p>{paragraphs[2]}"
            f'<a href="javascript:window.__xss=1">链接</a></p>{body_vecs[1]}<p>{paragraphs[3]}</p><p>{paragraphs[4]}</p>'
        )
        path = f"/art/2026/11/{20 + i % 5}/art_77_{1000 + i}.html"
        if i % 6 == 0:
            path += "?from=%22%3E%3Cscript%3Ewindow.__xss%3D1%3C%2Fscript%3E"
        links.append(
            f'<li><a href="{html.escape(path)}">{html.escape(title)}</a><span>2026-11-{20 + i % 5}</span></li>'
        )
        page = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<meta name="ArticleTitle" content="{html.escape(title)}">
<meta name="PubDate" content="2026-11-{20 + i % 5} 09:00">
<title>{html.escape(title)}_临溪市测试局</title></head><body>
<div class="nav"><a href="/">首页</a></div>
<h1>{html.escape(title)}</h1>
<div class="info">发布时间：2026-11-{20 + i % 5} 09:00　来源：市测试局　作者：{html.escape(author)}</div>
<div id="zoom">{body}</div>
<div class="footer">版权所有 临溪市测试局</div></body></html>"""
        pages[path.split("?")[0]] = page.encode("utf-8")
    listing = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>学习专栏</title></head><body><ul class='list'>"
    listing += "".join(links) + "</ul></body></html>"
    pages["/col/index.html"] = listing.encode("utf-8")
    return pages


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    pages = hostile_site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.split("?")[0])
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory, module_db_url: str, site: str) -> tuple[Path, str]:
    db_url = module_db_url
    cfg = tmp_path_factory.mktemp("hostile") / "zhuanlan.toml"
    cfg.write_text(
        f"""
[[units]]
name = "临溪市测试局"
aliases = ["市测试局"]

[[recipients]]
unit = "临溪市测试局"
name = "<img src=x onerror=window.__xss=1>"
email = "ceshi@example.org"

[[sources]]
key = "hostile"
kind = "site_column"
url = "{site}/col/index.html"
unit = "临溪市测试局"
column = "学习贯彻党的二十届四中全会精神"
[sources.options]
list_type = "html"

[crawl]
download_delay_seconds = 0
obey_robots = false

[smtp]
port = {free_port()}

[web]
base_url = "http://127.0.0.1:8080"
""",
        encoding="utf-8",
    )
    for step in (("init",), ("crawl", "--json"), ("feeds",)):
        proc = run_cli(cfg, db_url, *step)
        assert proc.returncode == 0, (step, proc.stderr[-3000:])
    return cfg, db_url


def test_the_vectors_were_really_crawled(crawled: tuple[Path, str]) -> None:
    _, db_url = crawled
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        articles = s.scalars(select(Article)).all()
    engine.dispose()
    assert len(articles) == 30
    assert len(XSS_VECTORS) >= 50


def feed_fragments(feed_dir: Path) -> list[str]:
    fragments: list[str] = []
    for path in sorted(feed_dir.rglob("*.rss")) + sorted(feed_dir.rglob("*.atom")):
        tree = lxml.etree.fromstring(path.read_bytes())
        for el in tree.iter():
            tag = el.tag if isinstance(el.tag, str) else ""
            local = tag.split("}")[-1]
            fields = {"title", "description", "encoded", "summary", "content", "name", "author", "category"}
            if local in fields and el.text:
                fragments.append(el.text)
            for attr in ("href", "term", "label"):
                if el.get(attr):
                    fragments.append(f'<a href="{html.escape(el.get(attr))}">x</a>' if attr == "href" else el.get(attr))
    for path in sorted(feed_dir.glob("*.json")):
        if path.name == "index.json":
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        for item in doc.get("items", []):
            for key in ("title", "content_html", "summary", "url", "external_url"):
                value = item.get(key)
                if isinstance(value, str):
                    fragments.append(
                        value if key not in {"url", "external_url"} else f'<a href="{html.escape(value)}">x</a>'
                    )
            for author in item.get("authors", []):
                fragments.append(str(author.get("name", "")))
            fragments.extend(str(t) for t in item.get("tags", []))
    return fragments


def test_feeds_hold_nothing_executable(crawled: tuple[Path, str]) -> None:
    cfg, _ = crawled
    feed_dir = load_config(cfg).public_dir / "feeds"
    fragments = feed_fragments(feed_dir)
    assert len(fragments) > 100
    assert all_executable(fragments) == []
    index = (feed_dir / "index.html").read_text(encoding="utf-8")
    assert executable_parts(index, allow_style_tag=True) == []


def _web_pages(cfg: Path, db_url: str) -> dict[str, str]:
    os.environ["ZHUANLAN_DATABASE_URL"] = db_url
    try:
        config = load_config(cfg)
    finally:
        os.environ.pop("ZHUANLAN_DATABASE_URL", None)
    engine = make_engine(db_url)
    app = create_app(config, session_factory(engine), now=lambda: datetime.now(UTC))
    client = app.test_client()
    with session_factory(engine)() as s:
        guids = [a.guid for a in s.scalars(select(Article))]
        unit_ids = [u.id for u in s.scalars(select(Unit))]
    urls = ["/", "/search?q=学习体会", "/search?q=%3Cscript%3E", "/digests"]
    urls += [f"/story/{g}" for g in guids] + [f"/unit/{u}" for u in unit_ids]
    pages: dict[str, str] = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        pages[url] = response.get_data(as_text=True)
    engine.dispose()
    return pages


def test_web_pages_hold_nothing_executable_beyond_their_own_skeleton(crawled: tuple[Path, str]) -> None:
    cfg, db_url = crawled
    pages = _web_pages(cfg, db_url)
    # Our own templates may carry a search form and a stylesheet link; the home page of an empty
    # archive shows what the skeleton itself holds. Anything beyond it came from crawled content.
    skeleton = Counter(executable_parts(pages["/digests"], allow_style_tag=True))
    for url, page in pages.items():
        extra = Counter(executable_parts(page, allow_style_tag=True)) - skeleton
        extra -= Counter({"<form>": 1})  # the search page's own filter form
        assert not extra, (url, extra)
        assert "window.__xss=1</script>" not in page


def test_digest_mail_holds_nothing_executable(crawled: tuple[Path, str], tmp_path: Path) -> None:
    cfg, db_url = crawled
    out = tmp_path / "preview"
    proc = run_cli(cfg, db_url, "digest", "preview", "--week", "2026-W48", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    html_files = sorted(out.glob("*.html"))
    assert html_files
    for path in html_files:
        text = path.read_text(encoding="utf-8")
        assert "学习体会" in text
        assert executable_parts(text, allow_style_tag=True) == [], path.name


def test_exports_hold_no_formulas_or_markup_that_runs(crawled: tuple[Path, str], tmp_path: Path) -> None:
    cfg, db_url = crawled
    out = tmp_path / "stories.csv"
    proc = run_cli(cfg, db_url, "export", "--format", "csv", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 31
    for row in rows[1:]:
        for cell in row:
            # a spreadsheet runs a cell that starts with = + - @ as a formula
            assert cell[:1] not in {"=", "+", "-", "@"}, cell
    jsonl = tmp_path / "stories.jsonl"
    assert run_cli(cfg, db_url, "export", "--format", "jsonl", "--out", str(jsonl)).returncode == 0
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert executable_parts(record.get("body_html", "") or "") == []


def test_no_script_runs_in_chromium(crawled: tuple[Path, str], chromium: Any, tmp_path: Path) -> None:
    from archive.web import serve

    cfg, db_url = crawled
    os.environ["ZHUANLAN_DATABASE_URL"] = db_url
    try:
        config = load_config(cfg)
    finally:
        os.environ.pop("ZHUANLAN_DATABASE_URL", None)
    engine = make_engine(db_url)
    app = create_app(config, session_factory(engine), now=lambda: datetime.now(UTC))
    port = free_port()
    threading.Thread(target=serve, args=(app, "127.0.0.1", port), daemon=True).start()
    with session_factory(engine)() as s:
        guids = [a.guid for a in s.scalars(select(Article))][:10]
    page = chromium.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    base = f"http://127.0.0.1:{port}"
    for _ in range(50):
        try:
            page.goto(base + "/", timeout=2000)
            break
        except Exception:
            page.wait_for_timeout(100)
    targets = [f"{base}/story/{g}" for g in guids] + [f"{base}/search?q=学习体会", f"{base}/"]
    feed_index = config.public_dir / "feeds" / "index.html"
    targets.append(feed_index.as_uri())
    preview = tmp_path / "preview"
    assert run_cli(cfg, db_url, "digest", "preview", "--week", "2026-W48", "--out", str(preview)).returncode == 0
    targets += [p.as_uri() for p in sorted(preview.glob("*.html"))[:3]]
    for url in targets:
        page.goto(url)
        page.wait_for_timeout(50)
        # hover and focus everything, in case a handler waits for the user
        page.evaluate(
            "() => document.querySelectorAll('*').forEach(e => { try { e.focus && e.focus(); e.dispatchEvent(new MouseEvent('mouseover')); } catch (x) {} })"
        )
        assert page.evaluate("() => window.__xss === undefined"), url
    assert dialogs == []
    page.close()
    engine.dispose()
