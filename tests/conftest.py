"""Shared fixtures: a fresh migrated database per test, on SQLite by default or on the
PostgreSQL server named by ZHUANLAN_TEST_DATABASE_URL (each test gets its own schema)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from pipeline.db import make_engine, session_factory, upgrade

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def tz() -> ZoneInfo:
    return SHANGHAI


@pytest.fixture
def now() -> datetime:
    """A frozen "now": Thursday of ISO week 2026-W48, Asia/Shanghai."""
    return datetime(2026, 11, 26, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """URL of an empty database for one test."""
    server = os.environ.get("ZHUANLAN_TEST_DATABASE_URL")
    if not server:
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
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


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)
