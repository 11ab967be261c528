"""Crawl runs and source health: planning a crawl, recording each source's run, judging it.

Owns the lifecycle of `crawl_runs` rows (start, finish with a summary, mark runs of killed
processes), planning a crawl (`plan_crawl`: which sources run, what each spider starts from —
known appearances, list-page validators, a full paging after an unfinished run, WeChat articles
to recheck), one source's `source_runs` row through the crawl (`SourceRunRecorder`: problems,
lost pages, counters, the judgement) and the source's health (status, back-off after a WeChat
verification page, blocking). Functions take the caller's session and "now"; the recorder opens
its own units of work on the ingest's sessions.

A run records which process runs it (`summary["process"]`: host, boot, pid and the pid's start
time), so the next crawl on the same machine can tell at once that a run's process is gone
(SIGKILL, OOM, power cut of a container) and mark the run killed instead of waiting for the
subprocess time limit.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from crawler.items import GONE_STATES, ListPageItem, ProblemItem
from pipeline.corpus.config_sync import sync_config
from pipeline.corpus.db import DatabaseError, describe_failure, transaction
from pipeline.corpus.models import Appearance, CrawlRun, ListPage, Source, SourceRun, Unit
from pipeline.corpus.reasons import BLOCKING_KINDS, run_reason_zh
from pipeline.corpus.reasons import UNFINISHED_SOURCE_RUN as UNFINISHED_SOURCE_RUN  # importers keep this name
from zhuanlan_config import ConfigError, SourceConf, load_config

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

    from pipeline.corpus.batch import Batch
    from pipeline.corpus.db import SessionSource
    from pipeline.record import SourceRef

log = logging.getLogger(__name__)

DEAD_PROCESS_REASON = "the crawl process (pid {pid}) is gone: it was killed or crashed before it finished"
DEFAULT_VERIFICATION_MAX_RETRIES = 3
# A blocked source is skipped by every crawl until an operator crawls it with --force (a success
# clears the pause); "paused until" this far away is how `zhuanlan crawl` knows to skip it.
BLOCKED_FOR = timedelta(days=3650)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _has_verification(source_run: SourceRun) -> bool:
    return any(p.get("kind") == "verification" for p in source_run.problems or [])


def consecutive_verification_runs(session: Session, source_id: int) -> int:
    """How many of the source's latest finished runs, in a row, met WeChat's verification page."""
    count = 0
    runs = session.scalars(
        select(SourceRun)
        .where(SourceRun.source_id == source_id, SourceRun.status != "running")
        .order_by(SourceRun.id.desc())
        .limit(100)
    )
    for source_run in runs:
        if not _has_verification(source_run):
            break
        count += 1
    return count


def apply_verification_limit(source: Source, failures: int, now: datetime, tz: ZoneInfo = SHANGHAI) -> None:
    """Source health after `failures` runs in a row met WeChat's verification page.

    Below the source option `verification_max_retries` (default 3) the source stays paused with the
    store's back-off and says until when; at the limit it becomes "blocked" and stays so until an
    operator acts: `zhuanlan crawl --source KEY --force` (a successful crawl clears it)."""
    limit = int((source.options or {}).get("verification_max_retries") or DEFAULT_VERIFICATION_MAX_RETRIES)
    if failures >= limit:
        source.status = "blocked"
        source.paused_until = now + BLOCKED_FOR
        source.last_error = (
            f"blocked after {failures} WeChat verification pages in a row (环境异常 / 完成验证后即可继续访问): "
            f"no more crawls until an operator acts — open the album in a browser and pass the check, then run "
            f"`zhuanlan crawl --source {source.key} --force`"
        )
        return
    if source.paused_until is None:
        source.paused_until = now
    until = source.paused_until.astimezone(tz)
    minutes = max(0, round((source.paused_until - now).total_seconds() / 60))
    source.status = "paused"
    source.last_error = (
        f"paused until {until:%Y-%m-%d %H:%M} ({minutes} min): WeChat answered with its verification page "
        f"(环境异常), try {failures} of {limit}; blocked at {limit} in a row"
    )


def _verification_health(session: Session, run_id: int, now: datetime, tz: ZoneInfo) -> None:
    for source_run in session.scalars(select(SourceRun).where(SourceRun.crawl_run_id == run_id)):
        if not _has_verification(source_run):
            continue
        source = session.get(Source, source_run.source_id)
        if source is None or not source.kind.startswith("wechat"):
            continue
        apply_verification_limit(source, consecutive_verification_runs(session, source.id), now, tz)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _pid_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of proc(5); fields[0] is field 3 (the state)
    except (IndexError, ValueError):
        return None


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """Who runs a crawl: stored on the run so a later process can tell whether it is still alive."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid, "start": _pid_start(pid)}


