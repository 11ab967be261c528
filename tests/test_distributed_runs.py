"""The run records of a distributed crawl (issue 20, point 1): a handover is recorded on the dead
worker's source run, every source run names its worker, and the run is judged by the runs that
finished. On SQLite, and on PostgreSQL in its leg; migration 0009 goes down and up again."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from alembic import command
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from crawler.samples.sample_config import sample_config_toml
from pipeline.corpus.db import alembic_config, session_factory, transaction
from pipeline.corpus.models import CrawlRun, SourceRun
from pipeline.corpus.runs import (
    HANDED_OVER,
    SourceRunRecorder,
    finish_crawl_run,
    record_handover,
    record_worker,
    start_distributed_run,
)
from pipeline.record import SourceRef
from tests.servers import redis_prefix
from tests.support import free_port
from tests.test_pipeline_support import SOURCE, SOURCE_KEY
from zhuanlan_config import load_config


def _open(sessions: sessionmaker[Session], run_id: int, now: datetime) -> SourceRunRecorder:
    recorder = SourceRunRecorder(sessions, run_id=run_id, config_path=None)
    recorder.open(SourceRef.from_definition(SOURCE_KEY, SOURCE), now)
    return recorder


def _survivor_crawls(
    sessions: sessionmaker[Session], run_id: int, taken: datetime, pages: int
) -> tuple[list[SourceRun], dict[str, object]]:
    """The worker that took the source over crawls it and the run finishes: (its source runs, the summary)."""
    survivor = _open(sessions, run_id, taken)
    survivor.fetched = pages  # its pages (stored by the ingest, not here)
    survivor.close(pages, taken + timedelta(minutes=1))
    with transaction(sessions) as session:
        record_worker(session, run_id, SOURCE_KEY, "survivor")
        summary = finish_crawl_run(session, run_id, taken + timedelta(minutes=2))
    with sessions() as session:
        runs = list(session.scalars(select(SourceRun).order_by(SourceRun.id)).all())
    return runs, summary


def test_a_dead_workers_source_run_records_the_handover(sessions: sessionmaker[Session], now: datetime) -> None:
    with transaction(sessions) as session:
        run_id = start_distributed_run(session, "schedule", now, "redis queue test")
    _open(sessions, run_id, now)  # the victim's crawl opened the source, then died
    ended = now + timedelta(minutes=3)
    taken = ended + timedelta(seconds=2)
    with transaction(sessions) as session:
        assert (
            record_handover(
                session,
                run_id,
                SOURCE_KEY,
                previous="victim",
                lease_ended=ended,
                taken_by="survivor",
                now=taken,
                resumed_requests=7,
            )
            == 1
        )
    runs, summary = _survivor_crawls(sessions, run_id, taken, 3)
    assert [(r.worker, r.status) for r in runs] == [("victim", HANDED_OVER), ("survivor", "ok")]
    assert runs[0].handover == {
        "from": "victim",
        "lease_ended_at": ended.isoformat(),
        "to": "survivor",
        "at": taken.isoformat(),
        "resumed_requests": 7,  # the victim's queued requests, resumed from Redis
    }
    assert "taken over by survivor" in (runs[0].error_summary or "")
    # The handed-over run is counted by the survivor's run of the same source: the run is ok.
    assert summary["status"] == "ok" and summary["sources"] == 1


def test_a_worker_that_died_before_opening_its_source_run_leaves_a_handover(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    with transaction(sessions) as session:
        run_id = start_distributed_run(session, "schedule", now, "redis queue test")
    _open(sessions, run_id, now).close(0, now)  # the source exists (synced from the config)
    with transaction(sessions) as session:
        session.execute(delete(SourceRun))  # ... but the victim died before its crawl opened it
    taken = now + timedelta(minutes=4)
    with transaction(sessions) as session:
        marked = record_handover(
            session, run_id, SOURCE_KEY, previous="victim", lease_ended=now, taken_by="survivor", now=taken
        )
    assert marked == 1
    runs, summary = _survivor_crawls(sessions, run_id, taken, 2)
    assert [(r.worker, r.status) for r in runs] == [("victim", HANDED_OVER), ("survivor", "ok")]
    assert runs[0].handover is not None and runs[0].handover["to"] == "survivor"
    assert "before its crawl opened the source" in (runs[0].error_summary or "")
    assert summary["status"] == "ok" and summary["sources"] == 1


def test_migration_0009_goes_down_and_up(engine: Engine) -> None:
    command.downgrade(alembic_config(engine), "0006")
    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as conn:
        assert conn.execute(select(SourceRun.worker, SourceRun.handover)).all() == []


def test_the_scheduler_queues_no_new_run_while_the_workers_are_busy(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scheduler

    with redis_prefix() as (redis_url, prefix):
        cfg = tmp_path / "zhuanlan.toml"
        text = sample_config_toml("http://127.0.0.1:9", smtp_port=free_port(), web_port=free_port())
        cfg.write_text(f'{text}\n[distributed]\nredis_url = "{redis_url}"\nkey_prefix = "{prefix}"\n', encoding="utf-8")
        monkeypatch.setenv("ZHUANLAN_DATABASE_URL", db_url)
        config = load_config(cfg)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        scheduler._enqueue_crawl(config, "schedule")
        scheduler._enqueue_crawl(config, "schedule")  # nothing crawled the first run's sources yet
        with session_factory(engine)() as session:
            assert session.scalar(select(func.count()).select_from(CrawlRun)) == 1
        assert client.llen(f"{prefix}:queue") == len([s for s in config.sources if s.enabled])
        client.close()
