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
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from pipeline.corpus.db import make_engine, session_factory, transaction
from pipeline.signals import sleep_until, stop_on_signals
from zhuanlan_config import Config, load_config

log = logging.getLogger("zhuanlan.scheduler")

CATCHUP_REVIEW_MINUTES = 10  # review required: how soon a late approval is sent
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
# The Monday digest and the catch-up run in one process: never both at once.
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
                log.info("digest %s: already sent, or held for review (see above): nothing to send now", week)
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
    catchup = CATCHUP_REVIEW_MINUTES if config.digest.review == "required" else 60
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
        # Catch-up: a digest left pending (mail server down on Monday, a restart after the grace of
        # the Monday slot) goes out within the hour once it can; with review required, an issue
        # approved after its send time goes out within CATCHUP_REVIEW_MINUTES. send_owed_digests
        # sends nothing twice, and _digest_lock keeps it from overlapping the Monday run.
        JobDef("digest-catchup", "scheduler:digest_job", IntervalTrigger(minutes=catchup, timezone=tz), catchup * 60),
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


# --- heartbeat -------------------------------------------------------------------------


class Heartbeat:
    """Writes the scheduler's heartbeat (`pipeline.corpus.heartbeat`) every `interval` seconds in a
    thread of its own, so a busy job never delays it; `stop()` records a clean shutdown. A beat
    the database refuses is logged and tried again at the next one."""

    def __init__(self, sessions: sessionmaker[Session], interval: int) -> None:
        self.sessions = sessions
        self.interval = interval
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="zhuanlan-heartbeat", daemon=True)

    def _beat(self, *, start: bool = False) -> None:
        from pipeline.corpus import heartbeat

        with transaction(self.sessions) as session:
            heartbeat.beat(session, _now(), host=self.host, pid=self.pid, interval_seconds=self.interval, start=start)

    def start(self) -> None:
        self._beat(start=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self._beat()
            except Exception as exc:  # the next beat tries again; the log says why
                log.error("heartbeat not written: %s", exc)

    def stop(self) -> None:
        from pipeline.corpus import heartbeat

        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            with transaction(self.sessions) as session:
                heartbeat.stopped(session, _now(), pid=self.pid)
        except Exception as exc:  # the stale beat then tells the same, later
            log.error("heartbeat: shutdown not recorded: %s", exc)


# --- status ----------------------------------------------------------------------------


def next_runs(engine: Engine) -> dict[str, datetime | None]:
    """Next run of each stored job, read straight from the job store table."""
    from pipeline.corpus.heartbeat import next_runs as stored_next_runs

    with session_factory(engine)() as session:
        return stored_next_runs(session)


def _when(value: datetime | None, tz: ZoneInfo, empty: str = "—") -> str:
    return f"{value.astimezone(tz):%Y-%m-%d %H:%M}" if value is not None else empty


def status_report(config: Config, engine: Engine, sessions: sessionmaker[Session], now: datetime) -> str:
    """What `zhuanlan status` prints, in Chinese: whether the scheduler is alive (its next runs
    only then), the last crawl, each source's health, attribution awaiting the office, and the
    latest failed logins and lockouts of the web app."""
    from pipeline.corpus import labels
    from pipeline.corpus.heartbeat import next_runs as stored_next_runs
    from pipeline.corpus.heartbeat import scheduler_state
    from pipeline.corpus.models import CrawlRun, Source

    tz = config.tz
    with sessions() as session:
        state = scheduler_state(session, now)
        lines = [labels.scheduler_line(state, now, tz)]
        if state.alive:
            runs = stored_next_runs(session)
            lines.append("下次运行：")
            for job_id in JOB_IDS:
                if job_id in runs:
                    nxt = runs[job_id]
                    when = f"{nxt.astimezone(tz):%Y-%m-%d %H:%M}" if nxt else "已暂停"
                    lines.append(f"  {job_id:15} {labels.job(job_id):6} {when}")
        else:
            lines.append("  （调度器未运行，任务不会按时执行，不显示下次运行时间；用 `zhuanlan schedule` 启动）")
        last = session.scalars(select(CrawlRun).order_by(CrawlRun.id.desc()).limit(1)).first()
        if last is not None:
            s = last.summary or {}
            lines.append(
                f"最近一次采集：#{last.id} {labels.trigger(last.trigger)} · {labels.run_status(last.status)}，"
                f"开始于 {_when(last.started_at, tz)} —— 新文章 {s.get('new_stories', 0)} 篇，"
                f"转载 {s.get('reposts', 0)} 篇，问题 {s.get('problems', 0)} 个"
            )
            if s.get("reason"):
                lines.append(f"  原因：{labels.reason(str(s['reason']))}")
            for failure in s.get("failures") or []:
                lines.append(f"  错误：{labels.reason(str(failure))}")
        else:
            lines.append("最近一次采集：还没有")
        lines.append("采集源：")
        lines.append("  源 | 类型 | 状态 | 最近成功 | 暂停至 | 连续失败 | 最近错误")
        for src in session.scalars(select(Source).order_by(Source.key)):
            if src.status == "blocked" and src.paused_until is not None and src.paused_until > now:
                paused = "直到强制采集"
            elif src.paused_until is not None and src.paused_until > now:
                paused = _when(src.paused_until, tz)
            else:
                paused = "—"
            flag = "" if src.enabled else " （已停用）"
            lines.append(
                f"  {src.key}{flag} | {labels.source_kind(src.kind)} | {labels.source_status(src.status)} | "
                f"{_when(src.last_success_at, tz, '从未')} | {paused} | {src.consecutive_failures} | "
                f"{labels.reason(src.last_error)[:120]}"
            )
        lines.extend(attribution_lines(session, tz))
        lines.extend(future_date_lines(session, tz))
        lines.extend(login_lines(session, tz))
    return "\n".join(lines)


def login_lines(session: Session, tz: ZoneInfo, limit: int = 10) -> list[str]:
    """The latest failed logins and lockouts of the web app's operator (as on the health page)."""
    from archive.auth import recent_events
    from pipeline.corpus import labels

    events = recent_events(session, limit)
    if not events:
        return ["最近的登录失败与锁定：没有"]
    lines = ["最近的登录失败与锁定："]
    for event in events:
        until = f"，锁定至 {event.locked_until.astimezone(tz):%Y-%m-%d %H:%M:%S}" if event.locked_until else ""
        lines.append(
            f"  {event.at.astimezone(tz):%Y-%m-%d %H:%M:%S}  {labels.login_event(event.kind)}  {event.client}{until}"
        )
    return lines


def attribution_lines(session: Session, tz: ZoneInfo, limit: int = 10) -> list[str]:
    """What `status` says of attribution: the stories no unit could be read for (never counted for
    any unit until the office decides), those it decided belong to no unit, and the column
    candidates awaiting confirmation."""
    from pipeline.corpus.corrections import awaiting_unit, confirmed_no_unit
    from pipeline.corpus.models import Article

    total = session.scalar(select(func.count(Article.id)).where(awaiting_unit())) or 0
    shown = session.execute(
        select(Article.guid, Article.published_at, Article.title)
        .where(awaiting_unit())
        .order_by(Article.published_at.desc().nulls_last(), Article.id.desc())
        .limit(limit)
    ).all()
    candidates = session.scalar(
        select(func.count(Article.id)).where(Article.column.is_(None), Article.column_candidate.is_not(None))
    )
    lines = [f"单位未识别的文章：{total} 篇（用 `zhuanlan correct GUID --unit 单位名称` 指定单位）"]
    for guid, published_at, title in shown:
        day = f"{published_at.astimezone(tz):%Y-%m-%d}" if published_at else "无日期"
        lines.append(f"  {guid}  {day}  {title[:40]}")
    if total > len(shown):
        lines.append(f"  ……另有 {total - len(shown)} 篇（网页 /review 列出全部）")
    settled = session.scalar(select(func.count(Article.id)).where(confirmed_no_unit())) or 0
    if settled:
        lines.append(f"已确认不属于任何单位的文章：{settled} 篇（不计入任何单位）")
    lines.append(f"专栏候选待确认：{candidates or 0} 篇（`zhuanlan correct GUID --in-column`）")
    return lines


def future_date_lines(session: Session, tz: ZoneInfo, limit: int = 10) -> list[str]:
    """What `status` says of publish times a page printed after we fetched it: stored as the fetch
    time (so they cannot sort first everywhere), the printed value kept for the operator to check."""
    from pipeline.corpus.models import Appearance, Article

    flagged = Appearance.printed_published_at.is_not(None)
    total = session.scalar(select(func.count(Appearance.id)).where(flagged)) or 0
    lines = [f"发布时间晚于抓取时间、已按抓取时间保存的页面：{total} 个"]
    shown = session.execute(
        select(Article.guid, Appearance.published_at, Appearance.printed_published_at, Appearance.url)
        .join(Article, Appearance.article_id == Article.id)
        .where(flagged)
        .order_by(Appearance.fetched_at.desc(), Appearance.id.desc())
        .limit(limit)
    ).all()
    for guid, stored, printed, url in shown:
        stored_at, printed_at = (_when(when, tz, "—") for when in (stored, printed))
        lines.append(f"  {guid} | 保存为 {stored_at} | 页面所印 {printed_at} | {url}")
    if total > len(shown):
        lines.append(f"  …… 另有 {total - len(shown)} 个")
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
    on_main_thread = threading.current_thread() is threading.main_thread()
    signals = (
        stop_on_signals(stop_event, lambda signum: log.info("signal %d: shutting down", signum))
        if on_main_thread
        else nullcontext()
    )
    with signals:
        return _run_until_stopped(config, config_path, engine, lock, stop_event, crawl_interval_seconds)


def _run_until_stopped(
    config: Config,
    config_path: str,
    engine: Engine,
    lock: SchedulerLock,
    stop_event: threading.Event,
    crawl_interval_seconds: int | None,
) -> int:
    try:
        stale = mark_stale_runs(session_factory(engine), _now())
        if stale:
            log.warning("crawl run(s) %s were left running by a scheduler that died: marked killed", stale)
        sched = build_scheduler(
            config, str(Path(config_path).resolve()), engine, crawl_interval_seconds=crawl_interval_seconds
        )
        heartbeat = Heartbeat(session_factory(engine), config.schedule.heartbeat_seconds)
        heartbeat.start()
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
        sleep_until(stop_event)  # never stop_event.wait() here: see pipeline.signals
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
        heartbeat.stop()
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
