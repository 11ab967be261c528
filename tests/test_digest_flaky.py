"""Digest delivery against a misbehaving SMTP server (aiosmtpd on 127.0.0.1): connections dropped
in the middle of DATA (before and after the server took the message) mixed with 451 deferrals,
a server that is down and comes back, a deferral that never ends. Every recipient ends with
exactly one Message-ID: a duplicate copy is only ever the same message re-sent after the server
accepted it and the connection dropped before its reply arrived (receivers dedupe on the id).

Complements tests/test_digest_send.py (451 deferrals alone, 5xx, resume after a crash, server
down for one run)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from feeds.mail import MailTransportError, send_digest
from pipeline.corpus.models import Digest
from tests.test_digest_send import DOMAIN, MON, SEND_TIME, WEEK, Handler, config_for, deliveries, free_port, parse
from tests.test_feeds_factory import Factory

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

KJ, NN, MZ, OLD, OPS = "kj@example.org", "nn@example.org", "mz@example.org", "old@example.org", "ops@example.org"

# What the server does with each DATA command, in order; after the plan it accepts.
ACCEPT = "accept"
DEFER = "451"  # 451, message not taken
DROP = "drop"  # connection closed before the message was taken
DROP_AFTER_ACCEPT = "drop-after-accept"  # message taken, connection closed before the 250 reply


class FlakyHandler(Handler):
    """`Handler` that follows a plan of misbehaviour for the first DATA commands."""

    def __init__(self, plan: list[str]) -> None:
        super().__init__()
        self.plan = plan
        self.seen: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        action = self.plan[len(self.seen)] if len(self.seen) < len(self.plan) else ACCEPT
        self.seen.append(action)
        if action == DEFER:
            return "451 4.3.0 try again later"
        if action in (ACCEPT, DROP_AFTER_ACCEPT):
            self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        if action in (DROP, DROP_AFTER_ACCEPT):
            server.transport.close()  # the client waits for a reply and reads EOF instead
        return "250 OK"

    def message_ids(self) -> dict[str, list[str]]:
        """Recipient → Message-IDs of every copy received, in arrival order."""
        ids: dict[str, list[str]] = defaultdict(list)
        for rcpts, raw in self.messages:
            msg = parse(raw)
            for rcpt in rcpts:
                ids[rcpt].append(str(msg["Message-ID"]))
        return ids


def seed(sessions: sessionmaker[Session], now: datetime) -> None:
    """Three units, three articles in 2026-W48, two wanted recipients, one opted out, one inactive."""
    with sessions() as session:
        f = Factory(session, now)
        kj = f.unit("市科学技术局", 1)
        nn = f.unit("市农业农村局", 2)
        mz = f.unit("市民政局", 3)
        src = f.source("jiguan-dangjian")
        f.article("科技赋能 创新驱动", kj, src, MON + timedelta(hours=9), author="赵明远")
        f.article("让科技成果走出实验室", kj, src, MON + timedelta(days=2), author="钱晓光")
        f.article("扎实推进乡村全面振兴", nn, src, MON + timedelta(days=3), author="李春华")
        f.recipient(kj, "赵明远", KJ)
        f.recipient(nn, "李春华", NN)
        f.recipient(mz, "何丽娟", MZ, opted_out_at=now)
        f.recipient(mz, "冯志强", OLD, active=False)
        session.commit()


def start(handler: Handler, port: int) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


@pytest.fixture
def seeded(sessions: sessionmaker[Session], now: datetime) -> sessionmaker[Session]:
    seed(sessions, now)
    return sessions


@contextmanager
def flaky_server(plan: list[str]) -> Iterator[tuple[FlakyHandler, int]]:
    handler = FlakyHandler(plan)
    port = free_port()
    controller = start(handler, port)
    try:
        yield handler, port
    finally:
        controller.stop()


def operator_state(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        digest = session.scalars(select(Digest).where(Digest.week == WEEK)).one()
        return dict(digest.summary["operator_delivery"])


def assert_exactly_once(handler: FlakyHandler, sessions: sessionmaker[Session]) -> dict[str, list[str]]:
    """Each wanted recipient has copies of one Message-ID only, the one its delivery row recorded."""
    ids = handler.message_ids()
    rows = deliveries(sessions)
    assert set(ids) == {KJ, NN, OPS}  # nobody missing; nothing to the opted-out or inactive ones
    for rcpt in (KJ, NN):
        assert set(ids[rcpt]) == {rows[rcpt].message_id}, rcpt
        assert rows[rcpt].status == "sent"
    assert set(ids[OPS]) == {operator_state(sessions)["message_id"]}
    assert all(mid.endswith(f"@{DOMAIN}>") for mids in ids.values() for mid in mids)
    return ids


def test_drops_mid_data_and_deferrals_end_with_every_mail_delivered_once(
    seeded: sessionmaker[Session], tmp_path: Path
) -> None:
    plan = [
        DROP_AFTER_ACCEPT,  # kj try 1: taken, reply lost
        DEFER,  # kj try 2
        DROP,  # kj try 3: lost before it was taken
        ACCEPT,  # kj try 4
        DROP,  # nn try 1
        ACCEPT,  # nn try 2
        DEFER,  # operator try 1
        DROP_AFTER_ACCEPT,  # operator try 2: taken, reply lost
        ACCEPT,  # operator try 3
    ]
    with flaky_server(plan) as (handler, port):
        config = config_for(tmp_path, port, smtp={"max_attempts": 5}, digest={"operator_email": OPS})
        sleeps: list[float] = []
        result = send_digest(seeded, config, WEEK, SEND_TIME, sleep=sleeps.append)
        assert (result.sent, result.failed, result.skipped) == (3, 0, 1)
        assert handler.seen == plan  # every misbehaviour happened, and nothing more was sent

        ids = assert_exactly_once(handler, seeded)
        # The only duplicates are the copies the server took before the connection dropped.
        assert (len(ids[KJ]), len(ids[NN]), len(ids[OPS])) == (2, 1, 2)
        rows = deliveries(seeded)
        assert (rows[KJ].attempts, rows[NN].attempts) == (4, 2)
        assert rows[KJ].last_error is None and rows[KJ].sent_at is not None
        assert operator_state(seeded)["attempts"] == 3 and operator_state(seeded)["status"] == "sent"
        assert [s for s in sleeps if s >= 1] == [2.0, 4.0, 8.0, 2.0, 2.0, 4.0]  # back-off restarts per copy

        again = send_digest(seeded, config, WEEK, SEND_TIME + timedelta(hours=1), sleep=sleeps.append)
        assert (again.sent, again.already) == (0, 3)
        assert handler.seen == plan


def test_server_down_keeps_everything_pending_and_the_next_run_sends_it(
    seeded: sessionmaker[Session], tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here yet
    config = config_for(tmp_path, port, smtp={"max_attempts": 2}, digest={"operator_email": OPS})
    with pytest.raises(MailTransportError, match="cannot connect"):
        send_digest(seeded, config, WEEK, SEND_TIME, sleep=lambda s: None)
    rows = deliveries(seeded)
    assert {mail: row.status for mail, row in rows.items()} == {KJ: "pending", NN: "pending", MZ: "skipped"}
    assert f"cannot connect to 127.0.0.1:{port}" in (rows[KJ].last_error or "")
    kj_id = rows[KJ].message_id  # fixed at the first attempt, kept for the retry

    handler = FlakyHandler([])
    controller = start(handler, port)
    try:
        result = send_digest(seeded, config, WEEK, SEND_TIME + timedelta(hours=2), sleep=lambda s: None)
        assert (result.sent, result.failed, result.skipped) == (3, 0, 1)
        ids = assert_exactly_once(handler, seeded)
        assert ids == {KJ: [kj_id], NN: ids[NN], OPS: ids[OPS]} and len(ids[NN]) == len(ids[OPS]) == 1
        rows = deliveries(seeded)
        assert rows[KJ].attempts == 3 and rows[KJ].last_error is None

        third = send_digest(seeded, config, WEEK, SEND_TIME + timedelta(hours=3), sleep=lambda s: None)
        assert (third.sent, third.already) == (0, 3)
        assert len(handler.messages) == 3
    finally:
        controller.stop()


def test_a_deferral_that_never_ends_fails_with_its_reason_and_the_others_go_out(
    seeded: sessionmaker[Session], tmp_path: Path
) -> None:
    with flaky_server([DEFER, DEFER, DEFER]) as (handler, port):  # every try of the first copy
        config = config_for(tmp_path, port, smtp={"max_attempts": 3})
        result = send_digest(seeded, config, WEEK, SEND_TIME, sleep=lambda s: None)
        assert (result.sent, result.failed) == (1, 1)
        rows = deliveries(seeded)
        assert rows[KJ].status == "failed" and rows[KJ].attempts == 3
        assert rows[KJ].last_error == "after 3 attempts: 451 4.3.0 try again later"
        assert handler.message_ids() == {NN: [rows[NN].message_id]}
