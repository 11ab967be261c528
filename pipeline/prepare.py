"""The stages that need no database, run in the crawl process: normalize and tag.

The pipeline worker (`pipeline.worker`) deduplicates and stores; the crawl process fetches,
extracts, and prepares each page with `Preparer`: tags are made here unless the worker has time to
spare, and the signature, snapshot and search text only while the worker is the slower side
(`pipeline.offload.WorkSplit` decides page by page), so the two processes share the work evenly
whichever is slower on a given machine, site or database.
Importing this module must stay cheap: it is all the crawl process loads of the pipeline (no
database models; numpy only once a page is signed here).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from crawler.items import STATE_OK, ProblemItem
from pipeline.ahead import work_ahead
from pipeline.normalize import NormalizePipeline, RejectedItem
from pipeline.record import Record
from pipeline.tag import TagPipeline

if TYPE_CHECKING:
    from pipeline.tagging.rules import Vocabulary

log = logging.getLogger(__name__)


class Preparer:
    """Normalize and tag, in the crawl process: what goes to the worker instead of the page."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.normalize = NormalizePipeline()
        self.tag = TagPipeline(vocab)

    def prepare(self, item: Any, source: Any, *, ahead: bool = False, tag: bool = True) -> Any:
        """A normalized `Record` for an article page, tagged unless `tag` is false (the worker tags
        it then), and with `ahead` also signed and with its snapshot and search text computed
        (`pipeline.ahead`); the `ProblemItem` to record for a page that is rejected or cannot be
        prepared; any other item as it is. Never raises."""
        try:
            out = self.normalize.process_item(item, source)
            if isinstance(out, Record) and out.item.state == STATE_OK:
                if tag:
                    out = self.tag.process_item(out, source)
                if ahead:
                    work_ahead(out)
            return out
        except RejectedItem as exc:
            log.warning("dropped: %s", exc)
            return exc.problem
        except Exception as exc:
            url = str(getattr(item, "url", "") or "")
            log.exception("could not prepare %s", url)
            return ProblemItem(
                source_key=str(getattr(item, "source_key", "") or ""),
                url=url,
                kind="pipeline",
                reason=f"could not process the page: {type(exc).__name__}: {' '.join(str(exc).split())}",
                fatal=True,
            )
