"""Feeds: rebuild time for 200 feeds x 50 items, and requests/s for one feed with and without If-None-Match.

(a) A temporary SQLite corpus makes exactly 200 feeds (all, 1 column, 100 units, 98 topics) of
50 items each. `publish_feeds(force=True)` (query, hash, build, atomic write of RSS + Atom +
JSON, OPML) and the no-change rebuild (nothing written) are measured against a baseline: the
same 200 feeds built with feedgen (RSS + Atom) and json directly from items already in memory,
with no database, no sanitizing, no hash and no atomic write.
(b) The real web app (archive.web.create_app) under waitress in a thread on a free loopback
port; a few client threads each send a bounded number of GETs for /feeds/all.rss over one
keep-alive http.client connection, once plainly (200 with the body) and once with the ETag in
If-None-Match (304, no body).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from feedgen.feed import FeedGenerator
from sqlalchemy import insert, update

from bench.common import Timing, make_text, measure
from feeds.build import _render
from feeds.publish import publish_feeds
from feeds.selection import load_feed_items, plan_feeds
from pipeline.corpus.db import make_engine, session_factory, upgrade
from pipeline.corpus.models import Appearance, Article, ArticleTag, Source, Tag, Unit
from zhuanlan_config import Config, parse_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from feeds.build import FeedItem, FeedSpec

TITLE = "Feeds: rebuild of 200 feeds x 50 items; serving a feed with and without If-None-Match"
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=SHANGHAI)
COLUMN = "学习贯彻党的二十届四中全会精神"
N_UNITS = 100
N_TOPICS = 98
PER_UNIT = 50  # every unit feed is full; topics get about 100 stories each, so they are full too
TOPICS_PER_ARTICLE = 2
CLIENT_THREADS = 4
REQUESTS_PER_THREAD = 500  # 2,000 requests per measured run


def make_corpus(sessions: sessionmaker[Session], rng: random.Random) -> int:
    """Insert the corpus with bulk statements; returns the number of stories."""
    units = [{"id": i + 1, "name": f"市第{i + 1}局", "sort_order": i, "aliases": []} for i in range(N_UNITS)]
    topics = [{"id": i + 1, "kind": "topic", "name": f"主题{i + 1:03d}"} for i in range(N_TOPICS)]
    articles: list[dict[str, Any]] = []
    appearances: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    n = 0
    for unit in units:
        for _ in range(PER_UNIT):
            n += 1
            paragraphs = [make_text(rng, 250) for _ in range(5)]
            image = f'<p><img data-src="https://mmbiz.qpic.cn/mmbiz_jpg/{n}/640?wx_fmt=jpeg" src="data:,"></p>'
            published = NOW - timedelta(minutes=37 * n)
            articles.append(
                {
                    "id": n,
                    "guid": f"{n:032x}",
                    "title": make_text(rng, 18)[:24],
                    "author": "王立新",
                    "positions": ["党组书记", "局长"],
                    "unit_id": unit["id"],
                    "column": COLUMN,
                    "published_at": published,
                    "body_html": "".join(f"<p>{p}</p>" for p in paragraphs) + image,
                    "body_text": "\n".join(paragraphs),
                    "content_hash": f"{n:064x}",
                    "state": "live",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            )
            appearances.append(
                {
                    "id": n,
                    "article_id": n,
                    "source_id": 1,
                    "canonical_key": f"wx:{n}",
                    "url": f"https://mp.weixin.qq.com/s?__biz=MzA&mid={n}&idx=1",
                    "title": "",
                    "published_at": published,
                    "fetched_at": NOW,
                    "content_hash": f"{n:064x}",
                    "is_original": True,
                    "meta": {},
                }
            )
            for tag_id in rng.sample(range(1, N_TOPICS + 1), TOPICS_PER_ARTICLE):
                tags.append({"article_id": n, "tag_id": tag_id, "origin": "rule"})
    with sessions() as session, session.begin():
        session.execute(insert(Unit), units)
        session.execute(insert(Tag), topics)
        session.add(Source(id=1, key="album", kind="wechat_album", url="https://mp.weixin.qq.com/", options={}))
        session.flush()
        session.execute(insert(Article), articles)
        session.execute(insert(Appearance), appearances)
        session.execute(insert(ArticleTag), tags)
        session.flush()
        session.execute(
            update(Article).values(first_appearance_id=Article.id).execution_options(synchronize_session=False)
        )
    return n


def feedgen_baseline(feeds: list[tuple[FeedSpec, list[FeedItem]]], base: str) -> int:
    """The same documents with feedgen and json straight from memory: no sanitizing, no files."""
    size = 0
    for spec, items in feeds:
        fg = FeedGenerator()
        fg.id(f"urn:zhuanlan:feed:{spec.key}")
        fg.title(spec.title)
        fg.subtitle(spec.title)
        fg.link(href=f"{base}/", rel="alternate")
        fg.language("zh-CN")
        fg.updated(NOW)
        for it in items:
            fe = fg.add_entry(order="append")
            fe.guid(f"urn:zhuanlan:article:{it.guid}", permalink=False)
            fe.title(it.title)
            fe.link(href=it.link)
            fe.published(it.published)
            fe.updated(it.published)
            if it.author:
                fe.author({"name": it.author})
            for kind, term in it.categories:
                fe.category(term=term, scheme=f"urn:zhuanlan:{kind}")
            fe.summary(it.text[:120])
            fe.content(it.body_html, type="html")
        size += len(fg.rss_str(pretty=True)) + len(fg.atom_str(pretty=True))
        doc = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": spec.title,
            "items": [
                {
                    "id": it.guid,
                    "url": it.link,
                    "title": it.title,
                    "content_html": it.body_html,
                    "date_published": it.published.isoformat(),
                }
                for it in items
            ],
        }
        size += len(json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8"))
    return size


def rebuild_section(config: Config, sessions: sessionmaker[Session], n_articles: int) -> list[str]:
    first = publish_feeds(sessions, config, NOW)
    feeds_dir = config.public_dir / "feeds"
    n_feeds = len(first.written)
    with sessions() as session:
        specs = plan_feeds(session, config)
        feeds = [(spec, load_feed_items(session, spec, config)) for spec in specs]
    counts = [len(items) for _, items in feeds]
    total_bytes = sum(p.stat().st_size for p in feeds_dir.glob("*.*") if p.suffix in (".rss", ".atom", ".json"))

    results: list[Any] = []

    def forced_run() -> None:
        _render.cache_clear()  # each run renders from scratch, as a fresh scheduler process would
        results.append(publish_feeds(sessions, config, NOW, force=True))

    forced = measure(forced_run, repeat=3)
    assert all(len(r.written) == n_feeds for r in results)
    results.clear()
    unchanged = measure(lambda: results.append(publish_feeds(sessions, config, NOW)), repeat=3)
    assert all(r.written == [] and r.unchanged == n_feeds for r in results)
    baseline = measure(lambda: feedgen_baseline(feeds, config.web.base_url), repeat=3)

    def row(name: str, t: Timing) -> str:
        return f"| {name} | {t.fmt('s', 1.0)} | {t.median / baseline.median:.2f}x |"

    return [
        f"Corpus: {n_articles} stories in SQLite; {n_feeds} feeds (all, 1 column, {N_UNITS} units, "
        f"{N_TOPICS} topics), {min(counts)}–{max(counts)} items each; {n_feeds * 3} files, "
        f"{total_bytes / 1e6:.1f} MB (RSS + Atom + JSON Feed).",
        "",
        "| rebuild | time | vs baseline |",
        "|---|---|---|",
        row("feedgen + json from in-memory items (baseline: no DB, no sanitizing, no hash, no files)", baseline),
        row("`publish_feeds(force=True)`: query, sanitize, hash, build, atomic writes", forced),
        row("`publish_feeds()` with nothing changed: query and hash only, nothing written", unchanged),
        "",
    ]


def _client(port: int, path: str, headers: dict[str, str], n: int, expect: int, out: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ok = 0
    try:
        for _ in range(n):
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            ok += resp.status == expect
    finally:
        conn.close()
    out.append(ok)


def _load(port: int, path: str, headers: dict[str, str], expect: int) -> tuple[float, int]:
    """(requests per second, requests answered with `expect`) of one bounded client run."""
    done: list[int] = []
    threads = [
        threading.Thread(target=_client, args=(port, path, headers, REQUESTS_PER_THREAD, expect, done))
        for _ in range(CLIENT_THREADS)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return CLIENT_THREADS * REQUESTS_PER_THREAD / elapsed, sum(done)


def serve_section(config: Config, sessions: sessionmaker[Session]) -> list[str]:
    from waitress import wasyncore
    from waitress.server import create_server

    from archive.web import create_app

    # waitress warns about its task queue under a load test; that is the point of the test.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = create_app(config, sessions, now=lambda: NOW)
    server: Any = create_server(app, host="127.0.0.1", port=0, threads=4)
    port = int(server.effective_port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    path = "/feeds/all.rss"
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        size = len(resp.read())
        etag = resp.getheader("ETag") or ""
        conn.close()
        assert resp.status == 200 and etag, (resp.status, etag)
        plain: list[float] = []
        conditional: list[float] = []
        total = CLIENT_THREADS * REQUESTS_PER_THREAD
        for _ in range(3):  # interleaved, so drift affects both alike
            rate, ok = _load(port, path, {}, 200)
            assert ok == total, ok
            plain.append(rate)
            rate, ok = _load(port, path, {"If-None-Match": etag}, 304)
            assert ok == total, ok
            conditional.append(rate)
    finally:
        # Stop the workers first (none may pull the loop's trigger after it is closed), then
        # close every channel: the loop ends when its map is empty.
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)
        thread.join(timeout=5)

    def cell(rates: list[float]) -> str:
        return f"{statistics.median(rates):,.0f} req/s (min {min(rates):,.0f}, max {max(rates):,.0f}, n={len(rates)})"

    return [
        f"`GET {path}` ({size / 1024:.0f} KiB, 50 items) from the real web app under waitress (4 threads) on "
        f"127.0.0.1; {CLIENT_THREADS} client threads x {REQUESTS_PER_THREAD} requests on keep-alive "
        "http.client connections per run.",
        "",
        "| request | throughput | vs plain GET |",
        "|---|---|---|",
        f"| plain GET (200 with the body; baseline) | {cell(plain)} | 1.00x |",
        f"| GET with If-None-Match (304, no body) | {cell(conditional)} | "
        f"{statistics.median(conditional) / statistics.median(plain):.2f}x |",
    ]


def run(seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = parse_config(
            {
                "database_url": f"sqlite:///{root / 'bench.db'}",
                "public_dir": str(root / "public"),
                "data_dir": str(root / "data"),
                "web": {"base_url": "https://zl.example.org"},
                "feeds": {"items_per_feed": 50, "title_prefix": "专栏"},
                "columns": [{"name": COLUMN}],
            },
            base_dir=root,
        )
        engine = make_engine(config.database_url)
        try:
            upgrade(engine)
            sessions = session_factory(engine)
            n_articles = make_corpus(sessions, rng)
            lines = rebuild_section(config, sessions, n_articles)
            lines += serve_section(config, sessions)
        finally:
            engine.dispose()
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
