"""Period reports (issue 19, point 4): `zhuanlan report` as the installed command and the web app's
download, each format read back (openpyxl, python-docx, csv) and checked against the database.

The corpus is invented for these tests: five configured units (one silent, two tied), a repost,
an unattributed story, a column candidate, a story of another column and stories just outside
the period in Asia/Shanghai.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from docx import Document
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from archive.web import create_app
from feeds.report import competition_ranks, is_head_position
from pipeline.corpus.config_sync import sync_config
from pipeline.corpus.models import Appearance, Article, Source, Unit
from tests.test_archive_web import PASSWORD, login
from zhuanlan_config import load_config

if TYPE_CHECKING:
    from flask.testing import FlaskClient
    from sqlalchemy.orm import Session, sessionmaker

SHANGHAI = ZoneInfo("Asia/Shanghai")
COLUMN = "学习贯彻党的二十届四中全会精神"
UNITS = ("市教育局", "市财政局", "市科学技术局", "市水务局", "市直机关工委")
PERIOD = ("2026-10-01", "2026-12-31")
ZHUANLAN = Path(sys.executable).with_name("zhuanlan")


@dataclass(frozen=True)
class Story:
    key: str
    unit: str | None
    authors: tuple[tuple[str, tuple[str, ...]], ...]
    title: str
    published: datetime
    places: tuple[tuple[str, bool], ...]  # (source key, is_original), in the order they were found
    column: str | None = COLUMN
    candidate: str | None = None
    body: str = "第一段：学习贯彻全会精神。\n\n第二段：推动工作落实落地。\n第三段：以实绩检验成效。"


def at(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


STORIES = (
    Story("edu-1", "市教育局", (("陈思远", ("党组书记", "局长")),), "以全会精神引领教育高质量发展", at(10, 8), (("wx", True),)),
    # Found on the unit's site first, reposted in the album: one story, linked to the WeChat post (转载).
    Story("edu-2", "市教育局", (("王敏", ("副局长",)),), "办好人民满意的教育", at(11, 2), (("site", True), ("wx", False))),
    Story("fin-1", "市财政局", (("林秀英", ("党组成员", "副局长")),), "提升财政保障能力", at(10, 15), (("wx", True),)),
    Story(
        "fin-2", "市财政局", (("赵刚", ("党组书记",)), ("李娜", ("科员",))), "兜牢基层三保底线",
        at(12, 31, 23, 30), (("wx", True),),
    ),
    Story("sci-1", "市科学技术局", (("马志强", ("机关党委书记",)),), "=SUM(1,1) 聚力科技创新", at(11, 20), (("site", True),)),
    Story("party-1", "市直机关工委", (("周卫东", ("书记",)),), "党建引领 凝聚奋进力量", at(12, 1, 0, 10), (("wx", True),)),
    Story("anon-1", None, (), "全会精神进机关", at(11, 11), (("wx", True),)),
    # Not counted: a candidate, another column, a day before and a day after the period (in Shanghai).
    Story("cand-1", "市科学技术局", (("马志强", ("局长",)),), "科技局学习全会精神", at(11, 12), (("site", True),),
          column=None, candidate=COLUMN),
    Story("other-1", "市教育局", (("陈思远", ("局长",)),), "关于报送材料的通知", at(11, 3), (("wx", True),), column="工作通知"),
    Story("before-1", "市教育局", (("陈思远", ("局长",)),), "九月的最后一篇", at(9, 30, 23, 59), (("wx", True),)),
    Story("after-1", "市财政局", (("赵刚", ("党组书记",)),), "新年第一篇", at(1, 1, 0, 0, year=2027), (("wx", True),)),
)  # fmt: skip
EXPECTED = {  # unit: (篇数, 排名, 主要负责同志篇数)
    "市教育局": (2, 1, 1),
    "市财政局": (2, 1, 1),
    "市科学技术局": (1, 3, 0),
    "市水务局": (0, 5, 0),
    "市直机关工委": (1, 3, 1),
}
EXPECTED_ORDER = ["edu-1", "fin-1", "edu-2", "sci-1", "party-1", "fin-2", "anon-1"]  # by date; unattributed last


def config_text(db_url: str) -> str:
    units = "".join(f"[[units]]\nname = {json.dumps(u, ensure_ascii=False)}\n" for u in UNITS)
    columns = f'[[columns]]\nname = {json.dumps(COLUMN, ensure_ascii=False)}\n[[columns]]\nname = "工作通知"\n'
    return f'database_url = {json.dumps(db_url)}\ndata_dir = "data"\npublic_dir = "public"\n{units}{columns}'


def build(session: Session, now: datetime) -> None:
    units = {u.name: u for u in session.scalars(select(Unit))}
    sources = {
        "wx": Source(key="wx", kind="wechat_album", url="https://mp.weixin.qq.com/mp/appmsgalbum?x=1", column=COLUMN),
        "site": Source(key="site", kind="site_column", url="https://unit.example.gov.cn/col/", column=COLUMN),
    }
    session.add_all(sources.values())
    session.flush()
    for story in STORIES:
        digest = hashlib.sha256(story.key.encode()).hexdigest()
        article = Article(
            guid=f"guid-{story.key}",
            title=story.title,
            author="、".join(name for name, _ in story.authors) or None,
            positions=[p for _, ps in story.authors for p in ps],
            authors=[{"name": name, "positions": list(ps)} for name, ps in story.authors],
            unit=units[story.unit] if story.unit else None,
            unit_from="byline" if story.unit else None,
            column=story.column,
            column_candidate=story.candidate,
            column_reason="album" if story.column else "title",
            published_at=story.published,
            body_text=story.body,
            content_hash=digest,
            created_at=now,
            updated_at=now,
        )
        session.add(article)
        session.flush()
        for i, (key, original) in enumerate(story.places):
            host = "https://mp.weixin.qq.com/s?sn=" if key == "wx" else "https://unit.example.gov.cn/art/"
            appearance = Appearance(
                article_id=article.id,
                source_id=sources[key].id,
                canonical_key=f"{key}:{story.key}",
                url=f"{host}{story.key}",
                published_at=story.published,
                fetched_at=now,
                content_hash=digest,
                is_original=original,
            )
            session.add(appearance)
            session.flush()
            if i == 0:
                article.first_appearance_id = appearance.id


@pytest.fixture
def corpus(tmp_path: Path, db_url: str, sessions: sessionmaker[Session], now: datetime) -> Path:
    """The config file of a database holding the corpus."""
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(config_text(db_url), encoding="utf-8")
    with sessions() as db, db.begin():
        sync_config(db, load_config(cfg), now)
        build(db, now)
    return cfg


def report(cfg: Path, fmt: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = cfg.parent / f"report.{fmt}"
    proc = subprocess.run(
        [str(ZHUANLAN), "--config", str(cfg), "report", "--from", PERIOD[0], "--to", PERIOD[1], "--format", fmt,
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc, out


@dataclass(frozen=True)
class Expected:
    """A column story of the period as the database holds it, with what the report must show."""

    key: str
    unit: str | None
    title: str
    day: date
    authors: str
    link: str
    kind: str
    body_lines: list[str]
    author_rows: list[dict[str, Any]]


def expected_stories(sessions: sessionmaker[Session]) -> list[Expected]:
    """Read from the database, independently of feeds.report: in the report's order."""
    start, end = datetime(2026, 10, 1, tzinfo=SHANGHAI), datetime(2027, 1, 1, tzinfo=SHANGHAI)
    with sessions() as db:
        rows = db.scalars(
            select(Article)
            .options(selectinload(Article.unit), selectinload(Article.appearances).selectinload(Appearance.source))
            .where(Article.column == COLUMN, Article.published_at >= start, Article.published_at < end)
            .order_by(Article.published_at)
        ).all()
        out = []
        for a in rows:
            assert a.published_at is not None
            wechat = [p for p in a.appearances if p.source.kind == "wechat_album"]
            linked = wechat[0] if wechat else a.appearances[0]
            out.append(
                Expected(
                    key=a.guid.removeprefix("guid-"),
                    unit=a.unit.name if a.unit else None,
                    title=a.title,
                    day=a.published_at.astimezone(SHANGHAI).date(),
                    authors=a.author or "",
                    link=linked.url,
                    kind="首发" if linked.is_original else "转载",
                    body_lines=[line for line in a.body_text.split("\n") if line.strip()],
                    author_rows=list(a.authors),
                )
            )
    return [e for e in out if e.unit is not None] + [e for e in out if e.unit is None]


