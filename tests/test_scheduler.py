"""The scheduler: weekday names, persistent next-run times, a missed job run once at start,
and one scheduler per database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

import scheduler
from zhuanlan_config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, db_url: str) -> Path:
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(
        f'database_url = "{db_url}"\ndata_dir = "data"\n'
        '[schedule]\ntimezone = "Asia/Shanghai"\ncrawl_interval_minutes = 60\ncrawl_jitter_seconds = 0\n'
        'digest_weekday = "mon"\ndigest_time = "08:00"\nmisfire_grace_hours = 6.0\n',
        encoding="utf-8",
    )
    return cfg


def load(tmp_path: Path, db_url: str) -> tuple[Path, Config]:
    cfg = write_config(tmp_path, db_url)
    return cfg, load_config(cfg)


def test_digest_fires_on_monday_morning_shanghai(tmp_path: Path, db_url: str) -> None:
    _, config = load(tmp_path, db_url)
    digest = next(d for d in scheduler.job_defs(config) if d.id == "digest")
    sunday_evening = datetime(2026, 11, 29, 20, 0, tzinfo=config.tz)
    fire = digest.trigger.get_next_fire_time(None, sunday_evening)
    assert fire.isoformat() == "2026-11-30T08:00:00+08:00"
    assert fire.weekday() == 0
    assert digest.grace_seconds >= 6 * 3600


def test_next_run_times_survive_a_restart(tmp_path: Path, db_url: str, engine: Engine) -> None:
    cfg, config = load(tmp_path, db_url)
    first = scheduler.build_scheduler(config, str(cfg), engine)
    stored = {j.id: j.next_run_time for j in first.get_jobs()}
    first.shutdown(wait=False)
    assert set(stored) == {"crawl", "digest", "digest-catchup", "recheck", "maintenance"}
    runs = scheduler.next_runs(engine)
    assert {k: v.timestamp() if v else None for k, v in runs.items()} == {k: v.timestamp() for k, v in stored.items()}
    again = scheduler.build_scheduler(config, str(cfg), engine)
    assert {j.id: j.next_run_time for j in again.get_jobs()} == stored
    again.shutdown(wait=False)


def test_job_missed_during_downtime_runs_once_at_start(tmp_path: Path, db_url: str, engine: Engine) -> None:
    from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent

    cfg, config = load(tmp_path, db_url)
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    first = scheduler.build_scheduler(config, str(cfg), engine)
    first.shutdown(wait=True)
    # The process went down before maintenance came due an hour ago (within the 6 h grace):
    # the stored job's next-run time is in the past when the next scheduler starts.
    due = datetime.now(UTC) - timedelta(hours=1)
    store = SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")
    job = store.lookup_job("maintenance")
    job.next_run_time = due
    store.update_job(job)
    assert scheduler.next_runs(engine)["maintenance"] == due
    ran: list[str] = []
    done = threading.Event()

    def listener(event: JobExecutionEvent) -> None:
        ran.append(event.job_id)
        done.set()

    sched = scheduler.build_scheduler(config, str(cfg), engine)
    sched.add_listener(listener, EVENT_JOB_EXECUTED)
    sched.resume()
    assert done.wait(30), "the missed job did not run at start"
    time.sleep(0.5)
    sched.shutdown(wait=True)
    assert ran == ["maintenance"]
    nxt = scheduler.next_runs(engine)["maintenance"]
    assert nxt is not None and nxt > datetime.now(UTC)


def test_second_scheduler_refuses(tmp_path: Path, db_url: str, engine: Engine) -> None:
    cfg, config = load(tmp_path, db_url)
    lock = scheduler.SchedulerLock(config, engine)
    lock.acquire()
    try:
        env = {**os.environ}
        env.pop("ZHUANLAN_DATABASE_URL", None)
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scheduler.py"), str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
            check=False,
        )
        assert proc.returncode == 1
        assert "already running" in proc.stderr and "refusing" in proc.stderr
    finally:
        lock.release()
    # once released, a scheduler may take the lock again
    again = scheduler.SchedulerLock(config, engine)
    again.acquire()
    again.release()
