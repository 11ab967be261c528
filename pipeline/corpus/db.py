"""Database engine and schema upgrades.

Owns how an engine is made (SQLite in WAL mode with a busy timeout and foreign keys on;
PostgreSQL as given) and running the Alembic migrations. Never reads config by itself:
the URL is passed in.

Two environment variables tune SQLite engines, for fault tests and odd deployments (both unset
in production):

- `ZHUANLAN_SQLITE_BUSY_TIMEOUT` — seconds a writer waits for another process's lock before
  "database is locked" (default 30);
- `ZHUANLAN_SQLITE_MAX_PAGE_COUNT` — `PRAGMA max_page_count` on every connection: the file cannot
  grow past that many pages, so a write that needs more fails with "database or disk is full"
  (how the tests simulate a full disk).

A unit of work that fails in the database itself (locked, full, connection lost) raises
`DatabaseError` with one plain line that says what happened and what to do.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.corpus.batch import Batch, IdCache

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration, the one this release's code reads and writes (a test holds it equal to the
# head of MIGRATIONS_DIR). A constant, so a command checks the database without loading Alembic.
SCHEMA_REVISION = "0017"
BUSY_TIMEOUT_ENV = "ZHUANLAN_SQLITE_BUSY_TIMEOUT"
MAX_PAGE_COUNT_ENV = "ZHUANLAN_SQLITE_MAX_PAGE_COUNT"
DEFAULT_BUSY_TIMEOUT = 30.0


class DatabaseError(RuntimeError):
    """The database cannot be opened, upgraded or written; the message says what to do."""


def _env_number(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise DatabaseError(f"{name} must be a number, got {raw!r}") from exc
    if value < 0:
        raise DatabaseError(f"{name} must not be negative, got {raw!r}")
    return value


def sqlite_busy_timeout() -> float:
    """Seconds a SQLite writer waits for another process's lock (`ZHUANLAN_SQLITE_BUSY_TIMEOUT`, default 30)."""
    value = _env_number(BUSY_TIMEOUT_ENV, DEFAULT_BUSY_TIMEOUT)
    assert value is not None
    return value


def _sqlite_pragmas(busy_timeout: float, max_page_count: int | None) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if max_page_count is not None:
            cursor.execute(f"PRAGMA max_page_count={max_page_count}")
        cursor.close()

    return on_connect


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
    # sqlite3 would begin transactions itself, lazily and only before writes, and a SAVEPOINT
    # outside its transaction would commit on release; SQLAlchemy's "begin" event begins instead.
    dbapi_connection.isolation_level = None


