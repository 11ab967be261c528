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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.corpus.db import make_engine, session_factory, transaction
from zhuanlan_config import Config, load_config

log = logging.getLogger("zhuanlan.scheduler")

JOB_IDS = ("crawl", "digest", "digest-catchup", "recheck", "maintenance")

# Triggers of the crawl runs a scheduler starts; at start, under its lock, a run of these left
# "running" belongs to a scheduler that died (its crawl child dies with it, see _die_with_parent).
SCHEDULER_TRIGGERS = ("schedule", "recheck")
STALE_RUN_REASON = "the scheduler process ended during this crawl (killed or crashed); marked at the next start"

# The crawl subprocess currently running, so a shutdown can stop it cleanly. `_stopping` is set
# once a shutdown begins: no new child is spawned after that, and a child the shutdown stopped
# is recorded as stopped (pids in `_stopped_by_shutdown`).
_current_child: subprocess.Popen[bytes] | None = None
_child_lock = threading.Lock()
# The Monday digest and the hourly catch-up run in one process: never both at once.
_digest_lock = threading.Lock()
_stopping = threading.Event()
_stopped_by_shutdown: set[int] = set()


class SchedulerLocked(RuntimeError):
    """Another scheduler already runs against this database."""


# --- the jobs (module-level functions: the job store keeps references to them) --------------


def _now() -> datetime:
    return datetime.now(UTC)


def _die_with_parent() -> None:
    """In the crawl child before exec (Linux): SIGKILL it when the scheduler dies.

    Without this a SIGKILLed scheduler leaves an orphan crawl that races the next scheduler's
    crawl and overwrites the "killed" mark of its run. SIGKILL, not SIGTERM: the store commits
    one transaction per item, so a killed crawl leaves no half-written story, and the restarted
    scheduler must not find an orphan still shutting down.
    """
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def spawn_child(cmd: list[str]) -> subprocess.Popen[bytes]:
    """A child that dies with this process (crawl workers spawn their crawls with it too)."""
    if sys.platform.startswith("linux"):
        return subprocess.Popen(cmd, preexec_fn=_die_with_parent)  # only prctl runs there, see above
    return subprocess.Popen(cmd)


def _run_crawl(config_path: str, config: Config, args: list[str], trigger: str) -> int | None:
    """Run `zhuanlan crawl <args> --trigger T` in a child process with the configured time limit.

    An overrunning child is stopped (SIGTERM, then SIGKILL) and its run recorded as killed with the
    reason; so is a child stopped by a shutdown. Returns the child's exit code, or None when it was
    stopped or not started (shutdown under way).
    """
    global _current_child
    timeout = config.crawl.subprocess_timeout_seconds
    cmd = [sys.executable, "-m", "zhuanlan_cli", "--config", config_path, "crawl", *args, "--trigger", trigger]
    spawned_at = _now()
    with _child_lock:
        if _stopping.is_set():
            log.info("shutting down: crawl not started")
            return None
        child = spawn_child(cmd)
        _current_child = child
    reason: str | None = None
    code: int | None = None
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.error("crawl overran its %s s limit: stopping it", timeout)
        stop_child(child)
        reason = f"overran its {timeout} s limit (crawl.subprocess_timeout_seconds) and was stopped"
        code = None
    finally:
        with _child_lock:
            _current_child = None
            stopped = child.pid in _stopped_by_shutdown
            _stopped_by_shutdown.discard(child.pid)
    if reason is None and stopped:
        reason = "stopped: the scheduler shut down during this crawl"
        code = None
    if reason is not None:
        record_stopped_run(config, trigger, spawned_at, _now(), reason)
    return code


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


def _close_run(session: Session, run: Any, now: datetime, reason: str) -> None:
    """Mark a crawl run that did not finish as killed, with its unfinished source runs (whose next
    crawl then pages fully: `pipeline.corpus.runs.last_run_complete`)."""
    from pipeline.corpus.models import SourceRun
    from pipeline.corpus.runs import UNFINISHED_SOURCE_RUN

    source_ids: set[int] = set()
    for source_run in session.scalars(select(SourceRun).where(SourceRun.crawl_run_id == run.id)):
        source_ids.add(source_run.source_id)
        if source_run.status == "running":
            source_run.status = "error"
            source_run.finished_at = now
            source_run.error_summary = source_run.error_summary or UNFINISHED_SOURCE_RUN
    run.status = "killed"
    run.finished_at = run.finished_at or now
    run.summary = {**(run.summary or {}), "status": "killed", "reason": reason}


