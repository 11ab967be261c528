"""Feeds served by web apps on machines other than the publisher's (docs/scaling.md, N machines).

`zhuanlan feeds` runs with the scheduler on one machine and writes `<public_dir>/feeds/` there; a
web app on a second machine has nothing on its disk. It serves the copies the publisher keeps in
the database: the same bytes, the same ETag and Last-Modified from every machine, so a feed reader
polling through nginx's pool of web apps gets a 304 from any of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import feedparser
import pytest
from sqlalchemy import delete, select

from archive.web import create_app
from feeds.publish import publish_feeds, store_copy
from pipeline.corpus.models import PublishedFile, Unit
from tests.support import free_port, run_cli, serving
from tests.test_feeds_factory import BASE_URL, SHANGHAI, Factory, make_config

if TYPE_CHECKING:
    from flask.testing import FlaskClient
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)
UNITS = [{"name": "市科学技术局", "slug": "keji"}, {"name": "市农业农村局"}]


def _machine(tmp_path: Path, name: str) -> Config:
    return make_config(tmp_path / name, units=UNITS)


def _client(config: Config, sessions: sessionmaker[Session], now: datetime) -> FlaskClient:
    app = create_app(config, sessions, now=lambda: now)
    app.config["TESTING"] = True
    return app.test_client()


def _seed(sessions: sessionmaker[Session], now: datetime) -> None:
    with sessions() as session:
        f = Factory(session, now)
        keji = f.unit("市科学技术局", 1)
        nong = f.unit("市农业农村局", 2)
        src = f.source("jiguan-dangjian")
        f.article("聚力科技创新 赋能产业升级", keji, src, T0, topics=("科技创新",))
        f.article("扎实推进乡村全面振兴", nong, src, T0 + timedelta(days=1), topics=("乡村振兴",))
        f.article("以科技之力助推现代农业发展", nong, src, T0 + timedelta(days=2), topics=("科技创新",))
        session.commit()


def _two_machines(tmp_path: Path, sessions: sessionmaker[Session], now: datetime) -> tuple[Config, FlaskClient]:
    """The seeded corpus published by the scheduler's machine, and a web app on a second machine."""
    _seed(sessions, now)
    scheduler = _machine(tmp_path, "scheduler")
    publish_feeds(sessions, scheduler, now)
    return scheduler, _client(_machine(tmp_path, "web2"), sessions, now)


def _published(config: Config) -> Path:
    return config.public_dir / "feeds"


def _unit_feed(config: Config) -> dict[str, Any]:
    index = json.loads((_published(config) / "index.json").read_bytes())
    return next(f for f in index["feeds"] if f["kind"] == "unit" and f["name"] == "市科学技术局")


def _entries(raw: bytes) -> int:
    parsed = feedparser.parse(raw)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return len(parsed.entries)


