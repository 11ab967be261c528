"""The distributed crawl against the single-process result (issue 20, points 1 and 3).

The bundled sample sources plus a generated unit site (bench/ingest_site.py: PAGES pages, 2,000
with 45 reposts by default as the issue asks, one source per column) are crawled three times into
three PostgreSQL schemas: by `zhuanlan crawl` in one process, by two `zhuanlan worker` processes
(the installed console script) fed through Redis by `zhuanlan enqueue`, and by two workers of
which one is SIGKILLed mid-crawl. Each stored result must equal the single-process one: the same
stories, each with the same appearances (canonical keys) and the same 首发. Every crawl's requests
wait in Redis (scrapy-redis, `crawler.redis_scheduler`): the keys exist while the sources are
crawled and are gone when their jobs are done. The killed worker's sources are taken over by the
other, which resumes the requests left queued in Redis, and the handover is recorded on the run.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from bench.ingest_site import COLUMN, UNITS, Site, StaticServer
from crawler.politeness import HostGate
from crawler.samples.sample_config import sample_config_toml
from crawler.samples.server import SampleSources
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Appearance, Article, CrawlRun, Source, SourceRun
from tests.servers import (
    frontier_keys_under,
    postgresql_schema,
    require_postgresql,
    require_redis,
    stored_appearances,
)
from tests.support import ROOT, free_port, run_cli

PAGES = int(os.environ.get("ZHUANLAN_TEST_DISTRIBUTED_PAGES", "2000"))
COLUMNS = 8  # the generated site's columns: one source each, so the workers share the site
ZHUANLAN = str(Path(sys.executable).with_name("zhuanlan"))  # the installed console script

Dump = frozenset[tuple[tuple[str, ...], str]]

pytestmark = pytest.mark.timeout(1800)


def _config(samples: SampleSources, site: str, redis_url: str, prefix: str) -> str:
    text = sample_config_toml(samples.base_url, smtp_port=free_port(), web_port=free_port())
    lines = [text, ""]  # its [crawl] has no delays (loopback)
    lines += ["[distributed]", f'redis_url = "{redis_url}"', f'key_prefix = "{prefix}"', "lease_seconds = 5", ""]
    for n in range(1, COLUMNS + 1):
        lines += [
            "[[sources]]",
            f'key = "site-col{n}"',
            'kind = "site_column"',
            f'url = "{site}/col/col{n}/index.html"',
            f'unit = "{UNITS[-1][0]}"',
            f'column = "{COLUMN}"',
            'options = { list_type = "html", link_selector = "ul.news-list li a", include = ["/art/"], page_limit = 200 }',
            "",
        ]
    return "\n".join(lines)


def canonical_dump(url: str) -> Dump:
    """Per story: the sorted canonical keys of its appearances, and the one that is its 首发."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(Article.id, Appearance.canonical_key, Appearance.is_original).join(
                    Appearance, Appearance.article_id == Article.id
                )
            ).all()
    finally:
        engine.dispose()
    stories: dict[int, list[tuple[str, bool]]] = {}
    for article_id, key, original in rows:
        stories.setdefault(article_id, []).append((key, bool(original)))
    out = set()
    for appearances in stories.values():
        originals = [k for k, o in appearances if o]
        assert len(originals) == 1, appearances
        out.add((tuple(sorted(k for k, _ in appearances)), originals[0]))
    return frozenset(out)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    require_postgresql()
    redis_url = require_redis()
    work = tmp_path_factory.mktemp("distributed")
    site = Site(work / "site", columns=COLUMNS)
    site.add(PAGES)
    server = StaticServer(work / "site", work / "nginx", nginx=False).start()
    samples = SampleSources(port=0)
    samples.start()
    try:
        yield {"work": work, "site": server.base, "samples": samples, "redis": redis_url, "articles": site.articles}
    finally:
        samples.stop()
        server.stop()


def _prepare(world: dict[str, object], name: str, url: str) -> tuple[Path, str]:
    prefix = f"zh-test-{uuid.uuid4().hex[:10]}"
    cfg = Path(str(world["work"])) / name / "zhuanlan.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    samples = world["samples"]
    assert isinstance(samples, SampleSources)
    cfg.write_text(_config(samples, str(world["site"]), str(world["redis"]), prefix), encoding="utf-8")
    init = run_cli(cfg, url, "init")
    assert init.returncode == 0, init.stderr
    return cfg, prefix


