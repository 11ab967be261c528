"""Digest sending against a real SMTP server (aiosmtpd on 127.0.0.1): exactly once, retries, refusals."""

from __future__ import annotations

import email
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from feeds.digest import iso_week_bounds
from feeds.mail import RESUMED_NOTE, MailTransportError, _get_or_create_delivery, send_digest
from pipeline.corpus.models import Delivery, Digest, Recipient
from tests.support import free_port
from tests.test_feeds_factory import BASE_URL, COLUMN, SHANGHAI, Factory, make_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

WEEK = "2026-W48"
MON = datetime(2026, 11, 23, 0, 0, tzinfo=SHANGHAI)
SEND_TIME = datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI)
DOMAIN = "jgdj.example.org"


class Handler:
    """Accepts mail; can refuse some recipients (5xx) and defer the first N DATA commands (451)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.reject: set[str] = set()
        self.defer_first = 0
        self.data_calls = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.data_calls <= self.defer_first:
            return "451 4.3.0 try again later"
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [parse(raw) for rcpts, raw in self.messages if address in rcpts]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@contextmanager
def mail_server() -> Iterator[tuple[Handler, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, and what it received."""
    handler = Handler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def config_for(tmp_path: Path, port: int, **extra: Any) -> Config:
    smtp = {"host": "127.0.0.1", "port": port, "from_addr": f"zhuanlan@{DOMAIN}", "from_name": "市直机关工委专栏"}
    smtp.update({"max_per_minute": 60000, "max_attempts": 3, "timeout_seconds": 5.0})
    smtp.update(extra.pop("smtp", {}))
    return make_config(tmp_path, smtp=smtp, digest={"column_start": "2026-11-01", **extra.pop("digest", {})})


@pytest.fixture
def people(sessions: sessionmaker[Session], now: datetime) -> dict[str, str]:
    with sessions() as session:
        f = Factory(session, now)
        kj = f.unit("市科学技术局", 1)
        nn = f.unit("市农业农村局", 2)
        mz = f.unit("市民政局", 3)
        src = f.source("jiguan-dangjian")
        f.article("科技赋能 创新驱动", kj, src, MON + timedelta(hours=9), author="赵明远")
        f.article("让科技成果走出实验室", kj, src, MON + timedelta(days=2), author="钱晓光")
        f.article("扎实推进乡村全面振兴", nn, src, MON + timedelta(days=3), author="李春华")
        f.source_run(f.source("mzj-site", mz, kind="site_column"), MON + timedelta(days=1), "error", "HTTP 503")
        f.recipient(kj, "赵明远", "kj@example.org")
        f.recipient(nn, "李春华", "nn@example.org")
        f.recipient(mz, "何丽娟", "mz@example.org", opted_out_at=now)
        f.recipient(mz, "冯志强", "old@example.org", active=False)
        session.commit()
    return {"kj": "kj@example.org", "nn": "nn@example.org", "mz": "mz@example.org", "old": "old@example.org"}


def deliveries(sessions: sessionmaker[Session]) -> dict[str, Delivery]:
    with sessions() as session:
        rows = session.execute(select(Recipient.email, Delivery).join(Delivery, Delivery.recipient_id == Recipient.id))
        return {mail: d for mail, d in rows}


