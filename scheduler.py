"""The APScheduler entry point: builds the scheduler and its jobs, and runs it until stopped.

Jobs: crawl (interval with jitter; each crawl is a fresh `zhuanlan crawl` subprocess with a
timeout, followed by a feeds rebuild), the weekly digest (cron with weekday names), a daily
recheck of recent WeChat articles, and nightly maintenance. Job state lives in a
SQLAlchemyJobStore in the project's database, so next-run times survive restarts; a job that
came due while the process was down runs once at start (coalesce, misfire grace in hours).
Only one scheduler may run per database: a file lock (SQLite) or an advisory lock (PostgreSQL).

`python scheduler.py [CONFIG]` and `zhuanlan schedule` both call `main`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.db import make_engine, session_factory, transaction
from zhuanlan_config import Config, load_config

log = logging.getLogger("zhuanlan.scheduler")

JOB_IDS = ("crawl", "digest", "recheck", "maintenance")

# The crawl subprocess currently running, so a shutdown can stop it cleanly.
_current_child: subprocess.Popen[bytes] | None = None
_child_lock = threading.Lock()


class SchedulerLocked(RuntimeError):
    """Another scheduler already runs against this database."""


# --- the jobs (module-level functions: the job store keeps references to them) --------------


def _now() -> datetime:
    return datetime.now(UTC)


def _run_cli(config_path: str, args: list[str], timeout: float) -> int:
    """Run `zhuanlan <args>` in a child process; stop it (SIGTERM, then SIGKILL) on timeout."""
    global _current_child
    cmd = [sys.executable, "-m", "zhuanlan_cli", "--config", config_path, *args]
    with _child_lock:
        child = subprocess.Popen(cmd)
        _current_child = child
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.error("crawl overran its %s s limit: stopping it", timeout)
        stop_child(child)
        return -1
    finally:
        with _child_lock:
            _current_child = None


def stop_child(child: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """Scrapy shuts down cleanly on the first SIGTERM; kill only if it does not."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _record_overrun(config: Config, now: datetime) -> None:
    from pipeline.runs import mark_killed_runs

    engine = make_engine(config.database_url)
    try:
        with transaction(session_factory(engine)) as session:
            mark_killed_runs(session, now)
    finally:
        engine.dispose()


def feeds_job(config_path: str) -> None:
    from feeds.publish import publish_feeds

    config = load_config(config_path)
    engine = make_engine(config.database_url)
    try:
        result = publish_feeds(session_factory(engine), config, _now())
        log.info("feeds: %d written, %d unchanged", len(result.written), result.unchanged)
    finally:
        engine.dispose()


def crawl_job(config_path: str) -> None:
    config = load_config(config_path)
    code = _run_cli(config_path, ["crawl", "--trigger", "schedule"], config.crawl.subprocess_timeout_seconds)
    if code == -1:
        _record_overrun(config, _now())
    feeds_job(config_path)


def recheck_job(config_path: str) -> None:
    config = load_config(config_path)
    code = _run_cli(
        config_path, ["crawl", "--recheck", "--trigger", "recheck"], config.crawl.subprocess_timeout_seconds
    )
    if code == -1:
        _record_overrun(config, _now())
    feeds_job(config_path)


def digest_job(config_path: str) -> None:
    from feeds.digest import previous_week
    from feeds.mail import send_digest

    config = load_config(config_path)
    engine = make_engine(config.database_url)
    now = _now()
    try:
        week = previous_week(now.astimezone(config.tz))
        result = send_digest(session_factory(engine), config, week, now)
        log.info("digest %s: sent %d, failed %d, already %d", week, result.sent, result.failed, result.already)
    finally:
        engine.dispose()


def maintenance_job(config_path: str) -> None:
    config = load_config(config_path)
    engine = make_engine(config.database_url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(text("INSERT INTO article_fts(article_fts) VALUES ('optimize')"))
                conn.execute(text("ANALYZE"))
                conn.execute(text("PRAGMA optimize"))
            else:
                conn.execute(text("ANALYZE"))
        log.info("maintenance done")
    finally:
        engine.dispose()


JOBS = {
    "crawl": crawl_job,
    "feeds": feeds_job,
    "digest": digest_job,
    "recheck": recheck_job,
    "maintenance": maintenance_job,
}


def run_once(job: str, config: Config, config_path: Path, now: datetime) -> int:
    """Run one job now, in this process (for cron users and tests)."""
    JOBS[job](str(config_path))
    return 0


# --- building the scheduler ----------------------------------------------------------


@dataclass(frozen=True)
class JobDef:
    id: str
    func: str  # "scheduler:crawl_job"
    trigger: Any
    grace_seconds: int


def job_defs(config: Config) -> list[JobDef]:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    s = config.schedule
    tz = config.tz
    grace = int(s.misfire_grace_hours * 3600)
    dh, dm = (int(x) for x in s.digest_time.split(":"))
    rh, rm = (int(x) for x in s.recheck_time.split(":"))
    mh, mm = (int(x) for x in s.maintenance_time.split(":"))
    return [
        JobDef(
            "crawl",
            "scheduler:crawl_job",
            IntervalTrigger(minutes=s.crawl_interval_minutes, jitter=s.crawl_jitter_seconds or None, timezone=tz),
            min(grace, s.crawl_interval_minutes * 60),
        ),
        # Weekday names, never numbers: APScheduler counts Monday as 0, unlike cron.
        JobDef(
            "digest",
            "scheduler:digest_job",
            CronTrigger(day_of_week=s.digest_weekday, hour=dh, minute=dm, timezone=tz),
            max(grace, config.digest.grace_days * 86400),
        ),
        JobDef("recheck", "scheduler:recheck_job", CronTrigger(hour=rh, minute=rm, timezone=tz), grace),
        JobDef("maintenance", "scheduler:maintenance_job", CronTrigger(hour=mh, minute=mm, timezone=tz), grace),
    ]


def build_scheduler(config: Config, config_path: str, engine: Engine) -> Any:
    """A started-but-paused BackgroundScheduler with the jobs installed; `resume()` lets it run.

    A job already in the store keeps its stored next-run time (so a run missed during downtime
    fires once at start) unless its trigger changed in the config.
    """
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    sched = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=config.tz,
    )
    sched.start(paused=True)
    for d in job_defs(config):
        existing = sched.get_job(d.id)
        if (
            existing is not None
            and str(existing.trigger) == str(d.trigger)
            and existing.args == (config_path,)
            and existing.misfire_grace_time == d.grace_seconds
        ):
            continue
        sched.add_job(
            d.func,
            trigger=d.trigger,
            id=d.id,
            name=d.id,
            args=[config_path],
            replace_existing=True,
            misfire_grace_time=d.grace_seconds,
            coalesce=True,
            max_instances=1,
        )
    return sched


