"""The run records of a distributed crawl (issue 20, point 1): a handover is recorded on the dead
worker's source run, every source run names its worker, and the run is judged by the runs that
finished. On SQLite, and on PostgreSQL in its leg; migration 0009 goes down and up again."""

from __future__ import annotations

from datetime import datetime, timedelta

from alembic import command
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.corpus.db import alembic_config, transaction
from pipeline.corpus.models import SourceRun
from pipeline.corpus.runs import (
    HANDED_OVER,
    SourceRunRecorder,
    finish_crawl_run,
    record_handover,
    record_worker,
    start_distributed_run,
)
from pipeline.record import SourceRef
from tests.test_pipeline_support import SOURCE, SOURCE_KEY


def _open(sessions: sessionmaker[Session], run_id: int, now: datetime) -> SourceRunRecorder:
    recorder = SourceRunRecorder(sessions, run_id=run_id, config_path=None)
    recorder.open(SourceRef.from_definition(SOURCE_KEY, SOURCE), now)
    return recorder


def test_a_dead_workers_source_run_records_the_handover(sessions: sessionmaker[Session], now: datetime) -> None:
    with transaction(sessions) as session:
        run_id = start_distributed_run(session, "schedule", now, "redis queue test")
    _open(sessions, run_id, now)  # the victim's crawl opened the source, then died
    ended = now + timedelta(minutes=3)
    taken = ended + timedelta(seconds=2)
    with transaction(sessions) as session:
        assert (
            record_handover(
                session, run_id, SOURCE_KEY, previous="victim", lease_ended=ended, taken_by="survivor", now=taken
            )
            == 1
        )
    survivor = _open(sessions, run_id, taken)
    survivor.fetched = 3  # its pages (stored by the ingest, not here)
    survivor.close(3, taken + timedelta(minutes=1))
    with transaction(sessions) as session:
        record_worker(session, run_id, SOURCE_KEY, "survivor")
        summary = finish_crawl_run(session, run_id, taken + timedelta(minutes=2))
    with sessions() as session:
        runs = session.scalars(select(SourceRun).order_by(SourceRun.id)).all()
        assert [(r.worker, r.status) for r in runs] == [("victim", HANDED_OVER), ("survivor", "ok")]
        assert runs[0].handover == {
            "from": "victim",
            "lease_ended_at": ended.isoformat(),
            "to": "survivor",
            "at": taken.isoformat(),
        }
        assert "taken over by survivor" in (runs[0].error_summary or "")
    # The handed-over run is counted by the survivor's run of the same source: the run is ok.
    assert summary["status"] == "ok" and summary["sources"] == 1


def test_migration_0009_goes_down_and_up(engine: Engine) -> None:
    command.downgrade(alembic_config(engine), "0006")
    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as conn:
        assert conn.execute(select(SourceRun.worker, SourceRun.handover)).all() == []
