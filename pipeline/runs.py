"""Crawl run recording and the known-state queries a new crawl starts from.

Owns the lifecycle of `crawl_runs` rows (start, finish with a summary, mark runs of killed
processes) and the read-only questions the scheduler asks before spawning a crawl (which
appearances and list-page validators a source already has; which WeChat articles to recheck).
The per-source rows (`source_runs`) are written by the store pipeline. Callers own the
transaction; "now" is always passed in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from crawler.items import GONE_STATES
from pipeline.models import Appearance, CrawlRun, ListPage, Source, SourceRun

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

UNFINISHED_SOURCE_RUN = "the crawl process ended before this source finished (killed or crashed)"
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


def start_crawl_run(session: Session, trigger: str, now: datetime) -> int:
    run = CrawlRun(started_at=now, status="running", trigger=trigger, summary={})
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


def finish_crawl_run(session: Session, run_id: int, now: datetime, tz: ZoneInfo = SHANGHAI) -> dict[str, Any]:
    """Close a crawl run and return its summary.

    Status: "ok" when every source run is ok (also when no source ran), "failed" when none is,
    "partial" otherwise. The summary is also stored on the row. WeChat sources that met the
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
    if failed == 0:
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
    live crawl passes `started_before` (e.g. now minus the crawl subprocess timeout).
    """
    query = select(CrawlRun).where(CrawlRun.status == "running")
    if started_before is not None:
        query = query.where(CrawlRun.started_at < started_before)
    runs = list(session.scalars(query))
    for run in runs:
        _close_unfinished_source_runs(session, run.id, now)
        run.status = "killed"
        run.finished_at = now
        run.summary = {**(run.summary or {}), "status": "killed"}
    return len(runs)


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