def make_engine(url: str, *, immediate_transactions: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`. For SQLite the parent directory must exist (it is not created here).

    `immediate_transactions` (SQLite): every transaction begins with BEGIN IMMEDIATE, taking the
    write lock at its start (waiting up to the busy timeout) so a transaction that reads and then
    writes cannot fail on a snapshot another writer made stale, and SAVEPOINTs nest inside it
    (what `BatchedSessions` needs). Ignored for PostgreSQL, where both hold anyway."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            parent = Path(database).parent
            if not parent.is_dir():
                raise DatabaseError(f"cannot open database {database}: directory {parent} does not exist")
        busy = sqlite_busy_timeout()
        pages = _env_number(MAX_PAGE_COUNT_ENV, None)
        engine = create_engine(url, connect_args={"timeout": busy}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas(busy, int(pages) if pages is not None else None))
        if immediate_transactions:
            event.listen(engine, "connect", _driver_autocommit)
            event.listen(engine, "begin", _begin_immediate)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


_SHARED_ROWS_ENGINES: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_SHARED_ROWS_LOCK = threading.Lock()


def _asynchronous_commits(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")


def shared_rows_engine(engine: Engine) -> Engine:
    """A PostgreSQL engine beside `engine` whose statements commit at once (autocommit) without
    waiting for the WAL flush, for the rows every writer shares (`tagstore._commit_shared_rows`).

    One statement is one round trip: no BEGIN, no COMMIT, no per-transaction SET, no ping at
    checkout (a connection the server dropped fails that statement, which the store retries on a
    fresh one). Made once per engine and disposed with it.
    """
    with _SHARED_ROWS_LOCK:
        shared = _SHARED_ROWS_ENGINES.get(engine)
        if shared is None:
            shared = create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=4)
            event.listen(shared, "connect", _asynchronous_commits)
            _SHARED_ROWS_ENGINES[engine] = shared
            event.listen(engine, "engine_disposed", _dispose_shared_rows_engine)
    return shared


def _dispose_shared_rows_engine(engine: Engine) -> None:
    with _SHARED_ROWS_LOCK:
        shared = _SHARED_ROWS_ENGINES.pop(engine, None)
    if shared is not None:
        shared.dispose()


_DIALECT_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@functools.cache
def insert_or_ignore(dialect: str, table: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING into `table` for the named dialect, built once per table."""
    make = _DIALECT_INSERTS.get(dialect)
    if make is None:
        raise NotImplementedError(f"zhuanlan stores into SQLite and PostgreSQL, not {dialect}")
    return make(table).on_conflict_do_nothing()


@functools.cache
def insert_or_replace(dialect: str, table: Table, key: str) -> Any:
    """INSERT … ON CONFLICT (`key`) DO UPDATE, every other column taking the new row's value, for
    the named dialect, built once per table: two writers of the same row at once both succeed."""
    make = _DIALECT_INSERTS.get(dialect)
    if make is None:
        raise NotImplementedError(f"zhuanlan stores into SQLite and PostgreSQL, not {dialect}")
    statement = make(table)
    others = {c.name: statement.excluded[c.name] for c in table.columns if c.name != key}
    return statement.on_conflict_do_update(index_elements=[key], set_=others)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def describe_failure(exc: DBAPIError) -> str:
    """One plain line for a database failure during a unit of work: what happened, what to do."""
    message = one_line(exc.orig)
    lowered = message.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return (
            f"the database is locked: another process held a write lock longer than the busy timeout "
            f"({message}); find the process holding it (a second crawl, a backup, an open sqlite3 shell) and retry"
        )
    if "disk is full" in lowered or "no space left" in lowered or "disk full" in lowered:
        return f"the database or disk is full ({message}): free space on the database's disk, then run again"
    if exc.connection_invalidated or "terminating connection" in lowered or "closed the connection" in lowered:
        return (
            f"the connection to the database was lost ({message}): the server restarted or dropped us; "
            f"the next run retries what was not stored"
        )
    return f"the database failed: {message}"


class SessionSource(Protocol):
    """What the pipeline stages take: a sessionmaker, or `BatchedSessions` in the pipeline worker."""

    kw: dict[str, Any]

    def __call__(self) -> AbstractContextManager[Session]: ...


class ReplayBatch(BaseException):
    """An optimistic unit (no SAVEPOINT) failed, and its batch's transaction is rolled back: the
    owner runs every unit of the batch again, each in a SAVEPOINT (`BatchedSessions.careful`).
    A BaseException: the handlers that record a unit's own failure must let it through."""


class BatchedSessions:
    """A stand-in for a sessionmaker that runs many units of work in one transaction.

    Each `transaction(...)` on it is a SAVEPOINT of one long transaction (an error rolls back that
    unit only), and `sessions()` lends the same session for reads, so a unit sees what earlier
    units wrote. The owner calls `commit()` (the ingest: every `max_units`, or when no page came
    for a moment). One commit per batch instead of per article: SQLite's full-text index writes a
    new segment per commit, which cost more than the rest of storing an article. `batch` holds the
    transaction's deferred writes and learnt ids (`pipeline.corpus.batch`); the writes that defer
    take it as an argument.

    When the database itself fails (`OperationalError`: locked, full, connection lost) everything
    not committed is rolled back and `on_abandon(reason)` is called so the owner can record what
    was lost; the failing unit raises `DatabaseError` as `transaction` does. For SQLite the engine
    must be made with `immediate_transactions=True`.

    Optimistic units (`unit(optimistic=True)`, when `optimistic` is set: PostgreSQL, where a
    SAVEPOINT and its RELEASE are two round trips to the server, more than the unit's own insert
    costs) run without a SAVEPOINT. If one fails, the whole transaction is rolled back and
    `ReplayBatch` raised: the owner handles the batch's pages again with `careful` set, when every
    unit has its SAVEPOINT, so the failing page fails alone as it would have. Failures are rare
    (the unit is one statement whose conflicts the dedup locks rule out), so the replay is too.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        on_abandon: Callable[[str], None] | None = None,
        *,
        cache: IdCache | None = None,
    ) -> None:
        self.factory = factory
        self.kw = factory.kw  # callers read `sessions.kw["bind"]` as on a sessionmaker
        self.on_abandon = on_abandon
        self.batch = Batch(cache)
        self.units = 0  # units since the last commit
        self._session: Session | None = None
        self.optimistic = factory.kw.get("bind") is not None and factory.kw["bind"].dialect.name == "postgresql"
        self.careful = False  # set by the owner while it replays a batch: every unit in a SAVEPOINT

    def _current(self) -> Session:
        if self._session is None:
            self._session = self.factory()
        return self._session

    def _abandon(self, exc: DBAPIError) -> DatabaseError:
        reason = describe_failure(exc)
        session, self._session = self._session, None
        self.units = 0
        self.batch.abandoned()
        if session is not None:
            with suppress(DBAPIError):  # the connection is gone: closing discards it
                session.rollback()
            session.close()
        if self.on_abandon is not None:
            self.on_abandon(reason)
        return DatabaseError(reason)

    @contextmanager
    def __call__(self) -> Iterator[Session]:
        """The batch's session, for reads (`with sessions() as session:`); not closed afterwards."""
        try:
            yield self._current()
        except OperationalError as exc:
            raise self._abandon(exc) from exc

    @contextmanager
    def unit(self, *, optimistic: bool = False) -> Iterator[Session]:
        """One unit of work: a SAVEPOINT, or none for an `optimistic` unit (see the class docstring)."""
        session = self._current()
        if optimistic and self.optimistic and not self.careful:
            try:
                with self.batch.unit():
                    yield session
            except OperationalError as exc:
                raise self._abandon(exc) from exc
            except Exception as exc:
                self._roll_back()
                raise ReplayBatch(str(exc)) from exc
            except BaseException:  # interrupted: the batch is lost, and recorded so, as when the database fails
                self._roll_back()
                if self.on_abandon is not None:
                    self.on_abandon("interrupted while storing the batch")
                raise
            self.units += 1
            return
        savepoint = session.begin_nested()
        try:
            with self.batch.unit():
                yield session
        except OperationalError as exc:
            # Not the savepoint: SQLite may already have rolled back the whole transaction (a full
            # disk does), and PostgreSQL has no connection left to roll back to it on.
            raise self._abandon(exc) from exc
        except BaseException:
            try:
                savepoint.rollback()
            except OperationalError as exc:
                raise self._abandon(exc) from exc
            raise
        try:
            savepoint.commit()
        except OperationalError as exc:
            raise self._abandon(exc) from exc
        self.units += 1

    def commit(self) -> None:
        """Commit every unit since the last commit; `DatabaseError` (after `on_abandon`) if that fails."""
        if self._session is None:
            return
        session = self._session
        try:
            self.batch.write(session)
            session.commit()
        except DBAPIError as exc:  # the deferred writes are the batch's too: any failure loses it
            raise self._abandon(exc) from exc
        self.batch.committed()
        self.units = 0

    def _roll_back(self) -> None:
        """Roll back everything not committed, for the owner to run it again."""
        session, self._session = self._session, None
        self.units = 0
        self.batch.abandoned()
        if session is not None:
            with suppress(DBAPIError):  # the connection is gone: the replay's first unit says so
                session.rollback()
            session.close()

    def close(self) -> None:
        """Roll back what is not committed and release the connection."""
        session, self._session = self._session, None
        self.batch.abandoned()
        if session is not None:
            session.close()


def batch_of(factory: SessionSource) -> Batch | None:
    """The batch of a `BatchedSessions` (None for a plain sessionmaker: every write is immediate)."""
    return factory.batch if isinstance(factory, BatchedSessions) else None


@contextmanager
def transaction(factory: SessionSource, *, optimistic: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error.

    A failure of the database itself (`OperationalError`: locked, full, connection lost) becomes a
    `DatabaseError` whose message says so in one line; constraint violations (`IntegrityError`)
    and other errors pass through unchanged for the caller to handle. On `BatchedSessions` the unit
    is a SAVEPOINT, committed with the batch (`optimistic`: maybe none, `BatchedSessions.unit`)."""
    if isinstance(factory, BatchedSessions):
        with factory.unit(optimistic=optimistic) as session:
            yield session
        return
    try:
        with factory() as session, session.begin():
            yield session
    except OperationalError as exc:
        raise DatabaseError(describe_failure(exc)) from exc


def alembic_config(engine: Engine) -> AlembicConfig:
    # Alembic is imported only to migrate: every crawl process and pipeline worker imports this module.
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, *, first_column: str | None = None) -> None:
    """Create or upgrade the schema to the newest migration. `first_column` (the first configured
    column) is where migration 0008 moves the digests made before digests were per column."""
    try:
        with engine.connect() as conn:
            conn.close()
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {one_line(exc.orig)}") from exc
    from alembic import command

    cfg = alembic_config(engine)
    cfg.attributes["first_column"] = first_column
    command.upgrade(cfg, "head")


def one_line(error: object) -> str:
    """Driver messages span lines; the CLI promises one."""
    return " ".join(str(error).split())


def schema_revision(engine: Engine) -> str | None:
    """The migration the database is at (None before `zhuanlan init`)."""
    if not is_initialised(engine):
        return None
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def schema_gap(found: str | None, needed: str = SCHEMA_REVISION) -> int:
    """Negative when the database is behind `needed` (or not initialised), positive when a newer
    release migrated it, 0 when they match. Revisions are numbered 0001, 0002, …"""
    if found is None:
        return -1
    if found.isdigit() and needed.isdigit():
        return (int(found) > int(needed)) - (int(found) < int(needed))
    return 0 if found == needed else 1


def is_initialised(engine: Engine) -> bool:
    try:
        return "alembic_version" in inspect(engine).get_table_names()
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {one_line(exc.orig)}") from exc