def process_gone(identity: Any) -> bool:
    """Whether the recorded crawl process has certainly ended. Only a process of this machine and
    boot can be judged; anything unknown counts as alive (the subprocess time limit still applies)."""
    if not isinstance(identity, dict) or not isinstance(identity.get("pid"), int):
        return False
    if identity.get("host") != socket.gethostname() or identity.get("boot") != _boot_id():
        return False
    pid = int(identity["pid"])
    if pid == os.getpid():
        return False
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = stat.read_text(encoding="ascii", errors="replace")
        except OSError:
            return True  # no such process
        if text[text.rfind(")") + 2 :].startswith("Z"):
            return True  # a zombie: dead, its parent has not reaped it yet
        start = identity.get("start")
        return start is not None and _pid_start(pid) != start  # the pid now belongs to another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def start_crawl_run(session: Session, trigger: str, now: datetime) -> int:
    run = CrawlRun(started_at=now, status="running", trigger=trigger, summary={"process": process_identity()})
    session.add(run)
    session.flush()
    return run.id


def _close_unfinished_source_runs(session: Session, run_id: int, now: datetime) -> None:
    # A source run still "running" when its crawl run is finished belongs to a child that died:
    # its counts so far are kept (one transaction per item), its status says it did not finish.
    for source_run in session.scalars(
        select(SourceRun).where(SourceRun.crawl_run_id == run_id, SourceRun.status == "running")
    ):
        source_run.status = "error"
        source_run.finished_at = now
        source_run.error_summary = source_run.error_summary or UNFINISHED_SOURCE_RUN


def finish_crawl_run(
    session: Session, run_id: int, now: datetime, tz: ZoneInfo = SHANGHAI, failures: Sequence[str] = ()
) -> dict[str, Any]:
    """Close a crawl run and return its summary.

    Status: "ok" when every source run is ok (also when no source ran), "failed" when none is,
    "partial" otherwise. `failures` are errors of the crawl itself (the pipeline worker died, …):
    with any, the run is "failed" unless some source run is ok ("partial"), and they are listed.
    Each source whose run is not ok is listed (`failed_sources`) with its reason in Chinese, for the
    terminal. The summary is also stored on the row. WeChat sources that met the
    verification page in this run get their pause explained, or are blocked at their retry limit.
    """
    run = session.get(CrawlRun, run_id)
    if run is None:
        raise LookupError(f"no crawl run with id {run_id}")
    _close_unfinished_source_runs(session, run_id, now)
    session.flush()
    _verification_health(session, run_id, now, tz)
    # A run handed over to another worker is counted by that worker's run of the same source.
    source_runs = list(
        session.scalars(select(SourceRun).where(SourceRun.crawl_run_id == run_id, SourceRun.status != HANDED_OVER))
    )
    ok = sum(1 for r in source_runs if r.status == "ok")
    failed = len(source_runs) - ok
    summary: dict[str, Any] = {
        "sources": len(source_runs),
        "ok": ok,
        "failed": failed,
        "new_stories": sum(r.new_stories for r in source_runs),
        "reposts": sum(r.reposts for r in source_runs),
        "problems": sum(len(r.problems or []) for r in source_runs),
    }
    failed_sources = [
        {
            "source": r.source.key,
            "status": r.status,
            "reason": run_reason_zh(r.status, r.error_summary, r.problems or []),
        }
        for r in source_runs
        if r.status != "ok"
    ]
    if failed_sources:
        summary["failed_sources"] = failed_sources
    if failures:
        summary["failures"] = list(failures)
    if failed == 0 and not failures:
        status = "ok"
    elif ok == 0:
        status = "failed"
    else:
        status = "partial"
    summary["status"] = status
    run.status = status
    run.finished_at = now
    run.summary = summary
    return summary


def start_distributed_run(session: Session, trigger: str, now: datetime, workers: str) -> int:
    """A crawl run whose sources crawl workers run (`workers` says where they come from). No
    process of its own: it is judged by `finish_crawl_run` when its last source is done."""
    run = CrawlRun(started_at=now, status="running", trigger=trigger, summary={"distributed": workers})
    session.add(run)
    session.flush()
    return run.id


