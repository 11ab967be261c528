"""Crash safety: `zhuanlan crawl` SIGKILLed at seeded random points, then run again to completion,
stores exactly what an uninterrupted crawl of the same sample sources stores.

Each chain is one database: the crawl is killed KILLS_PER_CHAIN times in a row (every kill lands
on the resume of the previous one, which pages fully), then runs to completion. After every kill
no row is half-written; at the end the corpus (canonical keys, which keys share a story, each
story's 首发, title and tags) equals the reference run's, no run is left 'running' and every
killed run is marked killed. Chains run in parallel to keep the file near a minute; all six
sample sources are crawled.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crawler.samples.server import SampleSources
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Appearance, CrawlRun, SourceRun
from pipeline.corpus.runs import UNFINISHED_SOURCE_RUN
from tests.conftest import fresh_database
from tests.faults_support import (
    Corpus,
    integrity_problems,
    log_tail,
    read_corpus,
    run_cli,
    run_statuses,
    start_cli,
    wait_for,
    write_config,
)

SEED = 20261126
CHAINS = 2
KILLS_PER_CHAIN = 5
# Where a kill lands is drawn by progress, not by wall time (a crawl process spends seconds
# starting up and its writing phase is short and load-dependent): after the crawl has committed a
# seeded random fraction of the pages still missing (0: as soon as it opened its first source
# run), plus a short random delay so kills also land inside transactions and between sources.
MAX_EXTRA_DELAY = 0.15


@dataclass
class Kill:
    target: int
    delay: float
    stored_after: int  # appearances in the database after the kill
    finished_first: bool  # the crawl ended before the kill came
    problems: list[str]


@dataclass
class Chain:
    corpus: Corpus | None = None
    problems: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    crawl_statuses: list[str] = field(default_factory=list)
    source_statuses: list[str] = field(default_factory=list)
    killed_reasons: list[str] = field(default_factory=list)
    final_summary: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0


@pytest.fixture(scope="module")
def samples(module_samples: SampleSources) -> SampleSources:
    return module_samples


def _progress(session: Session, after_run: int) -> int:
    """Pages committed by the crawl runs newer than `after_run` (-1 while none has opened a source)."""
    row = session.execute(
        select(
            func.count(SourceRun.id),
            func.coalesce(func.sum(SourceRun.new_appearances), 0) + func.coalesce(func.sum(SourceRun.unchanged), 0),
        ).where(SourceRun.crawl_run_id > after_run)
    ).one()
    return int(row[1]) if row[0] else -1


def run_chain(workdir: Path, db_url: str, samples: SampleSources, kills: list[tuple[float, float]]) -> Chain:
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = write_config(workdir / "zhuanlan.toml", samples, download_delay=0.02)
    chain = Chain()
    init = run_cli(cfg, db_url, "init")
    assert init.returncode == 0, init.stderr
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        pages = int(samples.truth()["appearance_count"])
        for fraction, delay in kills:
            with sessions() as s:
                last_run = s.scalar(select(func.max(CrawlRun.id))) or 0
                missing = pages - int(s.scalar(select(func.count()).select_from(Appearance)) or 0)
            # a resume skips the pages it already has: its progress counts the missing ones
            target = int(fraction * missing)
            proc = start_cli(cfg, db_url, "crawl", "--json")

            def reached(proc: subprocess.Popen[bytes] = proc, last_run: int = last_run, target: int = target) -> bool:
                if proc.poll() is not None:
                    return True
                with sessions() as s:
                    return _progress(s, last_run) >= target

            assert wait_for(reached, timeout=180), f"the crawl never got to {target} pages: {log_tail(proc)}"
            time.sleep(delay)
            proc.kill()
            proc.wait()
            with sessions() as s:
                stored = int(s.scalar(select(func.count()).select_from(Appearance)) or 0)
                chain.kills.append(Kill(target, delay, stored, proc.returncode == 0, integrity_problems(s)))
        final = run_cli(cfg, db_url, "crawl", "--json")
        assert final.returncode == 0, final.stderr[-3000:]
        chain.final_summary = json.loads(final.stdout.strip().splitlines()[-1])
        with sessions() as s:
            chain.corpus = read_corpus(s)
            chain.problems = integrity_problems(s)
            chain.crawl_statuses, chain.source_statuses = run_statuses(s)
            chain.killed_reasons = [
                str((r.summary or {}).get("reason"))
                for r in s.scalars(select(CrawlRun).where(CrawlRun.status == "killed"))
            ]
            unfinished = s.scalars(select(SourceRun.error_summary).where(SourceRun.status == "error")).all()
            assert set(unfinished) <= {UNFINISHED_SOURCE_RUN}, unfinished
    finally:
        engine.dispose()
    chain.seconds = time.monotonic() - started
    return chain


def test_killed_crawls_then_a_full_run_store_exactly_the_uninterrupted_corpus(
    tmp_path: Path, samples: SampleSources
) -> None:
    rng = random.Random(SEED)
    truth = samples.truth()
    plans = [
        [(rng.random(), round(rng.uniform(0, MAX_EXTRA_DELAY), 3)) for _ in range(KILLS_PER_CHAIN)]
        for _ in range(CHAINS)
    ]
    with ExitStack() as stack:
        urls = [stack.enter_context(fresh_database(tmp_path / f"db{i}")) for i in range(CHAINS + 1)]
        for i in range(CHAINS + 1):
            (tmp_path / f"db{i}").mkdir(exist_ok=True)
        with ThreadPoolExecutor(max_workers=CHAINS + 1) as pool:
            reference_job = pool.submit(run_chain, tmp_path / "reference", urls[0], samples, [])
            jobs = [
                pool.submit(run_chain, tmp_path / f"chain{i}", urls[i + 1], samples, plans[i]) for i in range(CHAINS)
            ]
            reference = reference_job.result()
            chains = [job.result() for job in jobs]

    assert reference.corpus is not None and not reference.problems, reference.problems
    assert len(reference.corpus.keys) == truth["appearance_count"]
    assert len(reference.corpus.stories) == truth["story_count"]
    kills = [kill for chain in chains for kill in chain.kills]
    assert len(kills) >= 10
    report = [(k.target, k.delay, k.stored_after, k.finished_first) for k in kills]
    # the kills are spread over the crawl: some before anything new was stored, some in the middle
    assert any(0 < k.stored_after < truth["appearance_count"] for k in kills), report
    for number, chain in enumerate(chains):
        # after every kill: nothing half-written, nothing twice, the search index in step
        for kill in chain.kills:
            assert not kill.problems, (number, kill)
        assert chain.corpus is not None and not chain.problems, (number, chain.problems)
        assert chain.corpus.keys == reference.corpus.keys, (number, chain.corpus.keys ^ reference.corpus.keys)
        assert chain.corpus.stories == reference.corpus.stories, number
        assert chain.corpus.originals == reference.corpus.originals, number
        assert chain.corpus.titles == reference.corpus.titles, number
        assert chain.corpus.tags == reference.corpus.tags, number
        # no run left running; every killed one is marked, with the reason, by the next crawl
        assert "running" not in chain.crawl_statuses and "running" not in chain.source_statuses, chain.crawl_statuses
        assert chain.crawl_statuses[-1] == "ok" and chain.final_summary["failed"] == 0, chain.final_summary
        killed = sum(1 for k in chain.kills if not k.finished_first)
        assert chain.crawl_statuses.count("killed") <= killed
        assert all("is gone" in reason for reason in chain.killed_reasons), chain.killed_reasons
    print(f"kills (target pages, extra delay s, appearances stored after, finished first): {report}")
    print(f"chain seconds: {[round(c.seconds, 1) for c in chains]}, reference {reference.seconds:.1f}")
