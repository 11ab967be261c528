"""Issue 19, point 1: each weekly issue is reviewed and approved before it is sent.

Real SQLite (or PostgreSQL with ZHUANLAN_TEST_DATABASE_URL) and a real SMTP server (aiosmtpd):
with `digest.review = "required"` nothing goes out unapproved, the operator gets one reminder,
the deadline skips the issue for good, unattributed stories block the approval, a change after
the approval stops the send until it is approved again, and review "off" sends as before.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

import scheduler
from archive.web import create_app
from feeds.digest import DigestRecipient, render_digest
from feeds.mail import MailTransportError, digest_done, send_digest, send_owed_digests
from feeds.report import detail_rows, load_report
from feeds.review import APPROVED, CHANGED, DRAFT, SENT, SKIPPED, default_column
from feeds.review_store import NotApproved, ReviewError, approve, load_issue, set_intro, set_story
from pipeline.corpus.corrections import Change, correct_story
from pipeline.corpus.db import transaction
from pipeline.corpus.models import Article, DigestReview, Recipient
from pipeline.corpus.search_index import index_article
from tests.test_digest_flaky import KJ, NN, seed
from tests.test_digest_send import MON, SEND_TIME, WEEK, Handler, config_for, mail_server
from tests.test_feeds_factory import COLUMN, SHANGHAI, Factory
from zhuanlan_config import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

OPS = "ops@example.org"
DEADLINE = datetime(2026, 11, 30, 12, 0, tzinfo=SHANGHAI)  # "mon 12:00", the default approve_by
WEEK_DONE = datetime(2026, 11, 30, 7, 0, tzinfo=SHANGHAI)  # the week is over, the send time not yet come


@pytest.fixture
def people(sessions: sessionmaker[Session], now: datetime) -> None:
    """Three units, three stories in 2026-W48, recipients at 科技局 and 农业农村局 (tests.test_digest_flaky)."""
    seed(sessions, now)


@pytest.fixture
def smtp() -> Iterator[tuple[Handler, int]]:
    with mail_server() as server:
        yield server


@pytest.fixture
def office(people: None, smtp: tuple[Handler, int], tmp_path: Path) -> tuple[Handler, Config]:
    """The seeded units and recipients, a real SMTP server, and a config with review required."""
    handler, port = smtp
    return handler, review_config(tmp_path, port)


def review_config(tmp_path: Path, port: int, **digest: Any) -> Config:
    return config_for(tmp_path, port, digest={"operator_email": OPS, "review": "required", **digest})


def issue_at(sessions: sessionmaker[Session], config: Config, now: datetime) -> Any:
    with sessions() as session:
        return load_issue(session, config, WEEK, default_column(config), now, sent=digest_done(sessions, config, WEEK))


def add_unattributed(sessions: sessionmaker[Session], now: datetime, title: str) -> str:
    with sessions() as session:
        f = Factory(session, now)
        src = f.source(f"gw-{title}")
        guid = f.article(title, None, src, MON + timedelta(days=4), author=None).guid
        session.commit()
    return guid


def recipients_mailed(handler: Handler) -> set[str]:
    return {r for rcpts, _ in handler.messages for r in rcpts}


def test_unapproved_issue_is_not_sent_and_the_operator_is_reminded_once(
    sessions: sessionmaker[Session], office: tuple[Handler, Config]
) -> None:
    handler, config = office
    quiet = lambda s: None  # noqa: E731

    assert send_owed_digests(sessions, config, SEND_TIME, sleep=quiet) == {WEEK: None}
    assert recipients_mailed(handler) == {OPS}  # the reminder, and no digest to anybody
    reminder = handler.to(OPS)
    assert len(reminder) == 1
    assert "待审核" in str(reminder[0]["Subject"])
    body = reminder[0].get_content()
    assert f"/digest/review?week={WEEK}" in body and "11月30日 12:00" in body

    # The hourly ticks before the deadline: still nothing sent, and no second reminder.
    for hours in (1, 2, 3):
        send_owed_digests(sessions, config, SEND_TIME + timedelta(hours=hours), sleep=quiet)
    assert len(handler.messages) == 1

    # The deadline passes unapproved: skipped for good, recorded; nothing more goes out.
    send_owed_digests(sessions, config, DEADLINE, sleep=quiet)
    send_owed_digests(sessions, config, DEADLINE + timedelta(hours=5), sleep=quiet)
    assert len(handler.messages) == 1
    with sessions() as session:
        row = session.scalars(select(DigestReview)).one()
        assert (row.column, row.week) == (default_column(config), WEEK)
        assert row.reminder_sent_at is not None and row.reminder_message_id == reminder[0]["Message-ID"]
        assert row.skipped_at is not None
    issue = issue_at(sessions, config, DEADLINE)
    assert issue.state == SKIPPED
    with pytest.raises(ReviewError, match="已过审核期限"):
        approve(sessions, issue, by="王干事", now=DEADLINE + timedelta(hours=6))


def test_approved_issue_goes_out_once_with_exactly_the_approved_content(
    sessions: sessionmaker[Session], office: tuple[Handler, Config]
) -> None:
    handler, config = office
    issue = issue_at(sessions, config, WEEK_DONE)
    assert issue.state == DRAFT
    set_intro(sessions, issue, "本期刊发学习体会三篇。\n请各单位继续组织撰写。", by="王干事", now=WEEK_DONE)
    issue = issue_at(sessions, config, WEEK_DONE)
    pin = next(a for u in issue.data.units for a in u.articles if a.title == "扎实推进乡村全面振兴")
    set_story(sessions, issue, pin.guid, "pin", by="王干事", now=WEEK_DONE)
    issue = issue_at(sessions, config, WEEK_DONE)
    approve(sessions, issue, by="王干事", now=WEEK_DONE, seen_mark=issue.mark)
    approved = issue_at(sessions, config, WEEK_DONE)
    assert approved.state == APPROVED
    assert approved.review.approved_by == "王干事" and approved.review.approved_at == WEEK_DONE

    # What the preview showed for 科技局's recipient is what the mail carries.
    with sessions() as session:
        kj = DigestRecipient.from_model(session.scalars(select(Recipient).where(Recipient.email == KJ)).one())
    preview = render_digest(approved.data, kj, operator=False, base_url=config.web.base_url)

    results = send_owed_digests(sessions, config, SEND_TIME, sleep=lambda s: None)
    assert results[WEEK] is not None and results[WEEK].sent == 3  # kj, nn, operator
    mail = handler.to(KJ)
    assert len(mail) == 1
    html = mail[0].get_body(("html",)).get_content()
    assert html.rstrip("\n") == preview.html  # the MIME part ends in a line break
    assert "请各单位继续组织撰写。" in html and "本期推荐" in html
    assert html.index("本期推荐") < html.index("扎实推进乡村全面振兴") < html.index("本单位情况")
    assert not handler.to(OPS)[0]["Subject"].startswith("【待审核】")  # the operator copy, no reminder

    send_owed_digests(sessions, config, SEND_TIME + timedelta(hours=1), sleep=lambda s: None)
    assert len(handler.messages) == 3
    assert issue_at(sessions, config, SEND_TIME + timedelta(hours=1)).state == SENT


def test_approval_after_the_send_time_is_sent_at_the_next_tick(
    sessions: sessionmaker[Session], office: tuple[Handler, Config]
) -> None:
    handler, config = office
    send_owed_digests(sessions, config, SEND_TIME, sleep=lambda s: None)
    assert recipients_mailed(handler) == {OPS}
    at = SEND_TIME + timedelta(hours=2, minutes=10)
    approve(sessions, issue_at(sessions, config, at), by="李科长", now=at)
    send_owed_digests(sessions, config, SEND_TIME + timedelta(hours=3), sleep=lambda s: None)
    assert recipients_mailed(handler) == {OPS, KJ, NN}
    assert len(handler.to(OPS)) == 2  # the reminder and the operator copy


def test_unattributed_stories_block_the_approval_until_the_office_decides(
    sessions: sessionmaker[Session], office: tuple[Handler, Config]
) -> None:
    handler, config = office
    guid = add_unattributed(sessions, WEEK_DONE, "工委转发：学习全会精神图文")
    issue = issue_at(sessions, config, WEEK_DONE)
    with pytest.raises(ReviewError, match="未识别所属单位") as refused:
        approve(sessions, issue, by="王干事", now=WEEK_DONE)
    assert "工委转发：学习全会精神图文" in str(refused.value) and guid in str(refused.value)
    assert issue_at(sessions, config, WEEK_DONE).state == DRAFT

    # Reminded at the send time, the reminder names the story that blocks the approval.
    send_owed_digests(sessions, config, SEND_TIME, sleep=lambda s: None)
    assert "工委转发：学习全会精神图文" in handler.to(OPS)[0].get_content()

    with transaction(sessions) as session:
        correct_story(session, guid, Change(unattributed=True), actor="王干事", now=SEND_TIME, note="工委自身转发")
    approve(sessions, issue_at(sessions, config, SEND_TIME), by="王干事", now=SEND_TIME)
    send_owed_digests(sessions, config, SEND_TIME + timedelta(hours=1), sleep=lambda s: None)
    assert {KJ, NN} <= recipients_mailed(handler)


def test_a_change_after_the_approval_puts_the_issue_back_to_draft(
    sessions: sessionmaker[Session], office: tuple[Handler, Config]
) -> None:
    handler, config = office
    approve(sessions, issue_at(sessions, config, WEEK_DONE), by="王干事", now=WEEK_DONE)
    with sessions() as session:
        guid = session.scalars(select(Article.guid).where(Article.title == "扎实推进乡村全面振兴")).one()
    with transaction(sessions) as session:  # the office moves a story to another unit after approving
        correct_story(session, guid, Change(unit="市民政局"), actor="李科长", now=WEEK_DONE + timedelta(minutes=5))
    changed = issue_at(sessions, config, WEEK_DONE)
    assert changed.state == CHANGED and changed.review.approved_by == "王干事"  # still visible who approved
    with pytest.raises(NotApproved, match="审核后内容有变动"):
        send_digest(sessions, config, WEEK, SEND_TIME)
    send_owed_digests(sessions, config, SEND_TIME, sleep=lambda s: None)
    assert recipients_mailed(handler) == {OPS}  # only the reminder
    with pytest.raises(ReviewError, match="重新查看预览"):
        approve(
            sessions, changed, by="李科长", now=SEND_TIME, seen_mark=issue_at(sessions, config, WEEK_DONE).mark + "x"
        )
    approve(sessions, changed, by="李科长", now=SEND_TIME + timedelta(minutes=1), seen_mark=changed.mark)
    send_owed_digests(sessions, config, SEND_TIME + timedelta(hours=1), sleep=lambda s: None)
    html = handler.to(KJ)[0].get_body(("html",)).get_content()
    assert "市民政局" in html


def test_review_off_sends_as_before(
    sessions: sessionmaker[Session], people: None, smtp: tuple[Handler, int], tmp_path: Path
) -> None:
    handler, port = smtp
    config = config_for(tmp_path, port, digest={"operator_email": OPS})
    assert config.digest.review == "off"
    results = send_owed_digests(sessions, config, SEND_TIME, sleep=lambda s: None)
    assert results[WEEK] is not None and results[WEEK].sent == 3
    assert not any(str(m["Subject"]).startswith("【待审核】") for m in handler.to(OPS))
    with sessions() as session:
        assert session.scalars(select(DigestReview)).all() == []


def test_approval_waits_for_the_end_of_the_week(
    sessions: sessionmaker[Session], people: None, tmp_path: Path, now: datetime
) -> None:
    config = review_config(tmp_path, 25)
    with pytest.raises(ReviewError, match="尚未结束"):
        approve(sessions, issue_at(sessions, config, now), by="王干事", now=now)


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ({"review": "sometimes", "operator_email": OPS}, "digest.review: expected one of required, off"),
        ({"review": "required"}, "needs digest.operator_email"),
        ({"review": "required", "operator_email": OPS, "approve_by": "mon 07:30"}, "before the digest's send time"),
        ({"review": "required", "operator_email": OPS, "approve_by": "星期一"}, "weekday and a time"),
        ({"review": "required", "operator_email": OPS, "approve_by": "sun 09:00"}, "could never go out"),
    ],
)
def test_review_settings_are_checked(tmp_path: Path, digest: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_for(tmp_path, 25, digest=digest)


def test_review_pages_are_the_operators_and_edits_need_the_form_token(
    sessions: sessionmaker[Session], people: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", "口令-review")
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "review-secret")
    config = review_config(tmp_path, 25)
    app = create_app(config, sessions, now=lambda: WEEK_DONE)
    client = app.test_client()
    assert client.get(f"/digest/review?week={WEEK}").headers["Location"].endswith("/login")
    assert client.get(f"/digest/review/preview?week={WEEK}&who=operator").status_code == 403
    assert client.post("/digest/review/approve", data={"week": WEEK}).status_code == 400  # no CSRF token

    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page)
    assert token
    client.post("/login", data={"password": "口令-review", "csrf_token": token.group(1)})
    preview = client.get(f"/digest/review/preview?week={WEEK}&who=without")
    assert preview.status_code == 200
    assert "sandbox" in preview.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in preview.headers["Content-Security-Policy"]
    assert "市民政局" in preview.get_data(as_text=True)  # 民政局 has no story this week
    assert client.get("/digest/review?week=2026-48").status_code == 400
    assert client.get(f"/digest/review?week={WEEK}&column=别的专栏").status_code == 404
    page = client.get(f"/digest/review?week={WEEK}").get_data(as_text=True)
    form = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert form
    stale = client.post("/digest/review/approve", data={"week": WEEK, "csrf_token": form.group(1), "mark": "old"})
    assert stale.status_code == 409 and "重新查看预览" in stale.get_data(as_text=True)
    assert issue_at(sessions, config, WEEK_DONE).state == DRAFT


def test_a_story_left_out_leaves_the_lists_and_counts_of_that_issue_only(
    sessions: sessionmaker[Session], office: tuple[Handler, Config]
) -> None:
    handler, config = office
    issue = issue_at(sessions, config, WEEK_DONE)
    assert issue.data.total_week == 3
    out = next(a for u in issue.data.units for a in u.articles if a.title == "让科技成果走出实验室")
    set_story(sessions, issue, out.guid, "exclude", by="王干事", now=WEEK_DONE)
    edited = issue_at(sessions, config, WEEK_DONE)
    kj = next(u for u in edited.data.units if u.name == "市科学技术局")
    assert (edited.data.total_week, kj.week_count, [a.title for a in kj.articles]) == (2, 1, ["科技赋能 创新驱动"])
    with pytest.raises(ReviewError, match="本期没有这篇文章"):
        set_story(sessions, edited, "no-such-story", "pin", by="王干事", now=WEEK_DONE)
    approve(sessions, edited, by="王干事", now=WEEK_DONE)
    send_owed_digests(sessions, config, SEND_TIME, sleep=lambda s: None)
    html = handler.to(KJ)[0].get_body(("html",)).get_content()
    assert "让科技成果走出实验室" not in html and "科技赋能 创新驱动" in html
    with sessions() as session:
        events = session.scalars(select(DigestReview)).one().events
    assert [e["what"] for e in events] == ["不列入本期：让科技成果走出实验室", "审核通过"]
    assert all(e["by"] == "王干事" for e in events)


def test_a_late_approval_is_picked_up_within_minutes_by_the_scheduler(tmp_path: Path) -> None:
    def catchup(config: Config) -> int:
        job = next(d for d in scheduler.job_defs(config) if d.id == "digest-catchup")
        return int(job.trigger.interval.total_seconds())

    assert catchup(review_config(tmp_path, 25)) == 10 * 60
    assert catchup(config_for(tmp_path, 25)) == 3600  # review off: hourly, as before


def test_a_reminder_the_mail_server_did_not_take_is_tried_again(
    sessions: sessionmaker[Session], people: None, tmp_path: Path
) -> None:
    with mail_server() as (handler, port):
        pass  # stopped: nothing listens on the port any more
    config = review_config(tmp_path, port)
    with pytest.raises(MailTransportError, match=r"reminder to ops@example\.org not sent"):
        send_owed_digests(sessions, config, SEND_TIME, sleep=lambda s: None)
    assert issue_at(sessions, config, SEND_TIME).review is None  # nothing recorded
    with mail_server() as (handler, port):
        config = review_config(tmp_path, port)
        send_owed_digests(sessions, config, SEND_TIME + timedelta(minutes=10), sleep=lambda s: None)
        assert recipients_mailed(handler) == {OPS}
    assert issue_at(sessions, config, SEND_TIME).review.reminder_sent_at is not None


def test_a_story_decided_to_be_nobodys_reads_as_decided_in_the_mail_the_pages_and_the_report(
    sessions: sessionmaker[Session], office: tuple[Handler, Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the office decides that a story belongs to no unit (the 工委's own share), nothing asks it
    to decide again: not the operator's copy, the review queue, the health count, the story page,
    the lists, nor the report; a story nobody decided on yet still asks."""
    _, config = office
    waiting = add_unattributed(sessions, WEEK_DONE, "单位待查：学习体会一则")
    settled = add_unattributed(sessions, WEEK_DONE, "工委转发：学习全会精神图文")
    with transaction(sessions) as session:
        correct_story(session, settled, Change(unattributed=True), actor="王干事", now=WEEK_DONE, note="工委自身转发")
        for guid in (waiting, settled):
            article = session.scalars(select(Article).where(Article.guid == guid)).one()
            index_article(session, article.id, article.title, article.body_text)

    def operator_section() -> tuple[str, str]:
        data = issue_at(sessions, config, WEEK_DONE).data
        ops = render_digest(data, DigestRecipient("运维值班", OPS), operator=True, base_url=config.web.base_url)
        assert "含未计入单位的文章" in ops.text and "未计入任何单位（仅运维）" in ops.html
        text = ops.text.split("【未计入任何单位（仅运维）】", 1)[1].split("【采集异常", 1)[0]
        html = ops.html.split("未计入任何单位（仅运维）", 1)[1].split("采集异常详情", 1)[0]
        return text, html

    text, html = operator_section()
    for part in (text, html):
        assert "本周 1 篇、累计 1 篇专栏文章读不出所属单位，未计入任何单位，待确认" in part
        assert "/review 指定单位" in part
        assert "本周 1 篇、累计 1 篇专栏文章经更正确认不属于任何单位" in part
        to_decide, decided = part.split("已确认不属于任何单位：", 1)
        assert "单位待查：学习体会一则" in to_decide.split("待确认：", 1)[1] and "工委转发" not in to_decide
        assert "工委转发：学习全会精神图文" in decided and "单位待查" not in decided

    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", "口令-review")
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "review-secret")
    client = create_app(config, sessions, now=lambda: WEEK_DONE).test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True))
    assert token
    client.post("/login", data={"password": "口令-review", "csrf_token": token.group(1)})
    review = client.get("/review").get_data(as_text=True)
    queue, rest = review.split('id="no-unit"', 1)
    decided_list = rest.split('id="candidates"', 1)[0]
    assert "单位未识别（1）" in queue and "单位待查：学习体会一则" in queue and "工委转发" not in queue
    assert "已确认不属于任何单位（1）" in decided_list and "工委转发：学习全会精神图文" in decided_list
    assert '<option value="市科学技术局">' in decided_list and '<option value="__none__">' not in decided_list
    assert '<option value="市科学技术局">' in queue and '<option value="__none__">' in queue
    assert 'id="unattributed-count">1<' in client.get("/health").get_data(as_text=True)
    with sessions() as session:
        status = "\n".join(scheduler.attribution_lines(session, SHANGHAI))
    assert "单位未识别的文章：1 篇" in status and waiting in status and settled not in status
    assert "已确认不属于任何单位的文章：1 篇" in status

    page = client.get(f"/story/{settled}").get_data(as_text=True)
    assert '<span class="badge" id="unit-state">不属于任何单位</span>' in page
    assert "人工更正：不属于任何单位" in page and "待人工确认" not in page
    page = client.get(f"/story/{waiting}").get_data(as_text=True)
    assert '<span class="badge warn" id="unit-state">单位未识别</span>' in page and "待人工确认" in page
    for listing in (client.get("/").get_data(as_text=True), client.get("/search?q=学习").get_data(as_text=True)):
        meta = dict(re.findall(r'href="/story/([0-9a-f]+)".*?<span class="meta">([^<·]*)', listing, re.S))
        assert (meta[settled].strip(), meta[waiting].strip()) == ("不属于任何单位", "单位未识别")

    with sessions() as session:
        report = load_report(session, config, COLUMN, MON.date(), MON.date() + timedelta(days=6))
    cells = {row[5]: row[2] for row in detail_rows(report)}
    assert cells["工委转发：学习全会精神图文"] == "不属于任何单位" and cells["单位待查：学习体会一则"] == "未识别单位"

    # The last undecided story settled too: the operator is no longer asked to decide anything.
    with transaction(sessions) as session:
        correct_story(session, waiting, Change(unattributed=True), actor="王干事", now=WEEK_DONE)
    text, html = operator_section()
    for part in (text, html):
        assert "待确认" not in part and "指定单位" not in part and "读不出所属单位" not in part
        assert "本周 2 篇、累计 2 篇专栏文章经更正确认不属于任何单位" in part
    assert "单位未识别（0）" in client.get("/review").get_data(as_text=True)