def record_worker(session: Session, run_id: int, source_key: str, worker: str) -> None:
    """Name `worker` on the source's runs in this crawl run that name none yet (its own)."""
    for source_run in _source_runs(session, run_id, source_key):
        if source_run.worker is None:
            source_run.worker = worker


def record_handover(
    session: Session,
    run_id: int,
    source_key: str,
    *,
    previous: str,
    lease_ended: datetime,
    taken_by: str,
    now: datetime,
    resumed_requests: int = 0,
) -> int:
    """The source's runs in this crawl run left by `previous` (its lease ended) become "handed_over",
    saying to whom and when, and how many of its queued requests (its frontier in Redis) the new
    holder resumes; returns how many runs. They are the runs no worker was credited with yet
    (`record_worker` runs when a crawl ends), whatever status the dead crawl's pipeline worker may
    have closed them with on its way out. A worker that died before its crawl opened the source's
    run (while starting, or before its first page) leaves none: a handed-over run is made for it,
    so that every handover is on record."""
    handover = {
        "from": previous,
        "lease_ended_at": lease_ended.isoformat(),
        "to": taken_by,
        "at": now.isoformat(),
        "resumed_requests": resumed_requests,
    }
    summary = f"worker {previous} stopped renewing its lease; taken over by {taken_by}"
    marked = 0
    for source_run in _source_runs(session, run_id, source_key):
        if source_run.status == HANDED_OVER or source_run.worker not in (None, previous):
            continue
        source_run.worker = previous
        source_run.status = HANDED_OVER
        source_run.finished_at = now
        source_run.error_summary = summary
        source_run.handover = handover
        marked += 1
    if marked:
        return marked
    source_id = session.scalar(select(Source.id).where(Source.key == source_key))
    if source_id is None:
        return 0  # a source removed from the config meanwhile: nothing to attach the record to
    session.add(
        SourceRun(
            crawl_run_id=run_id,
            source_id=source_id,
            started_at=lease_ended,
            finished_at=now,
            status=HANDED_OVER,
            worker=previous,
            error_summary=summary + " before its crawl opened the source",
            handover=handover,
            problems=[],
        )
    )
    return 1


def _source_runs(session: Session, run_id: int, source_key: str) -> list[SourceRun]:
    return list(
        session.scalars(
            select(SourceRun)
            .join(Source, Source.id == SourceRun.source_id)
            .where(SourceRun.crawl_run_id == run_id, Source.key == source_key)
            .order_by(SourceRun.id)
        )
    )


def mark_killed_runs(session: Session, now: datetime, *, started_before: datetime | None = None) -> int:
    """Runs left "running" by a process that was killed become "killed"; returns how many.

    Without `started_before` every running run is marked: call it so only where no crawl of this
    installation can be running (scheduler start, under its lock). A caller that may run beside a
    live crawl passes `started_before` (e.g. now minus the crawl subprocess timeout): older runs
    are marked, and so are younger ones whose recorded process is certainly gone (`process_gone`).
    """
    runs = list(session.scalars(select(CrawlRun).where(CrawlRun.status == "running").order_by(CrawlRun.id)))
    marked = 0
    for run in runs:
        summary = dict(run.summary or {})
        if started_before is not None and run.started_at >= started_before:
            if not process_gone(summary.get("process")):
                continue
            summary.setdefault("reason", DEAD_PROCESS_REASON.format(pid=summary["process"]["pid"]))
        _close_unfinished_source_runs(session, run.id, now)
        run.status = "killed"
        run.finished_at = now
        run.summary = {**summary, "status": "killed"}
        marked += 1
    return marked


def ended_runs(session: Session, run_ids: Iterable[int]) -> set[int]:
    """Those of `run_ids` whose crawl run has ended (whatever its status): not running, and known."""
    ids = sorted(set(run_ids))
    if not ids:
        return set()
    return set(session.scalars(select(CrawlRun.id).where(CrawlRun.id.in_(ids), CrawlRun.status != "running")))


def last_run_complete(session: Session, source_key: str) -> bool:
    """Whether the source's latest run finished cleanly (or it never ran).

    After an interrupted or failed run, the list pages it saw may list articles it never stored:
    their validators would answer 304 and the incremental stop would halt at the stored ones
    above them. The next crawl of such a source therefore pages fully, without validators.
    """
    latest = session.scalar(
        select(SourceRun.status)
        .join(Source, Source.id == SourceRun.source_id)
        .where(Source.key == source_key)
        .order_by(SourceRun.id.desc())
        .limit(1)
    )
    return latest is None or latest == "ok"


