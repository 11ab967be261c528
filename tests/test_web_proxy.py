"""`zhuanlan serve` behind a reverse proxy (docs/scaling.md puts nginx in front of it).

Every connection then comes from nginx. Unless the app is told which address is the proxy's
(`web.trusted_proxy`), it sees one visitor: five wrong passwords from anyone would lock the
operator's login for everybody. Told, it takes each visitor's address from the X-Forwarded-For
entry that nginx appended (not from what the visitor wrote there); not told, it ignores the header,
so nobody escapes a lock by sending one. Through the installed command under waitress, over HTTP.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archive import auth
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import LoginEvent, OperatorSession
from tests.servers import redis_prefix
from tests.support import free_port, run_zhuanlan, serving
from zhuanlan_config import ConfigError, parse_config

PASSWORD = "代理-口令-test"
GUESSER = "203.0.113.5"  # the address guessing passwords
OPERATOR = "198.51.100.7"  # the office's address


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 302 is the answer itself


@dataclass
class Visitor:
    """A browser behind nginx: its cookies, and the X-Forwarded-For nginx sends for it (None: none)."""

    base: str
    forwarded_for: str | None

    def __post_init__(self) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect
        )

    def _open(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body)
        if self.forwarded_for is not None:
            request.add_header("X-Forwarded-For", self.forwarded_for)
            request.add_header("X-Forwarded-Proto", "https")
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def login(self, password: str) -> int:
        status, page = self._open("/login")
        assert status == 200, status
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page[:500]
        return self._open("/login", {"password": password, "csrf_token": token.group(1)})[0]


@contextmanager
def served(tmp_path: Path, db_url: str, web: str, tables: str = "") -> Iterator[str]:
    """`zhuanlan serve` with `web` in its [web] table and the TOML `tables` after it."""
    port = free_port()
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(
        f'data_dir = "data"\npublic_dir = "public"\n\n[web]\nport = {port}\nbase_url = "http://127.0.0.1:{port}"\n{web}'
        f"\n{tables}",
        encoding="utf-8",
    )
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url, "ZHUANLAN_ADMIN_PASSWORD": PASSWORD}
    init = run_zhuanlan("--config", str(cfg), "init", env=env)
    assert init.returncode == 0, init.stderr
    with serving(cfg, port, env):
        yield f"http://127.0.0.1:{port}"


def login_clients(db_url: str) -> list[tuple[str, str]]:
    """(kind, address) of every recorded login event, and ("session", address) of every session."""
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            events = [(kind, client) for kind, client in s.execute(select(LoginEvent.kind, LoginEvent.client))]
            return events + [("session", client) for client in s.scalars(select(OperatorSession.client))]
    finally:
        engine.dispose()


def test_behind_a_trusted_proxy_a_guesser_locks_only_their_own_address(tmp_path: Path, db_url: str) -> None:
    with served(tmp_path, db_url, 'trusted_proxy = "127.0.0.1"\n') as base:
        guesser = Visitor(base, GUESSER)
        answers = [guesser.login("guess") for _ in range(auth.ADDRESS_FAILURES)]
        assert answers == [403] * (auth.ADDRESS_FAILURES - 1) + [429]
        assert guesser.login(PASSWORD) == 429  # locked: the right password is not even compared
        # What the guesser wrote into X-Forwarded-For comes before what nginx appended: not believed.
        assert Visitor(base, f"{OPERATOR}, {GUESSER}").login(PASSWORD) == 429
        # The office, behind the same nginx, logs in.
        assert Visitor(base, OPERATOR).login(PASSWORD) == 302
    events = login_clients(db_url)
    assert {client for kind, client in events if kind != "session"} == {GUESSER}  # failures and the lock
    assert [client for kind, client in events if kind == "session"] == [OPERATOR]


def test_without_a_trusted_proxy_forwarded_addresses_are_ignored(tmp_path: Path, db_url: str) -> None:
    with served(tmp_path, db_url, "") as base:
        # A guesser that names a new address at every try is still one address: the connection's.
        answers = [Visitor(base, f"203.0.113.{i}").login("guess") for i in range(auth.ADDRESS_FAILURES)]
        assert answers == [403] * (auth.ADDRESS_FAILURES - 1) + [429]
        assert Visitor(base, OPERATOR).login(PASSWORD) == 429
    assert {client for kind, client in login_clients(db_url)} == {"127.0.0.1"}
    assert not [kind for kind, _ in login_clients(db_url) if kind == "session"]


def test_two_web_machines_sharing_redis_refuse_the_11th_login_attempt_together(tmp_path: Path, db_url: str) -> None:
    # docs/scaling.md's pool: two `zhuanlan serve` processes, one database, one Redis.
    with redis_prefix() as (url, prefix):
        shared = f'[distributed]\nredis_url = "{url}"\nkey_prefix = "{prefix}"\n'
        (tmp_path / "web1").mkdir()
        (tmp_path / "web2").mkdir()
        with served(tmp_path / "web1", db_url, "", shared) as one, served(tmp_path / "web2", db_url, "", shared) as two:
            # The right password: a success clears the lockout's counts, so only the rate limit refuses.
            assert [Visitor(base, None).login(PASSWORD) for base in [one, two] * 5] == [302] * 10
            assert Visitor(two, None).login(PASSWORD) == 429
            assert Visitor(one, None).login(PASSWORD) == 429


@pytest.mark.parametrize(
    ("web", "key", "said"),
    [
        ({"trusted_proxy": "nginx.internal"}, "web.trusted_proxy", "IP address"),
        ({"trusted_proxy": "10.0.0.0/8"}, "web.trusted_proxy", "IP address"),
        ({"trusted_proxy": 127}, "web.trusted_proxy", "expected a string"),
        ({"trusted_proxy": "127.0.0.1", "trusted_proxy_count": 0}, "web.trusted_proxy_count", ">= 1"),
    ],
)
def test_a_proxy_setting_that_cannot_work_is_a_configuration_error(
    tmp_path: Path, web: dict[str, Any], key: str, said: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)) as raised:
        parse_config({"data_dir": "data", "public_dir": "public", "web": web}, base_dir=tmp_path)
    assert said in str(raised.value)


def test_an_ipv6_proxy_address_is_written_as_the_server_sees_it(tmp_path: Path) -> None:
    config = parse_config(
        {"data_dir": "data", "public_dir": "public", "web": {"trusted_proxy": " 0:0:0:0:0:0:0:1 "}}, base_dir=tmp_path
    )
    assert config.web.trusted_proxy == "::1" and config.web.trusted_proxy_count == 1


def _serve_to_its_port_check(cfg: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`zhuanlan serve` on a port that is taken: it stops at its port check, after its warnings."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_zhuanlan("--config", str(cfg), "serve", "--host", "127.0.0.1", "--port", str(port), env=env)
    assert result.returncode == 1 and f"port {port} on 127.0.0.1 is in use" in result.stderr
    return result


@pytest.mark.parametrize("key", [None, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"])
def test_serve_says_when_its_logins_cannot_outlive_a_restart_or_reach_another_web_machine(
    tmp_path: Path, db_url: str, key: str | None
) -> None:
    # Behind nginx with several web machines, each must sign with the same ZHUANLAN_SECRET_KEY: a
    # form (login, unsubscribe) shown by one and posted to another fails otherwise, and so does
    # the operator's session. Without a key each process draws its own, and `serve` says so.
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text('data_dir = "data"\npublic_dir = "public"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHUANLAN_SECRET_KEY")}
    env["ZHUANLAN_DATABASE_URL"] = db_url
    if key is not None:
        env["ZHUANLAN_SECRET_KEY"] = key
    assert run_zhuanlan("--config", str(cfg), "init", env=env).returncode == 0
    result = _serve_to_its_port_check(cfg, env)
    warned = "ZHUANLAN_SECRET_KEY is not set" in result.stderr
    assert warned == (key is None), result.stderr
    if warned:
        assert "Set the same key on every web machine" in result.stderr


@pytest.mark.parametrize("answers", [True, False])
def test_serve_says_at_its_start_when_the_redis_of_the_login_limits_does_not_answer(
    tmp_path: Path, db_url: str, answers: bool
) -> None:
    # Learned at the start, not at the first login: with Redis down each web app counts alone.
    with redis_prefix() as (url, prefix):
        redis_url = url if answers else "redis://:s3cret-pw@127.0.0.1:1/0"
        cfg = tmp_path / "zhuanlan.toml"
        cfg.write_text(
            f'data_dir = "data"\npublic_dir = "public"\n[distributed]\nredis_url = "{redis_url}"\n'
            f'key_prefix = "{prefix}"\n',
            encoding="utf-8",
        )
        env = dict(os.environ, ZHUANLAN_DATABASE_URL=db_url, ZHUANLAN_SECRET_KEY="k" * 64)
        assert run_zhuanlan("--config", str(cfg), "init", env=env).returncode == 0
        result = _serve_to_its_port_check(cfg, env)
    warned = "does not answer" in result.stderr
    assert warned == (not answers), result.stderr
    if warned:
        assert "Redis at redis://:***@127.0.0.1:1/0 does not answer (" in result.stderr
        assert "counts login attempts on its own" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
