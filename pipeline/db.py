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

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
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


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. For SQLite the parent directory must exist (it is not created here)."""
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
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


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


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error.

    A failure of the database itself (`OperationalError`: locked, full, connection lost) becomes a
    `DatabaseError` whose message says so in one line; constraint violations (`IntegrityError`)
    and other errors pass through unchanged for the caller to handle."""
    try:
        with factory() as session, session.begin():
            yield session
    except OperationalError as exc:
        raise DatabaseError(describe_failure(exc)) from exc


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration."""
    try:
        with engine.connect() as conn:
            conn.close()
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {one_line(exc.orig)}") from exc
    command.upgrade(alembic_config(engine), "head")


def one_line(error: object) -> str:
    """Driver messages span lines; the CLI promises one."""
    return " ".join(str(error).split())


def is_initialised(engine: Engine) -> bool:
    try:
        return "alembic_version" in inspect(engine).get_table_names()
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {one_line(exc.orig)}") from exc
