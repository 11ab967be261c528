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

Fewer round trips (the pipeline worker): the crawl process sends pages in groups, and the ingest
tries the locks of a whole group in one statement (`try_all`, without waiting) before deciding its
pages. The keys held are remembered for the transaction (`batch.Batch.locks`, emptied when it ends),
and a page whose keys are all held takes none again. This changes neither argument: the keys are
taken before the decisions that read them, in the transaction that stores the pages, and the group
never waits; when one of its keys is busy, each page tries its own as before. A batch committed in
the middle of a group releases everything, and the rest of the group takes its locks page by page.

How many locks a transaction holds: advisory locks live in PostgreSQL's shared lock table, which
holds `max_locks_per_transaction × (max_connections + max_prepared_transactions)` locks for the
whole server (6,400 by default; a little more in practice). A page takes `KEYS_PER_PAGE` keys, so a
batch of 64 pages held 3,328, and four or more writers with full batches filled the table: their
lock statements, and any other session's next lock, failed with "out of shared memory" and the
batches were rolled back (measured: six writers of 60 pages at once lost 147 of 360 pages). So the
writers share the table: each ingest names its connections (`writer_name`, as libpq's fallback
application name, so a name the operator set is kept), counts the writers connected after each
commit, and sizes its next batch to its share of `WRITERS_SHARE` of the table
(`pages_per_transaction`). One writer alone keeps batches of 64 pages; six on a default server
take 15 each; a hundred take one page each rather than fail. A writer's first batch, before it
has counted, takes `FIRST_BATCH_KEYS`: writers that start together fit, and one that joins a full
house fits in the quarter left over until the others have counted it (within a batch, about a
second). Raising `max_locks_per_transaction` gives every writer larger batches (docs/scaling.md,
PostgreSQL settings). None of this changes the arguments above: a commit releases everything, as
when a lock is busy.

SQLite has one writer: the ingest's transactions begin IMMEDIATE (`db.make_engine`), so a batch
holds the database's write lock from its first statement to its commit, and no other writer can
store anything between a decision and the rows it means. No locks are taken there.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT

from pipeline.similarity import LSH_BANDS, signature_band_keys

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable

    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from pipeline.record import Record

# The keys of one page (`lock_keys`): its canonical key, its content hash, and a key per LSH band of
# both signature parts.
KEYS_PER_PAGE = 2 + 2 * LSH_BANDS[0]
# The share of the server's lock table the writers' batches fill together; the rest is the other
# sessions' and a newly started writer's (module docstring).
WRITERS_SHARE = 0.75
# A writer's first batch, before it has counted the others: six of them fit in a default table.
FIRST_BATCH_KEYS = 1024
# What an ingest calls its connections on the server (with a number of its own after it).
WRITER_NAME = "zhuanlan ingest"
_WRITERS_AND_TABLE = text(
    "SELECT (SELECT count(DISTINCT application_name) FROM pg_stat_activity WHERE application_name LIKE :named), "
    "current_setting('max_locks_per_transaction')::int "
    "* (current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int), "
    "current_setting('application_name')"
)


def writer_name() -> str:
    """The `application_name` of one ingest's connections: its writer counted once, however many
    connections it has."""
    return f"{WRITER_NAME} {uuid.uuid4().hex[:12]}"


def writers_and_table(connection: Connection) -> tuple[int, int, str]:
    """(writers connected now, whose connections bear `writer_name`s; the size of the lock table;
    this connection's own name). A writer's name is only a fallback: a database URL (or PGAPPNAME)
    that names the connections wins, and that writer is then not counted by the others."""
    writers, table, name = connection.execute(_WRITERS_AND_TABLE, {"named": f"{WRITER_NAME} %"}).one()
    return int(writers), int(table), str(name)


