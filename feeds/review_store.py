"""The office's review of an issue in the database: the `digest_reviews` rows and their writes.

Owns reading an issue as the office will send it (`load_issue`: the week's digest with the
review applied, its state, the unattributed stories still undecided), the operator's edits
(intro, pin, leave out), the approval (refused while unattributed stories remain) and the gate
the sender passes (`approved_data`). The rules themselves are `feeds.review`'s. Every write
appends to the row's `events` (who, when, what), the audit trail shown on the review page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from feeds.digest import send_time
from feeds.review import (
    APPROVED,
    SENT,
    SKIPPED,
    STATE_NAMES,
    Review,
    apply_review,
    approval_deadline,
    content_mark,
    state,
    unresolved,
)
from feeds.selection import load_digest_data
from pipeline.corpus.db import transaction
from pipeline.corpus.models import DigestReview

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session, sessionmaker

    from feeds.digest import DigestArticle, DigestData
    from zhuanlan_config import Config

STORY_ACTIONS = ("pin", "unpin", "exclude", "include")


class ReviewError(ValueError):
    """An edit or approval that cannot be made; the message says why, in the office's words."""


class NotApproved(RuntimeError):
    """Review is required and this issue is not approved (or changed since): nothing is sent."""


@dataclass(frozen=True)
class Issue:
    column: str
    week: str
    data: DigestData  # as it would be sent: the review applied
    review: Review | None
    mark: str
    state: str
    unresolved: tuple[DigestArticle, ...]
    send_at: datetime
    deadline: datetime
    events: tuple[dict[str, Any], ...] = ()

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]


def _as_review(row: DigestReview) -> Review:
    return Review(
        column=row.column,
        week=row.week,
        intro=row.intro,
        pinned=tuple(row.pinned or ()),
        excluded=tuple(row.excluded or ()),
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        approved_mark=row.approved_mark,
        reminder_sent_at=row.reminder_sent_at,
        skipped_at=row.skipped_at,
    )


def _find(session: Session, column: str, week: str) -> DigestReview | None:
    return session.scalar(select(DigestReview).where(DigestReview.column == column, DigestReview.week == week))


def load_review(session: Session, column: str, week: str) -> Review | None:
    row = _find(session, column, week)
    return _as_review(row) if row is not None else None


def load_issue(session: Session, config: Config, week: str, column: str, now: datetime, *, sent: bool) -> Issue:
    """The issue (column, week) as it stands: what would be mailed, and its review state.
    `sent`: whether the digest of the week went out already (`feeds.mail.digest_done`)."""
    raw = load_digest_data(session, week, config, now, column)
    row = _find(session, column, week)
    review = _as_review(row) if row is not None else None
    data = apply_review(raw, review)
    mark = content_mark(data)
    pending = unresolved(data)
    return Issue(
        column=column,
        week=week,
        data=data,
        review=review,
        mark=mark,
        state=state(review, mark, sent=sent),
        unresolved=tuple(pending),
        send_at=send_time(week, config),
        deadline=approval_deadline(week, config),
        events=tuple(row.events or ()) if row is not None else (),
    )


def approved_data(session: Session, config: Config, data: DigestData, column: str) -> DigestData:
    """The gate before sending (review required): `data` with the review applied, if this exact
    content was approved; otherwise `NotApproved` with the reason."""
    row = _find(session, column, data.week)
    review = _as_review(row) if row is not None else None
    reviewed = apply_review(data, review)
    now_state = state(review, content_mark(reviewed), sent=False)
    if now_state != APPROVED:
        raise NotApproved(f"{column} {data.week}: {STATE_NAMES[now_state]}; 未审核通过的周报不发送")
    return reviewed


def _write(
    factory: sessionmaker[Session], column: str, week: str, now: datetime, by: str, what: str, change: Any
) -> None:
    """Get or create the (column, week) row, apply `change(row)` and log the event, in one transaction."""
    for attempt in (1, 2):
        try:
            with transaction(factory) as session:
                row = _find(session, column, week)
                if row is None:
                    row = DigestReview(column=column, week=week, pinned=[], excluded=[], events=[], updated_at=now)
                    session.add(row)
                change(row)
                row.events = [*(row.events or []), {"at": now.isoformat(), "by": by, "what": what}]
                row.updated_at = now
            return
        except IntegrityError:
            if attempt == 2:  # a concurrent first write made the row: the second try finds it
                raise


