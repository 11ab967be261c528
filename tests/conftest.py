"""Shared fixtures: a fresh migrated database per test, on SQLite by default or on the
PostgreSQL server named by ZHUANLAN_TEST_DATABASE_URL (each test gets its own schema)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from crawler.samples.server import SampleSources
from pipeline.corpus.db import make_engine, session_factory, upgrade
from tests.servers import postgresql_schema

SHANGHAI = ZoneInfo("Asia/Shanghai")


def pytest_configure(config: pytest.Config) -> None:
    """Tests that press Ctrl-C send SIGINT to a `zhuanlan` child, as a terminal does to its
    foreground job. A suite started as a background job (`make test &`, some CI runners) inherits
    SIGINT ignored, the children with it, and Python then leaves it ignored: those tests would
    measure how the suite was started. Handled here, the children start with the default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def tz() -> ZoneInfo:
    return SHANGHAI


@pytest.fixture
def now() -> datetime:
    """A frozen "now": Thursday of ISO week 2026-W48, Asia/Shanghai."""
    return datetime(2026, 11, 26, 10, 0, tzinfo=SHANGHAI)


@contextmanager
def fresh_database(directory: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file in `directory`, or a private schema on the
    PostgreSQL server named by ZHUANLAN_TEST_DATABASE_URL (dropped afterwards)."""
    server = os.environ.get("ZHUANLAN_TEST_DATABASE_URL")
    if not server:
        yield f"sqlite:///{directory / 'test.db'}"
        return
    with postgresql_schema(server) as url:
        yield url


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """URL of an empty database for one test."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def module_db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an empty database shared by the tests of one module (for expensive set-ups)."""
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


CHROMIUM = os.environ.get("ZHUANLAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless Chromium (the system package, driven by Playwright) for browser tests.

    `make test` and `.ci/run` install the Debian package; a machine without it fails here with
    the command to run, never skips.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make browser` (installs Debian's chromium) or set ZHUANLAN_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def _serving_samples() -> Iterator[SampleSources]:
    server = SampleSources(port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def samples() -> Iterator[SampleSources]:
    """The bundled sample sources on a free loopback port, for one test (tests may hide, delete or
    edit stories)."""
    with _serving_samples() as server:
        yield server


@pytest.fixture(scope="module")
def module_samples() -> Iterator[SampleSources]:
    """The sample sources shared by the tests of one module (for modules that leave them as they are)."""
    with _serving_samples() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[tuple[Any, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port: (its `Handler`, the port)."""
    from tests.test_digest_send import mail_server

    with mail_server() as server:
        yield server
