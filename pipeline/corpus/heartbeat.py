"""The scheduler's heartbeat: written by a running scheduler, read by `status` and the health page.

A scheduler rewrites one row (`scheduler_heartbeats`, id 1) every `interval_seconds`; a clean
shutdown sets its `stopped_at`. A reader judges it alive when it has not stopped and its last beat
is younger than `STALE_BEATS` intervals, so a SIGKILLed or hung scheduler, or one whose machine is
gone, reads as not running soon after. Functions take the caller's session and "now".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from pipeline.corpus.models import SchedulerHeartbeat

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

ROW_ID = 1
# A beat older than this many intervals means the scheduler is gone (a missed beat or two under
# load is not enough to call it dead).
STALE_BEATS = 3


def beat(session: Session, now: datetime, *, host: str, pid: int, interval_seconds: int, start: bool = False) -> None:
    """Record that the scheduler `host`:`pid` is alive at `now`; `start` begins a new life."""
    row = session.get(SchedulerHeartbeat, ROW_ID)
    if row is None:
        row = SchedulerHeartbeat(id=ROW_ID, host=host, pid=pid, interval_seconds=interval_seconds, started_at=now)
        session.add(row)
    if start:
        row.host, row.pid, row.started_at, row.stopped_at = host, pid, now, None
    row.interval_seconds = interval_seconds
    row.beat_at = now


def stopped(session: Session, now: datetime, *, pid: int) -> None:
    """A clean shutdown of the scheduler `pid` (a later scheduler's row is left alone)."""
    row = session.get(SchedulerHeartbeat, ROW_ID)
    if row is not None and row.pid == pid and row.stopped_at is None:
        row.stopped_at = now
        row.beat_at = now


@dataclass(frozen=True)
class SchedulerState:
    """What the heartbeat says at `now`. `last_beat` is None when no scheduler ever ran; `gone_since`
    is when it stopped (its clean stop, or the last beat of a scheduler that died)."""

    alive: bool
    last_beat: datetime | None
    gone_since: datetime | None
    host: str | None = None
    pid: int | None = None


def scheduler_state(session: Session, now: datetime) -> SchedulerState:
    row = session.get(SchedulerHeartbeat, ROW_ID)
    if row is None:
        return SchedulerState(alive=False, last_beat=None, gone_since=None)
    if row.stopped_at is not None:
        return SchedulerState(False, row.beat_at, row.stopped_at, row.host, row.pid)
    if now - row.beat_at > timedelta(seconds=STALE_BEATS * max(1, row.interval_seconds)):
        return SchedulerState(False, row.beat_at, row.beat_at, row.host, row.pid)
    return SchedulerState(True, row.beat_at, None, row.host, row.pid)


def next_runs(session: Session) -> dict[str, datetime | None]:
    """Next run of each job in the scheduler's job store (empty before any scheduler ran)."""
    if not inspect(session.connection()).has_table("apscheduler_jobs"):
        return {}
    rows = session.execute(text("SELECT id, next_run_time FROM apscheduler_jobs")).all()
    return {str(r[0]): datetime.fromtimestamp(float(r[1]), UTC) if r[1] is not None else None for r in rows}
