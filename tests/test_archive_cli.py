"""`zhuanlan search` as a subprocess against a real, migrated database holding the invented corpus:
JSON and CSV output, the filters, and one-line errors for what cannot be searched."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

import pytest

from tests.test_archive_corpus import build_corpus
from tests.test_cli import zhuanlan

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
    cfg.write_text(f'database_url = {json.dumps(db_url)}\ndata_dir = "data"\n', encoding="utf-8")
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
    assert list(rows[0]) == ["guid", "title", "unit", "author", "published_at", "score"]
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
