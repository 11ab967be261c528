"""The tag stage of the item pipelines: a thin Scrapy shell around `pipeline.tagging.rules`.

Owns reading the vocabulary from the config named by the `ZHUANLAN_CONFIG` setting and
setting `Record.tags` on every record whose page state is ok. Other items pass through
untouched. Writes no rows: the store stage writes `Record.tags` with `tagstore.apply_tags`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.items import STATE_OK, ArticleItem
from pipeline.normalize import normalize_item
from pipeline.record import Record
from pipeline.tagging.attribution import page_item_fields
from pipeline.tagging.rules import Vocabulary, tag_record, warm_up_keywords
from zhuanlan_config import load_config

if TYPE_CHECKING:
    from datetime import datetime

    from scrapy.crawler import Crawler

    from zhuanlan_config import SourceConf

logger = logging.getLogger(__name__)


def vocabulary_from_path(path: str | Path | None) -> Vocabulary:
    """The vocabulary of the config at `path`; empty when no path is set or the file is missing.

    An empty vocabulary still tags author, positions and keywords. A config that exists but is
    invalid raises `ConfigError`: tagging everything with no units would hide the mistake.
    """
    if not path or not Path(path).is_file():
        if path:
            logger.warning("config %s not found: tagging without units, topics or columns", path)
        return Vocabulary.empty()
    return Vocabulary.from_config(load_config(path))


class TagPipeline:
    """Sets `Record.tags`. The owning unit is the crawled source's (`spider.source["unit"]`)."""

    def __init__(self, vocab: Vocabulary, crawler: Crawler | None = None) -> None:
        self.vocab = vocab
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TagPipeline:
        return cls(vocabulary_from_path(crawler.settings.get("ZHUANLAN_CONFIG")), crawler)

    def open_spider(self, spider: Any = None) -> None:
        # Load the keyword dictionary and IDF table before the first page, not in the middle of the crawl.
        warm_up_keywords()

    def _owning_unit(self, spider: Any) -> str | None:
        if spider is None and self.crawler is not None:
            spider = self.crawler.spider
        source = getattr(spider, "source", None)
        unit = source.get("unit") if isinstance(source, dict) else None
        return unit if isinstance(unit, str) and unit else None

    # `spider` is optional: Scrapy ≥ 2.14 no longer passes it to components that do not require it.
    def process_item(self, item: Any, spider: Any = None) -> Any:
        # A record tagged already (by the crawl process, see `pipeline.prepare`) keeps its tags.
        if isinstance(item, Record) and item.item.state == STATE_OK and item.tags is None:
            item.tags = tag_record(item, self.vocab, self._owning_unit(spider))
        return item


def extract_attribution(fields: dict[str, Any], source: SourceConf, vocab: Vocabulary, now: datetime) -> dict[str, Any]:
    """`zhuanlan extract --source`: the attribution and column membership of a saved page, computed
    as the pipeline computes them for a page of that source (the same item fields, the same
    normalizing, the same tag rules, the source's kind, owner and column)."""
    parsed = page_item_fields(fields)
    options = source.options or {}
    item = ArticleItem(
        source_key=source.key,
        source_kind=source.kind,
        url=str(fields.get("url") or ""),
        canonical_key=str(fields.get("canonical_key") or fields.get("url") or ""),
        fetched_at=now,
        title=str(fields.get("title") or ""),
        author=parsed["author"],
        byline=parsed["byline"],
        source_label=parsed["source_label"],
        body_html=str(fields.get("body_html") or ""),
        body_text=str(fields.get("body_text") or ""),
        column=source.column,
        extra={"column_rule": "title"} if source.kind == "site_column" and options.get("title_include") else {},
    )
    tags = tag_record(normalize_item(item), vocab, source.unit)
    return {
        "attribution": {
            "unit": tags.unit,
            "unit_from": tags.unit_from,
            "authors": [author.name for author in tags.authors],
            "positions": list(tags.positions),
        },
        "column": {"in_column": tags.column, "candidate": tags.column_candidate, "reason": tags.column_reason},
    }