def _worker(cfg: Path, url: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": url}
    with log.open("wb") as out:
        return subprocess.Popen(
            [ZHUANLAN, "--config", str(cfg), "worker", "--name", name, "--exit-when-idle", "--poll-seconds", "0.5"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait(proc: subprocess.Popen[bytes], log: Path, timeout: float = 900) -> None:
    assert proc.wait(timeout=timeout) == 0, log.read_text(errors="replace")[-3000:]


def _queued_with_a_run(url: str, client: redis.Redis, prefix: str) -> set[int]:
    """The ids of the sources with a source run and a few requests waiting in their frontier."""
    queued = {
        key.split(":")[-2]
        for key in frontier_keys_under(client, prefix)
        if key.endswith(":requests") and int(client.zcard(key)) >= 5
    }
    if not queued:
        return set()
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(Source.id).join(SourceRun, SourceRun.source_id == Source.id).where(Source.key.in_(queued))
            ).all()
    finally:
        engine.dispose()
    return {source_id for (source_id,) in rows}


@pytest.fixture(scope="module")
def single(world: dict[str, object]) -> Iterator[Dump]:
    with postgresql_schema(require_postgresql()) as url:
        cfg, _ = _prepare(world, "single", url)
        started = time.monotonic()
        crawl = run_cli(cfg, url, "crawl", "--json", timeout=1200)
        assert crawl.returncode == 0, crawl.stderr[-3000:]
        print(f"single-process crawl: {time.monotonic() - started:.1f} s", file=sys.stderr)
        dump = canonical_dump(url)
        yield dump


def test_single_process_crawl_finds_the_sites_reposts(world: dict[str, object], single: Dump) -> None:
    articles = world["articles"]
    assert isinstance(articles, list)
    reposts = sum(1 for a in articles if a.repost_of is not None)
    site_stories = [keys for keys, _ in single if any("/art/" in k and "/col" not in k for k in keys)]
    assert reposts > 0
    if PAGES == 2000:
        assert reposts == 45  # the site: 2,000 pages with 45 reposts
    # Every generated page is stored; the reposts joined their originals.
    assert sum(len(keys) for keys in site_stories) >= PAGES
    assert sum(1 for keys in site_stories if len(keys) > 1) >= reposts * 0.9


def test_two_workers_store_what_one_process_stores(world: dict[str, object], single: Dump) -> None:
    with postgresql_schema(require_postgresql()) as url:
        cfg, prefix = _prepare(world, "two", url)
        work = Path(str(world["work"])) / "two"
        started = time.monotonic()
        enqueue = run_cli(cfg, url, "enqueue")
        assert enqueue.returncode == 0, enqueue.stderr
        workers = [_worker(cfg, url, f"w{n}", work / f"w{n}.log") for n in range(2)]
        client = redis.Redis.from_url(str(world["redis"]), decode_responses=True)
        during: set[str] = set()
        while any(proc.poll() is None for proc in workers):
            during |= frontier_keys_under(client, prefix)
            time.sleep(0.5)
        for n, proc in enumerate(workers):
            _wait(proc, work / f"w{n}.log")
        print(f"two workers: {time.monotonic() - started:.1f} s", file=sys.stderr)
        assert any(key.endswith(":requests") for key in during), "the requests waited in Redis (scrapy-redis)"
        assert not frontier_keys_under(client, prefix), "each frontier is deleted when its job is done"
        assert canonical_dump(url) == single
        engine = make_engine(url)
        with session_factory(engine)() as session:
            run = session.scalars(select(CrawlRun)).one()
            source_runs = session.scalars(select(SourceRun)).all()
        engine.dispose()
        assert run.status == "ok", run.summary
        assert {r.worker for r in source_runs} == {"w0", "w1"}  # both worked, each run names its worker


def test_a_killed_workers_source_is_taken_over_and_the_result_is_the_same(
    world: dict[str, object], single: Dump
) -> None:
    with postgresql_schema(require_postgresql()) as url:
        cfg, prefix = _prepare(world, "killed", url)
        work = Path(str(world["work"])) / "killed"
        enqueue = run_cli(cfg, url, "enqueue")
        assert enqueue.returncode == 0, enqueue.stderr
        victim = _worker(cfg, url, "victim", work / "victim.log")
        holders = redis.Redis.from_url(str(world["redis"]), decode_responses=True)
        deadline = time.monotonic() + 300
        # Mid-crawl: the victim has stored pages, and one of the sources it holds has a source run (on
        # which the handover is recorded) and requests waiting in Redis.
        while stored_appearances(url) < PAGES // 10 or not (resumable := _queued_with_a_run(url, holders, prefix)):
            assert time.monotonic() < deadline and victim.poll() is None, (work / "victim.log").read_text()
            time.sleep(0.1)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = _worker(cfg, url, "survivor", work / "survivor.log")
        _wait(survivor, work / "survivor.log")
        assert canonical_dump(url) == single
        engine = make_engine(url)
        with session_factory(engine)() as session:
            handed = session.scalars(select(SourceRun).where(SourceRun.status == "handed_over")).all()
            run = session.scalars(select(CrawlRun)).one()
        engine.dispose()
        assert handed, "the victim's source run records the handover"
        assert not frontier_keys_under(holders, prefix), "each frontier is deleted when its job is done"
        # The survivor resumed the requests the victim's crawl had left queued in Redis.
        resumed = {r.source_id: r.handover["resumed_requests"] for r in handed if r.handover}
        assert any(resumed[source_id] > 0 for source_id in resumable), (resumable, resumed)
        for source_run in handed:
            assert source_run.worker == "victim"
            assert source_run.handover is not None
            assert source_run.handover["from"] == "victim" and source_run.handover["to"] == "survivor"
            assert source_run.handover["lease_ended_at"] <= source_run.handover["at"]
        assert run.status == "ok", run.summary


def test_no_host_is_fetched_faster_than_its_delay_across_workers() -> None:
    import threading

    import redis

    url = require_redis()
    prefix = f"zh-test-{uuid.uuid4().hex[:10]}"
    host = "units.example.gov.cn"
    delay = 0.15
    times: list[float] = []
    lock = threading.Lock()

    def fetch_five() -> None:
        gate = HostGate(redis.Redis.from_url(url), prefix)  # a connection of its own, like a worker
        for _ in range(5):
            while (wait := gate.wait_ms(host, delay)) > 0:
                time.sleep(wait / 1000)
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=fetch_five) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    times.sort()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 20
    assert min(gaps) >= delay - 0.02, gaps  # 20 fetches by 4 workers, each at least the delay apart
