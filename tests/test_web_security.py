"""The web app's defences (issue 21, points 1-5): the login's rate limits (shared by the web apps
through Redis when there is one) and lockout, server-side sessions that logout, idleness, age and
a password change end, RFC 8058 one-click unsubscribe, the image proxy's bounded cache and
fetches, and redirects, policies, 405s and error pages that give nothing away. Through Flask's
test client on a real database, under waitress for timing, and in headless Chromium for the
login throttle and logout."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import tomllib
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import pytest
import redis
from sqlalchemy import func, select
from waitress import wasyncore
from waitress.server import create_server

from archive import auth
from archive.login_limits import shown_url
from archive.views import images
from archive.views.images import ImageFetchError, ImageRefused
from archive.web import create_app
from pipeline.corpus.models import LoginEvent, LoginLock, OperatorSession, Recipient, Snapshot, Unit
from tests.servers import redis_prefix
from tests.support import browser_page
from tests.test_archive_corpus import SHANGHAI, build_corpus
from zhuanlan_config import ConfigError, parse_config

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from flask import Flask
    from flask.testing import FlaskClient
    from sqlalchemy.orm import Session, sessionmaker

PASSWORD = "口令-security-test"
IMAGE = "https://mmbiz.qpic.cn/mmbiz_jpg/abc/640?wx_fmt=jpeg"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
EXAMPLE = Path(__file__).resolve().parent.parent / "zhuanlan.example.toml"


class Clock:
    """A settable "now" for the app: sessions and locks are judged by it."""

    def __init__(self, start: datetime) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **kwargs: float) -> None:
        self.value += timedelta(**kwargs)


@pytest.fixture
def seeded(sessions: sessionmaker[Session], now: datetime) -> sessionmaker[Session]:
    with sessions() as db, db.begin():
        build_corpus(db, now)
        unit = db.scalars(select(Unit).where(Unit.name == "市水务局")).one()
        db.add(Recipient(unit=unit, name="赵晓梅", email="zhao@example.org", unsubscribe_token="tok-oneclick"))
    return sessions


@pytest.fixture
def clock(now: datetime) -> Clock:
    return Clock(now)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "security-test-secret")
    return monkeypatch


def build_app(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    fetcher: Callable[[str], tuple[bytes, str]] | None = None,
    web: dict[str, Any] | None = None,
    distributed: dict[str, Any] | None = None,
) -> Flask:
    tables = {"web": web or {}, "distributed": distributed or {}}
    config = parse_config({"data_dir": "data", "public_dir": "public", **tables}, base_dir=tmp_path)
    (config.public_dir / "feeds").mkdir(parents=True, exist_ok=True)
    (config.public_dir / "feeds" / "index.html").write_text("<html><body>订阅源</body></html>", encoding="utf-8")
    app = create_app(config, sessions, now=clock, image_fetcher=fetcher or (lambda url: (PNG, "image/png")))
    app.config["TESTING"] = True
    return app


def without_rate_limit(app: Flask) -> Flask:
    """For tests of the lockout alone: flask-limiter's window would answer 429 first."""
    for limiter in app.extensions.get("limiter", ()):
        limiter.enabled = False
    return app


@pytest.fixture
def app(tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch) -> Flask:
    return build_app(tmp_path, seeded, clock)


def csrf(client: FlaskClient, url: str = "/login") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True))
    assert match
    return match.group(1)


def try_login(client: FlaskClient, password: str) -> Any:
    return client.post("/login", data={"password": password, "csrf_token": csrf(client)})


