"""The office's review of each weekly issue before it is sent: the pure rules (issue 19).

An issue is one (column, ISO week). From the week's end it is a draft the operator previews,
edits (intro, pinned and left-out stories) and approves; with `digest.review = "required"` only
an approved issue is sent. The approval records who, when and the `content_mark` of what they
saw: when the content changes afterwards (a correction, an edited story, a new intro) the mark
no longer matches, the issue counts as a draft again ("changed") and nothing is sent until
someone approves it anew; the earlier approval stays visible.

Timing (`decide`): the scheduled send time (`feeds.digest.send_time`) sends an approved issue;
an issue not approved by then gets one reminder mail to the operator, and is still sent as soon
as it is approved (the scheduler's next tick) until `digest.approve_by`; at that deadline an
unapproved issue is skipped for good. The reminder goes at the send time, not the deadline,
because only then can the office still act on it.

Pure: no database, no SMTP (`feeds.review_store` and `feeds.review_flow` do that).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from feeds.digest import iso_week_bounds, send_time

if TYPE_CHECKING:
    from feeds.digest import DigestArticle, DigestData, UnitSummary
    from feeds.review_store import Issue
    from zhuanlan_config import Config

APPROVE_HOURS = 4  # default `digest.approve_by`: hours after the send time (Monday 08:00 → 12:00)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

DRAFT = "draft"  # not approved (or nothing done yet)
CHANGED = "changed"  # approved, but the content changed since: a draft again
APPROVED = "approved"
SENT = "sent"
SKIPPED = "skipped"  # the deadline passed unapproved: never sent
STATE_NAMES = {
    DRAFT: "草稿（待审核）",
    CHANGED: "审核后内容有变动，待重新审核",
    APPROVED: "已审核，待发送",
    SENT: "已发送",
    SKIPPED: "逾期未审核，本期未发送",
}


def default_column(config: Config) -> str:
    """The column an issue belongs to when a command names none: the first configured one."""
    return config.columns[0].name if config.columns else "专栏"


@dataclass(frozen=True)
class Review:
    """What the office decided for one issue (a `digest_reviews` row as plain data)."""

    column: str
    week: str
    intro: str | None = None
    pinned: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    approved_by: str | None = None
    approved_at: datetime | None = None
    approved_mark: str | None = None
    reminder_sent_at: datetime | None = None
    skipped_at: datetime | None = None


def _without(unit: UnitSummary, excluded: set[str]) -> UnitSummary:
    kept = tuple(a for a in unit.articles if a.guid not in excluded)
    gone = len(unit.articles) - len(kept)
    if not gone:
        return unit
    return replace(unit, articles=kept, week_count=unit.week_count - gone, total_count=unit.total_count - gone)


def apply_review(data: DigestData, review: Review | None) -> DigestData:
    """`data` as the office edited it: left-out stories gone from the lists and from this issue's
    counts, the pinned ones (in the order pinned) as `pinned`, the intro set."""
    if review is None:
        return data
    excluded = set(review.excluded)
    units = tuple(_without(u, excluded) for u in data.units)
    gone = sum(len(a.articles) - len(b.articles) for a, b in zip(data.units, units, strict=True))
    by_guid = {a.guid: a for u in units for a in u.articles}
    pinned = tuple(by_guid[g] for g in review.pinned if g in by_guid)
    return replace(
        data,
        units=units,
        total_week=data.total_week - gone,
        total_so_far=data.total_so_far - gone,
        unattributed=tuple(a for a in data.unattributed if a.guid not in excluded),
        intro=(review.intro or "").strip() or None,
        pinned=pinned,
    )


def content_mark(data: DigestData) -> str:
    """A fingerprint of everything an issue shows (not when it was built): equal marks, same mail."""
    return hashlib.sha256(repr(replace(data, generated_at=_EPOCH)).encode("utf-8")).hexdigest()


def unattributed(data: DigestData) -> list[DigestArticle]:
    """The issue's stories whose unit nobody could read (they count for no unit)."""
    return [*data.unattributed, *(a for u in data.units if u.unit_id is None for a in u.articles)]


def unresolved(data: DigestData) -> list[DigestArticle]:
    """Unattributed stories the office has not decided yet (a story it decided belongs to no unit
    is `no_unit`). Approval is refused while any remain."""
    return [a for a in unattributed(data) if not a.no_unit]


def approval_deadline(week: str, config: Config) -> datetime:
    """`digest.approve_by` ("mon 12:00") after `week`'s end, in the config's time zone; by default
    `APPROVE_HOURS` after the send time."""
    if config.digest.approve_by is None:
        return send_time(week, config) + timedelta(hours=APPROVE_HOURS)
    _, end = iso_week_bounds(week, config.tz)
    weekday, hhmm = config.digest.approve_by.split()
    hour, minute = (int(x) for x in hhmm.split(":"))
    day = end.date() + timedelta(days=_WEEKDAYS.index(weekday))
    return datetime.combine(day, time(hour, minute), tzinfo=config.tz)


def state(review: Review | None, mark: str, *, sent: bool) -> str:
    """Where the issue stands: sent, skipped, approved (and unchanged since), changed, or draft."""
    if sent:
        return SENT
    if review is None:
        return DRAFT
    if review.skipped_at is not None:
        return SKIPPED
    if review.approved_at is None:
        return DRAFT
    return APPROVED if review.approved_mark == mark else CHANGED


SEND = "send"
REMIND = "remind"
SKIP = "skip"
WAIT = "wait"


def decide(review: Review | None, issue_state: str, *, now: datetime, send_at: datetime, deadline: datetime) -> str:
    """What the scheduler does with an issue at `now` (review required): send it, remind the
    operator once, skip it for good, or wait. An approval given after the deadline is not sent
    by the scheduler (`zhuanlan digest send` by hand still sends an approved issue)."""
    if issue_state in (SENT, SKIPPED) or now < send_at:
        return WAIT
    if issue_state == APPROVED and review is not None and review.approved_at is not None:
        return SEND if review.approved_at < deadline else SKIP
    if now >= deadline:
        return SKIP
    return WAIT if review is not None and review.reminder_sent_at is not None else REMIND


def reminder_text(issue: Issue, base_url: str, now: datetime) -> tuple[str, str]:
    """The reminder to the operator (subject, plain text) for an issue not approved at its send time: what is waiting, what blocks it, and the deadline."""
    tz = issue.deadline.tzinfo
    link = f"{base_url}/digest/review?week={issue.week}"
    lines = [
        f"本期周报（{issue.column}，{issue.week}）尚未审核通过，按设定未发送（{now.astimezone(tz):%m月%d日 %H:%M}）。",
        f"状态：{STATE_NAMES[issue.state]}。",
        f"请于 {issue.deadline:%m月%d日 %H:%M} 前在 {link} 预览并审核；审核通过后系统随即发送。",
        "逾期未审核，本期将不再发送。",
    ]
    if issue.unresolved:
        lines += ["", f"以下 {len(issue.unresolved)} 篇文章未识别所属单位，审核前须先指定（{base_url}/review）："]
        lines += [f"・{a.title}　{a.link}" for a in issue.unresolved]
    subject = f"【待审核】专栏周报（{issue.column}，{issue.week}）未发送，请于{issue.deadline:%m月%d日 %H:%M}前审核"
    return subject, "\n".join(lines) + "\n"
