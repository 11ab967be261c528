"""Exports: CSV and JSON Lines parse back with all metadata; the WARC reads with warcio and its
manifest's checksums match the payloads and the file."""

from __future__ import annotations

import csv
import hashlib
import json
import zlib
from datetime import date, datetime
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from archive.export import ExportError, Selection, export, manifest_path, neutralize_formula
from archive.search import Filters, ranked_ids
from archive.search_syntax import QueryError
from pipeline.corpus.models import Article, Snapshot
from tests.test_archive_corpus import DOCS, SHANGHAI, build_corpus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy.orm import Session, sessionmaker


@pytest.fixture
def db(sessions: sessionmaker[Session], now: datetime) -> Iterator[Session]:
    with sessions() as session, session.begin():
        build_corpus(session, now)
    with sessions() as session:
        yield session


def test_csv_has_bom_and_parses_back(db: Session, tmp_path: Path) -> None:
    out = tmp_path / "articles.csv"
    result = export(db, "csv", Filters(), out, tz=SHANGHAI)
    assert result.count == len(DOCS) and result.files == [out]
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert len(rows) == len(DOCS)
    edu = next(r for r in rows if r["guid"] == "guid-edu")
    assert edu["unit"] == "市教育局" and edu["author"] == "陈思远" and edu["positions"] == "党组书记、局长"
    assert edu["published_at"] == "2026-11-24T09:30:00+08:00"
    assert edu["topics"] == "党的建设；教育强国"
    assert edu["first_url"].startswith("https://mp.weixin.qq.com/")
    assert len(edu["urls"].split()) == 2
    assert rows[0]["guid"] == "guid-notice"  # oldest first


def test_jsonl_parses_back_with_bodies_and_appearances(db: Session, tmp_path: Path) -> None:
    out = tmp_path / "articles.jsonl"
    result = export(db, "jsonl", Filters(unit="市教育局"), out, tz=SHANGHAI)
    assert result.count == 1
    (record,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert record["body_text"].startswith("党的二十届四中全会")
    assert [a["is_original"] for a in record["appearances"]] == [True, False]
    assert record["appearances"][1]["source"] == "edu-site"
    sha = record["appearances"][0]["snapshot_sha256"]
    assert db.scalar(select(Snapshot).where(Snapshot.sha256 == sha)) is not None
    assert record["appearances"][0]["fetched_at"].endswith("+08:00")


def test_warc_reads_back_and_manifest_matches(db: Session, tmp_path: Path) -> None:
    out = tmp_path / "corpus.warc.gz"
    result = export(db, "warc", Filters(), out, tz=SHANGHAI, user_agent="zhuanlan-test/1")
    assert result.files == [out, manifest_path(out)]
    snapshots = {s.url: s for s in db.scalars(select(Snapshot))}
    payloads: dict[str, bytes] = {}
    kinds: list[str] = []
    with out.open("rb") as fh:
        for record in ArchiveIterator(fh):
            kinds.append(record.rec_type)
            uri = record.rec_headers.get_header("WARC-Target-URI")
            if record.rec_type == "response":
                assert record.http_headers.get_statuscode() == "200"
                assert record.http_headers.get_header("Content-Encoding") is None
                payloads[uri] = record.content_stream().read()
                assert record.rec_headers.get_header("WARC-Date").startswith("2026-11-")
            elif record.rec_type == "request":
                assert record.http_headers.get_header("User-Agent") == "zhuanlan-test/1"
                assert record.rec_headers.get_header("WARC-Concurrent-To")
            elif record.rec_type == "metadata":
                assert b"article-guid: guid-" in record.content_stream().read()
    assert kinds[0] == "warcinfo" and kinds.count("warcinfo") == 1
    assert result.records == len(kinds)
    assert kinds.count("response") == len(snapshots) == kinds.count("request") == kinds.count("metadata")
    for url, snap in snapshots.items():
        assert payloads[url] == zlib.decompress(snap.content)
    lines = manifest_path(out).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "sha256\tsize\tkind\tname"
    rows = [line.split("\t") for line in lines[1:]]
    for digest, size, kind, name in rows:
        data = out.read_bytes() if kind == "warc" else payloads[name]
        assert hashlib.sha256(data).hexdigest() == digest and int(size) == len(data)
    assert [r[2] for r in rows].count("warc") == 1


TRICKY_BODY = (
    '第一段：学习全会精神，既要“学”，也要"做"，逗号,分号;都在。\n'
    "\n"
    "=SUM(A1:A9) 这一行以等号开头，但不在单元格开头。\r\n"
    "第三段\t含制表符，结尾有换行。\n"
)


def test_csv_body_text_reads_back_equal_to_the_database(db: Session, tmp_path: Path, now: datetime) -> None:
    tricky = Article(
        guid="guid-tricky",
        title="多段落的学习体会",
        author="韩立新",
        positions=[],
        published_at=now,
        body_html="<p>x</p>",
        body_text=TRICKY_BODY + "长文。" * 5000,  # longer than most cells: nothing is cut
        content_hash="tricky",
        state="live",
        created_at=now,
        updated_at=now,
    )
    db.add(tricky)
    db.commit()
    out = tmp_path / "bodies.csv"
    assert export(db, "csv", Filters(), out, tz=SHANGHAI).count == len(DOCS) + 1
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with the BOM
    assert raw.split(b"\n", 1)[0].endswith(b"\r")  # records end in CRLF, as Excel writes them
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = {row["guid"]: row for row in csv.DictReader(fh)}
    stored = {a.guid: a.body_text for a in db.scalars(select(Article))}
    assert set(rows) == set(stored)
    for guid, body in stored.items():
        assert rows[guid]["body_text"] == neutralize_formula(body), guid
    assert rows["guid-tricky"]["body_text"] == TRICKY_BODY + "长文。" * 5000
    assert rows["guid-edu"]["body_text"].startswith("党的二十届四中全会")


def test_warc_starts_with_warcinfo_naming_software_format_selection_and_time(db: Session, tmp_path: Path) -> None:
    out = tmp_path / "search.warc"
    when = datetime(2026, 12, 1, 9, 15, 30, tzinfo=SHANGHAI)
    selection = Selection(filters=Filters(unit="市教育局", date_from=date(2026, 11, 1)), query="党建")
    result = export(db, "warc", selection, out, tz=SHANGHAI, user_agent="zhuanlan-test/1", now=when)
    assert result.count == 1
    raw = out.read_bytes()
    assert raw.startswith(b"WARC/1.1\r\n")
    with out.open("rb") as fh:
        records = list(ArchiveIterator(fh))
    with out.open("rb") as fh:
        first = next(iter(ArchiveIterator(fh)))
        assert first.rec_type == "warcinfo" and first.rec_headers.protocol == "WARC/1.1"
        assert first.rec_headers.get_header("WARC-Date") == "2026-12-01T01:15:30Z"
        assert first.rec_headers.get_header("WARC-Filename") == "search.warc"
        assert first.rec_headers.get_header("Content-Type") == "application/warc-fields"
        lines = first.content_stream().read().decode("utf-8").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines if line)
    assert fields["software"].startswith("zhuanlan/")
    assert fields["format"] == "WARC File Format 1.1"
    assert fields["zhuanlan-exported-at"] == "2026-12-01T09:15:30+08:00"
    assert json.loads(fields["zhuanlan-selection"]) == {
        "query": "党建",
        "order": "oldest",
        "unit": "市教育局",
        "date_from": "2026-11-01",
    }
    assert all(r.rec_headers.protocol == "WARC/1.1" for r in records)
    edu = db.scalars(select(Article).where(Article.guid == "guid-edu")).one()
    responses = {r.rec_headers.get_header("WARC-Target-URI") for r in records if r.rec_type == "response"}
    assert responses == {a.snapshot.url for a in edu.appearances if a.snapshot is not None} != set()