def test_digest_is_sent_once_per_recipient(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str]
) -> None:
    handler, port = smtp
    config = config_for(tmp_path, port, digest={"operator_email": "ops@example.org"})
    sleeps: list[float] = []

    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=sleeps.append)
    assert (result.sent, result.failed, result.skipped, result.already) == (3, 0, 1, 0)
    assert len(handler.messages) == 3
    assert handler.to(people["mz"]) == [] and handler.to(people["old"]) == []

    (msg,) = handler.to(people["kj"])
    raw = next(raw for rcpts, raw in handler.messages if people["kj"] in rcpts)
    assert raw.isascii()  # 7-bit clean: Chinese is encoded, not sent as raw 8-bit
    assert msg["Subject"] == f"【{COLUMN}】刊发情况周报第5期（11月23日—11月29日）：本周刊发3篇，2个单位"
    assert msg["To"].addresses[0].display_name == "赵明远"
    assert msg["From"].addresses[0].display_name == "市直机关工委专栏"
    assert msg["List-Unsubscribe"].strip().startswith(f"<{BASE_URL}/unsubscribe/")  # may be folded
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"] is not None
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert "科技赋能 创新驱动" in text and "科技赋能 创新驱动" in html
    listing = html[html.index("本周刊发文章（按单位）") :]
    assert listing.index("市科学技术局（本周 2 篇") < listing.index("让科技成果走出实验室")
    assert listing.index("让科技成果走出实验室") < listing.index("市农业农村局（本周 1 篇")
    assert listing.index("市农业农村局（本周 1 篇") < listing.index("扎实推进乡村全面振兴")
    # Everyone sees that 市民政局's site failed (not that it was silent); only the operator the details.
    assert "采集异常（1个）：市民政局" in html and "本周未刊发单位（0个）" in html and "mzj-site" not in html

    (ops,) = handler.to("ops@example.org")
    ops_html = ops.get_body(preferencelist=("html",))
    assert ops_html is not None and "mzj-site" in ops_html.get_content()
    assert ops["List-Unsubscribe"] is None

    rows = deliveries(sessions)
    assert rows[people["kj"]].status == "sent" and rows[people["kj"]].attempts == 1
    assert rows[people["kj"]].message_id == msg["Message-ID"]
    assert rows[people["kj"]].sent_at is not None
    assert rows[people["mz"]].status == "skipped"
    assert people["old"] not in rows
    with sessions() as session:
        digest = session.scalars(select(Digest)).one()
        assert digest.week == WEEK and digest.article_count == 3
        assert (digest.period_start, digest.period_end) == iso_week_bounds(WEEK, SHANGHAI)
        assert digest.summary["operator_delivery"]["status"] == "sent"

    again = send_digest(sessions, config, WEEK, SEND_TIME + timedelta(hours=1), sleep=sleeps.append)
    assert (again.sent, again.failed, again.skipped, again.already) == (0, 0, 1, 3)
    assert len(handler.messages) == 3
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 3


def test_deferred_mail_is_retried_and_delivered_exactly_once(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str]
) -> None:
    handler, port = smtp
    handler.defer_first = 2
    config = config_for(tmp_path, port)
    sleeps: list[float] = []
    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=sleeps.append)
    assert (result.sent, result.failed) == (2, 0)
    assert len(handler.to(people["kj"])) == 1 and len(handler.to(people["nn"])) == 1
    assert [s for s in sleeps if s >= 1] == [2.0, 4.0]  # exponential back-off
    rows = deliveries(sessions)
    assert rows[people["kj"]].attempts == 3 and rows[people["kj"]].status == "sent"
    assert rows[people["kj"]].last_error is None
    assert rows[people["nn"]].attempts == 1


def test_permanent_refusal_is_failed_and_not_retried(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str]
) -> None:
    handler, port = smtp
    handler.reject.add(people["kj"])
    config = config_for(tmp_path, port)
    sleeps: list[float] = []
    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=sleeps.append)
    assert (result.sent, result.failed) == (1, 1)
    rows = deliveries(sessions)
    assert rows[people["kj"]].status == "failed" and rows[people["kj"]].attempts == 1
    assert (rows[people["kj"]].last_error or "").startswith("550")
    assert [s for s in sleeps if s >= 1] == []
    assert len(handler.to(people["nn"])) == 1

    again = send_digest(sessions, config, WEEK, SEND_TIME, sleep=sleeps.append)
    assert (again.sent, again.failed, again.already) == (0, 1, 1)
    assert deliveries(sessions)[people["kj"]].attempts == 1