def known_state(session: Session, source_key: str) -> tuple[frozenset[str], dict[str, tuple[str | None, str | None]]]:
    """(canonical keys of the source's stored appearances, list-page URL -> (ETag, Last-Modified)).

    Validators are given only when the source's latest run completed (see `last_run_complete`).
    """
    source_id = session.scalar(select(Source.id).where(Source.key == source_key))
    if source_id is None:
        return frozenset(), {}
    keys = frozenset(session.scalars(select(Appearance.canonical_key).where(Appearance.source_id == source_id)))
    if not last_run_complete(session, source_key):
        return keys, {}
    validators = {
        url: (etag, last_modified)
        for url, etag, last_modified in session.execute(
            select(ListPage.url, ListPage.etag, ListPage.last_modified).where(ListPage.source_id == source_id)
        )
    }
    return keys, validators


def recent_wechat_urls(session: Session, since: datetime, *, source_key: str | None = None) -> list[str]:
    """URLs of WeChat appearances published (or, without a date, fetched) since `since` and not
    already gone at the source: what the daily recheck re-fetches. Newest first; optionally of one source."""
    published = func.coalesce(Appearance.published_at, Appearance.fetched_at)
    query = (
        select(Appearance.url)
        .join(Source, Source.id == Appearance.source_id)
        .where(
            Source.kind.like("wechat%"),
            or_(Appearance.published_at >= since, Appearance.published_at.is_(None) & (Appearance.fetched_at >= since)),
            Appearance.state.not_in(sorted(GONE_STATES)),
        )
        .order_by(published.desc(), Appearance.id.desc())
    )
    if source_key is not None:
        query = query.where(Source.key == source_key)
    return list(session.scalars(query))


HANDED_OVER = "handed_over"


# --- planning a crawl ------------------------------------------------------------------------


@dataclass(frozen=True)
class SourcePlan:
    """What one source's spider starts from in this crawl."""

    source: SourceConf
    known_keys: frozenset[str]
    validators: dict[str, tuple[str | None, str | None]]
    backfill: bool  # page to the end (asked for, or the last run did not finish)
    recheck_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class CrawlPlan:
    run_id: int
    sources: tuple[SourcePlan, ...]
    skipped: tuple[str, ...]  # "key (why)" of sources paused or blocked


def plan_crawl(
    session: Session,
    sources: Sequence[SourceConf],
    *,
    trigger: str,
    now: datetime,
    tz: ZoneInfo,
    stale_after: timedelta,
    backfill: bool = False,
    force: bool = False,
    recheck_since: datetime | None = None,
    run_id: int | None = None,
) -> CrawlPlan:
    """Start a crawl run of `sources` and say what each spider starts from.

    Runs still "running" past `stale_after` (the crawl subprocess limit) belonged to a killed
    process and are marked so. A paused or blocked source is skipped unless `force`. After an
    interrupted or failed run a source pages fully, without validators, so nothing listed then is
    skipped now. With `recheck_since`, only WeChat articles published since then are re-fetched.
    With `run_id` (a crawl worker's part of a distributed run) that run is planned for, as it is.
    """
    if run_id is None:
        mark_killed_runs(session, now, started_before=now - stale_after)
        run_id = start_crawl_run(session, trigger, now)
    plans: list[SourcePlan] = []
    skipped: list[str] = []
    for source in sources:
        row = session.scalar(select(Source).where(Source.key == source.key))
        if row is not None and row.paused_until is not None and row.paused_until > now and not force:
            if row.status == "blocked":
                skipped.append(f"{source.key} (blocked: pass the site's check, then crawl it with --force)")
            else:
                until = row.paused_until.astimezone(tz)
                skipped.append(f"{source.key} (paused until {until:%Y-%m-%d %H:%M}; --force crawls it now)")
            continue
        keys, validators = known_state(session, source.key)
        resume = not last_run_complete(session, source.key)
        recheck: tuple[str, ...] = ()
        if recheck_since is not None:
            recheck = tuple(recent_wechat_urls(session, recheck_since, source_key=source.key))
            if not recheck:
                continue
        plans.append(SourcePlan(source, keys, validators, backfill or resume, recheck))
    return CrawlPlan(run_id, tuple(plans), tuple(skipped))


# --- judging a source's run, and its health --------------------------------------------------