def test_export_of_a_search_holds_its_hits_in_its_order(db: Session, tmp_path: Path) -> None:
    out = tmp_path / "hits.jsonl"
    for order in ("relevance", "date", "oldest"):
        result = export(db, "jsonl", Selection(query="全会", order=order), out, tz=SHANGHAI)
        exported = [json.loads(line)["guid"] for line in out.read_text("utf-8").splitlines()]
        ids = db.scalars(ranked_ids(db, "全会", Filters(), sort=order, tz=SHANGHAI)).all()
        expected = [db.get(Article, i).guid for i in ids]  # type: ignore[union-attr]
        assert exported == expected and result.count == len(expected) > 1, order
    with pytest.raises(QueryError):
        export(db, "csv", Selection(query="*"), tmp_path / "bad.csv", tz=SHANGHAI)
    assert not (tmp_path / "bad.csv").exists()


def test_export_refuses_unknown_format_and_missing_directory(db: Session, tmp_path: Path) -> None:
    with pytest.raises(ExportError):
        export(db, "xlsx", Filters(), tmp_path / "x.xlsx")
    with pytest.raises(ExportError):
        export(db, "csv", Filters(), tmp_path / "missing" / "x.csv")


def test_csv_cells_that_a_spreadsheet_would_run_stay_text() -> None:
    from archive.export import neutralize_formula

    assert neutralize_formula('=HYPERLINK("http://x","点")') == '\'=HYPERLINK("http://x","点")'
    assert neutralize_formula("@SUM(1+1)") == "'@SUM(1+1)"
    assert neutralize_formula("+1") == "'+1" and neutralize_formula("-1") == "'-1"
    assert neutralize_formula("学习贯彻 = 落实") == "学习贯彻 = 落实"