def pages_per_transaction(lock_table: int, writers: int, most: int) -> int:
    """Pages a writer's transaction may hold: its share of `WRITERS_SHARE` of a lock table of
    `lock_table` entries among `writers` writers, at most `most` and at least one."""
    share = int(lock_table * WRITERS_SHARE) // max(1, writers)
    return max(1, min(most, share // KEYS_PER_PAGE))


def first_batch_pages(most: int) -> int:
    """Pages of a writer's first batch (`FIRST_BATCH_KEYS`), at most `most`."""
    return max(1, min(most, FIRST_BATCH_KEYS // KEYS_PER_PAGE))


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


# One 64-bit salt per LSH band, so that equal band keys in different bands are different locks.
_BAND_SALTS = np.frombuffer(hashlib.shake_256(b"zhuanlan-dedup\x00band").digest(8 * LSH_BANDS[0]), dtype="<u8").copy()
_MIX = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def band_lock_keys(minhash: bytes) -> list[int]:
    """The lock keys of a signature's LSH band keys (both parts: every band a candidate can share),
    as signed 64-bit integers: each band key with its band's salt, through the MurmurHash3 finalizer
    (a bijection, so two band keys have one lock key only if they are equal in the same band).

    Computed for all bands at once: fifty of them a page, hashed one by one with BLAKE2 as before,
    cost more than the rest of taking the locks. Writers that run at the same time must derive
    their keys alike, so the workers of a deployment are upgraded together (CHANGELOG)."""
    keys = signature_band_keys(minhash)  # (2, bands)
    shift, m1, m2 = _MIX
    with np.errstate(over="ignore"):
        mixed: np.ndarray = keys ^ _BAND_SALTS
        mixed ^= mixed >> shift
        mixed *= m1
        mixed ^= mixed >> shift
        mixed *= m2
        mixed ^= mixed >> shift
    values: list[int] = mixed.view(np.int64).ravel().tolist()
    return values


def lock_keys(record: Record) -> list[int]:
    """The sorted advisory lock keys of every path the decision of `record` reads (module docstring)."""
    return list(_lock_keys(record.item.canonical_key, record.content_hash, record.minhash))


# A page's keys are asked for twice (by its group, then by its decision).
@functools.lru_cache(maxsize=256)
def _lock_keys(canonical_key: str, content_hash: str | None, minhash: bytes | None) -> tuple[int, ...]:
    keys = {_key(b"key", canonical_key.encode())}
    if content_hash:
        keys.add(_key(b"hash", content_hash.encode()))
    if minhash is not None:
        keys.update(band_lock_keys(minhash))
    return tuple(sorted(keys))


class DedupLocks:
    """Takes a page's dedup locks in the current transaction (PostgreSQL only; see the module docstring).

    `held`: the keys the current transaction holds, and `reads`: what it read under them for pages
    still to be decided; both kept by the transaction's owner, who empties them when the transaction
    ends (the ingest's `batch.Batch.locks` and `.reads`). Without them every page asks for itself."""

    def __init__(self, dialect: str, held: set[int] | None = None, reads: dict[Hashable, Any] | None = None) -> None:
        self.enabled = dialect == "postgresql"
        self.held = held
        self.reads = reads if held is not None else None

    def take(self, session: Session, record: Record, *, wait: bool) -> None:
        """Hold the page's locks until the transaction ends. Without `wait`, raises `LockBusy` when
        one is held elsewhere (the locks got so far stay held until the caller commits)."""
        if not self.enabled:
            return
        keys = lock_keys(record)
        if self.held is not None and self.held.issuperset(keys):
            return
        connection = session.connection()
        if wait:
            connection.execute(_TAKE, {"keys": keys}).scalar_one()
        elif not connection.execute(_TRY, {"keys": keys}).scalar_one():
            raise LockBusy(record.item.canonical_key)
        if self.held is not None:
            self.held.update(keys)

    def try_all(self, session: Session, records: Iterable[Record]) -> bool:
        """Try the locks of several pages in one statement, without waiting; whether all are held
        now (remembered in `held`). When one is busy, nothing is remembered: each page then tries
        its own (the ones got here stay held until the transaction ends, as with `take`)."""
        if not self.enabled or self.held is None:
            return False
        keys = sorted({key for record in records for key in lock_keys(record)} - self.held)
        if not keys:
            return True
        if not session.connection().execute(_TRY, {"keys": keys}).scalar_one():
            return False
        self.held.update(keys)
        return True

    def forget_held(self) -> None:
        """The transaction may have ended behind the owner's back: ask again for every key."""
        if self.held is not None:
            self.held.clear()
        if self.reads is not None:
            self.reads.clear()
