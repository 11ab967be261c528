"""Exports of the corpus for archivists: CSV, JSON Lines and WARC (with a checksum manifest).

Owns the export formats. The selection is a search's: its query and filters, in its order (by
default oldest first, so an export reads like a ledger). Files are written next to their final
name and moved into place only when complete, so a half-written export never looks finished.
Must not write to the database.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from archive.search import Filters, ranked_ids
from pipeline.corpus.models import Appearance, Article, ArticleTag, Snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator

Format = Literal["csv", "jsonl", "warc"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "warc")
CSV_FIELDS = (
    "guid", "title", "unit", "author", "positions", "column", "published_at", "state",
    "topics", "keywords", "first_url", "urls", "content_hash", "body_text",
)  # fmt: skip
BATCH = 200  # articles loaded per query
DEFAULT_USER_AGENT = "zhuanlan/0.1"
try:
    SOFTWARE_VERSION = metadata.version("zhuanlan")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    SOFTWARE_VERSION = "unknown"
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Headers that describe the transfer, not the bytes we store (which are decoded and whole).
_TRANSFER_HEADERS = {"content-encoding", "transfer-encoding", "content-length", "connection"}
_REASONS = {200: "OK", 203: "Non-Authoritative Information", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
            403: "Forbidden", 404: "Not Found", 410: "Gone", 412: "Precondition Failed", 500: "Internal Server Error",
            521: "Web Server Is Down"}  # fmt: skip


class ExportError(ValueError):
    """An export cannot be made (unknown format, unwritable place)."""


@dataclass(frozen=True)
class ExportResult:
    count: int  # articles exported
    files: list[Path] = field(default_factory=list)
    records: int = 0  # WARC records written (0 for CSV / JSON Lines)


def _iso(value: datetime | None, tz: tzinfo) -> str:
    return value.astimezone(tz).isoformat() if value else ""


@dataclass(frozen=True)
class Selection:
    """What an export holds: the hits of a search (`query` in `archive.search_syntax`'s grammar,
    empty for every story) narrowed by `filters`, in `order` (one of `archive.search.ORDERS`)."""

    filters: Filters = field(default_factory=Filters)
    query: str = ""
    order: str = "oldest"

    def describe(self) -> dict[str, str]:
        """The non-empty parts, as text (for the WARC's warcinfo record)."""
        parts = {"query": self.query, "order": self.order}
        for name, value in vars(self.filters).items():
            if value not in (None, "", False, "any"):
                parts[name] = str(value)
        return {k: v for k, v in parts.items() if v}


def more_than(session: Session, selection: Selection, limit: int, *, tz: tzinfo = SHANGHAI) -> bool:
    """Whether the selection holds more than `limit` stories (reads at most `limit` + 1 ids).
    Raises `QueryError` for an unusable query."""
    ranked = ranked_ids(session, selection.query, selection.filters, sort=selection.order, tz=tz)
    return len(session.scalars(ranked.limit(limit + 1)).all()) > limit


def _articles(session: Session, selection: Selection, tz: tzinfo) -> Iterator[Article]:
    """The selected articles, in order (their ids first, then the articles in batches)."""
    ids = list(session.scalars(ranked_ids(session, selection.query, selection.filters, sort=selection.order, tz=tz)))
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        stmt = (
            select(Article)
            .where(Article.id.in_(chunk))
            .options(
                selectinload(Article.unit),
                selectinload(Article.tags).selectinload(ArticleTag.tag),
                selectinload(Article.appearances).selectinload(Appearance.source),
                selectinload(Article.appearances).selectinload(Appearance.snapshot),
            )
        )
        loaded = {a.id: a for a in session.scalars(stmt)}
        yield from (loaded[i] for i in chunk if i in loaded)


def _tag_names(article: Article, kind: str) -> list[str]:
    return sorted(t.tag.name for t in article.tags if t.tag.kind == kind)


def _first_url(article: Article) -> str:
    for appearance in article.appearances:
        if appearance.id == article.first_appearance_id:
            return appearance.url
    return article.appearances[0].url if article.appearances else ""


def article_record(article: Article, tz: tzinfo) -> dict[str, Any]:
    """The metadata every export carries (CSV flattens the lists)."""
    return {
        "guid": article.guid,
        "title": article.title,
        "unit": article.unit.name if article.unit else "",
        "author": article.author or "",
        "positions": list(article.positions or []),
        "column": article.column or "",
        "published_at": _iso(article.published_at, tz),
        "state": article.state,
        "topics": _tag_names(article, "topic"),
        "keywords": _tag_names(article, "keyword"),
        "first_url": _first_url(article),
        "urls": [a.url for a in article.appearances],
        "content_hash": article.content_hash,
        "body_text": article.body_text,
    }


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formula(cell: str) -> str:
    """Crawled text opened in Excel or WPS must stay text: a leading quote keeps it from running."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _csv_row(record: dict[str, Any]) -> dict[str, str]:
    row = {}
    for key in CSV_FIELDS:
        value = record[key]
        text = (
            ("、" if key == "positions" else "；" if key in ("topics", "keywords") else " ").join(value)
            if isinstance(value, list)
            else str(value)
        )
        row[key] = neutralize_formula(text)
    return row


def _partial(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def _write_csv(session: Session, selection: Selection, out: Path, tz: tzinfo) -> int:
    count = 0
    # utf-8-sig: the BOM makes Excel read the file as UTF-8 rather than the local code page.
    with _partial(out).open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for article in _articles(session, selection, tz):
            writer.writerow(_csv_row(article_record(article, tz)))
            count += 1
    os.replace(_partial(out), out)
    return count


def _write_jsonl(session: Session, selection: Selection, out: Path, tz: tzinfo) -> int:
    count = 0
    with _partial(out).open("w", encoding="utf-8", newline="\n") as fh:
        for article in _articles(session, selection, tz):
            record = article_record(article, tz)
            record["appearances"] = [
                {
                    "url": a.url,
                    "source": a.source.key,
                    "source_kind": a.source.kind,
                    "fetched_at": _iso(a.fetched_at, tz),
                    "http_status": a.http_status,
                    "snapshot_sha256": a.snapshot.sha256 if a.snapshot else None,
                    "is_original": a.is_original,
                    "state": a.state,
                }
                for a in article.appearances
            ]
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    os.replace(_partial(out), out)
    return count


# --- WARC -------------------------------------------------------------------------------


def _header_pairs(headers: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for name, value in headers.items():
        if str(name).lower() in _TRANSFER_HEADERS:
            continue
        for item in value if isinstance(value, list) else [value]:
            # Stored headers are data from the wire: keep them on one line each.
            pairs.append((str(name), " ".join(str(item).split())))
    return pairs


def _snapshots(session: Session, article: Article) -> list[tuple[Appearance, Snapshot]]:
    """Every stored version of every appearance, oldest first (current and earlier snapshots)."""
    by_id = {a.id: a for a in article.appearances}
    found: dict[int, tuple[Appearance, Snapshot]] = {}
    if by_id:
        for snap in session.scalars(select(Snapshot).where(Snapshot.appearance_id.in_(by_id))):
            if snap.appearance_id is not None:
                found[snap.id] = (by_id[snap.appearance_id], snap)
    for appearance in article.appearances:
        if appearance.snapshot is not None and appearance.snapshot.id not in found:
            found[appearance.snapshot.id] = (appearance, appearance.snapshot)
    return sorted(found.values(), key=lambda pair: (pair[1].fetched_at, pair[1].id))


class _HashingWriter(io.RawIOBase):
    """A file wrapper that hashes what passes through, for the manifest's checksum of the WARC."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.digest.update(chunk)
        self.fh.write(chunk)
        return len(chunk)


def _warc_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def warcinfo_fields(selection: Selection, now: datetime, tz: tzinfo, user_agent: str) -> dict[str, str]:
    """The warcinfo record's fields: what wrote the file, in which format, and what it holds."""
    return {
        "software": f"zhuanlan/{SOFTWARE_VERSION}",
        "format": "WARC File Format 1.1",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
        "description": "zhuanlan export: the stored responses of the selected stories",
        "http-header-user-agent": user_agent,
        "zhuanlan-exported-at": now.astimezone(tz).isoformat(),
        # One line of JSON: filters are text a person typed, and a field must not span lines.
        "zhuanlan-selection": json.dumps(selection.describe(), ensure_ascii=False, sort_keys=True),
    }


def _write_warc(
    session: Session, selection: Selection, out: Path, tz: tzinfo, user_agent: str, now: datetime
) -> tuple[int, int, list[tuple[str, int, str, str]]]:
    manifest: list[tuple[str, int, str, str]] = []  # sha256, size, kind, name
    count = records = 0
    with _partial(out).open("wb") as raw_fh:
        hashing = _HashingWriter(raw_fh)
        writer = WARCWriter(hashing, gzip=out.name.endswith(".gz"), warc_version="1.1")
        info = writer.create_warcinfo_record(out.name, warcinfo_fields(selection, now, tz, user_agent))
        info.rec_headers.replace_header("WARC-Date", _warc_date(now))
        writer.write_record(info)
        records += 1
        for article in _articles(session, selection, tz):
            count += 1
            for appearance, snap in _snapshots(session, article):
                payload = zlib.decompress(snap.content)
                digest = hashlib.sha256(payload).hexdigest()
                manifest.append((digest, len(payload), "payload", snap.url))
                date = _warc_date(snap.fetched_at)
                status = f"{snap.http_status} {_REASONS.get(snap.http_status, 'Unknown')}"
                headers = [*_header_pairs(snap.headers or {}), ("Content-Length", str(len(payload)))]
                response = writer.create_warc_record(
                    snap.url,
                    "response",
                    payload=io.BytesIO(payload),
                    length=len(payload),
                    http_headers=StatusAndHeaders(status, headers, protocol="HTTP/1.1"),
                    warc_headers_dict={"WARC-Date": date},
                )
                response_id = response.rec_headers.get_header("WARC-Record-ID")
                parts = urlsplit(snap.url)
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                request = writer.create_warc_record(
                    snap.url,
                    "request",
                    payload=io.BytesIO(b""),
                    length=0,
                    http_headers=StatusAndHeaders(
                        f"GET {path} HTTP/1.1",
                        [("Host", parts.netloc), ("User-Agent", user_agent)],
                        is_http_request=True,
                    ),
                    warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": response_id},
                )
                fields = (
                    f"article-guid: {article.guid}\r\narticle-title: {' '.join(article.title.split())}\r\n"
                    f"snapshot-sha256: {snap.sha256}\r\nappearance-original: {'yes' if appearance.is_original else 'no'}\r\n"
                    f"source: {appearance.source.key}\r\n"
                ).encode()
                metadata = writer.create_warc_record(
                    snap.url,
                    "metadata",
                    payload=io.BytesIO(fields),
                    length=len(fields),
                    warc_content_type="application/warc-fields",
                    warc_headers_dict={"WARC-Date": date, "WARC-Refers-To": response_id},
                )
                for record in (response, request, metadata):
                    writer.write_record(record)
                records += 3
        raw_fh.flush()
        manifest.append((hashing.digest.hexdigest(), raw_fh.tell(), "warc", out.name))
    os.replace(_partial(out), out)
    return count, records, manifest


def _write_manifest(path: Path, rows: list[tuple[str, int, str, str]]) -> None:
    with _partial(path).open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("sha256\tsize\tkind\tname\n")
        for digest, size, kind, name in rows:
            fh.write(f"{digest}\t{size}\t{kind}\t{' '.join(name.split())}\n")
    os.replace(_partial(path), path)


def manifest_path(out: Path) -> Path:
    return out.with_name(f"{out.name}.manifest.tsv")


def export(
    session: Session,
    fmt: str,
    selection: Selection | Filters,
    out: Path,
    *,
    tz: tzinfo = SHANGHAI,
    user_agent: str = DEFAULT_USER_AGENT,
    now: datetime | None = None,
) -> ExportResult:
    """Write the selected articles to `out` as CSV, JSON Lines or WARC (`.warc.gz` compresses).

    `selection` is a search's hits, or bare `Filters` for every story they let through, oldest first.
    WARC starts with a warcinfo record (this software, the format, the selection and `now`, the
    export's time: pass the caller's clock) and also writes `<out>.manifest.tsv` with the sha256 of
    every payload and of the WARC file. `user_agent` is what the request records say was sent (pass
    the crawler's configured one). Raises `ExportError`, or `QueryError` for an unusable query.
    """
    if isinstance(selection, Filters):
        selection = Selection(filters=selection)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise ExportError(f"cannot write {out}: directory {out.parent} does not exist")
    if fmt == "csv":
        return ExportResult(count=_write_csv(session, selection, out, tz), files=[out])
    if fmt == "jsonl":
        return ExportResult(count=_write_jsonl(session, selection, out, tz), files=[out])
    when = now if now is not None else datetime.now(UTC)
    count, records, manifest = _write_warc(session, selection, out, tz, user_agent, when)
    _write_manifest(manifest_path(out), manifest)
    return ExportResult(count=count, files=[out, manifest_path(out)], records=records)
