"""`zhuanlan search` as a subprocess against a real, migrated database holding the invented corpus:
JSON and CSV output, the filters, and one-line errors for what cannot be searched."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from archive.web import create_app
from pipeline.corpus.models import Appearance, Article
from tests.test_archive_corpus import build_corpus
from tests.test_cli import zhuanlan
from zhuanlan_config import parse_config

ARCHIVE_BASE = "https://archive.example.org/zl"

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from sqlalchemy.orm import Session, sessionmaker


@pytest.fixture
def search_cli(tmp_path: Path, db_url: str, sessions: sessionmaker[Session], now: datetime) -> list[str]:
    """The argv prefix of a `zhuanlan` run on a config whose database holds the corpus."""
    with sessions() as db, db.begin():
        build_corpus(db, now)
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(
        f'database_url = {json.dumps(db_url)}\ndata_dir = "data"\n[web]\nbase_url = "{ARCHIVE_BASE}/"\n',
        encoding="utf-8",
    )
    return ["--config", str(cfg), "search"]


def run_json(prefix: list[str], tmp_path: Path, *args: str) -> dict[str, object]:
    proc = zhuanlan(*prefix, *args, "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def guids(data: dict[str, object]) -> list[str]:
    hits = data["hits"]
    assert isinstance(hits, list)
    return [str(hit["guid"]) for hit in hits]


def test_search_json_and_filters(search_cli: list[str], tmp_path: Path) -> None:
    data = run_json(search_cli, tmp_path, "党建")
    assert data["total"] == 2 and guids(data)[0] == "guid-party"  # the title match ranks first
    hits = data["hits"]
    assert isinstance(hits, list)
    first = hits[0]
    assert first["title"] == "党建引领 凝聚奋进力量" and first["unit"] == "市直机关工委" and first["author"] == "周卫东"
    assert first["published_at"] == "2026-11-20T23:30:00+08:00" and isinstance(first["score"], float)

    assert guids(run_json(search_cli, tmp_path, "全会", "--state", "deleted")) == ["guid-fin"]
    assert guids(run_json(search_cli, tmp_path, "", "--from", "2026-11-20", "--to", "2026-11-20")) == ["guid-party"]
    assert guids(run_json(search_cli, tmp_path, "全会", "--source-kind", "site_column")) == ["guid-edu"]
    both = run_json(
        search_cli,
        tmp_path,
        "",
        "--topic",
        "党的建设",
        "--unit",
        "教育局",
        "--column",
        "学习贯彻党的二十届四中全会精神",
    )
    assert guids(both) == ["guid-edu"]
    assert run_json(search_cli, tmp_path, "全会", "--author", "无此人") == {"total": 0, "hits": []}
    paged = run_json(search_cli, tmp_path, "", "--limit", "2", "--page", "3")
    assert paged["total"] == 5 and guids(paged) == ["guid-notice"]


def test_search_csv(search_cli: list[str], tmp_path: Path) -> None:
    proc = zhuanlan(*search_cli, "全会", "--unit", "机关工委", "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {row["guid"] for row in rows} == {"guid-party", "guid-notice"}
    assert list(rows[0]) == [
        "guid", "title", "unit", "author", "published_at", "score", "url", "archive_url", "snippet",
    ]  # fmt: skip
    assert all(row["url"].startswith("https://") and row["snippet"] for row in rows)
    notice = next(row for row in rows if row["guid"] == "guid-notice")
    assert notice["title"] == "关于征集学习心得体会的通知" and notice["published_at"] == "2026-11-03T08:00:00+08:00"
    float(notice["score"])  # ranked: a number, not empty

    table = zhuanlan(*search_cli, "粮食", cwd=tmp_path)
    assert table.returncode == 0 and table.stdout.startswith("1 results")
    assert "坚持人民至上 提升财政保障能力" in table.stdout


def test_search_refusals_are_one_line(search_cli: list[str], tmp_path: Path) -> None:
    for args in (["*"], ["--", "-党建"], ["x" * 600]):  # "--": a query starting with "-" is not an option
        proc = zhuanlan(*search_cli, "--format", "json", *args, cwd=tmp_path)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("zhuanlan: cannot search for that") and len(proc.stderr.splitlines()) == 1
        assert proc.stdout == ""
    # Hostile text is a query like any other: results or nothing, never a traceback.
    for q in ('"党建', "'; DROP TABLE articles; --", "NEAR(党建", "党建 OR"):
        proc = zhuanlan(*search_cli, q, "--format", "json", cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (q, proc.stderr)
    assert run_json(search_cli, tmp_path, "党建")["total"] == 2


def test_bad_date_is_a_one_line_error(search_cli: list[str], tmp_path: Path) -> None:
    proc = zhuanlan(*search_cli, "党建", "--from", "2026-13-01", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("zhuanlan: ") and len(proc.stderr.splitlines()) == 1


def _marked(snippet_html: str) -> tuple[str, list[list[int]]]:
    """The text of the web page's snippet and where its <mark>s are, as offsets into that text."""
    text, spans = "", []
    for i, part in enumerate(re.split(r"</?mark>", snippet_html)):
        if i % 2:
            spans.append([len(text), len(text) + len(html.unescape(part))])
        text += html.unescape(part)
    return text, spans


def test_search_json_has_urls_and_the_web_pages_snippet(
    search_cli: list[str], tmp_path: Path, sessions: sessionmaker[Session], now: datetime
) -> None:
    data = run_json(search_cli, tmp_path, "党建")
    hits = data["hits"]
    assert isinstance(hits, list) and len(hits) == 2
    with sessions() as db:
        first = {
            a.guid: a.appearances[0].url
            if a.first_appearance_id is None
            else db.get(Appearance, a.first_appearance_id).url  # type: ignore[union-attr]
            for a in db.scalars(select(Article))
        }
    # The same search in the web app, whose page shows each hit's snippet with <mark>s.
    config = parse_config({"data_dir": "data"}, base_dir=tmp_path)
    client = create_app(config, sessions, now=lambda: now).test_client()
    page = client.get("/search", query_string={"q": "党建"}).get_data(as_text=True)
    shown = [_marked(m) for m in re.findall(r'<p class="snippet">(.*?)</p>', page, re.S)]
    assert len(shown) == 2
    for hit, (text, spans) in zip(hits, shown, strict=True):
        assert hit["url"] == first[hit["guid"]] and hit["url"].startswith("https://")
        assert hit["archive_url"] == f"{ARCHIVE_BASE}/story/{hit['guid']}"
        assert (hit["snippet"], hit["highlights"]) == (text, spans)
        assert all(hit["snippet"][a:b] == "党建" for a, b in hit["highlights"])
    edu = next(h for h in hits if h["guid"] == "guid-edu")
    assert edu["url"].startswith("https://mp.weixin.qq.com/")  # the 首发, not the unit site's repost
    assert "推进党建工作结合起来" in edu["snippet"] and "<mark>" not in edu["snippet"]
    assert len(edu["highlights"]) == 2  # 党建工作, 高质量党建

    # --sort date: newest first, whatever ranks best (the title match guid-party is older than guid-edu)
    assert [h["guid"] for h in hits] == ["guid-party", "guid-edu"]
    by_date = run_json(search_cli, tmp_path, "党建", "--sort", "date")
    assert [h["guid"] for h in by_date["hits"]] == ["guid-edu", "guid-party"]  # type: ignore[index, union-attr]
