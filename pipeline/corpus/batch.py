"""A batch: one transaction's writes that wait for its commit, and the row ids it learnt.

The ingest stores many pages per transaction (`db.BatchedSessions`: a SAVEPOINT per page, one
commit per batch). Some writes are cheaper made once for the whole batch, just before the commit:
the search entries of new articles (SQLite's FTS5 writes an index segment at every SAVEPOINT
release otherwise) and the run counters (one UPDATE instead of one per page). The writes that
defer take the `Batch` as an argument; without one they write at once.

The batch also remembers the ids of tag and unit rows it met, so a crawl asks the database only
for names it has not seen: ids of rows committed before (`IdCache`, shared by the batches of one
ingest: those rows are never deleted, so an id once committed stays right) and ids of rows this
transaction inserted, which become shared only when it commits (a rollback takes them away).

Owns no connection and never executes anything but its deferred writes, when told to.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class Ids:
    """Tag ids by (kind, name) and unit ids by name."""

    tags: dict[tuple[str, str], int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)

    def update(self, other: Ids) -> None:
        self.tags.update(other.tags)
        self.units.update(other.units)


class IdCache:
    """Ids of tag and unit rows committed to one database."""

    def __init__(self) -> None:
        self.ids = Ids()


class Batch:
    """The deferred writes and the learnt ids of one transaction (see the module docstring)."""

    def __init__(self, cache: IdCache | None = None) -> None:
        self.cache = cache if cache is not None else IdCache()
        self.deferred: dict[Hashable, tuple[Any, dict[str, Any]]] = {}
        self.pending = Ids()  # ids of rows this transaction inserted (or tried to)
        # Set when a unit of this transaction was rolled back: ids of rows found from then on may be
        # this transaction's own earlier inserts, so they wait for the commit too.
        self.tainted = False
        # Dedup lock keys this transaction holds (`pipeline.locks`): taken outside any unit, so a
        # unit's rollback keeps them; emptied in place when the transaction ends, which releases them.
        self.locks: set[int] = set()
        # What the transaction read under those locks, for decisions still to come (by the reader's
        # key): valid only while the locks are held, so emptied with them.
        self.reads: dict[Hashable, Any] = {}
        # Whether the transaction merges the search index's pending lists before its commit
        # (`search_index`); not when its owner has them merged after the commit.
        self.merges_search_index = True

    # -- deferred writes

    def defer(self, key: Hashable, statement: Any, params: dict[str, Any]) -> None:
        """Run `statement` with `params` just before the commit (a later write with the same key replaces it)."""
        self.deferred[key] = (statement, params)

    def take(self, key: Hashable) -> tuple[Any, dict[str, Any]] | None:
        """The deferred write under `key`, removed (its caller writes it now, or replaces it)."""
        return self.deferred.pop(key, None)

    def write(self, session: Session) -> None:
        """Execute the deferred writes, one executemany per statement, in the order first deferred."""
        groups: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
        for statement, params in self.deferred.values():
            groups.setdefault(id(statement), (statement, []))[1].append(params)
        for statement, rows in groups.values():
            session.execute(statement, rows)
        self.deferred.clear()

    # -- ids

    def tag_id(self, key: tuple[str, str]) -> int | None:
        return self.cache.ids.tags.get(key) or self.pending.tags.get(key)

    def unit_id(self, name: str) -> int | None:
        return self.cache.ids.units.get(name) or self.pending.units.get(name)

    def inserted(self, ids: Ids) -> None:
        """Ids of rows this transaction inserted: shared once it commits."""
        self.pending.update(ids)

    def found(self, ids: Ids) -> None:
        """Ids of rows this transaction read and did not insert: committed by someone else, unless a
        rolled-back unit may have inserted them."""
        (self.pending if self.tainted else self.cache.ids).update(ids)

    # -- the transaction's life

    @contextmanager
    def unit(self) -> Iterator[Batch]:
        """One unit of work (a SAVEPOINT): if it fails, what it deferred and learnt goes with it."""
        deferred = dict(self.deferred)
        try:
            yield self
        except BaseException:
            self.deferred = deferred
            self.pending = Ids()
            self.tainted = True
            raise

    def committed(self) -> None:
        """The transaction committed: its ids are shared from now on; a new transaction starts."""
        self.cache.ids.update(self.pending)
        self._start_over()

    def abandoned(self) -> None:
        """The transaction rolled back: everything it deferred and learnt is gone."""
        self._start_over()

    def _start_over(self) -> None:
        self.deferred.clear()
        self.pending = Ids()
        self.tainted = False
        self.locks.clear()
        self.reads.clear()