# --- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "head"),
    [
        ("党组书记", True), ("局长", True), ("书记", True), ("党委书记", True), ("主任", True), ("主席", True),
        ("院长", True), ("部长", True), ("检察长", True), ("行长", True), ("校长", True), ("会长", True),
        (" 局 长 ", True), ("副局长", False), ("党组副书记", False), ("副书记", False), ("常务副主任", False),
        ("党组成员", False), ("机关党委书记", False), ("办公室主任", False), ("组织部部长", False),
        ("科员", False), ("", False),
    ],
)  # fmt: skip
def test_head_position_rule(position: str, head: bool) -> None:
    assert is_head_position(position) is head


def test_competition_ranking() -> None:
    assert competition_ranks([2, 2, 1, 0, 1]) == [1, 1, 3, 5, 3]
    assert competition_ranks([0, 0]) == [1, 1]
    assert competition_ranks([]) == []


# --- the files, from the installed command ---------------------------------------------------


def check_xlsx(path: Path, stories: list[Expected]) -> None:
    book = load_workbook(path)
    assert book.sheetnames == ["统计", "明细"]
    stats, details = book["统计"], book["明细"]
    assert stats.freeze_panes == "A2" and details.freeze_panes == "A2"
    assert stats.column_dimensions["B"].width == 30 and details.column_dimensions["F"].width == 48
    rows = list(stats.iter_rows(values_only=True))
    assert rows[0] == ("序号", "单位", "篇数", "排名", "主要负责同志篇数")
    body = rows[1 : 1 + len(UNITS)]
    assert [r[1] for r in body] == list(UNITS)  # every configured unit, in the configured order
    assert [r[0] for r in body] == list(range(1, len(UNITS) + 1))
    for _number, unit, count, rank, heads in body:
        assert (count, rank, heads) == EXPECTED[unit], unit
        assert count == sum(1 for s in stories if s.unit == unit)
        assert heads == sum(
            1
            for s in stories
            if s.unit == unit and any(is_head_position(p) for a in s.author_rows for p in a["positions"])
        )
    total = rows[1 + len(UNITS)]
    assert total[1] == "合计" and total[2] == 6 == sum(1 for s in stories if s.unit) and total[4] == 3
    notes = [r[1] for r in rows[2 + len(UNITS) :] if r[1]]
    assert any("未识别单位文章 1 篇" in n for n in notes) and any(COLUMN in n for n in notes)

    detail = list(details.iter_rows(values_only=True))
    assert detail[0] == ("序号", "刊发日期", "单位", "作者", "职务", "标题", "链接", "首发/转载")
    assert len(detail) == 1 + len(stories)
    for n, (row, story) in enumerate(zip(detail[1:], stories, strict=True), start=1):
        assert row[0] == n
        assert row[1] == datetime.combine(story.day, datetime.min.time())  # a date cell, read back as datetime
        assert row[2] == (story.unit or "未识别单位")
        assert (row[3] or "") == story.authors  # an empty cell reads back as None
        assert row[5] == story.title and row[6] == story.link and row[7] == story.kind
    for cell in details["B"][1:]:
        assert cell.is_date and cell.number_format == "yyyy-mm-dd"
    by_title = {row[5]: row for row in detail[1:]}
    assert by_title["兜牢基层三保底线"][4] == "赵刚：党组书记；李娜：科员"
    assert by_title["以全会精神引领教育高质量发展"][4] == "党组书记、局长"
    formula = next(c for c in details["F"] if c.value == "=SUM(1,1) 聚力科技创新")
    assert formula.data_type == "s"  # text, never run as a formula
    assert details["G2"].hyperlink is not None and details["G2"].hyperlink.target == stories[0].link


