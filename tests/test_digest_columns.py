"""Several columns: each its own digest (numbering, counts), recipients per column, one mail per
(recipient, column, week) exactly once, and the migration that keys digests by column."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from feeds.mail import digest_done, preview_digest, send_digest
from pipeline.corpus.config_sync import sync_config
from pipeline.corpus.db import alembic_config, make_engine, session_factory, upgrade
from pipeline.corpus.models import Delivery, Digest, Recipient
from tests.test_digest_send import DOMAIN, Handler
from tests.test_feeds_factory import SHANGHAI, Factory, make_config
from zhuanlan_config import ConfigError, load_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

WEEK = "2026-W48"
MON = datetime(2026, 11, 23, tzinfo=SHANGHAI)
SEND_TIME = datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI)
SIZHONG = "学习贯彻党的二十届四中全会精神"
JIANGTAN = "书记讲党课"
SLUG_TAIL = "dang-de-er-shi-jie-si-zhong-quan-hui-jing-shen"


def two_columns(tmp_path: Path, port: int = 25) -> Config:
    return make_config(
        tmp_path,
        columns=[{"name": SIZHONG, "start": "2026-11-01"}, {"name": JIANGTAN, "start": date(2026, 11, 16)}],
        smtp={"host": "127.0.0.1", "port": port, "from_addr": f"zhuanlan@{DOMAIN}", "max_per_minute": 60000},
        digest={"operator_email": "ops@example.org"},
    )


@pytest.fixture
def people(sessions: sessionmaker[Session], now: datetime) -> dict[str, str]:
    with sessions() as session:
        f = Factory(session, now)
        kj, nn = f.unit("市科学技术局", 1), f.unit("市农业农村局", 2)
        album, talks = f.source("sizhong-album"), f.source("jiangtan-album")
        f.article("科技赋能 创新驱动", kj, album, MON + timedelta(hours=9), column=SIZHONG)
        f.article("让科技成果走出实验室", kj, album, MON + timedelta(days=2), column=SIZHONG)
        f.article("扎实推进乡村全面振兴", nn, album, MON + timedelta(days=3), column=SIZHONG)
        f.article("讲好新时代乡村振兴的党课", nn, talks, MON + timedelta(days=1), column=JIANGTAN)
        f.article("上周的党课", nn, talks, MON - timedelta(days=3), column=JIANGTAN)
        f.recipient(kj, "赵明远", "kj@example.org")  # every column
        f.recipient(nn, "李春华", "nn@example.org").columns = [JIANGTAN]
        session.commit()
    return {"kj": "kj@example.org", "nn": "nn@example.org"}


def subjects(handler: Handler, email: str) -> list[str]:
    return sorted(str(m["Subject"]) for m in handler.to(email))


def test_each_column_gets_its_own_digest_once_per_recipient(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str]
) -> None:
    handler, port = smtp
    config = two_columns(tmp_path, port)
    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=lambda s: None)
    assert (result.sent, result.failed, result.skipped, result.already) == (5, 0, 0, 0)  # 3 recipients' + 2 operator
    assert subjects(handler, people["kj"]) == [
        f"【{JIANGTAN}】刊发情况周报第2期（11月23日—11月29日）：本周刊发1篇，1个单位",
        f"【{SIZHONG}】刊发情况周报第5期（11月23日—11月29日）：本周刊发3篇，2个单位",
    ]
    # 李春华 subscribed to 书记讲党课 only.
    (nn,) = handler.to(people["nn"])
    assert str(nn["Subject"]).startswith(f"【{JIANGTAN}】")
    body = nn.get_body(preferencelist=("plain",))
    assert body is not None
    text_part = body.get_content()
    assert "讲好新时代乡村振兴的党课" in text_part and "科技赋能" not in text_part
    assert "本周刊发 1 篇，专栏开设以来累计 2 篇" in text_part
    assert len(handler.to("ops@example.org")) == 2

    with sessions() as session:
        digests = {(d.column, d.week): d.article_count for d in session.scalars(select(Digest))}
        assert digests == {(SIZHONG, WEEK): 3, (JIANGTAN, WEEK): 1}
        assert session.scalar(select(func.count()).select_from(Delivery)) == 3

    assert digest_done(sessions, config, WEEK)
    again = send_digest(sessions, config, WEEK, SEND_TIME + timedelta(hours=1), sleep=lambda s: None)
    assert (again.sent, again.already) == (0, 5) and len(handler.messages) == 5

    # Only one column, on request; an unknown one is a clear error.
    assert send_digest(sessions, config, WEEK, SEND_TIME, column=JIANGTAN, dry_run=True).already == 3
    with pytest.raises(LookupError, match="no column '理论学习'"):
        send_digest(sessions, config, WEEK, SEND_TIME, column="理论学习")


def test_a_recipient_who_leaves_a_column_before_the_send_is_skipped(
    sessions: sessionmaker[Session], tmp_path: Path, smtp: tuple[Handler, int], people: dict[str, str]
) -> None:
    handler, port = smtp
    config = two_columns(tmp_path, port)
    assert send_digest(sessions, config, WEEK, SEND_TIME, dry_run=True).sent == 5
    with sessions() as session:
        session.scalars(select(Recipient).where(Recipient.email == people["kj"])).one().columns = [SIZHONG]
        session.commit()
    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=lambda s: None)
    assert result.sent == 4
    assert [str(m["Subject"])[:6] for m in handler.to(people["kj"])] == [f"【{SIZHONG[:5]}"]


def test_a_column_that_has_not_started_has_no_digest(
    sessions: sessionmaker[Session], tmp_path: Path, people: dict[str, str], now: datetime
) -> None:
    config = two_columns(tmp_path)
    with sessions() as session:
        files = preview_digest(session, config, "2026-W46", None, tmp_path / "out", now)
    # 书记讲党课 starts on 16 November, after this week: only the other column's files.
    assert [p.name for p in files] == [
        f"digest-2026-W46-xue-xi-guan-che-{SLUG_TAIL}-operator.{x}" for x in ("html", "txt")
    ]
    assert "第3期" in files[0].read_text(encoding="utf-8")


def test_recipient_columns_are_validated_and_stored(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    base = (
        '[[units]]\nname = "市科学技术局"\n[[columns]]\nname = "学习贯彻党的二十届四中全会精神"\nstart = 2025-11-01\n'
        '[[columns]]\nname = "书记讲党课"\n'
    )
    path = tmp_path / "zhuanlan.toml"
    path.write_text(
        base + '[[recipients]]\nunit = "市科学技术局"\nname = "赵明远"\nemail = "kj@example.org"\n'
        'columns = ["书记讲党课", "理论学习"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.path == "recipients[0].columns"
    assert "'理论学习'" in str(err.value) and "书记讲党课" in str(err.value)
    path.write_text(base.replace("start = 2025-11-01", 'start = "2025-11-31"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"columns\[0\]\.start"):
        load_config(path)

    path.write_text(
        base + '[[recipients]]\nunit = "市科学技术局"\nname = "赵明远"\nemail = "kj@example.org"\n'
        'columns = ["书记讲党课"]\n[[recipients]]\nunit = "市科学技术局"\nname = "钱晓光"\nemail = "q@example.org"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.columns[0].start == date(2025, 11, 1)
    with sessions() as session:
        sync_config(session, config, SEND_TIME)
        session.commit()
        stored = {r.email: r.columns for r in session.scalars(select(Recipient))}
    assert stored == {"kj@example.org": ["书记讲党课"], "q@example.org": None}


def _insert(conn: Any, sql: str, **values: Any) -> None:
    conn.execute(text(sql), values)


def test_migration_moves_existing_digests_to_the_first_column(
    db_url: str, tmp_path: Path, smtp: tuple[Handler, int]
) -> None:
    handler, port = smtp
    engine = make_engine(db_url)
    try:
        command.upgrade(alembic_config(engine), "0006")
        with engine.begin() as conn:
            _insert(conn, "INSERT INTO units (name, sort_order, aliases) VALUES ('市科学技术局', 1, '[]')")
            _insert(
                conn,
                "INSERT INTO recipients (unit_id, name, email, active, unsubscribe_token)"
                " SELECT id, '赵明远', 'kj@example.org', true, 'tok' FROM units",
            )
            _insert(
                conn,
                "INSERT INTO digests (week, period_start, period_end, created_at, article_count, summary)"
                " VALUES (:week, :at, :at, :at, 0, '{}')",
                week=WEEK,
                at=MON,
            )
            _insert(
                conn,
                "INSERT INTO deliveries (digest_id, recipient_id, status, attempts, updated_at)"
                " SELECT digests.id, recipients.id, 'sent', 1, :at FROM digests, recipients",
                at=MON,
            )
        upgrade(engine, first_column=SIZHONG)
        sessions = session_factory(engine)
        with sessions() as session:
            (digest,) = session.scalars(select(Digest))
            assert (digest.column, digest.week) == (SIZHONG, WEEK)
            first_id = digest.id
            assert session.scalars(select(Recipient)).one().columns is None
            # The key is (column, week): the same week of another column is a new row, a repeat is refused.
            session.add(Digest(column=JIANGTAN, week=WEEK, period_start=MON, period_end=MON, created_at=MON))
            session.commit()
            session.add(Digest(column=SIZHONG, week=WEEK, period_start=MON, period_end=MON, created_at=MON))
            with pytest.raises(IntegrityError):
                session.commit()
        # The week already sent for the first column is not sent again.
        config = two_columns(tmp_path, port)
        result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=lambda s: None)
        assert result.already == 1
        assert [re.sub(r"】.*", "】", str(m["Subject"])) for m in handler.to("kj@example.org")] == [f"【{JIANGTAN}】"]
        # Back to 0006: one digest a week again (the first column's), its deliveries kept.
        command.downgrade(alembic_config(engine), "0006")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, week FROM digests")).all() == [(first_id, WEEK)]
            assert conn.execute(text("SELECT digest_id, status FROM deliveries")).all() == [(first_id, "sent")]
        upgrade(engine, first_column=SIZHONG)
    finally:
        engine.dispose()


def test_the_installed_command_sends_and_previews_per_column(tmp_path: Path) -> None:
    """`zhuanlan init` stores each recipient's columns; `digest send|preview --column` use them."""
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(
        'data_dir = "data"\n[[units]]\nname = "市科学技术局"\n[[units]]\nname = "市农业农村局"\n'
        f'[[columns]]\nname = "{SIZHONG}"\nstart = 2026-11-01\n[[columns]]\nname = "{JIANGTAN}"\n'
        'slug = "jiangtan"\nstart = "2026-11-16"\n'
        '[[recipients]]\nunit = "市科学技术局"\nname = "赵明远"\nemail = "kj@example.org"\n'
        f'[[recipients]]\nunit = "市农业农村局"\nname = "李春华"\nemail = "nn@example.org"\ncolumns = ["{JIANGTAN}"]\n',
        encoding="utf-8",
    )
    exe = Path(sys.executable).parent / "zhuanlan"
    env = {k: v for k, v in os.environ.items() if k != "ZHUANLAN_DATABASE_URL"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), "--config", str(cfg), *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
        )

    assert run("init").returncode == 0
    sent = run("digest", "send", "--week", WEEK, "--dry-run")
    assert sent.returncode == 0, sent.stderr
    assert "sent 3," in sent.stdout  # 赵明远 twice (both columns), 李春华 once
    only = run("digest", "send", "--week", WEEK, "--column", SIZHONG, "--dry-run")
    assert "sent 1," in only.stdout
    preview = run("digest", "preview", "--week", WEEK, "--recipient", "nn@example.org", "--column", JIANGTAN)
    assert preview.returncode == 0, preview.stderr
    html = tmp_path / preview.stdout.splitlines()[0]
    assert html.name.startswith("digest-2026-W48-jiangtan-recipient-")
    assert f"{JIANGTAN}·刊发情况周报" in html.read_text(encoding="utf-8")
    unknown = run("digest", "send", "--week", WEEK, "--column", "理论学习")
    assert unknown.returncode == 1 and unknown.stderr.strip().startswith("zhuanlan: no column '理论学习'")