def record_stopped_run(config: Config, trigger: str, spawned_at: datetime, now: datetime, reason: str) -> list[int]:
    """Mark the crawl run(s) of a child spawned at `spawned_at` with `trigger` as killed, with `reason`.

    The child may have finished its run cleanly (a graceful stop), left it "running" (killed), or
    died before it recorded one: then a run row is created, so the overrun is visible in
    `zhuanlan status` and the health view either way. Returns the run ids.
    """
    from pipeline.corpus.models import CrawlRun

    engine = make_engine(config.database_url)
    try:
        with transaction(session_factory(engine)) as session:
            runs = list(
                session.scalars(
                    select(CrawlRun).where(
                        CrawlRun.trigger == trigger, CrawlRun.started_at >= spawned_at - timedelta(seconds=1)
                    )
                )
            )
            if not runs:
                run = CrawlRun(started_at=spawned_at, status="running", trigger=trigger, summary={})
                session.add(run)
                session.flush()
                runs = [run]
            for run in runs:
                _close_run(session, run, now, reason)
            log.warning("crawl run(s) %s %s", ", ".join(str(r.id) for r in runs), reason)
            return [r.id for r in runs]
    finally:
        engine.dispose()


def mark_stale_runs(sessions: sessionmaker[Session], now: datetime) -> list[int]:
    """At scheduler start, under the lock: runs a dead scheduler left "running" become killed."""
    from pipeline.corpus.models import CrawlRun

    with transaction(sessions) as session:
        runs = list(
            session.scalars(
                select(CrawlRun).where(CrawlRun.status == "running", CrawlRun.trigger.in_(SCHEDULER_TRIGGERS))
            )
        )
        for run in runs:
            _close_run(session, run, now, STALE_RUN_REASON)
        return [r.id for r in runs]


def feeds_job(config_path: str) -> None:
    from feeds.publish import publish_feeds

    config = load_config(config_path)
    engine = make_engine(config.database_url)
    try:
        result = publish_feeds(session_factory(engine), config, _now())
        log.info("feeds: %d written, %d unchanged", len(result.written), result.unchanged)
    finally:
        engine.dispose()


def crawl_job(config_path: str, trigger: str = "schedule") -> None:
    config = load_config(config_path)
    if config.distributed.redis_url:
        # The crawl workers crawl; the feeds show what they stored by the next run of this job.
        _enqueue_crawl(config, trigger)
    else:
        _run_crawl(config_path, config, [], trigger)
    if not _stopping.is_set():
        feeds_job(config_path)


def _enqueue_crawl(config: Config, trigger: str) -> None:
    """With [distributed] redis_url: queue the due sources for the crawl workers (`zhuanlan worker`)."""
    from crawler.queue import SourceQueue
    from pipeline.distributed import enqueue_crawl

    dist = config.distributed
    assert dist.redis_url is not None
    engine = make_engine(config.database_url)
    try:
        queue = SourceQueue.connect(dist.redis_url, dist.key_prefix, dist.lease_seconds)
        if not queue.idle():
            # The last run's sources are still queued or being crawled: queueing them again would
            # crawl a source twice at once. This interval is skipped; the next one looks again.
            log.warning("crawl workers are still busy with the last run: no new run queued")
            return
        sources = [s for s in config.sources if s.enabled]
        run_id, jobs, _skipped = enqueue_crawl(
            session_factory(engine), queue, config, sources, trigger=trigger, now=_now()
        )
        log.info("crawl run %d: %d source(s) queued for the crawl workers", run_id, len(jobs))
    finally:
        engine.dispose()


def recheck_job(config_path: str, trigger: str = "recheck") -> None:
    config = load_config(config_path)
    _run_crawl(config_path, config, ["--recheck"], trigger)
    if not _stopping.is_set():
        feeds_job(config_path)


def digest_job(config_path: str) -> None:
    """Send every digest owed now: the last week's on time, and after downtime each week whose
    send time passed within the grace (`feeds.digest.owed_weeks`). Weeks already sent are
    skipped, so a rerun, a restart or an extra trigger sends nothing twice. An unusable SMTP
    server stops the run with the rest left pending for the next run (the error propagates so
    APScheduler logs the job as failed)."""
    from feeds.mail import send_owed_digests

    with _digest_lock:
        _send_owed(config_path, send_owed_digests)


def _send_owed(config_path: str, send_owed_digests: Any) -> None:
    config = load_config(config_path)
    engine = make_engine(config.database_url)
    now = _now()
    try:
        results = send_owed_digests(session_factory(engine), config, now)
        if not results:
            log.info("digest: nothing owed at %s", now.astimezone(config.tz).isoformat(timespec="minutes"))
        for week, result in results.items():
            if result is None:
                log.info("digest %s: already sent", week)
            else:
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


