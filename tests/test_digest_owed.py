"""What is owed after downtime: `owed_weeks` on a frozen now, and the scheduler's digest job
sending each owed week once (and nothing stale) against a local aiosmtpd server."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

import scheduler
from feeds.digest import owed_weeks, send_time
from feeds.mail import send_owed_digests
from pipeline.corpus.models import Delivery, Digest
from tests.test_digest_flaky import KJ, NN, FlakyHandler, seed, start
from tests.test_digest_send import config_for, free_port
from tests.test_feeds_factory import SHANGHAI, make_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

W47, W48, W49 = "2026-W47", "2026-W48", "2026-W49"


def at(day: int, hour: int, minute: int = 0, month: int = 11, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def conf(tmp_path: Path, grace_days: int = 3, weekday: str = "mon", hhmm: str = "08:00", misfire: float = 6) -> Config:
    return make_config(
        tmp_path,
        digest={"grace_days": grace_days},
        schedule={"digest_weekday": weekday, "digest_time": hhmm, "misfire_grace_hours": misfire},
    )


def test_send_time_is_the_weekday_and_time_after_the_week(tmp_path: Path) -> None:
    assert send_time(W48, conf(tmp_path)) == at(30, 8)  # Monday after Sunday 29 November
    assert send_time(W48, conf(tmp_path, weekday="wed", hhmm="18:30")) == at(2, 18, 30, month=12)
    assert send_time("2026-W53", conf(tmp_path)) == at(4, 8, year=2027, month=1)


def test_owed_weeks_on_time_and_after_downtime(tmp_path: Path) -> None:
    config = conf(tmp_path)
    assert owed_weeks(at(30, 7, 59), config) == []  # W47 is a week old, W48 not yet due
    assert owed_weeks(at(30, 8), config) == [W48]
    assert owed_weeks(at(30, 8, 1), config) == [W48]
    # Down over the Monday morning, back on Wednesday: last week's digest is still owed.
    assert owed_weeks(at(2, 10, month=12), config) == [W48]
    assert owed_weeks(at(3, 8, month=12), config) == [W48]  # exactly at the end of the grace
    assert owed_weeks(at(3, 8, 1, month=12), config) == []  # stale: not sent any more
    # Down for two weeks (from Monday 23 November, after W47 went out): W48 is stale, W49 is due.
    assert owed_weeks(at(7, 9, month=12), config) == [W49]
    # A long grace covers both, oldest first.
    assert owed_weeks(at(7, 9, month=12), conf(tmp_path, grace_days=10)) == [W48, W49]
    # 30 days back is 7 November 09:00: W44 (due 2 November) is out, W45 (due 9 November) in.
    assert owed_weeks(at(7, 9, month=12), conf(tmp_path, grace_days=30)) == [
        "2026-W45",
        "2026-W46",
        W47,
        W48,
        W49,
    ]


def test_owed_weeks_time_zone_weekday_and_year_end(tmp_path: Path) -> None:
    config = conf(tmp_path)
    # "now" may come in UTC (the scheduler's clock): 00:30 UTC is 08:30 in Shanghai.
    assert owed_weeks(datetime(2026, 11, 30, 0, 30, tzinfo=UTC), config) == [W48]
    assert owed_weeks(datetime(2026, 11, 29, 23, 59, tzinfo=UTC), config) == []  # 07:59 on Monday in Shanghai
    wed = conf(tmp_path, weekday="wed", hhmm="18:30")
    assert owed_weeks(at(2, 18, 29, month=12), wed) == []
    assert owed_weeks(at(2, 18, 30, month=12), wed) == [W48]
    assert owed_weeks(at(4, 8, 5, year=2027, month=1), config) == ["2026-W53"]
    with pytest.raises(ValueError):
        owed_weeks(datetime(2026, 11, 30, 8, 0), config)


def test_a_zero_grace_still_lets_an_on_time_run_send(tmp_path: Path) -> None:
    # grace_days = 0 means "never catch up later", not "never send": the scheduler's own misfire
    # grace (it fires the job up to that late) is the floor.
    config = conf(tmp_path, grace_days=0, misfire=6)
    assert owed_weeks(at(30, 8, 0), config) == [W48]
    assert owed_weeks(at(30, 13, 59), config) == [W48]
    assert owed_weeks(at(30, 14, 1), config) == []


# --- sending what is owed ------------------------------------------------------------------


def weeks_and_deliveries(sessions: sessionmaker[Session]) -> dict[str, dict[int, str]]:
    with sessions() as session:
        out: dict[str, dict[int, str]] = {}
        for digest in session.scalars(select(Digest).order_by(Digest.week)):
            rows = session.scalars(select(Delivery).where(Delivery.digest_id == digest.id))
            out[digest.week] = {d.recipient_id: d.status for d in rows}
        return out


def test_send_owed_digests_sends_each_owed_week_once(
    sessions: sessionmaker[Session], tmp_path: Path, now: datetime
) -> None:
    seed(sessions, now)
    handler = FlakyHandler([])
    port = free_port()
    controller = start(handler, port)
    try:
        config = config_for(tmp_path, port, digest={"grace_days": 10})
        # Back on Monday 7 December after being down since before 30 November: W48 and W49 are owed.
        results = send_owed_digests(sessions, config, at(7, 9, month=12), sleep=lambda s: None)
        assert list(results) == [W48, W49]
        assert all(r is not None and r.sent == 2 for r in results.values())
        subjects = [str(m["Subject"]) for m in handler.to(KJ)]
        assert len(subjects) == 2 and "第5期（11月23日" in subjects[0] and "第6期（11月30日" in subjects[1]
        assert len(handler.to(NN)) == 2

        # A second trigger (restart, another run-once) finds both done and writes nothing.
        before = weeks_and_deliveries(sessions)
        again = send_owed_digests(sessions, config, at(7, 10, month=12), sleep=lambda s: None)
        assert again == {W48: None, W49: None}
        assert weeks_and_deliveries(sessions) == before
        assert len(handler.messages) == 4
    finally:
        controller.stop()


def write_config(tmp_path: Path, db_url: str, port: int) -> Path:
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(
        f'database_url = "{db_url}"\ndata_dir = "data"\n'
        '[schedule]\ntimezone = "Asia/Shanghai"\ndigest_weekday = "mon"\ndigest_time = "08:00"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nfrom_addr = "zhuanlan@jgdj.example.org"\n'
        "max_per_minute = 60000\nmax_attempts = 2\ntimeout_seconds = 5.0\n"
        '[digest]\ngrace_days = 3\ncolumn_start = "2026-11-01"\n',
        encoding="utf-8",
    )
    return cfg


def test_digest_job_after_a_monday_outage_and_after_two_weeks_down(
    sessions: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed(sessions, now)
    handler = FlakyHandler([])
    port = free_port()
    controller = start(handler, port)
    monkeypatch.delenv("ZHUANLAN_DATABASE_URL", raising=False)
    cfg = str(write_config(tmp_path, db_url, port))
    clock: dict[str, Any] = {}
    monkeypatch.setattr(scheduler, "_now", lambda: clock["now"])
    caplog.set_level(logging.INFO, logger="zhuanlan.scheduler")
    try:
        # Restarted on Wednesday after an outage over Monday morning: last week's digest goes out.
        clock["now"] = at(2, 10, month=12).astimezone(UTC)
        scheduler.digest_job(cfg)
        assert list(weeks_and_deliveries(sessions)) == [W48]
        assert len(handler.to(KJ)) == 1 and len(handler.to(NN)) == 1
        # APScheduler's catch-up run fires too: nothing is sent twice.
        scheduler.digest_job(cfg)
        assert len(handler.messages) == 2
        assert "digest 2026-W48: already sent" in caplog.text

        # Then down for two weeks (Monday 7 December missed, back Monday 14 December 09:00):
        # W49 (due 7 December) is stale with a 3-day grace and is skipped; W50 is due and sent.
        clock["now"] = at(14, 9, month=12).astimezone(UTC)
        scheduler.digest_job(cfg)
        assert list(weeks_and_deliveries(sessions)) == [W48, "2026-W50"]
        assert len(handler.messages) == 4
        assert all("第7期（12月7日—12月13日）" in str(m["Subject"]) for m in handler.to(KJ)[1:])

        # A run with nothing owed (Thursday) sends nothing and says so.
        clock["now"] = at(17, 9, month=12).astimezone(UTC)
        scheduler.digest_job(cfg)
        assert len(handler.messages) == 4
        assert "digest: nothing owed" in caplog.text
    finally:
        controller.stop()
