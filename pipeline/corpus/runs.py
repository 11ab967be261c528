"""Crawl run recording and the known-state queries a new crawl starts from.

Owns the lifecycle of `crawl_runs` rows (start, finish with a summary, mark runs of killed
processes) and the read-only questions the scheduler asks before spawning a crawl (which
appearances and list-page validators a source already has; which WeChat articles to recheck).
The per-source rows (`source_runs`) are written by the store pipeline. Callers own the
transaction; "now" is always passed in.

A run records which process runs it (`summary["process"]`: host, boot, pid and the pid's start
time), so the next crawl on the same machine can tell at once that a run's process is gone
(SIGKILL, OOM, power cut of a container) and mark the run killed instead of waiting for the
subprocess time limit.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from crawler.items import GONE_STATES
from pipeline.corpus.models import Appearance, CrawlRun, ListPage, Source, SourceRun

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

UNFINISHED_SOURCE_RUN = "the crawl process ended before this source finished (killed or crashed)"
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
    with any, the run is "failed" unless some source run is ok ("partial"), and they are listed. The summary is also stored on the row. WeChat sources that met the
    verification page in this run get their pause explained, or are blocked at their retry limit.
    """
    run = session.get(CrawlRun, run_id)
    if run is None:
        raise LookupError(f"no crawl run with id {run_id}")
    _close_unfinished_source_runs(session, run_id, now)
    session.flush()
    _verification_health(session, run_id, now, tz)
    source_runs = list(session.scalars(select(SourceRun).where(SourceRun.crawl_run_id == run_id)))
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
