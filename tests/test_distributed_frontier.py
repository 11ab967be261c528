"""The crawl's request frontier in Redis through scrapy-redis (issue 20, point 1): the keys a crawl
creates under the installation's prefix, their deletion when the job is done, and a dead crawl's
queue resumed by the worker that takes its source over, counted in the site server's hits.

Real `zhuanlan` processes against PostgreSQL and Redis (skipped, saying which, when one does not
answer); the site is bench/ingest_site.py's, served by a server that counts its hits per path.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from bench.ingest_site import COLUMN, UNITS, Site
from crawler.frontier import frontier_keys
from crawler.samples.sample_config import sample_config_toml
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Appearance, SourceRun
from tests.servers import postgresql_schema, require_postgresql, require_redis
from tests.support import ROOT, free_port, run_cli

PAGES = 120
SOURCE = "site-col1"
ZHUANLAN = str(Path(sys.executable).with_name("zhuanlan"))
# Scrapy's CONCURRENT_REQUESTS (crawler/settings.py): the most requests a crawl has popped from
# its frontier and not finished, the ones a takeover may fetch again.
IN_FLIGHT = 16

pytestmark = pytest.mark.timeout(600)


class CountingSite:
    """The generated site over HTTP, counting hits per path; article pages answer after `delay`."""

    def __init__(self, root: Path, delay: float) -> None:
        self.hits: Counter[str] = Counter()
        lock = threading.Lock()
        hits = self.hits
        directory = str(root)

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=directory, **kwargs)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with lock:
                    hits[path] += 1
                if path.startswith("/art/"):
                    time.sleep(delay)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def article_hits(self) -> Counter[str]:
        return Counter({path: n for path, n in self.hits.items() if path.startswith("/art/")})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Site]]:
    require_postgresql()
    require_redis()
    root = tmp_path_factory.mktemp("frontier")
    generated = Site(root / "site", columns=1)
    generated.add(PAGES)
    yield root, generated


def _config(work: Path, base: str, prefix: str) -> Path:
    text = sample_config_toml("http://127.0.0.1:9", smtp_port=free_port(), web_port=free_port())
    lines = [text, ""]
    lines += ["[distributed]", f'redis_url = "{require_redis()}"', f'key_prefix = "{prefix}"', "lease_seconds = 5", ""]
    lines += [
        "[[sources]]",
        f'key = "{SOURCE}"',
        'kind = "site_column"',
        f'url = "{base}/col/col1/index.html"',
        f'unit = "{UNITS[-1][0]}"',
        f'column = "{COLUMN}"',
        'options = { list_type = "html", link_selector = "ul.news-list li a", include = ["/art/"], page_limit = 200 }',
        "",
    ]
    cfg = work / f"zhuanlan-{prefix}.toml"
    cfg.write_text("\n".join(lines), encoding="utf-8")
    return cfg


def _stored(url: str) -> int:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return len(session.scalars(select(Appearance.id)).all())
    finally:
        engine.dispose()


def _frontier_keys(client: redis.Redis, prefix: str) -> set[str]:
    return {k.decode() if isinstance(k, bytes) else str(k) for k in client.scan_iter(match=f"{prefix}:frontier:*")}


def _popen(cfg: Path, url: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": url}
    with log.open("wb") as out:
        return subprocess.Popen(
            [ZHUANLAN, "--config", str(cfg), *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def test_a_crawl_keeps_its_requests_in_redis_and_deletes_them_when_done(site: tuple[Path, Site]) -> None:
    root, generated = site
    server = CountingSite(root / "site", delay=0.01)
    client = redis.Redis.from_url(require_redis())
    prefix = f"zh-test-{uuid.uuid4().hex[:10]}"
    try:
        with postgresql_schema(require_postgresql()) as url:
            cfg = _config(root, server.base, prefix)
            assert run_cli(cfg, url, "init").returncode == 0
            crawl = _popen(cfg, url, "crawl", "--source", SOURCE, log=root / f"{prefix}.log")
            during: set[str] = set()
            while crawl.poll() is None:
                during |= _frontier_keys(client, prefix)
                time.sleep(0.05)
            assert crawl.returncode == 0, (root / f"{prefix}.log").read_text(errors="replace")[-3000:]
            assert _stored(url) == generated.page_count
        run_keys = {k.rsplit(":", 1)[-1] for k in during}
        # scrapy-redis' queue and seen-set of this source, under the installation's prefix
        assert run_keys == {"requests", "seen"}, during
        assert all(k.startswith(f"{prefix}:frontier:") and f":{SOURCE}:" in k for k in during)
        assert not _frontier_keys(client, prefix), "the frontier is deleted when the crawl is done"
        assert max(server.article_hits().values()) == 1  # each article once
    finally:
        server.httpd.shutdown()


def test_a_taken_over_source_resumes_the_dead_crawls_queue(site: tuple[Path, Site]) -> None:
    root, generated = site
    server = CountingSite(root / "site", delay=0.03)
    client = redis.Redis.from_url(require_redis())
    prefix = f"zh-test-{uuid.uuid4().hex[:10]}"
    try:
        with postgresql_schema(require_postgresql()) as url:
            cfg = _config(root, server.base, prefix)
            assert run_cli(cfg, url, "init").returncode == 0
            enqueue = run_cli(cfg, url, "enqueue", "--source", SOURCE)
            assert enqueue.returncode == 0, enqueue.stderr
            run_id = int(enqueue.stdout.split()[2].rstrip(":"))
            keys = frontier_keys(prefix, run_id, SOURCE)
            worker_args = ("worker", "--exit-when-idle", "--poll-seconds", "0.5")
            dead_log = root / f"{prefix}-dead.log"
            dead = _popen(cfg, url, *worker_args, "--name", "dead", log=dead_log)
            deadline = time.monotonic() + 120
            # Mid-crawl: articles fetched, and requests waiting in the frontier.
            while sum(server.article_hits().values()) < 15 or client.zcard(keys.requests) < 5:
                assert time.monotonic() < deadline and dead.poll() is None, dead_log.read_text(errors="replace")
                time.sleep(0.02)
            dead.send_signal(signal.SIGKILL)  # its crawl child dies with it (PR_SET_PDEATHSIG)
            dead.wait()
            time.sleep(1)
            queued = [pickle.loads(data)["url"] for data in client.zrange(keys.requests, 0, -1)]
            before = server.article_hits()
            heir_log = root / f"{prefix}-heir.log"
            heir = _popen(cfg, url, *worker_args, "--name", "heir", log=heir_log)
            assert heir.wait(timeout=300) == 0, heir_log.read_text(errors="replace")[-3000:]
            assert _stored(url) == generated.page_count
            engine = make_engine(url)
            with session_factory(engine)() as session:
                handed = session.scalars(select(SourceRun).where(SourceRun.status == "handed_over")).all()
            engine.dispose()
        assert queued, "the dead crawl left requests in Redis"
        assert [r.handover["resumed_requests"] for r in handed if r.handover] == [len(queued)]
        assert not _frontier_keys(client, prefix), "the frontier is deleted when the job is done"
        hits = server.article_hits()
        base = server.base
        queued_articles = {u.removeprefix(base) for u in queued if "/art/" in u}
        # The requests the dead crawl left queued were not fetched by it, and once by the heir.
        assert all(before[path] == 0 and hits[path] == 1 for path in queued_articles), queued_articles
        # Only requests in flight in the dead process are fetched twice.
        twice = sorted(path for path, n in hits.items() if n > 1)
        assert len(twice) <= IN_FLIGHT, twice
        assert all(before[path] == 1 for path in twice)
        assert len(hits) == generated.page_count
        print(f"resumed {len(queued)} requests; {len(twice)} article(s) fetched twice", file=sys.stderr)
    finally:
        server.httpd.shutdown()