def test_xlsx_statistics_and_details(corpus: Path, sessions: sessionmaker[Session]) -> None:
    proc, out = report(corpus, "xlsx")
    assert proc.returncode == 0, proc.stderr
    assert "6 articles of 4 units, 1 unattributed, 0 decided to belong to no unit" in proc.stdout
    stories = expected_stories(sessions)
    assert [s.key for s in stories] == EXPECTED_ORDER
    assert next(s for s in stories if s.key == "edu-2").kind == "转载"  # the album's repost is the link
    check_xlsx(out, stories)


def docx_texts(path: Path) -> tuple[list[tuple[str, str]], str, str]:
    """(style, text) of every body paragraph, the body's XML and the footer's XML."""
    doc = Document(str(path))
    paragraphs = [(p.style.name if p.style is not None else "", p.text) for p in doc.paragraphs]
    footer = doc.sections[0].footer._element.xml
    return paragraphs, doc.element.body.xml, footer


def check_docx(path: Path, stories: list[Expected]) -> None:
    paragraphs, body_xml, footer_xml = docx_texts(path)
    texts = [t for _, t in paragraphs]
    assert COLUMN in texts[:4] and "2026年10月1日至2026年12月31日" in texts[:4]
    assert "TOC \\o" in body_xml and 'w:fldCharType="begin"' in body_xml  # the table of contents field
    assert "PAGE" in footer_xml and 'w:fldCharType="begin"' in footer_xml  # page numbers
    headings = [i for i, (style, _) in enumerate(paragraphs) if style == "Heading 1"]
    assert [texts[i] for i in headings] == [s.title for s in stories]  # every article, in order
    for n, (start, story) in enumerate(zip(headings, stories, strict=True)):
        end = headings[n + 1] if n + 1 < len(headings) else len(paragraphs)
        block = texts[start + 1 : end]
        byline, day = block[0], block[1]
        if story.unit:
            assert byline.startswith(story.unit)
        for author in story.author_rows:
            assert author["name"] in byline and all(p in byline for p in author["positions"])
        assert day == f"{story.day.year}年{story.day.month}月{story.day.day}日"
        assert [t for t in block[2:] if t] == story.body_lines  # the full text, one paragraph per line