BLOCKING_PROBLEMS = BLOCKING_KINDS
DEFAULT_VERIFICATION_BACKOFF_MINUTES = 30
MAX_PAUSE = timedelta(hours=24)


def judge_run(problems: list[dict[str, Any]], fatal_reasons: list[str], fetched: int) -> tuple[str, str | None]:
    """(status, error summary in plain words) of a finished source run."""
    for problem in problems:
        if problem.get("kind") in BLOCKING_PROBLEMS:
            return "blocked", str(problem.get("reason") or problem.get("kind"))
    if fatal_reasons:
        return "error", fatal_reasons[0]
    if fetched == 0:
        if problems:
            return "error", f"nothing could be fetched: {problems[0].get('reason')}"
        return "error", "nothing could be fetched: the spider produced no article and no list page"
    if problems:
        count = len(problems)
        return "ok", f"{count} problem{'s' if count > 1 else ''}; first: {problems[0].get('reason')}"
    return "ok", None


def verification_pause(options: Mapping[str, Any], consecutive_failures: int) -> timedelta:
    """Back-off after a WeChat verification page: the source's base minutes, doubled per
    consecutive failure, at most a day."""
    base = int(options.get("verification_backoff_minutes") or DEFAULT_VERIFICATION_BACKOFF_MINUTES)
    minutes = base * 2 ** max(0, consecutive_failures - 1)
    return min(timedelta(minutes=minutes), MAX_PAUSE)


def update_source_health(
    source: Source, status: str, summary: str | None, now: datetime, *, verification: bool
) -> None:
    if status == "ok":
        source.status = "ok"
        source.last_success_at = now
        source.consecutive_failures = 0
        source.paused_until = None
        return
    source.status = status
    source.last_error_at = now
    source.last_error = summary
    source.consecutive_failures = (source.consecutive_failures or 0) + 1
    if verification and source.kind.startswith("wechat"):
        source.paused_until = now + verification_pause(source.options or {}, source.consecutive_failures)
        source.status = "paused"


@functools.cache
def _count_statement(names: tuple[str, ...]) -> Any:
    """UPDATE source_runs SET name = coalesce(name, 0) + :add_name …: one statement per set of counters."""
    table = cast(Table, SourceRun.__table__)
    values = {name: func.coalesce(table.c[name], 0) + bindparam(f"add_{name}") for name in names}
    return update(table).where(table.c.id == bindparam("run")).values(**values)


def count(session: Session, source_run_id: int, counts: Mapping[str, int], batch: Batch | None = None) -> None:
    """Add `counts` (new_stories, reposts, …) to a source run. With a `batch`, the additions are
    summed and written once, just before the batch commits."""
    if not counts:
        return
    params = {f"add_{name}": value for name, value in counts.items()}
    if batch is not None:
        previous = batch.take(("count", source_run_id))
        if previous is not None:
            for name, value in previous[1].items():
                if name.startswith("add_"):
                    params[name] = params.get(name, 0) + value
        names = tuple(sorted(name.removeprefix("add_") for name in params))
        batch.defer(("count", source_run_id), _count_statement(names), {**params, "run": source_run_id})
        return
    session.connection().execute(_count_statement(tuple(sorted(counts))), {**params, "run": source_run_id})


# --- recording one source's run ----------------------------------------------------------------