def test_a_web_app_on_another_machine_serves_the_published_feeds(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    _seed(sessions, now)
    scheduler, web2, web3 = (_machine(tmp_path, name) for name in ("scheduler", "web2", "web3"))
    publish_feeds(sessions, scheduler, now)
    second, third = _client(web2, sessions, now), _client(web3, sessions, now)
    unit = _unit_feed(scheduler)
    assert unit["path"] == "unit/keji" and unit["key"] != unit["path"]

    for path, mimetype in (
        ("all.atom", "application/atom+xml"),
        ("all.rss", "application/rss+xml"),
        ("all.json", "application/feed+json"),
        ("unit/keji.atom", "application/atom+xml"),
        ("index.opml", "text/x-opml"),
    ):
        on_disk = (_published(scheduler) / path).read_bytes()
        response = second.get(f"/feeds/{path}")
        assert response.status_code == 200 and response.mimetype == mimetype, path
        assert response.data == on_disk, path
        # The validators are the bytes' own, so every machine of the pool gives the same ones.
        etag = response.headers["ETag"]
        assert etag == f'"{hashlib.sha256(on_disk).hexdigest()}"'
        same = third.get(f"/feeds/{path}")
        assert (same.headers["ETag"], same.headers["Last-Modified"]) == (etag, response.headers["Last-Modified"])
        assert third.get(f"/feeds/{path}", headers={"If-None-Match": etag}).status_code == 304
        modified = response.headers["Last-Modified"]
        assert third.get(f"/feeds/{path}", headers={"If-Modified-Since": modified}).status_code == 304
    assert _entries(second.get("/feeds/all.atom").data) == 3
    assert _entries(second.get("/feeds/all.atom?limit=1").data) == 1
    assert second.get("/feeds/all.atom?limit=0").status_code == 400

    # The directory page, its links on every page, and the redirect from an earlier release's name.
    page = second.get("/feeds/")
    assert page.status_code == 200 and page.data == (_published(scheduler) / "index.html").read_bytes()
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]
    home = second.get("/").get_data(as_text=True)
    assert 'rel="alternate"' in home and "/feeds/all.atom" in home
    moved = second.get(f"/feeds/{unit['key']}.atom?limit=2")
    assert moved.status_code == 301 and moved.headers["Location"].endswith("/feeds/unit/keji.atom?limit=2")

    # Nothing was written on the web machines' disks, and nothing outside feeds/ is served.
    assert not _published(web2).exists() and not _published(web3).exists()
    hostile = ("/feeds/../secret.xml", "/feeds/missing.atom", "/feeds/unit", "/feeds/all%00.atom", "/feeds/a%0a.rss")
    for url in (*hostile, "/feeds/" + "x" * 500 + ".atom"):
        assert second.get(url, follow_redirects=True).status_code == 404, url[:40]
    # A name no published file can have is not even looked up (PostgreSQL refuses a NUL in text).
    assert [r.message for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_rebuilt_feed_changes_its_validators_on_every_machine(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime
) -> None:
    scheduler, client = _two_machines(tmp_path, sessions, now)
    before = client.get("/feeds/all.atom")
    with sessions() as session:
        f = Factory(session, now)
        unit = session.scalars(select(Unit).where(Unit.name == "市科学技术局")).one()
        f.article("科技赋能基层党建工作提质增效", unit, f.source("keji-site"), T0 + timedelta(days=3))
        session.commit()
    later = now + timedelta(hours=1)
    result = publish_feeds(sessions, scheduler, later)
    assert "all" in result.written
    after = client.get("/feeds/all.atom", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    assert after.data == (_published(scheduler) / "all.atom").read_bytes() and _entries(after.data) == 4
    assert after.last_modified == later
    # The other unit's feed did not change: it keeps its validators.
    unchanged = client.get("/feeds/unit/shi-nong-ye-nong-cun-ju.atom")
    assert unchanged.status_code == 200 and unchanged.last_modified == now


def test_feeds_published_before_the_copies_are_served_from_disk_until_the_next_publish(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime
) -> None:
    _seed(sessions, now)
    scheduler, web2 = _machine(tmp_path, "scheduler"), _machine(tmp_path, "web2")
    first = publish_feeds(sessions, scheduler, now)
    with sessions() as session:  # what a database upgraded to migration 0015 holds: no copies yet
        session.execute(delete(PublishedFile))
        session.commit()
    beside, elsewhere = _client(scheduler, sessions, now), _client(web2, sessions, now)
    served = beside.get("/feeds/all.atom")
    assert served.status_code == 200 and served.data == (_published(scheduler) / "all.atom").read_bytes()
    assert "/feeds/all.atom" in beside.get("/").get_data(as_text=True)
    assert elsewhere.get("/feeds/all.atom").status_code == 404
    assert "/feeds/all.atom" not in elsewhere.get("/").get_data(as_text=True)

    # Nothing changed in the corpus, but the next publish stores every feed it finds without a copy.
    again = publish_feeds(sessions, scheduler, now + timedelta(hours=1))
    assert sorted(again.written) == sorted(first.written) and again.unchanged == 0 and again.directory_written
    assert elsewhere.get("/feeds/all.atom").data == (_published(scheduler) / "all.atom").read_bytes()
    assert "/feeds/all.atom" in elsewhere.get("/").get_data(as_text=True)
    # And the one after that finds nothing to do.
    third = publish_feeds(sessions, scheduler, now + timedelta(hours=2))
    assert third.written == [] and not third.directory_written


def _toml(tmp_path: Path, name: str, port: int) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    units = "".join(
        f'[[units]]\nname = "{u["name"]}"\n' + (f'slug = "{u["slug"]}"\n' if "slug" in u else "") + "\n" for u in UNITS
    )
    cfg = folder / "zhuanlan.toml"
    cfg.write_text(
        f'data_dir = "data"\npublic_dir = "public"\n\n{units}[web]\nport = {port}\nbase_url = "{BASE_URL}"\n',
        encoding="utf-8",
    )
    return cfg


def _fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_zhuanlan_serve_on_a_second_machine_serves_what_zhuanlan_feeds_published(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], now: datetime
) -> None:
    _seed(sessions, now)
    port = free_port()
    scheduler, web2 = _toml(tmp_path, "scheduler", free_port()), _toml(tmp_path, "web2", port)
    published = run_cli(scheduler, db_url, "feeds")
    assert published.returncode == 0, published.stderr
    on_disk = (tmp_path / "scheduler" / "public" / "feeds" / "all.atom").read_bytes()
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url}
    with serving(web2, port, env):
        status, body, headers = _fetch(f"http://127.0.0.1:{port}/feeds/all.atom")
        assert status == 200 and body == on_disk and _entries(body) == 3
        assert _fetch(f"http://127.0.0.1:{port}/feeds/all.atom", {"If-None-Match": headers["ETag"]})[0] == 304
        status, page, _ = _fetch(f"http://127.0.0.1:{port}/feeds/")
        assert status == 200 and "订阅源" in page.decode("utf-8")
    assert not (tmp_path / "web2" / "public" / "feeds").exists()


