"""The crawl's request frontier in Redis through scrapy-redis (issue 20, point 1): the keys a crawl
creates under the installation's prefix, their deletion when the job is done, and a dead crawl's
queue resumed by the worker that takes its source over, counted in the site server's hits.

Real `zhuanlan` processes against PostgreSQL and Redis (skipped, saying which, when one does not
answer); the site is bench/ingest_site.py's, served by a server that counts its hits per path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from sqlalchemy import select

from bench.ingest_site import COLUMN, UNITS, Site
from crawler import request_codec
from crawler.frontier import IN_FLIGHT, frontier_keys
from crawler.samples.sample_config import sample_config_toml
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import CrawlRun, SourceRun
from pipeline.corpus.runs import process_identity
from pipeline.distributed import sweep_frontiers
from pipeline.ingest import MAX_BATCH, MAX_BATCH_SECONDS
from tests.servers import (
    frontier_keys_under,
    postgresql_schema,
    require_postgresql,
    require_redis,
    stored_appearances,
)
from tests.support import ROOT, free_port, run_cli

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

PAGES = 120
SOURCE = "site-col1"
ZHUANLAN = str(Path(sys.executable).with_name("zhuanlan"))

pytestmark = pytest.mark.timeout(600)


class CountingSite:
    """The generated site over HTTP, counting hits per path; article pages answer after `delay`."""

    def __init__(self, root: Path, delay: float) -> None:
        self.hits: Counter[str] = Counter()
        self.first_hit: dict[str, float] = {}
        lock = threading.Lock()
        hits, first_hit = self.hits, self.first_hit
        directory = str(root)

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=directory, **kwargs)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with lock:
                    hits[path] += 1
                    first_hit.setdefault(path, time.monotonic())
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


@contextmanager
def _crawl_world(root: Path, delay: float) -> Iterator[tuple[CountingSite, redis.Redis, str, str, Path]]:
    """The counting site, a Redis client, a fresh key prefix, a fresh database and its config."""
    server = CountingSite(root / "site", delay=delay)
    client = redis.Redis.from_url(require_redis())
    prefix = f"zh-test-{uuid.uuid4().hex[:10]}"
    try:
        with postgresql_schema(require_postgresql()) as url:
            cfg = _config(root, server.base, prefix)
            assert run_cli(cfg, url, "init").returncode == 0
            yield server, client, prefix, url, cfg
    finally:
        server.httpd.shutdown()


def _popen(cfg: Path, url: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": url}
    with log.open("wb") as out:
        return subprocess.Popen(
            [ZHUANLAN, "--config", str(cfg), *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def test_a_crawl_keeps_its_requests_in_redis_and_deletes_them_when_done(site: tuple[Path, Site]) -> None:
    root, generated = site
    with _crawl_world(root, delay=0.01) as (server, client, prefix, url, cfg):
        crawl = _popen(cfg, url, "crawl", "--source", SOURCE, log=root / f"{prefix}.log")
        during: set[str] = set()
        while crawl.poll() is None:
            during |= frontier_keys_under(client, prefix)
            time.sleep(0.05)
        assert crawl.returncode == 0, (root / f"{prefix}.log").read_text(errors="replace")[-3000:]
        assert stored_appearances(url) == generated.page_count
        hits = server.article_hits()
    run_keys = {k.rsplit(":", 1)[-1] for k in during}
    # scrapy-redis' queue and seen-set of this source, under the installation's prefix
    assert run_keys == {"requests", "seen"}, during
    assert all(k.startswith(f"{prefix}:frontier:") and f":{SOURCE}:" in k for k in during)
    assert not frontier_keys_under(client, prefix), "the frontier is deleted when the crawl is done"
    assert max(hits.values()) == 1  # each article once


def test_a_taken_over_source_resumes_the_dead_crawls_queue(site: tuple[Path, Site]) -> None:
    root, generated = site
    with _crawl_world(root, delay=0.05) as (server, client, prefix, url, cfg):
        enqueue = run_cli(cfg, url, "enqueue", "--source", SOURCE)
        assert enqueue.returncode == 0, enqueue.stderr
        run_id = int(enqueue.stdout.split()[2].rstrip(":"))
        keys = frontier_keys(prefix, run_id, SOURCE)
        worker_args = ("worker", "--exit-when-idle", "--poll-seconds", "0.5")
        dead_log = root / f"{prefix}-dead.log"
        dead = _popen(cfg, url, *worker_args, "--name", "dead", log=dead_log)
        deadline = time.monotonic() + 120
        # Mid-crawl: articles fetched, and requests waiting in the frontier.
        while sum(server.article_hits().values()) < 60 or client.zcard(keys.requests) < 5:
            assert time.monotonic() < deadline and dead.poll() is None, dead_log.read_text(errors="replace")
            time.sleep(0.02)
        dead.send_signal(signal.SIGKILL)  # its crawl child dies with it (PR_SET_PDEATHSIG)
        dead.wait()
        killed_at = time.monotonic()
        time.sleep(1)
        queued = [request_codec.loads(data)["url"] for data in client.zrange(keys.requests, 0, -1)]
        before = server.article_hits()
        heir_log = root / f"{prefix}-heir.log"
        heir = _popen(cfg, url, *worker_args, "--name", "heir", log=heir_log)
        assert heir.wait(timeout=300) == 0, heir_log.read_text(errors="replace")[-3000:]
        assert stored_appearances(url) == generated.page_count
        engine = make_engine(url)
        with session_factory(engine)() as session:
            handed = session.scalars(select(SourceRun).where(SourceRun.status == "handed_over")).all()
        engine.dispose()
        hits, base, first_hit = server.article_hits(), server.base, server.first_hit
    assert queued, "the dead crawl left requests in Redis"
    assert [r.handover["resumed_requests"] for r in handed if r.handover] == [len(queued)]
    assert not frontier_keys_under(client, prefix), "the frontier is deleted when the job is done"
    queued_articles = {u.removeprefix(base) for u in queued if "/art/" in u}
    # The requests the dead crawl left queued were not fetched by it, and once by the heir.
    assert all(before[path] == 0 and hits[path] == 1 for path in queued_articles), queued_articles
    # Only requests in flight in the dead process are fetched twice: in its downloader and spider,
    # or fetched and not yet committed by its ingest (a batch of at most MAX_BATCH pages, at most
    # MAX_BATCH_SECONDS old; two seconds more for a loaded machine).
    twice = sorted(path for path, n in hits.items() if n > 1)
    ages = sorted(round(killed_at - first_hit[path], 2) for path in twice)
    assert len(twice) <= IN_FLIGHT + MAX_BATCH, twice
    assert all(before[path] == 1 for path in twice)
    assert all(age <= MAX_BATCH_SECONDS + 2 for age in ages), ages
    assert len(hits) == generated.page_count
    print(f"resumed {len(queued)}; fetched twice {len(twice)}, first fetched {ages} s before the kill", file=sys.stderr)


def _plant(client: redis.Redis, prefix: str, run_id: int, source: str) -> list[str]:
    """A frontier as a crawl leaves it when killed outright: its queue and its seen-set."""
    keys = frontier_keys(prefix, run_id, source)
    client.zadd(keys.requests, {request_codec.dumps({"url": "http://127.0.0.1:9/left.html"}): 0})
    client.sadd(keys.seen, "0" * 40)
    return [keys.requests, keys.seen]


def test_frontiers_of_ended_runs_are_swept_and_the_others_kept(sessions: sessionmaker[Session]) -> None:
    client = redis.Redis.from_url(require_redis())
    prefix = f"zh-test-{uuid.uuid4().hex[:10]}[x]"  # glob characters in the prefix are taken literally
    now = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    with sessions.begin() as s:
        runs = {status: CrawlRun(started_at=now, status=status) for status in ("killed", "ok", "running")}
        s.add_all(runs.values())
        s.flush()
        ids = {status: run.id for status, run in runs.items()}
    planted = {status: _plant(client, prefix, run_id, "src") for status, run_id in ids.items()}
    unknown = _plant(client, prefix, max(ids.values()) + 1000, "src")  # a run this database does not know
    other = _plant(client, f"{prefix}-other", ids["killed"], "src")  # another prefix
    try:
        assert sweep_frontiers(sessions, client, prefix) == 4
        left = frontier_keys_under(client, prefix.replace("[", "\\[").replace("]", "\\]"))
        assert left == set(planted["running"] + unknown)
        assert all(client.exists(key) for key in other)
        assert sweep_frontiers(sessions, client, prefix) == 0
    finally:
        client.delete(*[k for keys in planted.values() for k in keys], *unknown, *other)


def test_a_crawl_sweeps_the_frontier_a_killed_crawl_left(site: tuple[Path, Site]) -> None:
    """`zhuanlan crawl` on Redis, after a crawl of the same installation was killed outright: its
    run is marked killed and what it left in Redis is deleted."""
    root, generated = site
    with _crawl_world(root, delay=0.0) as (_server, client, prefix, url, cfg):
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        identity = process_identity(victim.pid)  # the crawl process, as its run recorded it
        victim.kill()  # SIGKILL: nothing of it runs any more
        victim.wait()
        engine = make_engine(url)
        with session_factory(engine).begin() as s:
            dead = CrawlRun(started_at=datetime.now(UTC), status="running", summary={"process": identity})
            s.add(dead)
            s.flush()
            dead_id = dead.id
        engine.dispose()
        left = _plant(client, prefix, dead_id, SOURCE)
        crawl = run_cli(cfg, url, "crawl", "--source", SOURCE)
        assert crawl.returncode == 0, crawl.stderr[-3000:]
        assert stored_appearances(url) == generated.page_count
        assert not any(client.exists(key) for key in left)
        assert not frontier_keys_under(client, prefix)
