"""Dedup locks: why two writers storing near-duplicates at the same moment still end with one story.

PostgreSQL (several crawls or `zhuanlan worker` processes write at once). Before the deduplicate
stage decides a page, its transaction takes a transaction-level advisory lock
(`pg_advisory_xact_lock`, released only at COMMIT/ROLLBACK) on every key the decision depends on:

- the page's canonical key (the known-appearance path),
- its content hash (the exact-duplicate path),
- each LSH band key of both signature parts, with the band's index (the near-duplicate path: the
  index finds a stored story only when one of its band keys in some band equals one of ours in the
  same band, `similarity.SignatureIndex.candidates`).

Why no interleaving yields two stories: say transactions A and B store pages a and b that would
be merged by a decision seeing the other (same key, same hash, or LSH candidates). Then they share
a lock key k. Both hold k from before their decision until their commit, so one, say A, holds it
first and B obtains k only after A committed. B decides after obtaining all its locks, and under
READ COMMITTED every statement B runs then sees A's rows; the in-memory LSH index catches up after
the locks are taken and re-reads ids it skipped as not yet committed (`dedup.StoryIndex`), so A's
story is a candidate of b and B attaches b to it. The unique canonical key stays as the last line.
A hash collision of two lock keys only makes two unrelated pages wait for each other.

Why no deadlock: many pages share one transaction (`db.BatchedSessions`), so a transaction would
otherwise gather locks page by page in no global order. Instead, a transaction *waits* for dedup
locks only when it holds nothing: a page first tries its locks without waiting
(`pg_try_advisory_xact_lock`); if one is busy, the ingest commits its batch (releasing everything)
and takes this page's locks in ascending key order, waiting, in a fresh transaction. So every
waiting transaction holds only locks smaller than the one it waits for, taken in the same sorted
pass, and no row locks (it has written nothing yet): a cycle of waits would need a key smaller than
itself. Waits for row locks (two writers touching the same appearance) are PostgreSQL's as before,
and its deadlock detector resolves them by failing one batch, which the run records as lost.

SQLite has one writer: the ingest's transactions begin IMMEDIATE (`db.make_engine`), so a batch
holds the database's write lock from its first statement to its commit, and no other writer can
store anything between a decision and the rows it means. No locks are taken there.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT

from pipeline.similarity import band_keys, signature_halves

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from pipeline.record import Record

# unnest keeps the array's order, and the keys come sorted: the locks are taken in ascending order.
_TAKE = text("SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k) FROM unnest(:keys) AS k) AS taken").bindparams(
    bindparam("keys", type_=ARRAY(BIGINT))
)
_TRY = text("SELECT bool_and(pg_try_advisory_xact_lock(k)) FROM unnest(:keys) AS k").bindparams(
    bindparam("keys", type_=ARRAY(BIGINT))
)


class LockBusy(Exception):
    """A dedup lock of the page is held by another transaction: commit, then take them waiting."""


def _key(*parts: bytes) -> int:
    return int.from_bytes(
        hashlib.blake2b(b"\x00".join((b"zhuanlan-dedup", *parts)), digest_size=8).digest(), "big", signed=True
    )


def lock_keys(record: Record) -> list[int]:
    """The sorted advisory lock keys of every path the decision of `record` reads (module docstring)."""
    keys = {_key(b"key", record.item.canonical_key.encode())}
    if record.content_hash:
        keys.add(_key(b"hash", record.content_hash.encode()))
    if record.minhash is not None:
        for part in signature_halves(record.minhash):
            for band, value in enumerate(band_keys(part).tolist()):
                keys.add(_key(b"band", band.to_bytes(2, "big"), int(value).to_bytes(8, "big")))
    return sorted(keys)


class DedupLocks:
    """Takes a page's dedup locks in the current transaction (PostgreSQL only; see the module docstring)."""

    def __init__(self, dialect: str) -> None:
        self.enabled = dialect == "postgresql"

    def take(self, session: Session, record: Record, *, wait: bool) -> None:
        """Hold the page's locks until the transaction ends. Without `wait`, raises `LockBusy` when
        one is held elsewhere (the locks got so far stay held until the caller commits)."""
        if not self.enabled:
            return
        keys = lock_keys(record)
        connection = session.connection()
        if wait:
            connection.execute(_TAKE, {"keys": keys}).scalar_one()
        elif not connection.execute(_TRY, {"keys": keys}).scalar_one():
            raise LockBusy(record.item.canonical_key)
