"""Shared helpers of the pipeline tests (no tests here): items built from the fixture texts in
tests/fixtures/pipeline, a fake spider, and normalize → dedup → (tag) → store in one call."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crawler.items import STATE_OK, ArticleItem
from pipeline.dedup import DeduplicatePipeline
from pipeline.normalize import NormalizePipeline
from pipeline.record import Record, Tags
from pipeline.store import StorePipeline

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


@dataclass
class FakeSpider:
    source: dict[str, Any] = field(default_factory=lambda: dict(SOURCE))

    @property
    def source_key(self) -> str:
        return str(self.source["key"])


class FakeStats:
    def __init__(self, requests: int = 0) -> None:
        self.values = {"downloader/request_count": requests}

    def get_value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


class Chain:
    """normalize → deduplicate → (tags given by the test) → store, as Scrapy would run them."""

    def __init__(self, sessions: sessionmaker[Session], now: datetime, *, spider: FakeSpider | None = None) -> None:
        self.spider = spider or FakeSpider()
        self.normalize = NormalizePipeline()
        self.dedup = DeduplicatePipeline(sessions)
        self.store = StorePipeline(sessions, clock=lambda: now, stats=FakeStats(7))
        self.dedup.open_spider(self.spider)
        self.store.open_spider(self.spider)

    def decide(self, item: ArticleItem) -> Record:
        record = self.dedup.process_item(self.normalize.process_item(item))
        assert isinstance(record, Record)
        return record

    def run(self, item: Any, tags: Tags | None = None) -> Any:
        out = self.normalize.process_item(item)
        out = self.dedup.process_item(out)
        if isinstance(out, Record) and tags is not None:
            out.tags = tags
        return self.store.process_item(out)

    def close(self) -> None:
        self.store.close_spider(self.spider)
        self.dedup.close_spider(self.spider)