# --- one scheduler at a time -----------------------------------------------------------


class SchedulerLock:
    """SQLite: a file lock beside the database. PostgreSQL: a session advisory lock."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self._file_lock: Any = None
        self._conn: Connection | None = None

    def acquire(self) -> None:
        if self.engine.dialect.name == "postgresql":
            key = zlib.crc32(b"zhuanlan-scheduler")
            conn = self.engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
            conn.commit()
            if not got:
                conn.close()
                raise SchedulerLocked("another zhuanlan scheduler is already running against this PostgreSQL database")
            self._conn = conn
            return
        from filelock import FileLock, Timeout

        path = self.config.data_dir / "scheduler.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise SchedulerLocked(f"another zhuanlan scheduler is already running (lock held: {path})") from exc
        self._file_lock = lock

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None


# --- status ----------------------------------------------------------------------------


def next_runs(engine: Engine) -> dict[str, datetime | None]:
    """Next run of each stored job, read straight from the job store table."""
    with engine.connect() as conn:
        try:
            rows = conn.execute(text("SELECT id, next_run_time FROM apscheduler_jobs")).all()
        except (OperationalError, ProgrammingError):  # the table exists once a scheduler has run
            return {}
    return {str(r[0]): datetime.fromtimestamp(float(r[1]), UTC) if r[1] is not None else None for r in rows}


def status_report(config: Config, engine: Engine, sessions: sessionmaker[Session], now: datetime) -> str:
    from pipeline.models import CrawlRun, Source

    tz = config.tz
    lines = ["Jobs:"]
    runs = next_runs(engine)
    if not runs:
        lines.append("  (no scheduler has run yet: start one with `zhuanlan schedule`)")
    for job_id in JOB_IDS:
        if job_id in runs:
            nxt = runs[job_id]
            lines.append(
                f"  {job_id:12} next run {nxt.astimezone(tz):%Y-%m-%d %H:%M %Z}" if nxt else f"  {job_id:12} paused"
            )
    with sessions() as session:
        last = session.scalars(select(CrawlRun).order_by(CrawlRun.id.desc()).limit(1)).first()
        if last is not None:
            s = last.summary or {}
            lines.append(
                f"Last crawl: #{last.id} {last.status} at {last.started_at.astimezone(tz):%Y-%m-%d %H:%M} — "
                f"new stories {s.get('new_stories', 0)}, reposts {s.get('reposts', 0)}, problems {s.get('problems', 0)}"
            )
        else:
            lines.append("Last crawl: none yet")
        lines.append("Sources:")
        lines.append(f"  {'key':28} {'status':8} {'last success':17} {'fails':5} last error")
        for src in session.scalars(select(Source).order_by(Source.key)):
            ok = f"{src.last_success_at.astimezone(tz):%Y-%m-%d %H:%M}" if src.last_success_at else "never"
            err = (src.last_error or "").replace("\n", " ")[:60]
            flag = "" if src.enabled else " (disabled)"
            lines.append(f"  {src.key + flag:28} {src.status:8} {ok:17} {src.consecutive_failures:5} {err}")
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------


def run(config_path: str, *, stop: threading.Event | None = None) -> int:
    """Run the scheduler until SIGTERM/SIGINT (or `stop` is set)."""
    config = load_config(config_path)
    engine = make_engine(config.database_url)
    lock = SchedulerLock(config, engine)
    try:
        lock.acquire()
    except SchedulerLocked as exc:
        print(f"zhuanlan: {exc}; refusing to start a second one", file=sys.stderr)
        return 1
    stop_event = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop_event.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    sched = build_scheduler(config, str(Path(config_path).resolve()), engine)
    sched.resume()
    print(
        f"scheduler running ({config.schedule.timezone}); jobs: "
        + ", ".join(
            f"{j.id} next {j.next_run_time.astimezone(config.tz):%m-%d %H:%M}"
            for j in sched.get_jobs()
            if j.next_run_time
        ),
        flush=True,
    )
    try:
        stop_event.wait()
    finally:
        with _child_lock:
            child = _current_child
        if child is not None:
            stop_child(child)
        sched.shutdown(wait=True)
        lock.release()
        engine.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config_path = args[0] if args else os.environ.get("ZHUANLAN_CONFIG", "zhuanlan.toml")
    return run(config_path)


if __name__ == "__main__":
    sys.exit(main())
