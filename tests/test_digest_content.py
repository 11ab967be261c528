"""Digest content: ISO weeks, what the week's data holds, and the rendered mail per recipient."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from feeds.digest import DigestRecipient, iso_week_bounds, previous_week, render_digest
from feeds.mail import preview_digest
from feeds.selection import load_digest_data
from pipeline.corpus.models import Appearance
from tests.test_feeds_factory import BASE_URL, COLUMN, SHANGHAI, Factory, make_config

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
        first = f.article("科技赋能 创新驱动", kj, src, MON + timedelta(hours=9), author="赵明远")
        # Also (first) on the unit's site: the digest still links the column's WeChat post.
        kj_site = f.source("kjj-site", kj, kind="site_column")
        site_first = f.appearance(first, kj_site, "https://kjj.example.org/dj/1.html", MON + timedelta(hours=8))
        first.first_appearance_id = site_first.id
        f.article(
            "让科技成果走出实验室",
            kj,
            src,
            MON + timedelta(days=2, hours=10),
            author="钱晓光",
            # the body opens with the banner and the byline, as study articles do
            lead="学习贯彻党的二十届四中全会精神\n市科学技术局副局长 钱晓光\n成果转化是科技创新的“最后一公里”。",
        )
        f.article("扎实推进乡村全面振兴", nn, src, MON + timedelta(days=6, hours=23, minutes=59), author="李春华")
        # Authors with positions, as the byline reader stores them.
        two = f.article("以科技创新引领产业升级", kj, src, MON + timedelta(days=3, hours=9), author="赵明远、钱晓光")
        two.authors = [
            {"name": "赵明远", "positions": ["党组书记", "局长"]},
            {"name": "钱晓光", "positions": ["副局长"]},
        ]
        # Found only on a unit's own site: a column candidate, listed apart and counted nowhere.
        mz_site = f.source("mzj-site", mz, kind="site_column")
        f.article("民政为民 兜牢底线", mz, mz_site, MON + timedelta(days=2), column=None).column_candidate = COLUMN
        # On the unit site only, but in the column: counted, and linked to the site page.
        nn_site = f.source("nyj-site", nn, kind="site_column")
        on_site = f.article("农业农村系统学习全会精神", nn, nn_site, MON + timedelta(days=4, hours=8), author="孙立")
        f.s.get(Appearance, on_site.first_appearance_id).url = "https://nyj.example.org/dj/7.html"
        # Deleted at source: not counted. Unattributed: apart, for the operator only.
        f.article("已删除的文章", nn, src, MON + timedelta(days=1, hours=8)).state = "deleted"
        f.article("读不出单位的文章", None, src, MON + timedelta(days=5, hours=8), author=None)
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
    assert (data.column, data.issue) == (COLUMN, 5)  # the column started in the week of Oct 26
    assert data.total_week == 5 and data.total_so_far == 6  # not the deleted, unattributed or site-only ones
    by_name = {u.name: u for u in data.units}
    kj = by_name["市科学技术局"]
    assert [a.title for a in kj.articles] == ["科技赋能 创新驱动", "让科技成果走出实验室", "以科技创新引领产业升级"]
    assert (kj.week_count, kj.total_count, kj.rank) == (3, 3, 1)
    nn = by_name["市农业农村局"]
    assert (nn.week_count, nn.total_count, nn.rank) == (2, 2, 2)
    sj, mz = by_name["市审计局"], by_name["市民政局"]
    assert (sj.week_count, sj.total_count, sj.rank, sj.status) == (0, 1, 3, "采集异常")
    assert (mz.week_count, mz.total_count, mz.rank, mz.status) == (0, 0, 4, "未刊发")
    assert [a.title for a in mz.site_articles] == ["民政为民 兜牢底线"]
    assert [u.name for u in data.contributed_week] == ["市科学技术局", "市农业农村局"]
    assert [u.name for u in data.contributed_so_far] == ["市科学技术局", "市农业农村局", "市审计局"]
    assert [u.name for u in data.not_yet] == ["市民政局"]
    assert [u.name for u in data.silent_week] == ["市民政局"] and [u.name for u in data.failed_week] == ["市审计局"]
    assert [a.title for a in data.unattributed] == ["读不出单位的文章"] and data.unattributed_total == 1
    article = kj.articles[0]
    assert article.published.utcoffset() == timedelta(hours=8)
    assert article.link.startswith("https://mp.example.org/s/") and article.author == "赵明远"
    assert article.archive_link.startswith(f"{BASE_URL}/story/")
    assert kj.articles[2].people == "赵明远（党组书记、局长）、钱晓光（副局长）"
    # an excerpt starts with the text, not with the byline the digest already shows above it
    assert kj.articles[1].excerpt.startswith("成果转化是科技创新的“最后一公里”。")
    assert nn.articles[0].link == "https://nyj.example.org/dj/7.html"
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
    assert mail.subject == f"【{COLUMN}】刊发情况周报第5期（11月23日—11月29日）：本周刊发5篇，2个单位"
    assert mail.unsubscribe_url == f"{BASE_URL}/unsubscribe/tok-kj"
    for part in (mail.subject, mail.html, mail.text):
        assert "投稿" not in part and "第48周" not in part
    for part in (mail.html, mail.text):
        assert "赵明远同志" in part and "本单位情况：市科学技术局" in part and "累计排名第 1 位" in part
        assert "让科技成果走出实验室" in part and "扎实推进乡村全面振兴" in part
        assert "赵明远（党组书记、局长）、钱晓光（副局长）" in part and "11月26日刊发" in part
        assert "https://nyj.example.org/dj/7.html" in part and f"{BASE_URL}/story/" in part
        assert "本周未刊发单位（1个）" in part and "采集异常（1个）：市审计局" in part
        assert "排名" in part and "累计刊发排名" in part
        assert f"{BASE_URL}/unsubscribe/tok-kj" in part
        # Operator-only: the failure's details, unattributed stories, other units' site-only stories.
        assert "sjj-site" not in part and "HTTP 503" not in part
        assert "未计入任何单位" not in part and "读不出单位的文章" not in part
        assert "民政为民 兜牢底线" not in part and "已删除的文章" not in part
    text = mail.text
    assert text.index("【本周未刊发单位（1个）】\n市民政局\n") > 0
    ranking = text[text.index("排名　单位　本周　累计") :].splitlines()[1:5]
    assert ranking == [
        "1　市科学技术局　3　3",
        "2　市农业农村局　2　2",
        "3　市审计局　采集异常　1",
        "4　市民政局　0　0",
    ]
    # Grouped by unit (after the recipient's own section): each unit heading precedes its articles.
    html = mail.html[mail.html.index("本周刊发文章（按单位）") :]
    assert (
        html.index("市科学技术局（本周 3 篇") < html.index("科技赋能 创新驱动") < html.index("市农业农村局（本周 2 篇")
    )
    assert html.index("市农业农村局（本周 2 篇") < html.index("扎实推进乡村全面振兴")
    assert "max-width:600px" in mail.html and "<style" not in mail.html and "<script" not in mail.html

    mz = DigestRecipient("何丽娟", "mz@example.org", week_data["mz"], "市民政局", "tok-mz")
    text = render_digest(data, mz, operator=False, base_url=BASE_URL).text
    assert "本单位尚未在专栏刊发文章" in text
    assert "本单位网站刊发（未在专栏刊发，不计入统计）" in text and "民政为民 兜牢底线" in text
    sj = DigestRecipient("周文静", "sj@example.org", week_data["sj"], "市审计局", "tok-sj")
    assert "本周本单位网站采集异常" in render_digest(data, sj, operator=False, base_url=BASE_URL).text

    ops = render_digest(data, DigestRecipient("运维值班", "ops@example.org"), operator=True, base_url=BASE_URL)
    assert ops.unsubscribe_url is None
    for part in (ops.html, ops.text):
        assert "采集异常详情" in part and "sjj-site" in part and "HTTP 503" in part
        assert "未计入任何单位（仅运维）" in part and "读不出单位的文章" in part and "民政为民 兜牢底线" in part
        assert "本周 1 篇、累计 1 篇专栏文章读不出所属单位" in part and "经更正确认" not in part
        assert "已删除的文章" not in part


def test_issue_number_and_dates_across_a_year_end(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime
) -> None:
    # The column's own start wins over the old digest.column_start key.
    config = make_config(
        tmp_path, columns=[{"name": COLUMN, "start": "2026-12-02"}], digest={"column_start": "2025-01-01"}
    )
    with sessions() as session:
        data = load_digest_data(session, "2026-W53", config, now)
        first = load_digest_data(session, "2026-W49", config, now)
        with pytest.raises(ValueError, match="before the column started"):
            load_digest_data(session, "2026-W48", config, now)
    assert (first.issue, data.issue) == (1, 5)
    subject = render_digest(data, DigestRecipient("钱明", "q@example.org"), operator=False, base_url=BASE_URL).subject
    assert "第5期（2026年12月28日—2027年1月3日）" in subject
    old_key = make_config(tmp_path, digest={"column_start": "2026-11-23"})
    with sessions() as session:
        assert load_digest_data(session, WEEK, old_key, now).issue == 1


def test_ranking_ties_share_a_rank(sessions: sessionmaker[Session], config: Config, now: datetime) -> None:
    with sessions() as session:
        f = Factory(session, now)
        a, c = f.unit("甲局", 1), f.unit("丙局", 3)
        f.unit("乙局", 2)
        src = f.source("album")
        f.article("甲一", a, src, MON + timedelta(hours=1))
        f.article("丙一", c, src, MON + timedelta(hours=2))
        session.commit()
        data = load_digest_data(session, WEEK, config, now)
    assert [(u.name, u.rank) for u in data.ranking] == [("甲局", 1), ("丙局", 1), ("乙局", 3)]


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