JOBS: dict[str, Callable[..., None]] = {
    "crawl": crawl_job,
    "feeds": feeds_job,
    "digest": digest_job,
    "recheck": recheck_job,
    "maintenance": maintenance_job,
}


def run_once(job: str, config: Config, config_path: Path, now: datetime) -> int:
    """Run one job now, in this process (for cron users and tests).

    Crawls run with trigger "run-once" so a scheduler starting meanwhile leaves their run alone."""
    if job in ("crawl", "recheck"):
        JOBS[job](str(config_path), "run-once")
    else:
        JOBS[job](str(config_path))
    return 0


# --- building the scheduler ----------------------------------------------------------


@dataclass(frozen=True)
class JobDef:
    id: str
    func: str  # "scheduler:crawl_job"
    trigger: Any
    grace_seconds: int


def job_defs(config: Config, *, crawl_interval_seconds: int | None = None) -> list[JobDef]:
    """The jobs; `crawl_interval_seconds` overrides schedule.crawl_interval_minutes (tests, demos)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    s = config.schedule
    tz = config.tz
    grace = int(s.misfire_grace_hours * 3600)
    dh, dm = (int(x) for x in s.digest_time.split(":"))
    rh, rm = (int(x) for x in s.recheck_time.split(":"))
    mh, mm = (int(x) for x in s.maintenance_time.split(":"))
    crawl_every = crawl_interval_seconds or s.crawl_interval_minutes * 60
    return [
        JobDef(
            "crawl",
            "scheduler:crawl_job",
            IntervalTrigger(seconds=crawl_every, jitter=s.crawl_jitter_seconds or None, timezone=tz),
            min(grace, crawl_every),
        ),
        # Weekday names, never numbers: APScheduler counts Monday as 0, unlike cron.
        JobDef(
            "digest",
            "scheduler:digest_job",
            CronTrigger(day_of_week=s.digest_weekday, hour=dh, minute=dm, timezone=tz),
            max(grace, config.digest.grace_days * 86400),
        ),
        # Hourly catch-up: a digest left pending (mail server down on Monday, a restart after the
        # grace of the Monday slot) goes out within the hour once it can. send_owed_digests sends
        # nothing twice, and _digest_lock keeps it from overlapping the Monday run.
        JobDef("digest-catchup", "scheduler:digest_job", IntervalTrigger(hours=1, timezone=tz), 3600),
        JobDef("recheck", "scheduler:recheck_job", CronTrigger(hour=rh, minute=rm, timezone=tz), grace),
        JobDef("maintenance", "scheduler:maintenance_job", CronTrigger(hour=mh, minute=mm, timezone=tz), grace),
    ]


def build_scheduler(
    config: Config, config_path: str, engine: Engine, *, crawl_interval_seconds: int | None = None
) -> Any:
    """A started-but-paused BackgroundScheduler with the jobs installed; `resume()` lets it run.

    A job already in the store keeps its stored next-run time (so a run missed during downtime
    fires once at start) unless its trigger changed in the config.
    """
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.base import STATE_RUNNING

    class Scheduler(BackgroundScheduler):  # type: ignore[misc]  # apscheduler is untyped
        # APScheduler 3.x wakes the loop once more after shutdown() and, as it only skips the
        # paused state, tries to submit a job that is due to the closed executor (a logged
        # RuntimeError on every shutdown with a due job). Process jobs only while running.
        def _process_jobs(self) -> float | None:
            if self.state != STATE_RUNNING:
                return None
            wait: float | None = super()._process_jobs()
            return wait

    sched = Scheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=config.tz,
    )
    sched.start(paused=True)
    for d in job_defs(config, crawl_interval_seconds=crawl_interval_seconds):
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
    from pipeline.corpus.models import CrawlRun, Source

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
            if s.get("reason"):
                lines.append(f"  reason: {s['reason']}")
        else:
            lines.append("Last crawl: none yet")
        lines.append("Sources:")
        lines.append(f"  {'key':28} {'status':8} {'last success':17} {'paused until':17} {'fails':5} last error")
        for src in session.scalars(select(Source).order_by(Source.key)):
            ok = f"{src.last_success_at.astimezone(tz):%Y-%m-%d %H:%M}" if src.last_success_at else "never"
            if src.status == "blocked" and src.paused_until is not None and src.paused_until > now:
                paused = "until forced"
            elif src.paused_until is not None and src.paused_until > now:
                paused = f"{src.paused_until.astimezone(tz):%Y-%m-%d %H:%M}"
            else:
                paused = "-"
            err = (src.last_error or "").replace("\n", " ")[:80]
            flag = "" if src.enabled else " (disabled)"
            lines.append(f"  {src.key + flag:28} {src.status:8} {ok:17} {paused:17} {src.consecutive_failures:5} {err}")
        lines.extend(attribution_lines(session, tz))
    return "\n".join(lines)


def attribution_lines(session: Session, tz: ZoneInfo, limit: int = 10) -> list[str]:
    """What `status` says of attribution: the stories no unit could be read for (never counted for
    any unit until the office decides), and the column candidates awaiting confirmation."""
    from pipeline.corpus.models import Article

    total = session.scalar(select(func.count(Article.id)).where(Article.unit_id.is_(None))) or 0
    shown = session.execute(
        select(Article.guid, Article.published_at, Article.title)
        .where(Article.unit_id.is_(None))
        .order_by(Article.published_at.desc().nulls_last(), Article.id.desc())
        .limit(limit)
    ).all()
    candidates = session.scalar(
        select(func.count(Article.id)).where(Article.column.is_(None), Article.column_candidate.is_not(None))
    )
    lines = [f"Unattributed stories: {total} (set a unit with `zhuanlan correct GUID --unit NAME`)"]
    for guid, published_at, title in shown:
        day = f"{published_at.astimezone(tz):%Y-%m-%d}" if published_at else "undated"
        lines.append(f"  {guid}  {day}  {title[:40]}")
    if total > len(shown):
        lines.append(f"  … and {total - len(shown)} more (the web app's /review lists them all)")
    lines.append(f"Column candidates awaiting confirmation: {candidates or 0} (`zhuanlan correct GUID --in-column`)")
    return lines


# --- main ----------------------------------------------------------------------------------


def run(config_path: str, *, stop: threading.Event | None = None, crawl_interval_seconds: int | None = None) -> int:
    """Run the scheduler until SIGTERM/SIGINT (or `stop` is set).

    Shutdown: no new job starts, a running crawl child is stopped (Scrapy's graceful first
    SIGTERM; SIGKILL after the grace) and its run recorded as stopped, running jobs are waited
    for, then the lock is released.
    """
    config = load_config(config_path)
    engine = make_engine(config.database_url)
    lock = SchedulerLock(config, engine)
    try:
        lock.acquire()
    except SchedulerLocked as exc:
        print(f"zhuanlan: {exc}; refusing to start a second one", file=sys.stderr)
        engine.dispose()
        return 1
    stop_event = stop or threading.Event()
    _stopping.clear()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop_event.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        stale = mark_stale_runs(session_factory(engine), _now())
        if stale:
            log.warning("crawl run(s) %s were left running by a scheduler that died: marked killed", stale)
        sched = build_scheduler(
            config, str(Path(config_path).resolve()), engine, crawl_interval_seconds=crawl_interval_seconds
        )
    except BaseException:
        lock.release()
        engine.dispose()
        raise
    sched.resume()
    print(
        f"scheduler running ({config.schedule.timezone}); jobs: "
        + ", ".join(
            f"{j.id} next {j.next_run_time.astimezone(config.tz):%m-%d %H:%M:%S}"
            for j in sched.get_jobs()
            if j.next_run_time
        ),
        flush=True,
    )
    try:
        stop_event.wait()
    finally:
        sched.pause()  # no new job from here on
        with _child_lock:
            _stopping.set()
            child = _current_child
            if child is not None and child.poll() is None:
                _stopped_by_shutdown.add(child.pid)
        if child is not None:
            log.info("stopping the running crawl (pid %d)", child.pid)
            stop_child(child)
        sched.shutdown(wait=True)
        lock.release()
        engine.dispose()
    log.info("scheduler stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python scheduler.py", description="Run the zhuanlan scheduler until stopped."
    )
    parser.add_argument("config", nargs="?", default=os.environ.get("ZHUANLAN_CONFIG", "zhuanlan.toml"))
    parser.add_argument(
        "--crawl-interval-seconds",
        type=int,
        default=None,
        help="crawl every N seconds instead of schedule.crawl_interval_minutes (tests and demos)",
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.crawl_interval_seconds is not None and args.crawl_interval_seconds < 1:
        parser.error("--crawl-interval-seconds must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(args.config, crawl_interval_seconds=args.crawl_interval_seconds)


if __name__ == "__main__":
    # `python scheduler.py` runs this file as __main__, but the job store imports the jobs from
    # the module `scheduler`: run that module's main so the signal handling and the jobs share
    # one `_current_child` and `_stopping`.
    import scheduler as _scheduler

    sys.exit(_scheduler.main())
