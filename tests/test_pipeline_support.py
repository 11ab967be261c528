"""Shared helpers of the pipeline tests (no tests here): items built from the fixture texts in
tests/fixtures/pipeline, and `Crawl`: one source's pages through the real ingest."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crawler.items import STATE_OK, ArticleItem
from pipeline.ingest import Ingest
from pipeline.normalize import normalize
from pipeline.precompute import precompute
from pipeline.record import Outcome, Page, Prepared, Record, SourceRef, Tags
from pipeline.tagging.vocabulary import Vocabulary

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
SOURCE_KEY = "czj-site"
SOURCE_URL = "https://czj.example.gov.cn/xxgk/"
SOURCE: dict[str, Any] = {
    "key": SOURCE_KEY,
    "kind": "site_column",
    "url": SOURCE_URL,
    "unit": None,
    "column": "学习贯彻党的二十届四中全会精神",
    "options": {"list_type": "html"},
}


def text(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text(encoding="utf-8").strip()


def truncated(full: str) -> str:
    """The first half of an article's paragraphs: a repost cut short before 阅读原文."""
    kept: list[str] = []
    for line in full.splitlines():
        if sum(map(len, kept)) >= len(full) // 2:
            break
        kept.append(line)
    return "\n".join(kept)


def reformatted(full: str) -> str:
    """The same words with other whitespace, full-width punctuation and blank lines between paragraphs."""
    lines = [line.replace(",", "\uff0c").replace(":", "\uff1a") for line in full.splitlines()]
    lines = [line.replace("\u201c", "\u300c").replace("\u201d", "\u300d") for line in lines]  # “” → 「」
    return "\n\n".join("\u3000\u3000" + line.replace("。", "。 ") for line in lines)


def article_item(
    key: str,
    body: str,
    *,
    title: str = "以全会精神为指引 推动财政工作高质量发展",
    published_at: datetime,
    fetched_at: datetime | None = None,
    state: str = STATE_OK,
    raw: bytes | None = None,
    source_key: str = SOURCE_KEY,
    source_label: str | None = None,
) -> ArticleItem:
    html = "".join(f"<p>{line}</p>" for line in body.splitlines())
    return ArticleItem(
        source_key=source_key,
        source_kind="site_column",
        url=f"https://czj.example.gov.cn/art/{key}.html",
        canonical_key=f"https://czj.example.gov.cn/art/{key}.html",
        fetched_at=fetched_at or published_at + timedelta(hours=1),
        state=state,
        title=title if state == STATE_OK else "",
        published_at=published_at,
        body_html=html if state == STATE_OK else "",
        body_text=body if state == STATE_OK else "",
        raw_body=raw if raw is not None else f"<html><body>{html}</body></html>".encode(),
        headers={"Content-Type": "text/html; charset=utf-8"},
        source_label=source_label,
    )


class Crawl:
    """One source's pages through the real ingest (`pipeline.ingest.Ingest`), each committed as it
    is handled, with a frozen clock; the source's run is closed with `requests` requests."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        now: datetime,
        *,
        source: dict[str, Any] | None = None,
        vocab: Vocabulary | None = None,
        run_id: int | None = None,
    ) -> None:
        self.ingest = Ingest(
            sessions.kw["bind"], vocab or Vocabulary.empty(), run_id=run_id, clock=lambda: now, batched=False
        )
        definition = dict(source or SOURCE)
        self.source = SourceRef.from_definition(str(definition["key"]), definition)
        self.sid = 1
        self.ingest.open_source(self.sid, self.source)
        self.run_recorder = self.ingest.sources[self.sid].run

    def prepared(self, page: Page, tags: Tags | None = None) -> Prepared:
        """The page as the crawl process prepares it (normalized), with `tags` set when given."""
        out = normalize(page)
        if tags is not None:
            assert isinstance(out, Record)
            out.tags = tags
        return out

    def run(self, page: Page | Prepared, tags: Tags | None = None) -> Outcome:
        prepared = self.prepared(page, tags) if tags is not None and not isinstance(page, Record) else page
        outcome = self.ingest.handle(self.sid, prepared)
        self.ingest.commit()
        return outcome

    def decide(self, item: ArticleItem) -> Record:
        """What the deduplicate stage decides for `item` now, without storing it."""
        record = normalize(item)
        assert isinstance(record, Record)
        precompute(record)
        with self.ingest.sessions() as session:
            self.ingest.deduplicator.decide(session, record)
        return record

    def close(self, requests: int = 7) -> None:
        self.ingest.close_source(self.sid, requests)
        self.ingest.shutdown()