def test_docx_compilation(corpus: Path, sessions: sessionmaker[Session]) -> None:
    proc, out = report(corpus, "docx")
    assert proc.returncode == 0, proc.stderr
    check_docx(out, expected_stories(sessions))


def test_csv_details(corpus: Path, sessions: sessionmaker[Session]) -> None:
    proc, out = report(corpus, "csv")
    assert proc.returncode == 0, proc.stderr
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    stories = expected_stories(sessions)
    assert rows[0] == ["序号", "刊发日期", "单位", "作者", "职务", "标题", "链接", "首发/转载"]
    assert len(rows) == 1 + len(stories)
    for n, (row, story) in enumerate(zip(rows[1:], stories, strict=True), start=1):
        title = "'" + story.title if story.title.startswith("=") else story.title  # neutralized
        assert row == [str(n), story.day.isoformat(), story.unit or "未识别单位", story.authors, row[4], title,
                       story.link, story.kind]  # fmt: skip


def test_other_column_and_refusals(corpus: Path) -> None:
    proc, out = report(corpus, "csv", "--column", "工作通知")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [r[5] for r in rows[1:]] == ["关于报送材料的通知"]
    for extra in (["--column", "无此专栏"],):
        proc, _ = report(corpus, "xlsx", *extra)
        assert proc.returncode == 1 and proc.stderr.startswith("zhuanlan: ") and len(proc.stderr.splitlines()) == 1
    bad = subprocess.run(
        [str(ZHUANLAN), "--config", str(corpus), "report", "--from", "2026-12-31", "--to", "2026-10-01",
         "--format", "csv", "--out", str(corpus.parent / "x.csv")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and "before --from" in bad.stderr and not (corpus.parent / "x.csv").exists()


# --- the web app -----------------------------------------------------------------------------


@pytest.fixture
def client(
    corpus: Path, sessions: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> FlaskClient:
    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "test-secret-key")
    app = create_app(load_config(corpus), sessions, now=lambda: now)
    app.config["TESTING"] = True
    return app.test_client()


def test_web_download_needs_login_and_matches_the_command(
    client: FlaskClient, corpus: Path, sessions: sessionmaker[Session]
) -> None:
    query = {"from": PERIOD[0], "to": PERIOD[1], "column": COLUMN}
    for path in ("/reports", "/reports/download"):
        response = client.get(path, query_string={**query, "format": "xlsx"})
        assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    login(client)
    assert "/reports" in client.get("/health").get_data(as_text=True)
    page = client.get("/reports").get_data(as_text=True)
    assert "刊发情况报表" in page and COLUMN in page
    stories = expected_stories(sessions)
    for fmt in ("xlsx", "docx", "csv"):
        response = client.get("/reports/download", query_string={**query, "format": fmt})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "attachment" in response.headers["Content-Disposition"]
        web = corpus.parent / f"web.{fmt}"
        web.write_bytes(response.data)
        proc, cli = report(corpus, fmt)
        assert proc.returncode == 0, proc.stderr
        if fmt == "xlsx":
            check_xlsx(web, stories)
            for name in ("统计", "明细"):
                web_rows = list(load_workbook(web)[name].iter_rows(values_only=True))
                assert web_rows == list(load_workbook(cli)[name].iter_rows(values_only=True))
        elif fmt == "docx":
            check_docx(web, stories)
            assert docx_texts(web)[0] == docx_texts(cli)[0]
        else:
            assert response.data == cli.read_bytes()
    bad = client.get("/reports/download", query_string={**query, "from": "2026-13-01", "format": "csv"})
    assert bad.status_code == 400 and "起止日期" in bad.get_data(as_text=True)