def test_a_directory_copy_that_does_not_parse_gives_pages_without_feed_links(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime
) -> None:
    scheduler, client = _two_machines(tmp_path, sessions, now)
    with sessions() as session:
        row = session.get(PublishedFile, "index.json")
        assert row is not None
        row.content, row.sha256 = b"{not json", hashlib.sha256(b"{not json").hexdigest()
        session.commit()
    home = client.get("/")
    assert home.status_code == 200 and "/feeds/all.atom" not in home.get_data(as_text=True)
    assert client.get("/feeds/all.atom").data == (_published(scheduler) / "all.atom").read_bytes()


def test_two_publishers_storing_the_same_new_copy_at_once_both_succeed(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    # The scheduler's publish and a manual `zhuanlan feeds` on another machine (the file lock is
    # per machine): both read "no copy of all.atom" and store one; the later commit wins, neither fails.
    first, second = sessions(), sessions()
    try:
        assert store_copy(first, {}, "all.atom", b"<feed>one</feed>", now)
        outcome: list[BaseException | None] = []

        def other_machine() -> None:
            try:
                store_copy(second, {}, "all.atom", b"<feed>two</feed>", now + timedelta(minutes=1))
                second.commit()
                outcome.append(None)
            except BaseException as exc:  # reported below, in the test's thread
                outcome.append(exc)

        thread = threading.Thread(target=other_machine)
        thread.start()
        thread.join(0.3)  # the other insert now waits for this transaction (or has not started yet)
        first.commit()
        thread.join(30)
        assert outcome == [None]
    finally:
        first.close()
        second.close()
    with sessions() as session:
        row = session.get(PublishedFile, "all.atom")
        assert row is not None and row.content == b"<feed>two</feed>"
        assert row.sha256 == hashlib.sha256(b"<feed>two</feed>").hexdigest()
