"""Work of the worker's stages that needs no database, done ahead by the crawl process.

A record's MinHash signature (deduplicate), its snapshot's digest and compressed bytes, and its
search-index text (store) depend on the page alone. The pipeline worker computes whatever a
record does not carry; the crawl process fills them in (`work_ahead`) for the records it prepares
while the worker is the slower side (`pipeline.offload`), so the two processes even out on their
own, whichever site, page size or database makes one of them the bottleneck.

Cheap to import (the crawl process loads it at start): numpy comes with the first signature.
"""

from __future__ import annotations

import hashlib
import zlib

from crawler.items import STATE_OK
from pipeline.corpus.textsplit import split_text
from pipeline.record import Record


def snapshot_parts(raw: bytes) -> tuple[str, bytes]:
    """(sha256 hex, zlib-compressed bytes) of a fetched page: what a snapshot row stores."""
    return hashlib.sha256(raw).hexdigest(), zlib.compress(raw)


def search_parts(title: str, body: str) -> tuple[str, str]:
    """(title, body) in the search index's form (`textsplit.split_text`)."""
    return split_text(title), split_text(body)


def work_ahead(record: Record) -> None:
    """Fill in the record's signature, snapshot parts and search text (an article page only)."""
    if record.item.state != STATE_OK:
        return
    if record.minhash is None:
        from pipeline.similarity import signature

        record.minhash = signature(record.body_text)
    if record.snapshot is None and record.item.raw_body:
        record.snapshot = snapshot_parts(record.item.raw_body)
    if record.search is None:
        record.search = search_parts(record.title, record.body_text)
