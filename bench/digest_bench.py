"""The weekly digest: 500 recipients rendered and sent (exactly-once bookkeeping included) to a
local aiosmtpd server, against a baseline of the same number of pre-built minimal messages sent
with plain smtplib over one connection. Everything on 127.0.0.1, in a temporary SQLite DB."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import smtplib
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from sqlalchemy import delete

from bench.common import Timing, make_text
from feeds.digest import DigestRecipient, iso_week_bounds, render_digest
from feeds.mail import build_message, send_digest
from feeds.selection import load_digest_data
from pipeline.corpus.db import make_engine, session_factory, upgrade
from pipeline.corpus.models import Appearance, Article, Delivery, Digest, Recipient, Source, Unit
from zhuanlan_config import Config, parse_config

TITLE = "Weekly digest: render + send to a local SMTP server"

TZ = ZoneInfo("Asia/Shanghai")
WEEK = "2026-W48"
SEND_AT = datetime(2026, 11, 30, 8, 0, tzinfo=TZ)
COLUMN = "学习贯彻党的二十届四中全会精神"
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "明华建国志强丽娟春晓光文静立新海燕秀英德"


class CountingHandler:
    """Takes every message; keeps only counts (the bench measures the client side)."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        self.bytes += len(envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _populate(sessions: Any, n_recipients: int, n_units: int, n_articles: int, rng: random.Random) -> None:
    start, _ = iso_week_bounds(WEEK, TZ)
    with sessions() as session:
        units = [Unit(name=f"市第{i + 1}局", sort_order=i, aliases=[]) for i in range(n_units)]
        session.add_all(units)
        session.flush()
        source = Source(key="jiguan-dangjian", kind="wechat_album", url="https://mp.example.org/album", options={})
        session.add(source)
        session.flush()
        for i in range(n_articles):
            # Two thirds this week, the rest in the weeks before (counts "since the column started").
            published = start + timedelta(minutes=rng.randrange(7 * 24 * 60))
            if i % 3 == 2:
                published -= timedelta(days=7 * rng.randint(1, 3))
            text = make_text(rng, 1200)
            unit = units[rng.randrange(n_units * 2 // 3)]  # a third of the units never contributed
            article = Article(
                guid=hashlib.sha256(f"bench-{i}".encode()).hexdigest()[:32],
                title=make_text(rng, 14).rstrip("。")[:24],
                author=rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                positions=["党组书记", "局长"],
                unit_id=unit.id,
                column=COLUMN,
                published_at=published,
                body_html=f"<p>{text}</p>",
                body_text=text,
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
                state="live",
                created_at=published,
                updated_at=published,
            )
            session.add(article)
            session.flush()
            url = f"https://mp.example.org/s/{article.guid}"
            app = Appearance(
                article_id=article.id,
                source_id=source.id,
                canonical_key=url,
                url=url,
                title=article.title,
                published_at=published,
                fetched_at=published,
                content_hash=article.content_hash,
                is_original=True,
                meta={},
            )
            session.add(app)
            session.flush()
            article.first_appearance_id = app.id
        for i in range(n_recipients):
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            session.add(
                Recipient(
                    unit_id=units[i % n_units].id,
                    name=name,
                    email=f"r{i}@units.example.org",
                    active=True,
                    unsubscribe_token=hashlib.sha256(f"r{i}".encode()).hexdigest()[:24],
                )
            )
        session.commit()


def _config(tmp: Path, db_url: str, port: int) -> Config:
    return parse_config(
        {
            "database_url": db_url,
            "data_dir": str(tmp / "data"),
            "public_dir": str(tmp / "public"),
            "columns": [{"name": COLUMN}],
            "web": {"base_url": "https://zl.example.org"},
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "from_addr": "zhuanlan@jgdj.example.org",
                "max_per_minute": 1_000_000_000,  # the rate limit is not what is measured
                "max_attempts": 3,
                "timeout_seconds": 30.0,
            },
            "digest": {"column_start": "2026-11-01"},
        },
        base_dir=tmp,
    )


def _minimal_messages(n: int) -> list[EmailMessage]:
    messages = []
    for i in range(n):
        msg = EmailMessage()
        msg["Subject"] = f"digest {i}"
        msg["From"] = "zhuanlan@jgdj.example.org"
        msg["To"] = f"r{i}@units.example.org"
        msg.set_content("weekly digest\n")
        messages.append(msg)
    return messages


def _timed(func: Callable[[], None], repeat: int, before: Callable[[], None] | None = None) -> Timing:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        func()
        samples.append(time.perf_counter() - t0)
    return Timing(statistics.median(samples), min(samples), max(samples), repeat)


def _rate(n: int, t: Timing) -> str:
    return f"{n / t.median:.0f} ({n / t.high:.0f}–{n / t.low:.0f})"


def run(n_recipients: int = 500, n_units: int = 60, n_articles: int = 60, repeat: int = 3) -> list[str]:
    load_before = os.getloadavg()[0]
    rng = random.Random(48)
    tmp = Path(tempfile.mkdtemp(prefix="zhuanlan-digest-bench-"))
    handler = CountingHandler()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    try:
        upgrade(engine)
        sessions = session_factory(engine)
        _populate(sessions, n_recipients, n_units, n_articles, rng)
        config = _config(tmp, str(engine.url), port)
        with sessions() as session:
            recipients = [DigestRecipient.from_model(r) for r in session.query(Recipient).order_by(Recipient.id).all()]

        def reset() -> None:
            with sessions() as session:
                session.execute(delete(Delivery))
                session.execute(delete(Digest))
                session.commit()

        def ours() -> None:
            result = send_digest(sessions, config, WEEK, SEND_AT, sleep=lambda s: None)
            assert result.sent == n_recipients, result

        def render_only() -> None:
            with sessions() as session:
                data = load_digest_data(session, WEEK, config, SEND_AT)
            for r in recipients:
                build_message(
                    render_digest(data, r, operator=False, base_url=config.web.base_url),
                    r,
                    config,
                    "jgdj.example.org",
                )

        minimal = _minimal_messages(n_recipients)

        def baseline() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                for msg in minimal:
                    smtp.send_message(msg)

        count_before = handler.count
        t_ours = _timed(ours, repeat, before=reset)
        ours_bytes = (handler.bytes, handler.count - count_before)
        t_render = _timed(render_only, repeat)
        bytes_before, count_before = handler.bytes, handler.count
        t_base = _timed(baseline, repeat)
        base_bytes = (handler.bytes - bytes_before) / max(1, handler.count - count_before)
        assert handler.count == 2 * repeat * n_recipients
        ours_avg = ours_bytes[0] / max(1, ours_bytes[1])
    finally:
        controller.stop()
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    n = n_recipients
    return [
        f"{n} recipients in {n_units} units, {n_articles} column articles (about two thirds in the digest's week), "
        f"temporary SQLite database; aiosmtpd on 127.0.0.1 in the same process. {repeat} runs each; "
        "mails/s is the median run with the slowest–fastest runs in brackets. "
        f"1-minute load average when it started: {load_before:.1f} (other work on the machine slows both sides).",
        "",
        "| what | mails/s | ms per mail | average message | ratio to baseline |",
        "|---|---|---|---|---|",
        f"| `send_digest`: load the week, render per recipient, build MIME, claim + record each delivery "
        f"(2 commits per mail), send over one reused connection | {_rate(n, t_ours)} | "
        f"{t_ours.median / n * 1000:.2f} | {ours_avg / 1024:.1f} KiB | {t_base.median / t_ours.median:.2f}× |",
        f"| render + build MIME only (no DB writes, no SMTP) | {_rate(n, t_render)} | "
        f"{t_render.median / n * 1000:.2f} | — | {t_base.median / t_render.median:.2f}× |",
        f"| baseline: pre-built minimal `EmailMessage`s, plain smtplib, one connection | {_rate(n, t_base)} | "
        f"{t_base.median / n * 1000:.2f} | {base_bytes / 1024:.1f} KiB | 1.00× |",
        "",
        f"At the default `smtp.max_per_minute` the rate limit, not this, bounds a real run: {n} mails take "
        f"{n / 60:.0f} minutes at 60 per minute.",
    ]
