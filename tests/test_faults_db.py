"""Database faults: SQLite locked by another process, a full disk, PostgreSQL connections dropped
mid-crawl (what a server restart looks like to clients). Each ends with a plain error, nothing
half-written, and the next run stores everything an undisturbed crawl would.

The SQLite cases use a SQLite file whatever ZHUANLAN_TEST_DATABASE_URL says (they are about
SQLite); the PostgreSQL case runs only on PostgreSQL, and the recovery path it relies on (a page
whose transaction failed in the database is recorded, the run is not complete, the next crawl
pages fully and stores it) is tested in-process on both backends.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crawler.items import ListPageItem
from crawler.process import CRAWL_LOG
from crawler.samples.server import SampleSources
from pipeline.corpus.db import (
    BUSY_TIMEOUT_ENV,
    MAX_PAGE_COUNT_ENV,
    DatabaseError,
    make_engine,
    session_factory,
    transaction,
)
from pipeline.corpus.models import Appearance, CrawlRun, ListPage, SourceRun
from pipeline.corpus.runs import known_state, last_run_complete
from tests.faults_support import integrity_problems, log_tail, read_corpus, run_cli, start_cli, wait_for, write_config
from tests.test_pipeline_support import SOURCE_KEY, Crawl, article_item
from tests.test_pipeline_support import text as fixture_text

PG_SERVER = os.environ.get("ZHUANLAN_TEST_DATABASE_URL", "")
ON_POSTGRESQL = PG_SERVER.startswith("postgresql")
FAST_BUSY = {BUSY_TIMEOUT_ENV: "0.5"}


@pytest.fixture(scope="module")
def samples(module_samples: SampleSources) -> SampleSources:
    return module_samples


def progress(db_url: str) -> int:
    """Pages committed by the newest crawl run (-1 before it opened a source)."""
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            run = s.scalar(select(func.max(CrawlRun.id)))
            if run is None:
                return -1
            row = s.execute(
                select(
                    func.count(SourceRun.id),
                    func.coalesce(func.sum(SourceRun.new_appearances), 0)
                    + func.coalesce(func.sum(SourceRun.unchanged), 0),
                ).where(SourceRun.crawl_run_id == run)
            ).one()
            return int(row[1]) if row[0] else -1
    finally:
        engine.dispose()


def check_recovered(db_url: str, samples: SampleSources) -> None:
    """The database holds every sample story and appearance once, nothing half-written, no run running."""
    truth = samples.truth()
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            corpus = read_corpus(s)
            assert len(corpus.keys) == truth["appearance_count"]
            assert len(corpus.stories) == truth["story_count"]
            assert integrity_problems(s) == []
            assert s.scalar(select(func.count()).select_from(CrawlRun).where(CrawlRun.status == "running")) == 0
            assert s.scalar(select(func.count()).select_from(SourceRun).where(SourceRun.status == "running")) == 0
            last = s.scalars(select(CrawlRun).order_by(CrawlRun.id.desc())).first()
            assert last is not None and last.status == "ok", last.summary if last else None
    finally:
        engine.dispose()


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def page_write_refused(log: str) -> bool:
    """The pipeline worker's log says a page was not stored: its batch rolled back, or the page
    failed. (`pipeline.ingest`: both are recorded on the page's source run.)"""
    return "pages rolled back" in log or "could not process" in log


def failure_texts(db_url: str, stderr: str) -> str:
    """Everything a run said about its failures: stderr, source run summaries and problems."""
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            parts = [stderr]
            for summary, problems in s.execute(select(SourceRun.error_summary, SourceRun.problems)):
                parts.append(str(summary))
                parts.extend(str(p.get("reason")) for p in problems or [])
            return "\n".join(parts)
    finally:
        engine.dispose()


# --- SQLite locked by another process ---------------------------------------------------------


@contextmanager
def exclusive_lock(path: Path, timeout: float = 60.0) -> Iterator[None]:
    """`BEGIN EXCLUSIVE` on the SQLite file until the block ends, held by this test's process (to the
    crawl, another process). Taken here, not by a helper process: starting one took seconds on a
    loaded machine, time in which the crawl could finish without meeting the lock.

    Tried every millisecond rather than through SQLite's busy handler: that handler backs off to
    100 ms between tries, and a crawl writing in batches holds its write lock most of the time,
    freeing it only between a commit and its next page. On a loaded machine the handler missed
    every such gap until the crawl had ended, and the crawl never met the lock."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                conn.execute("BEGIN EXCLUSIVE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
        yield
        conn.rollback()
    finally:
        conn.close()


def test_sqlite_locked_by_another_process(tmp_path: Path, samples: SampleSources) -> None:
    path = tmp_path / "locked.db"
    db_url = f"sqlite:///{path}"
    cfg = write_config(tmp_path / "zhuanlan.toml", samples)
    assert run_cli(cfg, db_url, "init").returncode == 0

    # Locked before the crawl starts: one plain line, exit 1, nothing written.
    with exclusive_lock(path):
        locked = run_cli(cfg, db_url, "crawl", "--json", env=FAST_BUSY)
    assert locked.returncode == 1, locked.stderr[-2000:]
    assert "the database is locked" in locked.stderr and "Traceback" not in locked.stderr, locked.stderr[-2000:]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM crawl_runs").fetchone() == (0,)

    # Locked in the middle of a crawl for longer than the busy timeout: the pages that could not be
    # stored are recorded as database failures (in plain words), nothing is half-written. A delay
    # between requests keeps the crawl going for seconds: the pipeline worker commits in batches, and
    # an undelayed crawl of the samples can have committed every page by the time progress shows.
    # The lock is held until a page's own write has run into it (the crawl log says so), not for a
    # fixed time: on a loaded machine the worker can reach its next write only seconds after the lock
    # was taken, and a list page's validators, whose loss is logged and let go, may meet it first.
    slow = write_config(tmp_path / "slow.toml", samples, download_delay=0.2)
    crawl_log = tmp_path / "data" / CRAWL_LOG
    proc = start_cli(slow, db_url, "crawl", "--json", env=FAST_BUSY)
    assert wait_for(lambda: proc.poll() is not None or progress(db_url) >= 3, timeout=180)
    assert proc.poll() is None, "the crawl ended before the lock was taken"
    with exclusive_lock(path):
        assert proc.poll() is None, "the crawl ended before the lock was taken"
        assert wait_for(lambda: proc.poll() is not None or page_write_refused(read_text(crawl_log)), timeout=120)
    proc.wait(timeout=300)
    said = failure_texts(db_url, log_tail(proc, 100_000))
    assert "the database is locked" in said, said[-3000:]
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        assert integrity_problems(s) == []
        stored = s.scalar(select(func.count()).select_from(Appearance))
        assert stored is not None and 0 < stored < samples.truth()["appearance_count"]
        assert any(not last_run_complete(s, key) for key in s.scalars(text("SELECT key FROM sources")))
    engine.dispose()

    # The lock is gone: the next crawl stores everything.
    again = run_cli(cfg, db_url, "crawl", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    check_recovered(db_url, samples)


# --- disk full --------------------------------------------------------------------------------


@contextmanager
def tiny_disk(directory: Path, *, mount: bool) -> Iterator[bool]:
    """With `mount`, a 32 MB tmpfs at `directory` when this process may mount one (yields True);
    else a plain directory (yields False: the caller limits the database with
    ZHUANLAN_SQLITE_MAX_PAGE_COUNT)."""
    directory.mkdir()
    mounted = False
    if mount and shutil.which("mount") and hasattr(os, "geteuid") and os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(directory)], capture_output=True, check=False
        )
        mounted = done.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


@pytest.mark.parametrize("simulation", ["tmpfs", "max_page_count"])
def test_disk_full_mid_crawl(tmp_path: Path, samples: SampleSources, simulation: str) -> None:
    with tiny_disk(tmp_path / "disk", mount=simulation == "tmpfs") as on_tmpfs:
        if simulation == "tmpfs" and not on_tmpfs:
            pytest.skip("cannot mount a tmpfs here (needs root); the max_page_count case simulates a full disk")
        path = tmp_path / "disk" / "full.db"
        db_url = f"sqlite:///{path}"
        cfg = write_config(tmp_path / "zhuanlan.toml", samples)
        assert run_cli(cfg, db_url, "init").returncode == 0
        filler = tmp_path / "disk" / "filler"
        env: dict[str, str] = {}
        if on_tmpfs:
            # Leave about 200 kB: the crawl starts, stores some pages, then the disk is full.
            stats = os.statvfs(path.parent)
            filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - 200_000))
        else:
            with sqlite3.connect(path) as conn:
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
            env = {MAX_PAGE_COUNT_ENV: str(pages + 50)}
        full = run_cli(cfg, db_url, "crawl", "--json", env=env)
        said = failure_texts(db_url, full.stderr)
        assert "database or disk is full" in said, (on_tmpfs, full.returncode, said[-3000:])
        assert "Traceback" not in "\n".join(full.stderr.splitlines()[-5:]), full.stderr[-2000:]
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        engine = make_engine(db_url)
        with session_factory(engine)() as s:
            assert integrity_problems(s) == []
            assert (s.scalar(select(func.count()).select_from(Appearance)) or 0) < samples.truth()["appearance_count"]
        engine.dispose()

        # Space freed: the next run recovers everything.
        filler.unlink(missing_ok=True)
        again = run_cli(cfg, db_url, "crawl", "--json")
        assert again.returncode == 0, again.stderr[-3000:]
        check_recovered(db_url, samples)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    print(f"disk full simulated with {'a 32 MB tmpfs' if on_tmpfs else 'PRAGMA max_page_count'}")


def test_max_page_count_makes_writes_fail_as_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_PAGE_COUNT_ENV, "8")
    engine = make_engine(f"sqlite:///{tmp_path / 'tiny.db'}")
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        s.execute(text("CREATE TABLE t (x TEXT)"))
    with pytest.raises(DatabaseError, match="database or disk is full"), transaction(sessions) as s:
        for _ in range(50):
            s.execute(text("INSERT INTO t VALUES (:x)"), {"x": "x" * 4000})
    with sessions() as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar_one() == 0  # rolled back whole
    engine.dispose()
    monkeypatch.setenv(BUSY_TIMEOUT_ENV, "soon")
    with pytest.raises(DatabaseError, match=BUSY_TIMEOUT_ENV):
        make_engine(f"sqlite:///{tmp_path / 'other.db'}")


# --- PostgreSQL restarted mid-crawl -------------------------------------------------------------


@pytest.mark.skipif(not ON_POSTGRESQL, reason="needs ZHUANLAN_TEST_DATABASE_URL=postgresql://…; on SQLite "
                    "test_a_page_lost_to_the_database_is_recorded_and_the_next_run_stores_it covers the recovery path")  # fmt: skip
def test_postgresql_connections_terminated_mid_crawl(tmp_path: Path, db_url: str, samples: SampleSources) -> None:
    name = f"zl_faults_{uuid.uuid4().hex[:10]}"
    crawl_url = f"{db_url}&application_name={name}" if "?" in db_url else f"{db_url}?application_name={name}"
    cfg = write_config(tmp_path / "zhuanlan.toml", samples)
    assert run_cli(cfg, db_url, "init").returncode == 0
    admin = make_engine(PG_SERVER)
    terminated: list[int] = []
    stop = threading.Event()

    def terminate_loop() -> None:
        # What a restart looks like to the crawl: every connection it holds is closed by the server.
        while not stop.wait(0.15):
            with admin.begin() as conn:
                rows = conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": name},
                ).all()
            terminated.extend(1 for r in rows if r[0])

    proc = start_cli(cfg, crawl_url, "crawl", "--json")
    assert wait_for(lambda: proc.poll() is not None or progress(db_url) >= 2, timeout=180)
    killer = threading.Thread(target=terminate_loop)
    killer.start()
    try:
        proc.wait(timeout=300)
    finally:
        stop.set()
        killer.join()
        admin.dispose()
    said = failure_texts(db_url, log_tail(proc, 100_000))
    assert terminated, "no connection of the crawl was terminated"
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        assert integrity_problems(s) == []
        complete = len(read_corpus(s).keys) == samples.truth()["appearance_count"]
    engine.dispose()
    # Either every page was stored after reconnecting, or the losses are said in plain words.
    assert complete or "connection to the database was lost" in said, said[-3000:]
    again = run_cli(cfg, db_url, "crawl", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "ok"
    check_recovered(db_url, samples)
    print(f"terminated {len(terminated)} backends; complete without a rerun: {complete}")


# --- the recovery path, in-process, on both backends -------------------------------------------


def lose_connection(sessions: sessionmaker[Session], times: int) -> list[int]:
    """The next `times` inserts of an appearance fail as if the server had dropped the connection."""
    left = [times]
    engine = sessions.kw["bind"]

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        # (On PostgreSQL a new story's rows are one statement: WITH … INSERT INTO appearances.)
        if "INSERT INTO APPEARANCES" in statement.upper() and left[0] > 0:
            left[0] -= 1
            raise OperationalError(
                statement, params, Exception("server closed the connection unexpectedly"), connection_invalidated=True
            )

    event.listen(engine, "before_cursor_execute", before)
    return left


def test_a_page_lost_to_the_database_is_recorded_and_the_next_run_stores_it(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    backend = sessions.kw["bind"].dialect.name
    assert backend in {"sqlite", "postgresql"}
    # On SQLite there is no server to restart; the same path (a transaction failed in the database,
    # the page recorded, the run incomplete, the next crawl pages fully) is driven here on both.
    left = lose_connection(sessions, 3)
    chain = Crawl(sessions, now)
    first = article_item("a1", fixture_text("original"), published_at=now - timedelta(days=2))
    second = article_item("a2", fixture_text("notice_lecture"), title="另一篇", published_at=now - timedelta(days=1))
    chain.run(first)  # fails twice (the retry on a fresh connection fails too): recorded, not stored
    chain.run(second)  # fails once, the retry stores it
    page = ListPageItem(
        source_key=SOURCE_KEY, url="https://czj.example.gov.cn/xxgk/", etag='"v1"', last_modified=None, fetched_at=now
    )
    chain.run(page)
    chain.close()
    assert left[0] == 0
    with sessions() as s:
        keys = set(s.scalars(select(Appearance.canonical_key)))
        assert keys == {second.canonical_key}
        assert integrity_problems(s) == []
        run = s.scalars(select(SourceRun)).one()
        assert run.status == "error" and run.error_summary is not None
        assert "connection to the database was lost" in run.error_summary
        assert [p["kind"] for p in run.problems] == ["database"] and run.problems[0]["url"] == first.url
        assert s.scalar(select(func.count()).select_from(ListPage)) == 1
        # the run is incomplete: the next crawl pages fully, without validators
        assert not last_run_complete(s, SOURCE_KEY)
        assert known_state(s, SOURCE_KEY) == (frozenset({second.canonical_key}), {})
    again = Crawl(sessions, now + timedelta(hours=1))
    again.run(first)
    again.close()
    with sessions() as s:
        assert set(s.scalars(select(Appearance.canonical_key))) == {first.canonical_key, second.canonical_key}
        assert integrity_problems(s) == []
        assert last_run_complete(s, SOURCE_KEY)