class SourceRunRecorder:
    """One source's `source_runs` row through a crawl: opened with the source, its problems as they
    come, closed with its judgement and the source's health. Problems the database refuses are
    kept and written at the close; pages whose batch was rolled back are recorded as lost there."""

    def __init__(self, sessions: SessionSource, *, run_id: int | None, config_path: str | None) -> None:
        self.sessions = sessions
        self.run_id = run_id
        self.config_path = config_path
        self.owns_run = False  # started its own crawl run (a spider run outside `zhuanlan crawl`)
        self.source_id = 0
        self.source_run_id = 0
        self.fetched = 0
        self.fatal_reasons: list[str] = []
        self.unsaved_problems: list[dict[str, Any]] = []

    def open(self, source: SourceRef, now: datetime) -> SourceRow:
        with transaction(self.sessions) as session:
            if self.run_id is None:
                self.run_id = start_crawl_run(session, "scrapy", now)
                self.owns_run = True
            row = self._ensure_source(session, source, now)
            source_run = SourceRun(
                crawl_run_id=self.run_id, source_id=row.id, started_at=now, status="running", problems=[]
            )
            session.add(source_run)
            session.flush()
            self.source_id, self.source_run_id = row.id, source_run.id
            return SourceRow(row.id, row.unit_id, row.column)

    def _ensure_source(self, session: Session, ref: SourceRef, now: datetime) -> Source:
        source = session.scalar(select(Source).where(Source.key == ref.key))
        if source is None and self.config_path:
            try:
                sync_config(session, load_config(self.config_path), now)
            except ConfigError as exc:
                log.warning("cannot load %s to register source %s: %s", self.config_path, ref.key, exc)
            source = session.scalar(select(Source).where(Source.key == ref.key))
        if source is None:
            if not ref.kind or not ref.url:
                raise RuntimeError(f"source {ref.key!r} is not in the database and the spider does not define it")
            unit_id = session.scalar(select(Unit.id).where(Unit.name == ref.unit)) if ref.unit else None
            source = Source(
                key=ref.key,
                kind=ref.kind,
                url=ref.url,
                unit_id=unit_id,
                column=ref.column,
                options=dict(ref.options),
                enabled=True,
                status="new",
                consecutive_failures=0,
            )
            session.add(source)
            session.flush()
        return source

    def problem(self, problem: ProblemItem) -> None:
        """A problem of the source, on its run's row at once (kept for the close if the database refuses)."""
        if problem.fatal:
            self.fatal_reasons.append(problem.reason)
        entry = {"url": problem.url, "kind": problem.kind, "reason": problem.reason, "http_status": problem.http_status}
        try:
            with transaction(self.sessions) as session:
                source_run = session.get(SourceRun, self.source_run_id)
                assert source_run is not None
                # a new list: JSON columns do not track in-place changes
                source_run.problems = [*(source_run.problems or []), entry]
                source_run.errors = (source_run.errors or 0) + 1
        except DatabaseError as exc:
            log.error("problem of %s not recorded yet: %s", problem.url, exc)
            self.unsaved_problems.append(entry)

    def failure(self, page: object, error: BaseException) -> None:
        """A page a stage failed on: a fatal problem (the run is incomplete; the next crawl pages fully)."""
        url = str(getattr(page, "url", "") or "")
        cause = error.orig if isinstance(error, DBAPIError) else error
        reason = describe_failure(error) if isinstance(error, OperationalError) else f"{type(cause).__name__}: {cause}"
        self.problem(
            ProblemItem(
                source_key=str(getattr(page, "source_key", "") or ""),
                url=url,
                kind="database" if isinstance(error, DBAPIError | DatabaseError) else "pipeline",
                reason=f"could not process the page: {' '.join(reason.split())}",
                fatal=True,
            )
        )

    def lost(self, page: object, reason: str) -> bool:
        """A page handled but rolled back with its batch: recorded at the close, the run incomplete.
        A list page's validators are not worth one: without them the next crawl only lists again.
        Whether the page is recorded."""
        if isinstance(page, ListPageItem):
            return False
        if isinstance(page, ProblemItem):
            entry = {"url": page.url, "kind": page.kind, "reason": page.reason, "http_status": page.http_status}
        else:
            entry = {
                "url": str(getattr(page, "url", "")),
                "kind": "database",
                "reason": f"could not store the page: {reason}",
                "http_status": getattr(page, "http_status", None),
            }
        self.fatal_reasons.append(f"could not store the page: {reason}")
        self.unsaved_problems.append(entry)
        return True

    def close(self, requests: int, now: datetime) -> None:
        """Judge the run and the source's health (and finish the crawl run it started, if any)."""
        with transaction(self.sessions) as session:
            source_run = session.get(SourceRun, self.source_run_id)
            source = session.get(Source, self.source_id)
            assert source_run is not None and source is not None
            if self.unsaved_problems:
                source_run.problems = [*(source_run.problems or []), *self.unsaved_problems]
                source_run.errors = (source_run.errors or 0) + len(self.unsaved_problems)
            problems = list(source_run.problems or [])
            status, summary = judge_run(problems, self.fatal_reasons, self.fetched)
            source_run.status = status
            source_run.error_summary = summary
            source_run.requests = requests
            source_run.finished_at = now
            verification = any(p.get("kind") == "verification" for p in problems)
            update_source_health(source, status, summary, now, verification=verification)
            if self.owns_run and self.run_id is not None:
                finish_crawl_run(session, self.run_id, now)
        self.unsaved_problems.clear()


@dataclass(frozen=True)
class SourceRow:
    """What writing a record needs of the crawled source; read once per crawl, not per page."""

    id: int
    unit_id: int | None
    column: str | None