def test_interrupted_send_is_resent_with_the_same_message_id(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str], now: datetime
) -> None:
    handler, port = smtp
    config = config_for(tmp_path, port)
    start, end = iso_week_bounds(WEEK, SHANGHAI)
    with sessions() as session:
        digest = Digest(
            column=COLUMN, week=WEEK, period_start=start, period_end=end, created_at=now, article_count=3, summary={}
        )
        session.add(digest)
        session.flush()
        kj = session.scalars(select(Recipient).where(Recipient.email == people["kj"])).one()
        session.add(
            Delivery(
                digest_id=digest.id,
                recipient_id=kj.id,
                status="sending",
                attempts=1,
                message_id=f"<resume-1@{DOMAIN}>",
                updated_at=now,
            )
        )
        session.commit()
    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=lambda s: None)
    assert result.sent == 2
    (msg,) = handler.to(people["kj"])
    assert msg["Message-ID"] == f"<resume-1@{DOMAIN}>"
    row = deliveries(sessions)[people["kj"]]
    assert (row.status, row.attempts, row.message_id) == ("sent", 2, f"<resume-1@{DOMAIN}>")
    assert row.last_error == RESUMED_NOTE


def test_opt_out_after_the_row_was_made_is_honoured(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str], now: datetime
) -> None:
    handler, port = smtp
    config = config_for(tmp_path, port)
    send_digest(sessions, config, WEEK, SEND_TIME, dry_run=True)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Digest)) == 0  # dry run writes nothing
        start, end = iso_week_bounds(WEEK, SHANGHAI)
        digest = Digest(
            column=COLUMN, week=WEEK, period_start=start, period_end=end, created_at=now, article_count=3, summary={}
        )
        session.add(digest)
        session.flush()
        nn = session.scalars(select(Recipient).where(Recipient.email == people["nn"])).one()
        session.add(Delivery(digest_id=digest.id, recipient_id=nn.id, status="pending", attempts=0, updated_at=now))
        nn.opted_out_at = now
        session.commit()
    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=lambda s: None)
    assert (result.sent, result.skipped) == (1, 2)
    assert handler.to(people["nn"]) == []
    assert deliveries(sessions)[people["nn"]].status == "skipped"


def test_unreachable_server_stops_the_run_and_keeps_deliveries_pending(
    sessions: sessionmaker[Session], tmp_path: Path, people: dict[str, str]
) -> None:
    config = config_for(tmp_path, free_port(), smtp={"max_attempts": 2})
    sleeps: list[float] = []
    with pytest.raises(MailTransportError):
        send_digest(sessions, config, WEEK, SEND_TIME, sleep=sleeps.append)
    assert sleeps == [2.0]
    rows = deliveries(sessions)
    assert rows[people["kj"]].status == "pending" and rows[people["kj"]].attempts == 2
    assert "cannot connect" in (rows[people["kj"]].last_error or "")
    assert rows[people["nn"]].status == "pending" and rows[people["nn"]].attempts == 0


def test_rate_limit_spaces_the_sends(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str]
) -> None:
    _, port = smtp
    config = config_for(tmp_path, port, smtp={"max_per_minute": 2}, digest={"operator_email": "ops@example.org"})
    sleeps: list[float] = []
    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=sleeps.append)
    assert result.sent == 3
    assert len(sleeps) == 2 and all(25 < s <= 30 for s in sleeps)


def test_dry_run_counts_without_sending(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str]
) -> None:
    handler, port = smtp
    config = config_for(tmp_path, port, digest={"operator_email": "ops@example.org"})
    result = send_digest(sessions, config, WEEK, SEND_TIME, dry_run=True)
    assert (result.sent, result.skipped, result.already) == (3, 1, 0)
    assert handler.messages == []
    with pytest.raises(ValueError):
        send_digest(sessions, config, "2026-48", SEND_TIME)


def test_delivery_get_or_create_survives_a_duplicate_insert(
    sessions: sessionmaker[Session], people: dict[str, str], now: datetime
) -> None:
    start, end = iso_week_bounds(WEEK, SHANGHAI)
    with sessions() as session:
        digest = Digest(
            column=COLUMN, week=WEEK, period_start=start, period_end=end, created_at=now, article_count=0, summary={}
        )
        session.add(digest)
        recipient = session.scalars(select(Recipient).where(Recipient.email == people["kj"])).one()
        session.commit()
        digest_id, recipient_id = digest.id, recipient.id
    first = _get_or_create_delivery(sessions, digest_id, recipient_id, "pending", now)
    second = _get_or_create_delivery(sessions, digest_id, recipient_id, "pending", now)  # hits the unique constraint
    assert first == second
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 1