def login(client: FlaskClient) -> None:
    response = try_login(client, PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/health", response.status_code


def opens_health(client: FlaskClient) -> bool:
    response = client.get("/health")
    return response.status_code == 200 and "运行状态" in response.get_data(as_text=True)


# 1. Login throttle and lockout ------------------------------------------------------------


def test_failed_logins_lock_with_a_growing_delay_that_survives_a_restart(
    tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="zhuanlan.web.auth")
    client = without_rate_limit(build_app(tmp_path, seeded, clock)).test_client()
    for _ in range(auth.ADDRESS_FAILURES - 1):
        assert try_login(client, "guess").status_code == 403
    locked = try_login(client, "guess")
    assert locked.status_code == 429 and "已暂时锁定" in locked.get_data(as_text=True)
    assert 55 <= int(locked.headers["Retry-After"]) <= 60
    assert try_login(client, PASSWORD).status_code == 429  # the right password is not even compared

    # A restart of `zhuanlan serve` (a new app on the same database) keeps the lock.
    client = without_rate_limit(build_app(tmp_path, seeded, clock)).test_client()
    assert try_login(client, PASSWORD).status_code == 429

    clock.advance(seconds=61)  # the first lock is over; the second lasts twice as long
    for _ in range(auth.ADDRESS_FAILURES):
        response = try_login(client, "guess")
    assert response.status_code == 429 and 115 <= int(response.headers["Retry-After"]) <= 120
    clock.advance(seconds=121)
    login(client)  # success clears the counts

    with seeded() as db:
        kinds = db.execute(select(LoginEvent.kind, func.count()).group_by(LoginEvent.kind)).all()
        assert dict(kinds) == {"failure": 2 * auth.ADDRESS_FAILURES, "lockout": 2}
        assert db.scalar(select(func.count()).select_from(LoginLock)) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("login failed from 127.0.0.1" in m for m in messages) == 2 * auth.ADDRESS_FAILURES
    assert sum("login locked: addr:127.0.0.1" in m for m in messages) == 2
    assert any("login refused from 127.0.0.1" in m for m in messages)

    page = client.get("/health").get_data(as_text=True)
    table = page.split('id="logins"', 1)[1]
    assert table.count("密码错误") == 10 and table.count("锁定</td>") == 2 and "127.0.0.1" in table


def test_the_account_locks_when_guesses_come_from_many_addresses(
    tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch
) -> None:
    client = without_rate_limit(build_app(tmp_path, seeded, clock)).test_client()
    for i in range(auth.ACCOUNT_FAILURES):
        client.environ_base["REMOTE_ADDR"] = f"10.0.{i}.1"  # one guess per address: no address lock
        response = try_login(client, "guess")
    assert response.status_code == 429
    client.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    assert try_login(client, PASSWORD).status_code == 429


def test_login_posts_are_rate_limited_per_address(app: Flask) -> None:
    client = app.test_client()
    for _ in range(10):  # even right passwords count: the limit is on attempts
        assert try_login(client, PASSWORD).status_code == 302
    refused = try_login(client, PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "请求过于频繁" in refused.get_data(as_text=True)
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.1.0.1"  # another address is not held up
    assert try_login(other, PASSWORD).status_code == 302


def test_login_posts_are_rate_limited_for_the_account(app: Flask) -> None:
    statuses = []
    for i in range(4):
        for _ in range(9):  # under each address's limit; new browsers (a known one is not held up)
            client = app.test_client()
            client.environ_base["REMOTE_ADDR"] = f"10.2.0.{i}"
            statuses.append(try_login(client, PASSWORD).status_code)
    assert statuses == [302] * 30 + [429] * 6
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.2.0.9"
    page = try_login(client, PASSWORD).get_data(as_text=True)
    assert "管理员账号每分钟最多登录 30 次" in page and "per 1 minute" not in page


@pytest.fixture
def shared_redis() -> Iterator[dict[str, str]]:
    """`[distributed]` on the test Redis, under a key prefix of this test's own (cleaned up after)."""
    with redis_prefix() as (url, prefix):
        yield {"redis_url": url, "key_prefix": prefix}


def guesses_in_turn(machines: list[Flask], count: int) -> list[Any]:
    """`count` wrong passwords from one address, posted to each web app in turn: the answers."""
    clients = [machine.test_client() for machine in machines]
    return [try_login(clients[i % len(clients)], "guess") for i in range(count)]


def two_web_machines(
    tmp_path: Path, sessions: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch, distributed: Any
) -> list[Flask]:
    """Two web apps as on two machines behind nginx: one database, one secret key, one config."""
    env.setattr(auth, "ADDRESS_FAILURES", 100)  # the lockout out of reach: only the rate limit refuses
    return [build_app(tmp_path, sessions, clock, distributed=distributed) for _ in range(2)]


def refused_by_the_rate_limit(response: Any) -> bool:
    """A 429 of flask-limiter's (its error page, its window's headers), not one of the lockout's."""
    page = response.get_data(as_text=True)
    return (
        response.status_code == 429
        and "请求过于频繁" in page
        and "同一地址每分钟最多登录 10 次，请一分钟后再试" in page
        and "per 1 minute" not in page
        and "已暂时锁定" not in page
        and response.headers.get("X-RateLimit-Limit") == "10"
        and response.headers.get("X-RateLimit-Remaining") == "0"
    )


def test_web_apps_sharing_redis_count_login_attempts_once_between_them(
    tmp_path: Path,
    seeded: sessionmaker[Session],
    clock: Clock,
    env: pytest.MonkeyPatch,
    caplog: Any,
    shared_redis: dict[str, str],
) -> None:
    caplog.set_level(logging.WARNING, logger="zhuanlan.web.auth")
    machines = two_web_machines(tmp_path, seeded, clock, env, shared_redis)
    answers = guesses_in_turn(machines, 10)
    assert [a.status_code for a in answers] == [403] * 10  # each password was compared, and wrong
    # One window: each machine's answer counts the other's guesses too (the headers show the
    # account's window, 30 a minute, until the address's 10 are used up).
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == [str(n) for n in range(29, 19, -1)]
    for machine in machines:  # the 11th is refused, whichever machine nginx sends it to
        assert refused_by_the_rate_limit(try_login(machine.test_client(), "guess"))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("login rate limit hit (10 per 1 minute) from 127.0.0.1" in m for m in messages) == 2
    assert not [m for m in messages if "does not answer" in m]
    prefix = shared_redis["key_prefix"]
    client = redis.Redis.from_url(shared_redis["redis_url"])
    keys = {k.decode() for k in client.scan_iter(f"{prefix}:*")}
    client.close()
    assert keys and all(k.startswith(f"{prefix}:login-limits:") for k in keys), keys


def test_web_apps_without_redis_each_count_login_attempts_alone(
    tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch
) -> None:
    machines = two_web_machines(tmp_path, seeded, clock, env, None)
    answers = guesses_in_turn(machines, 12)
    # Two windows: between them the machines let 20 guesses a minute through, not 10.
    assert [a.status_code for a in answers] == [403] * 12
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == [str(29 - i // 2) for i in range(12)]


def test_with_redis_unreachable_logins_work_and_each_process_still_limits_them(
    tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="zhuanlan.web.auth")
    unreachable = {"redis_url": "redis://:s3cret-pw@127.0.0.1:1/0"}  # nothing listens on port 1
    client = build_app(tmp_path, seeded, clock, distributed=unreachable).test_client()
    login(client)  # 302 to /health
    assert opens_health(client)
    for _ in range(9):
        login(client)
    assert refused_by_the_rate_limit(try_login(client, PASSWORD))  # counted in this process's memory
    warnings = [r.getMessage() for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, not at every login
    assert "Redis at redis://:***@127.0.0.1:1/0 does not answer" in warnings[0]
    assert "s3cret-pw" not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("rediss://zhuanlan:p%40ss@redis.internal:6380", "rediss://zhuanlan:***@redis.internal:6380"),
        ("unix:///run/redis.sock?db=2&password=pw", "unix:///run/redis.sock?db=2&password=***"),
    ],
)
def test_a_redis_url_is_logged_without_its_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_a_browser_that_logged_in_before_is_not_locked_out_by_guesses_on_the_account(
    tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch
) -> None:
    app = without_rate_limit(build_app(tmp_path, seeded, clock))
    office = app.test_client()
    office.environ_base["REMOTE_ADDR"] = "10.8.0.1"
    login(office)  # the office's browser gets its device cookie

    # Someone trips the account lock on purpose, from many addresses.
    for i in range(auth.ACCOUNT_FAILURES):
        guesser = app.test_client()
        guesser.environ_base["REMOTE_ADDR"] = f"10.0.{i}.1"
        try_login(guesser, "guess")
    stranger = app.test_client()
    stranger.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    assert try_login(stranger, PASSWORD).status_code == 429  # a new browser is held by the account lock
    forger = app.test_client()
    forger.environ_base["REMOTE_ADDR"] = "10.9.9.8"
    forger.set_cookie(auth.DEVICE_COOKIE, "made-up.0123456789abcdef", path="/login")
    assert try_login(forger, PASSWORD).status_code == 429  # a device cookie this app did not sign is none
    login(office)  # the office is not

    # The known browser's own wrong passwords lock it alone, and do not count for the account.
    clock.advance(hours=2)  # the account's lock is over
    answers = [try_login(office, "typo").status_code for _ in range(auth.ADDRESS_FAILURES)]
    assert answers == [403] * (auth.ADDRESS_FAILURES - 1) + [429]
    assert try_login(office, PASSWORD).status_code == 429
    assert try_login(stranger, PASSWORD).status_code == 302
    with seeded() as db:
        keys = set(db.scalars(select(LoginLock.key)))
        assert any(key.startswith("device:") for key in keys) and "addr:10.8.0.1" not in keys


def test_failures_from_several_threads_are_all_counted(seeded: sessionmaker[Session], now: datetime) -> None:
    clients = [f"192.0.2.{i}" for i in range(8)]
    barrier = threading.Barrier(len(clients))

    def fail(client: str) -> None:
        barrier.wait(timeout=10)
        with seeded() as db:
            auth.record_failure(db, client, now)

    threads = [threading.Thread(target=fail, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    with seeded() as db:
        account = db.scalars(select(LoginLock).where(LoginLock.key == f"account:{auth.ACCOUNT}")).one()
        assert account.failures == len(clients)


def test_lock_delay_grows_and_is_capped() -> None:
    delays = [auth.lock_delay(n) for n in range(1, 10)]
    assert delays[:3] == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert delays[-1] == auth.LONGEST_LOCK and delays == sorted(delays)


# 2. Server-side sessions -------------------------------------------------------------------


def test_a_saved_cookie_opens_nothing_after_logout(app: Flask) -> None:
    client = app.test_client()
    login(client)
    saved = {name: client.get_cookie(name) for name in ("session", auth.SESSION_COOKIE)}
    assert opens_health(client)
    client.post("/logout", data={"csrf_token": csrf(client, "/health")})
    assert not opens_health(client)
    replay = app.test_client()
    for name, cookie in saved.items():
        if cookie is not None:
            replay.set_cookie(name, cookie.value)
    assert replay.get("/health").headers.get("Location") == "/login"


def test_the_cookie_is_an_opaque_id_stored_only_as_its_hash(app: Flask, seeded: sessionmaker[Session]) -> None:
    client = app.test_client()
    login(client)
    cookie = client.get_cookie(auth.SESSION_COOKIE)
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie.value)
    with seeded() as db:
        row = db.scalars(select(OperatorSession)).one()
        assert row.token_hash == hashlib.sha256(cookie.value.encode()).hexdigest()
        assert cookie.value not in (row.token_hash, row.password_mark) and PASSWORD not in row.password_mark


def test_sessions_end_when_idle_and_at_their_lifetime(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    login(client)
    clock.advance(seconds=auth.SESSION_IDLE.total_seconds() - 60)
    assert opens_health(client)
    clock.advance(seconds=auth.SESSION_IDLE.total_seconds() + 1)
    assert not opens_health(client)

    login(client)
    hours = int(auth.SESSION_LIFETIME / timedelta(hours=1))
    for _ in range(hours):  # active every hour: never idle, still ended at its lifetime
        assert opens_health(client)
        clock.advance(hours=1)
    clock.advance(seconds=1)
    assert not opens_health(client)


def test_a_password_change_ends_every_session(
    tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch
) -> None:
    client = build_app(tmp_path, seeded, clock).test_client()
    login(client)
    cookie = client.get_cookie(auth.SESSION_COOKIE)
    assert cookie is not None and opens_health(client)

    env.setenv("ZHUANLAN_ADMIN_PASSWORD", "新口令-changed")
    changed = build_app(tmp_path / "b", seeded, clock).test_client()
    changed.set_cookie(auth.SESSION_COOKIE, cookie.value)
    assert not opens_health(changed)

    env.setenv("ZHUANLAN_ADMIN_PASSWORD", PASSWORD)  # changed back: the old session stays ended
    back = build_app(tmp_path / "c", seeded, clock).test_client()
    back.set_cookie(auth.SESSION_COOKIE, cookie.value)
    assert not opens_health(back)


def test_review_and_corrections_need_a_live_session(app: Flask) -> None:
    client = app.test_client()
    login(client)
    assert client.get("/review").status_code == 200
    client.post("/logout", data={"csrf_token": csrf(client, "/health")})
    assert client.get("/review").headers.get("Location") == "/login"


# 3. RFC 8058 one-click unsubscribe ---------------------------------------------------------


def test_one_click_unsubscribe_as_a_mail_provider_sends_it(
    app: Flask, seeded: sessionmaker[Session], clock: Clock
) -> None:
    provider = app.test_client()  # no cookies, no CSRF token: only the URL's token
    response = provider.post(
        "/unsubscribe/tok-oneclick",
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (200, 204)
    with seeded() as db:
        opted = db.scalars(select(Recipient.opted_out_at)).one()
        assert opted is not None and opted.astimezone(SHANGHAI) == clock()
    unknown = provider.post(
        "/unsubscribe/no-such-token",
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unknown.status_code == 404


def test_other_posts_keep_the_csrf_check(app: Flask, seeded: sessionmaker[Session]) -> None:
    client = app.test_client()
    assert client.post("/unsubscribe/tok-oneclick", data={"List-Unsubscribe": "Other"}).status_code == 400
    assert client.post("/unsubscribe/tok-oneclick").status_code == 400
    assert client.post("/logout", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    with seeded() as db:
        assert db.scalars(select(Recipient.opted_out_at)).one() is None


# 4. The image proxy ------------------------------------------------------------------------


def test_the_image_cache_is_capped_and_evicts_the_least_recently_used(
    tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def fetcher(url: str) -> tuple[bytes, str]:
        calls.append(url)
        return PNG + b"\x00" * (400 * 1024), "image/png"

    client = build_app(tmp_path, seeded, clock, fetcher, web={"image_cache_mb": 1}).test_client()
    urls = [f"https://mmbiz.qpic.cn/mmbiz_jpg/{name}/640" for name in ("a", "b", "c")]
    cache_dir = tmp_path / "data" / "imgcache"
    assert client.get("/img", query_string={"u": urls[0]}).status_code == 200
    assert client.get("/img", query_string={"u": urls[1]}).status_code == 200
    time.sleep(0.02)
    assert client.get("/img", query_string={"u": urls[0]}).status_code == 200  # a is now used after b
    assert calls == urls[:2]
    assert client.get("/img", query_string={"u": urls[2]}).status_code == 200  # over 1 MB: b goes
    size = sum(p.stat().st_size for p in cache_dir.iterdir())
    assert size <= 1024 * 1024
    for url in (urls[0], urls[2]):
        assert client.get("/img", query_string={"u": url}).status_code == 200
    assert calls == urls  # a and c came from the cache
    assert client.get("/img", query_string={"u": urls[1]}).status_code == 200
    assert calls == [*urls, urls[1]]  # b was evicted and fetched again


class _SlowImages(BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self) -> None:
        _SlowImages.release.wait(timeout=20)  # hangs until the test ends (bounded)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def slow_upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _SlowImages.release = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowImages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # Only for this test: the slow loopback server stands in for the allow-listed hosts.
    monkeypatch.setattr(images, "image_url_allowed", lambda url: url.startswith(base))
    try:
        yield base
    finally:
        _SlowImages.release.set()
        server.shutdown()
        server.server_close()


def serve_with_waitress(app: Flask) -> tuple[str, Callable[[], None]]:
    """The app under waitress with production's 8 threads on a free loopback port."""
    server: Any = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def stop() -> None:
        server.close()
        wasyncore.close_all(server._map)  # the loop ends when its map is empty
        server.task_dispatcher.shutdown(timeout=5)
        thread.join(timeout=5)

    return f"http://127.0.0.1:{server.effective_port}", stop


def _get(url: str, timeout: float) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read()
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_slow_upstream_images_do_not_delay_the_home_page(
    tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch, slow_upstream: str
) -> None:
    app = build_app(tmp_path, seeded, clock, lambda url: images.fetch_image(url))
    base, stop = serve_with_waitress(app)
    answers: list[tuple[int, dict[str, str], float]] = []

    def load_image(i: int) -> None:
        started = time.monotonic()
        url = f"{base}/img?u=" + quote(f"{slow_upstream}/slow-{i}.png", safe="")
        try:
            status, headers = _get(url, timeout=25)
        except OSError:
            status, headers = 0, {}
        answers.append((status, headers, time.monotonic() - started))

    loaders = [threading.Thread(target=load_image, args=(i,), daemon=True) for i in range(8)]
    try:
        for t in loaders:
            t.start()
        time.sleep(0.5)  # the eight image requests have reached the app and its fetches hang
        started = time.monotonic()
        status, _ = _get(f"{base}/", timeout=10)
        elapsed = time.monotonic() - started
        assert status == 200 and elapsed < 1.0, elapsed
        for t in loaders:
            t.join(timeout=10)
        busy = [a for a in answers if a[0] == 503]
        assert len(answers) == 8 and len(busy) == 8  # refused at once, or after a short wait
        assert all(a[1].get("Retry-After") for a in busy)
        assert sum(a[2] < 1.0 for a in answers) >= 8 - images.MAX_FETCHES
        assert max(a[2] for a in answers) < images.FETCH_WAIT + 1.5
    finally:
        _SlowImages.release.set()
        stop()


def test_fetch_image_gives_up_quickly() -> None:
    assert images.FETCH_TIMEOUT <= 5
    assert images.fetch_image.__kwdefaults__ is not None
    assert images.fetch_image.__kwdefaults__["timeout"] == images.FETCH_TIMEOUT


def test_image_cache_size_is_configured(tmp_path: Path) -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert parse_config(data, base_dir=tmp_path).web.image_cache_mb == 200
    assert parse_config({}, base_dir=tmp_path).web.image_cache_mb == 200
    for bad, words in ((0, ">= 1"), ("big", "expected an integer")):
        data["web"]["image_cache_mb"] = bad
        with pytest.raises(ConfigError) as info:
            parse_config(data, base_dir=tmp_path)
        assert info.value.path == "web.image_cache_mb" and words in str(info.value)


# 5. Smaller holes --------------------------------------------------------------------------


def test_redirects_never_name_the_host_header(app: Flask) -> None:
    client = app.test_client()
    for path in ("/feeds", "/feeds//index.html"):
        response = client.get(path, headers={"Host": "evil.example"})
        assert 300 <= response.status_code < 400, path
        location = response.headers["Location"]
        assert "evil.example" not in location and not location.startswith("//"), location
        assert urlsplit(location).netloc == "" and location.startswith("/"), location


def test_archived_snapshots_load_nothing_from_other_origins(app: Flask, seeded: sessionmaker[Session]) -> None:
    with seeded() as db:
        sha = db.scalars(select(Snapshot.sha256)).first()
    csp = app.test_client().get(f"/snapshot/{sha}").headers["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in (p.strip() for p in csp.split(";")) if part}
    assert "sandbox" in directives and directives["script-src"] == ["'none'"]
    assert directives["default-src"] == ["'none'"]
    for name in ("img-src", "style-src", "font-src", "default-src"):
        for source in directives.get(name, []):
            assert source in {"'none'", "data:", "'unsafe-inline'"}, (name, source)


def test_405_carries_allow_and_comes_before_the_csrf_check(app: Flask) -> None:
    client = app.test_client()
    for path in ("/search", "/", "/health"):
        response = client.post(path)
        assert response.status_code == 405, path
        assert "GET" in response.headers["Allow"], path
        assert "不支持的请求方式" in response.get_data(as_text=True)
    assert "POST" in client.get("/logout").headers["Allow"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ImageFetchError("cannot fetch https://mmbiz.qpic.cn/x: [Errno 111] Connection refused by 10.8.0.3"), 502),
        (ImageRefused("redirect to a host that is not allowed: http://10.8.0.3/admin"), 403),
    ],
)
def test_upstream_error_text_is_never_shown(
    tmp_path: Path,
    seeded: sessionmaker[Session],
    clock: Clock,
    env: pytest.MonkeyPatch,
    caplog: Any,
    error: Exception,
    status: int,
) -> None:
    caplog.set_level(logging.INFO, logger="zhuanlan.web.images")

    def failing(url: str) -> tuple[bytes, str]:
        raise error

    client = build_app(tmp_path, seeded, clock, failing).test_client()
    response = client.get("/img", query_string={"u": IMAGE})
    body = response.get_data(as_text=True)
    assert response.status_code == status
    assert "10.8.0.3" not in body and "Errno" not in body and "mmbiz.qpic.cn/x" not in body
    assert any("10.8.0.3" in r.getMessage() for r in caplog.records)  # the details are in the log


# In the browser: the login throttle and revocation on logout ------------------------------------


@pytest.fixture
def site(tmp_path: Path, seeded: sessionmaker[Session], clock: Clock, env: pytest.MonkeyPatch) -> Iterator[str]:
    app = without_rate_limit(build_app(tmp_path, seeded, clock))
    base, stop = serve_with_waitress(app)
    try:
        yield base
    finally:
        stop()


def test_browser_login_is_locked_after_repeated_failures(site: str, chromium: Any) -> None:
    with browser_page(chromium, 1280, 800) as page:
        page.goto(f"{site}/login")
        for attempt in range(auth.ADDRESS_FAILURES):
            page.fill("input[name=password]", f"guess-{attempt}")
            with page.expect_navigation():
                page.click("main button[type=submit]")
        assert "已暂时锁定" in page.inner_text("p.error")
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation() as nav:
            page.click("main button[type=submit]")
        response = nav.value
        assert response is not None and response.status == 429
        assert "已暂时锁定" in page.inner_text("p.error") and page.url.endswith("/login")
        page.goto(f"{site}/health")
        assert page.url.endswith("/login")


def test_browser_logout_revokes_the_saved_cookie(site: str, chromium: Any) -> None:
    with browser_page(chromium, 1280, 800) as page:
        page.goto(f"{site}/login")
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            page.click("main button[type=submit]")
        assert page.url.endswith("/health")
        saved = page.context.cookies()
        assert saved and all(c["httpOnly"] for c in saved)
        with page.expect_navigation():
            page.click("form.logout button")
        page.goto(f"{site}/health")
        assert page.url.endswith("/login")
    with browser_page(chromium, 1280, 800) as thief:  # someone who copied the cookies before logout
        thief.context.add_cookies(saved)
        thief.goto(f"{site}/health")
        assert thief.url.endswith("/login")
