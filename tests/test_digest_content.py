"""Digest content: ISO weeks, what the week's data holds, and the rendered mail per recipient."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from feeds.digest import DigestRecipient, iso_week_bounds, previous_week, render_digest
from feeds.mail import preview_digest
from feeds.selection import load_digest_data
from tests.test_feeds_factory import BASE_URL, SHANGHAI, Factory, make_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

WEEK = "2026-W48"
MON = datetime(2026, 11, 23, 0, 0, tzinfo=SHANGHAI)


def test_iso_week_bounds_and_previous_week() -> None:
    assert iso_week_bounds(WEEK, SHANGHAI) == (MON, MON + timedelta(days=7))
    assert iso_week_bounds("2026-W53", SHANGHAI)[1] == datetime(2027, 1, 4, tzinfo=SHANGHAI)
    assert previous_week(datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI)) == WEEK
    assert previous_week(datetime(2026, 11, 29, 23, 59, tzinfo=SHANGHAI)) == "2026-W47"
    assert previous_week(datetime(2027, 1, 4, 8, 0, tzinfo=SHANGHAI)) == "2026-W53"
    for bad in ("2026-48", "2026-W54", "W48"):
        with pytest.raises(ValueError):
            iso_week_bounds(bad, SHANGHAI)
    with pytest.raises(ValueError):
        previous_week(datetime(2026, 11, 30, 8, 0))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, digest={"column_start": "2026-11-01", "operator_email": "ops@example.org"})


@pytest.fixture
def week_data(sessions: sessionmaker[Session], now: datetime) -> dict[str, Any]:
    with sessions() as session:
        f = Factory(session, now)
        kj = f.unit("市科学技术局", 1)
        nn = f.unit("市农业农村局", 2)
        sj = f.unit("市审计局", 3)
        mz = f.unit("市民政局", 4)
        src = f.source("jiguan-dangjian")
        broken = f.source("sjj-site", sj, kind="site_column")
        # Before the column started: not counted anywhere.
        f.article("旧文", kj, src, datetime(2026, 10, 20, 9, tzinfo=SHANGHAI))
        f.article("审计监督护航高质量发展", sj, src, datetime(2026, 11, 10, 9, tzinfo=SHANGHAI), author="周文静")
        f.article("科技赋能 创新驱动", kj, src, MON + timedelta(hours=9), author="赵明远")
        f.article("让科技成果走出实验室", kj, src, MON + timedelta(days=2, hours=10), author="钱晓光")
        f.article("扎实推进乡村全面振兴", nn, src, MON + timedelta(days=6, hours=23, minutes=59), author="李春华")
        # Next Monday 00:00: the following week. Not in the column: never in the digest.
        f.article("下周的文章", nn, src, MON + timedelta(days=7))
        f.article("一则通知", nn, src, MON + timedelta(days=1), column=None)
        f.source_run(broken, MON + timedelta(days=1), "blocked", "412 瑞数 JS challenge")
        f.source_run(broken, MON + timedelta(days=3), "error", "HTTP 503")
        f.source_run(src, MON + timedelta(days=3), "ok")
        f.source_run(src, MON - timedelta(days=1), "error", "last week")
        r_kj = f.recipient(kj, "赵明远", "kj@example.org")
        r_mz = f.recipient(mz, "何丽娟", "mz@example.org")
        session.commit()
        return {"kj": kj.id, "nn": nn.id, "sj": sj.id, "mz": mz.id, "r_kj": r_kj.email, "r_mz": r_mz.email}


def test_load_digest_data_groups_the_week_by_unit(
    sessions: sessionmaker[Session], config: Config, week_data: dict[str, Any], now: datetime
) -> None:
    with sessions() as session:
        data = load_digest_data(session, WEEK, config, now)
    assert (data.period_start, data.period_end) == (MON, MON + timedelta(days=7))
    assert data.total_week == 3 and data.total_so_far == 4
    by_name = {u.name: u for u in data.units}
    assert [a.title for a in by_name["市科学技术局"].articles] == ["科技赋能 创新驱动", "让科技成果走出实验室"]
    assert (by_name["市科学技术局"].week_count, by_name["市科学技术局"].total_count) == (2, 2)
    assert (by_name["市农业农村局"].week_count, by_name["市农业农村局"].total_count) == (1, 1)
    assert (by_name["市审计局"].week_count, by_name["市审计局"].total_count) == (0, 1)
    assert [u.name for u in data.contributed_week] == ["市科学技术局", "市农业农村局"]
    assert [u.name for u in data.contributed_so_far] == ["市科学技术局", "市农业农村局", "市审计局"]
    assert [u.name for u in data.not_yet] == ["市民政局"]
    article = by_name["市科学技术局"].articles[0]
    assert article.published.utcoffset() == timedelta(hours=8)
    assert article.link.startswith("https://mp.example.org/s/") and article.author == "赵明远"
    assert len(data.failed_sources) == 1
    failed = data.failed_sources[0]
    assert (failed.key, failed.unit, failed.failures, failed.last_status) == ("sjj-site", "市审计局", 2, "error")
    assert failed.last_error == "HTTP 503"


def test_render_digest_for_a_unit_and_for_the_operator(
    sessions: sessionmaker[Session], config: Config, week_data: dict[str, Any], now: datetime
) -> None:
    with sessions() as session:
        data = load_digest_data(session, WEEK, config, now)
    kj = DigestRecipient("赵明远", "kj@example.org", week_data["kj"], "市科学技术局", "tok-kj")
    mail = render_digest(data, kj, operator=False, base_url=BASE_URL)
    assert mail.subject == "【专栏周报】2026年第48周（11月23日—11月29日）：本周3篇，2个单位"
    assert mail.unsubscribe_url == f"{BASE_URL}/unsubscribe/tok-kj"
    for part in (mail.html, mail.text):
        assert "赵明远同志" in part and "本单位情况：市科学技术局" in part
        assert "让科技成果走出实验室" in part and "扎实推进乡村全面振兴" in part
        assert "市民政局" in part  # in the not-yet list
        assert f"{BASE_URL}/unsubscribe/tok-kj" in part
        assert "采集异常" not in part and "sjj-site" not in part
    # Grouped by unit (after the recipient's own section): each unit heading precedes its articles.
    html = mail.html[mail.html.index("本周文章（按单位）") :]
    assert (
        html.index("市科学技术局（本周 2 篇") < html.index("科技赋能 创新驱动") < html.index("市农业农村局（本周 1 篇")
    )
    assert html.index("市农业农村局（本周 1 篇") < html.index("扎实推进乡村全面振兴")
    assert "max-width:600px" in mail.html and "<style" not in mail.html and "<script" not in mail.html

    mz = DigestRecipient("何丽娟", "mz@example.org", week_data["mz"], "市民政局", "tok-mz")
    text = render_digest(data, mz, operator=False, base_url=BASE_URL).text
    assert "本单位尚未在专栏刊发稿件" in text

    ops = render_digest(data, DigestRecipient("运维值班", "ops@example.org"), operator=True, base_url=BASE_URL)
    assert ops.unsubscribe_url is None
    for part in (ops.html, ops.text):
        assert "采集异常" in part and "sjj-site" in part and "HTTP 503" in part


def test_titles_are_escaped_in_html(sessions: sessionmaker[Session], config: Config, now: datetime) -> None:
    with sessions() as session:
        f = Factory(session, now)
        unit = f.unit("市财政局")
        f.article('<script>alert("x")</script>标题', unit, f.source("czj", unit), MON + timedelta(hours=1))
        session.commit()
        data = load_digest_data(session, WEEK, config, now)
    html = render_digest(data, DigestRecipient("钱明", "q@example.org"), operator=False, base_url=BASE_URL).html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_preview_writes_html_and_text(
    sessions: sessionmaker[Session], config: Config, week_data: dict[str, Any], now: datetime, tmp_path: Path
) -> None:
    with sessions() as session:
        paths = preview_digest(session, config, WEEK, week_data["r_kj"], tmp_path / "preview", now)
        ops_paths = preview_digest(session, config, WEEK, None, tmp_path / "preview", now)
        with pytest.raises(LookupError):
            preview_digest(session, config, WEEK, "nobody@example.org", tmp_path / "preview", now)
    assert [p.suffix for p in paths] == [".html", ".txt"]
    assert "本单位情况：市科学技术局" in paths[0].read_text(encoding="utf-8")
    assert "采集异常" in ops_paths[1].read_text(encoding="utf-8")
