"""The page-only work of a record: its MinHash signature, its snapshot's digest and compressed
bytes, and its search-index text. None of it needs the database.

`precompute` fills in whatever a record does not carry yet. The crawl process calls it for the
pages it prepares while the pipeline worker is the slower side (`pipeline.worker.split`); the
ingest calls it for every record before deduplicating, so each value is computed exactly once,
by whichever process had time for it.

Cheap to import (the crawl process loads it at start): numpy comes with the first signature.
"""

from __future__ import annotations

import hashlib
import zlib

from crawler.items import STATE_OK
from pipeline.corpus.textsplit import fold_for_matching, split_folded, split_text
from pipeline.record import Record


def snapshot_parts(raw: bytes) -> tuple[str, bytes]:
    """(sha256 hex, zlib-compressed bytes) of a fetched page: what a snapshot row stores."""
    return hashlib.sha256(raw).hexdigest(), zlib.compress(raw)


def search_parts(title: str, body: str, folded_body: str | None = None) -> tuple[str, str]:
    """(title, body) in the search index's form (`textsplit.split_text`); `folded_body`: the body
    already folded (`fold_for_matching`)."""
    return split_text(title), split_text(body) if folded_body is None else split_folded(folded_body)


def precompute(record: Record) -> Record:
    """The record with its signature, snapshot parts and search text (an article page only). The
    body is folded once for the signature and the search text."""
    if record.item.state != STATE_OK:
        return record
    folded = fold_for_matching(record.body_text) if record.minhash is None or record.search is None else None
    if record.minhash is None:
        from pipeline.similarity import signature

        record.minhash = signature(record.body_text, folded)
    if record.snapshot is None and record.item.raw_body:
        record.snapshot = snapshot_parts(record.item.raw_body)
    if record.search is None:
        record.search = search_parts(record.title, record.body_text, folded)
    return record