def _check_open(issue: Issue) -> None:
    if issue.state == SENT:
        raise ReviewError(f"{issue.column} {issue.week} 已发送，不能再修改或审核")
    if issue.data.period_end > issue.data.generated_at:
        raise ReviewError(f"{issue.week} 尚未结束，周末之后才能审核")


def _by(by: str) -> str:
    who = by.strip()[:100]
    if not who:
        raise ReviewError("审核、修改须写明操作人")
    return who


def set_intro(factory: sessionmaker[Session], issue: Issue, intro: str, *, by: str, now: datetime) -> None:
    """Set the issue's intro (empty: none). After an approval the issue shows as changed."""
    if issue.state == SENT:
        raise ReviewError(f"{issue.column} {issue.week} 已发送，不能再修改")
    text = intro.strip() or None

    def change(row: DigestReview) -> None:
        row.intro = text

    _write(factory, issue.column, issue.week, now, _by(by), f"导语{'改为：' + text if text else '清空'}", change)


def set_story(factory: sessionmaker[Session], issue: Issue, guid: str, action: str, *, by: str, now: datetime) -> None:
    """Pin a story of the issue on top, unpin it, leave it out of the issue, or take it back in."""
    if action not in STORY_ACTIONS:
        raise ReviewError(f"unknown action {action!r}; expected one of {', '.join(STORY_ACTIONS)}")
    if issue.state == SENT:
        raise ReviewError(f"{issue.column} {issue.week} 已发送，不能再修改")
    listed = {a.guid: a.title for u in issue.data.units for a in u.articles}
    left_out = set(issue.review.excluded if issue.review else ())
    if guid not in listed and guid not in left_out:
        raise ReviewError(f"本期没有这篇文章：{guid}")

    def change(row: DigestReview) -> None:
        pinned = [g for g in (row.pinned or []) if g != guid]
        excluded = [g for g in (row.excluded or []) if g != guid]
        if action == "pin":
            pinned.append(guid)
        elif action == "exclude":
            excluded.append(guid)
        row.pinned, row.excluded = pinned, excluded

    names = {"pin": "置顶", "unpin": "取消置顶", "exclude": "不列入本期", "include": "恢复列入本期"}
    _write(factory, issue.column, issue.week, now, _by(by), f"{names[action]}：{listed.get(guid, guid)}", change)


def approve(
    factory: sessionmaker[Session], issue: Issue, *, by: str, now: datetime, seen_mark: str | None = None
) -> None:
    """Approve exactly the content of `issue` (its mark). Refused, with the reason, when it was
    sent, the week has not ended, unattributed stories of the issue are still undecided, or
    (`seen_mark`, from the preview the operator looked at) the content changed since."""
    _check_open(issue)
    who = _by(by)
    if seen_mark is not None and seen_mark != issue.mark:
        raise ReviewError("预览之后本期内容又有变动，请重新查看预览后再审核")
    if issue.state == SKIPPED:
        raise ReviewError(
            f"{issue.column} {issue.week} 已过审核期限（{issue.deadline:%m-%d %H:%M}）未审核，本期不再发送"
        )
    if issue.unresolved:
        listing = "；".join(f"「{a.title}」（{a.guid}）" for a in issue.unresolved)
        raise ReviewError(
            f"本期有 {len(issue.unresolved)} 篇文章未识别所属单位，请先在归属待确认页（/review）或用 zhuanlan correct "
            f"指定单位（或确认不属于任何单位）后再审核：{listing}"
        )

    def change(row: DigestReview) -> None:
        row.approved_by, row.approved_at, row.approved_mark = who, now, issue.mark

    _write(factory, issue.column, issue.week, now, who, "审核通过", change)


def mark_reminded(factory: sessionmaker[Session], issue: Issue, message_id: str, now: datetime) -> None:
    def change(row: DigestReview) -> None:
        row.reminder_sent_at, row.reminder_message_id = now, message_id

    _write(factory, issue.column, issue.week, now, "系统", f"提醒邮件已发送（{message_id}）", change)


def mark_skipped(factory: sessionmaker[Session], issue: Issue, now: datetime) -> None:
    def change(row: DigestReview) -> None:
        row.skipped_at = now

    _write(factory, issue.column, issue.week, now, "系统", "审核期限已过，本期未发送", change)
