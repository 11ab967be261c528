"""The tag stage: `Tagger` sets `Record.tags` with the rules of `pipeline.tagging`.

Owns reading the vocabulary from a config file (`vocabulary_from_path`) and `zhuanlan extract
--source`'s attribution, computed as the ingest computes it. Writes no rows: the store writes
`Record.tags` with `pipeline.corpus.tagstore.apply_tags`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.items import STATE_OK, ArticleItem
from pipeline.normalize import normalize_item
from pipeline.record import Record, SourceRef
from pipeline.tagging.attribution import page_item_fields
from pipeline.tagging.rules import Vocabulary, tag_record
from zhuanlan_config import load_config

if TYPE_CHECKING:
    from datetime import datetime

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


class Tagger:
    """The tag stage: `Record.tags` from the office's vocabulary and the crawled source's owner."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab

    def tag(self, record: Record, source: SourceRef) -> Record:
        """Tags an article record that has none yet (the crawl process may have tagged it)."""
        if record.item.state == STATE_OK and record.tags is None:
            record.tags = tag_record(record, self.vocab, source.unit)
        return record


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
