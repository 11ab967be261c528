"""Mail size: a 60-unit column's week with 30 articles stays under Gmail's clipping.

Gmail clips a message whose HTML body is over 102 KB as it arrives, that is after the transfer
encoding (base64 here, `feeds.mail.build_message`). The text part is never trimmed: it must list
every article, every unit of 本周未刊发单位 and the whole ranking.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from feeds.digest import DigestRecipient, render_digest
from feeds.mail import build_message
from feeds.selection import load_digest_data
from pipeline.corpus.models import Appearance
from tests.test_feeds_factory import BASE_URL, SHANGHAI, Factory, make_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from feeds.digest import DigestData
    from zhuanlan_config import Config

WEEK = "2026-W48"
MON = datetime(2026, 11, 23, tzinfo=SHANGHAI)
GMAIL_CLIP_BYTES = 102 * 1000  # Gmail's 102 KB, read as the smaller decimal kilobytes

# Unit names as long as real ones (the longest 市直 units run to a dozen characters and more).
PREFIXES = ("中共张掖市委", "张掖市", "张掖市人民政府", "中共张掖市直属机关工作委员会·")
KINDS = ("政法委员会", "发展和改革委员会", "教育局", "科学技术局", "工业和信息化局", "民族宗教事务委员会")
TITLES = ("深入学习贯彻党的二十届四中全会精神", "以实干实绩推动全会精神落地见效", "奋力谱写高质量发展新篇章")
NAMES = ("王立新", "李春华", "张志强", "刘晓光", "陈文静", "杨海燕", "赵建国", "周秀英")
POSITIONS = (("党组书记", "局长"), ("党组成员", "副局长"), ("机关党委书记",), ("办公室主任",))


def _wechat_url(n: int) -> str:
    """As long as a real WeChat article link (about 190 characters)."""
    return (
        f"https://mp.weixin.qq.com/s?__biz=MzI{n:05d}NzQ1Mg==&mid=2247{n:06d}&idx=1&sn={n:032x}"
        f"&chksm=ec{n:030x}&scene=21#wechat_redirect"
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, digest={"column_start": "2026-09-01", "operator_email": "ops@example.org"})


@pytest.fixture
def big_week(sessions: sessionmaker[Session], now: datetime) -> list[str]:
    """60 units; 30 column articles this week from 20 of them, 120 before; three failed unit sites."""
    rng = random.Random(19)
    titles = []
    with sessions() as session:
        f = Factory(session, now)
        units = [f.unit(f"{PREFIXES[i % 4]}{KINDS[i % 6]}第{i + 1}办", i) for i in range(60)]
        album = f.source("jiguan-dangjian")
        for n in range(150):
            unit = units[n % 20] if n < 30 else units[rng.randrange(45)]
            when = MON + timedelta(minutes=rng.randrange(7 * 24 * 60))
            if n >= 30:
                when -= timedelta(days=7 * rng.randint(1, 11))
            title = f"{TITLES[n % 3]}——{unit.name}第{n + 1}篇学习体会"
            people = rng.sample(NAMES, 2)
            article = f.article(title, unit, album, when, author="、".join(people))
            article.authors = [{"name": p, "positions": list(POSITIONS[rng.randrange(4)])} for p in people]
            session.get(Appearance, article.first_appearance_id).url = _wechat_url(n)  # type: ignore[union-attr]
            if n < 30:
                titles.append(title)
        for unit in units[50:53]:
            f.source_run(f.source(f"site-{unit.id}", unit, kind="site_column"), MON + timedelta(days=2), "error", "503")
        session.commit()
    return titles


def _html_as_sent(msg: EmailMessage) -> int:
    """The HTML part's body as it goes over the wire (after base64), as Gmail measures it."""
    raw = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(raw, EmailMessage)
    html = raw.get_body(preferencelist=("html",))
    assert html is not None and html["Content-Transfer-Encoding"] == "base64"
    payload = html.get_payload()
    assert isinstance(payload, str)
    return len(payload.encode("ascii"))


def _check_text(text: str, data: DigestData, titles: list[str]) -> None:
    for title in titles:
        assert title in text
    silent = text[text.index("【本周未刊发单位") :].splitlines()[1].split("、")
    assert silent == [u.name for u in data.silent_week] and len(silent) == 60 - 20 - 3
    ranking = text[text.index("排名　单位　本周　累计") :].splitlines()[1:61]
    assert len({line.split("　")[1] for line in ranking}) == 60
    for u in data.units:
        week = "采集异常" if u.status == "采集异常" else str(u.week_count)
        assert f"{u.rank}　{u.name}　{week}　{u.total_count}" in ranking


def test_sixty_units_thirty_articles_fit_gmail_and_the_text_is_complete(
    sessions: sessionmaker[Session], config: Config, big_week: list[str], now: datetime
) -> None:
    with sessions() as session:
        data = load_digest_data(session, WEEK, config, now)
    assert len(data.units) == 60 and data.total_week == 30 and len(big_week) == 30
    assert (len(data.contributed_week), len(data.silent_week), len(data.failed_week)) == (20, 37, 3)
    busiest = max(data.units, key=lambda u: u.week_count)
    copies = [
        (DigestRecipient("王立新", "unit@example.org", busiest.unit_id, busiest.name, "t" * 32), False),
        (DigestRecipient("运维值班", "ops@example.org"), True),
    ]
    for recipient, operator in copies:
        rendered = render_digest(data, recipient, operator=operator, base_url=BASE_URL)
        msg = build_message(rendered, recipient, config, "example.org")
        size = _html_as_sent(msg)
        assert size < GMAIL_CLIP_BYTES, f"HTML part {size} bytes as sent"
        for title in big_week:
            assert title in rendered.html
        _check_text(rendered.text, data, big_week)
