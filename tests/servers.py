"""The PostgreSQL and Redis servers the distributed tests need: their URLs, or a skip saying which
server did not answer (only then)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy import text

from pipeline.corpus.db import make_engine

# The server the PostgreSQL leg names, else the local one (a private schema in its `postgres` database).
PG_SERVER = os.environ.get("ZHUANLAN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ZHUANLAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=3).close()
    except OSError:
        return False
    return True


def require_postgresql() -> str:
    if not PG_SERVER.startswith("postgresql") or not _answers(PG_SERVER, 5432):
        pytest.skip(f"PostgreSQL does not answer at {PG_SERVER}")
    return PG_SERVER


def require_redis() -> str:
    if not _answers(REDIS_URL, 6379):
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    return REDIS_URL


@contextmanager
def redis_prefix() -> Iterator[tuple[str, str]]:
    """The test Redis's URL and a key prefix of the caller's own; its keys are deleted afterwards."""
    import redis

    url = require_redis()
    prefix = f"zh-test-{uuid.uuid4().hex[:10]}"
    try:
        yield url, prefix
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


@contextmanager
def postgresql_schema(server: str) -> Iterator[str]:
    """URL of a private, empty schema on the PostgreSQL `server` (dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(server)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in server else "?"
    try:
        yield f"{server}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def stored_appearances(url: str) -> int:
    """How many appearances (stored pages) the database at `url` holds."""
    from sqlalchemy import func, select

    from pipeline.corpus.models import Appearance

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count(Appearance.id))).scalar_one())
    finally:
        engine.dispose()


def frontier_keys_under(client: Any, prefix: str) -> set[str]:
    """The scrapy-redis keys (request queues, seen-sets) of the crawls under `prefix`."""
    return {k.decode() if isinstance(k, bytes) else str(k) for k in client.scan_iter(match=f"{prefix}:frontier:*")}
