"""The item stages of one source in order, outside Scrapy: normalize → deduplicate → tag → store.

What Scrapy's ITEM_PIPELINES did with the four stage classes, as plain calls, so the stages can
run in the pipeline worker process (`pipeline.worker`) while the crawl process fetches and
extracts. The stage classes are unchanged; this module only wires them and reproduces what
Scrapy's signals did between them: an item a stage rejects (`RejectedItem`) is recorded as a
problem of the source's run, an item that fails in a stage is recorded as a fatal problem.

A record prepared by the crawl process (`pipeline.prepare`: normalized and tagged) passes
through normalize and tag as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import DropItem

from pipeline.dedup import DeduplicatePipeline
from pipeline.normalize import NormalizePipeline, RejectedItem
from pipeline.record import Record
from pipeline.store import StorePipeline
from pipeline.tag import TagPipeline

if TYPE_CHECKING:
    from pipeline.corpus.db import SessionSource
    from pipeline.tagging.rules import Vocabulary

log = logging.getLogger(__name__)

# What happened to one item (the worker reports it back to the crawl process).
STORED = "stored"  # went through every stage (stored, or recorded as a problem / list page)
REJECTED = "rejected"  # a stage refused it; the reason is recorded on the source's run
DROPPED = "dropped"  # nothing to store (a state page of an article never stored)
FAILED = "failed"  # a stage raised; recorded on the source's run as a fatal problem


@dataclass(frozen=True)
class SourceRef:
    """What the stages need of the spider: its source key and definition (a stand-in for the spider)."""

    source_key: str
    source: dict[str, Any] = field(default_factory=dict)


class _RequestCount:
    """The one crawler statistic the store reads when it closes the source's run."""

    def __init__(self) -> None:
        self.requests = 0

    def get_value(self, key: str, default: Any = None) -> Any:
        return self.requests if key == "downloader/request_count" else default


class SourceChain:
    """The four stages of one source's crawl, opened and closed as Scrapy would."""

    def __init__(
        self,
        sessions: SessionSource,
        source: SourceRef,
        vocab: Vocabulary,
        *,
        run_id: int | None,
        config_path: str | None,
        share_key: str,
    ) -> None:
        self.source = source
        self.stats = _RequestCount()
        self.normalize = NormalizePipeline()
        self.dedup = DeduplicatePipeline(sessions, share_key=share_key)
        self.tag = TagPipeline(vocab)
        self.store = StorePipeline(sessions, run_id=run_id, config_path=config_path, stats=self.stats)

    def open(self) -> None:
        self.dedup.open_spider(self.source)
        self.store.open_spider(self.source)

    def handle(self, item: Any) -> str:
        """Run one item through the stages; returns STORED, REJECTED, DROPPED or FAILED (never raises)."""
        current = item
        try:
            current = self.normalize.process_item(current, self.source)
            current = self.dedup.process_item(current, self.source)
            current = self.tag.process_item(current, self.source)
            self.store.process_item(current, self.source)
        except RejectedItem as exc:
            log.warning("dropped: %s", exc)
            self.store.item_dropped(item=item, exception=exc)
            return REJECTED
        except DropItem as exc:
            log.info("dropped: %s", exc)
            return DROPPED
        except Exception as exc:
            page = current.item if isinstance(current, Record) else current
            log.exception("could not process %s", getattr(page, "url", page))
            self.store.item_error(item=current, failure=exc)
            return FAILED
        return STORED

    def close(self, requests: int) -> None:
        self.stats.requests = requests
        try:
            self.store.close_spider(self.source)
        finally:
            self.dedup.close_spider(self.source)
