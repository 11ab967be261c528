"""Exports: CSV and JSON Lines parse back with all metadata; the WARC reads with warcio and its
manifest's checksums match the payloads and the file."""

from __future__ import annotations

import csv
import hashlib
import json
import zlib
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from archive.export import ExportError, export, manifest_path
from archive.search import Filters
from pipeline.corpus.models import Snapshot
from tests.test_archive_corpus import DOCS, SHANGHAI, build_corpus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime
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
            else:
                assert b"article-guid: guid-" in record.content_stream().read()
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
