"""The archive web app through Flask's test client: pages, search robustness, feeds' conditional
GET, the image proxy's allow-list, the sandboxed snapshots, login, CSRF and unsubscribe."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, ClassVar

import pytest
from sqlalchemy import select

from archive.views import images
from archive.views.images import image_url_allowed
from archive.web import create_app
from pipeline.corpus.models import CrawlRun, Delivery, Digest, Recipient, Snapshot, Source, SourceRun, Unit
from tests.test_archive_corpus import SHANGHAI, build_corpus
from tests.test_archive_search import HOSTILE
from zhuanlan_config import parse_config

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from flask import Flask
    from flask.testing import FlaskClient
    from sqlalchemy.orm import Session, sessionmaker

PASSWORD = "口令-correct-horse"
IMAGE = "https://mmbiz.qpic.cn/mmbiz_jpg/abc/640?wx_fmt=jpeg"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


class FakeFetcher:
    """Stands in for the network: records what the proxy asked for."""

    def __init__(self, content_type: str = "image/png") -> None:
        self.calls: list[str] = []
        self.content_type = content_type

    def __call__(self, url: str) -> tuple[bytes, str]:
        self.calls.append(url)
        return PNG, self.content_type


@pytest.fixture
def seeded(sessions: sessionmaker[Session], now: datetime) -> sessionmaker[Session]:
    with sessions() as db, db.begin():
        build_corpus(db, now)
        unit = db.scalars(select(Unit).where(Unit.name == "市水务局")).one()
        recipient = Recipient(unit=unit, name="赵晓梅", email="zhao@example.org", unsubscribe_token="tok-123")
        db.add(recipient)
        run = CrawlRun(started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=1), status="partial")
        db.add(run)
        source = db.scalars(select(Source).where(Source.key == "edu-site")).one()
        source.status, source.last_error, source.consecutive_failures = "blocked", "瑞数 412 反爬拦截", 3
        source.last_error_at = now - timedelta(hours=1)
        db.flush()
        db.add(
            SourceRun(
                crawl_run_id=run.id, source_id=source.id, started_at=run.started_at, status="blocked", requests=1,
                errors=1, problems=[{"kind": "blocked", "url": "https://jyj.example.gov.cn/", "message": "412"}],
                error_summary="被瑞数拦截",
            )
        )  # fmt: skip
        digest = Digest(
            week="2026-W47", period_start=now - timedelta(days=10), period_end=now - timedelta(days=3),
            created_at=now - timedelta(days=3), article_count=4,
        )  # fmt: skip
        db.add(digest)
        db.flush()
        db.add(Delivery(digest_id=digest.id, recipient_id=recipient.id, status="sent", updated_at=now))
    return sessions


def make_app(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime, fetcher: FakeFetcher | None = None
) -> Flask:
    config = parse_config({"data_dir": "data", "public_dir": "public"}, base_dir=tmp_path)
    feeds = config.public_dir / "feeds" / "unit"
    feeds.mkdir(parents=True)
    (config.public_dir / "feeds" / "all.xml").write_text("<rss version='2.0'><channel/></rss>", encoding="utf-8")
    (feeds / "jiaoyu.atom").write_text("<feed xmlns='http://www.w3.org/2005/Atom'/>", encoding="utf-8")
    (tmp_path / "public" / "secret.xml").write_text("secret", encoding="utf-8")
    app = create_app(config, sessions, now=lambda: now, image_fetcher=fetcher or FakeFetcher())
    app.config["TESTING"] = True
    return app


@pytest.fixture
def app(tmp_path: Path, seeded: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "test-secret-key")
    return make_app(tmp_path, seeded, now)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf(client: FlaskClient, url: str) -> str:
    page = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def login(client: FlaskClient) -> None:
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": csrf(client, "/login")})
    assert response.status_code == 302 and response.headers["Location"].endswith("/health")


def test_every_page_answers_in_chinese(client: FlaskClient, seeded: sessionmaker[Session]) -> None:
    with seeded() as db:
        unit_id = db.scalars(select(Unit.id).where(Unit.name == "市教育局")).one()
        sha = db.scalars(select(Snapshot.sha256)).first()
    login(client)
    pages = {
        "/": "最新文章",
        "/search": "全文检索",
        "/search?q=党建&unit=教育局": "共找到 1 篇",
        "/story/guid-edu": "首发",
        f"/unit/{unit_id}": "2026-W48",
        "/digests": "2026-W47",
        "/unsubscribe/tok-123": "确认退订",
        "/health": "瑞数 412 反爬拦截",
        f"/snapshot/{sha}": "全会",
    }
    for url, expected in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert expected in response.get_data(as_text=True), url
    home = client.get("/").get_data(as_text=True)
    # Feeds are listed by name from the publisher's index.json (tests/test_feeds_urls.py); none here.
    assert "订阅源尚未生成" in home and 'href="/feeds/"' in home


def test_missing_things_are_404_in_chinese(client: FlaskClient) -> None:
    for url in ("/story/nope", "/unit/999999", "/unit/99999999999999", "/snapshot/" + "0" * 64, "/snapshot/xyz",
                "/unsubscribe/nope", "/nowhere"):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 404, url
        assert "页面不存在" in response.get_data(as_text=True)


def test_search_page_highlights_and_paginates(client: FlaskClient) -> None:
    page = client.get("/search", query_string={"q": "党建"}).get_data(as_text=True)
    assert "共找到 2 篇" in page and "<mark>党建</mark>" in page
    page = client.get("/search", query_string={"q": "", "state": "any"}).get_data(as_text=True)
    assert "共找到 4 篇" in page  # the fifth story was deleted at source: the operator's only
    assert "错误" not in client.get("/search", query_string={"from": "2026-11-20", "to": "2026-11-20"}).get_data(
        as_text=True
    )
    bad = client.get("/search", query_string={"from": "2026-13-01"}).get_data(as_text=True)
    assert "YYYY-MM-DD" in bad


def test_search_export_refuses_what_it_cannot_export(client: FlaskClient) -> None:
    for params in (
        {"q": "党建", "format": "xlsx"},
        {"q": "党建"},
        {"q": "*", "format": "csv"},
        {"from": "x", "format": "csv"},
    ):
        response = client.get("/search/export", query_string=params)
        assert response.status_code == 400, params
        assert "无法导出" in response.get_data(as_text=True)
    ok = client.get("/search/export", query_string={"q": "党建", "format": "jsonl", "sort": "bogus"})
    assert ok.status_code == 200 and ok.headers["Cache-Control"] == "no-store"
    assert "attachment" in ok.headers["Content-Disposition"]
    assert len(ok.get_data(as_text=True).splitlines()) == 2


def test_a_download_larger_than_the_web_limit_is_refused_with_what_to_do_instead(
    tmp_path: Path, seeded: sessionmaker[Session], now: datetime
) -> None:
    config = parse_config({"data_dir": "data", "public_dir": "public", "web": {"export_limit": 1}}, base_dir=tmp_path)
    client = create_app(config, seeded, now=lambda: now, image_fetcher=FakeFetcher()).test_client()
    two = client.get("/search/export", query_string={"q": "党建", "format": "csv"})
    assert two.status_code == 400
    said = two.get_data(as_text=True)
    assert "超过 1 篇" in said and "zhuanlan export" in said
    page = client.get("/search", query_string={"q": "党建"}).get_data(as_text=True)
    assert "超过网页导出上限 1 篇" in page and "export-csv" not in page  # said before anyone clicks
    narrow = client.get("/search", query_string={"q": "党建", "unit": "市教育局"}).get_data(as_text=True)
    assert "export-csv" in narrow and "导出上限" not in narrow
    everything = client.get("/search/export", query_string={"format": "jsonl"})  # every story
    assert everything.status_code == 400
    one = client.get("/search/export", query_string={"q": "党建", "unit": "市教育局", "format": "jsonl"})
    assert one.status_code == 200 and len(one.get_data(as_text=True).splitlines()) == 1


def test_search_page_never_fails_on_hostile_input(client: FlaskClient) -> None:
    # A lone surrogate cannot travel in a URL; its bytes (invalid UTF-8) can, and are tried below.
    hostile = [q for q in HOSTILE if q.isascii() or "\ud800" not in q]
    hostile += ["<script>alert(1)</script>", "{{7*7}}", "%00", "党建%"]
    for raw in ("/search?q=%ED%A0%80%FF%FE", "/search?q=%E5%85%9A%E5", "/search?page=-1&q=党建&to=9999-12-31"):
        assert client.get(raw).status_code == 200, raw
    for q in hostile:
        for params in ({"q": q}, {"q": "党建", "unit": q, "author": q, "topic": q, "page": q, "state": q, "from": q}):
            response = client.get("/search", query_string=params)
            assert response.status_code == 200, (q, params)
            body = response.get_data(as_text=True)
            assert "<script>alert" not in body
            assert "检索" in body


def test_feeds_are_served_with_validators_and_304(client: FlaskClient) -> None:
    first = client.get("/feeds/all.xml")
    assert first.status_code == 200 and first.mimetype == "application/xml"
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert client.get("/feeds/all.xml", headers={"If-None-Match": etag}).status_code == 304
    assert client.get("/feeds/all.xml", headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get("/feeds/unit/jiaoyu.atom").mimetype == "application/atom+xml"
    for url in ("/feeds/../secret.xml", "/feeds/%2e%2e/secret.xml", "/feeds/..%2fsecret.xml", "/feeds//etc/passwd.xml",
                "/feeds/missing.xml", "/feeds/unit"):  # fmt: skip
        # Werkzeug first merges "//" with a redirect; wherever it lands, nothing outside feeds/ is served.
        assert client.get(url, follow_redirects=True).status_code == 404, url


def test_image_proxy_allow_list(tmp_path: Path, seeded: sessionmaker[Session], now: datetime) -> None:
    fetcher = FakeFetcher()
    client = make_app(tmp_path, seeded, now, fetcher).test_client()
    for url in ("https://evil.example.com/a.png", "http://127.0.0.1:8080/health", "https://mmbiz.qpic.cn@evil.com/x",
                "https://mmbiz.qpic.cn.evil.com/x", "file:///etc/passwd", "https://mmbiz.qpic.cn:8443/x",
                "https://mmbiz.qpic.cn\\@evil.com/", "", "gopher://mmbiz.qpic.cn/"):  # fmt: skip
        assert client.get("/img", query_string={"u": url}).status_code == 403, url
    assert fetcher.calls == []
    response = client.get("/img", query_string={"u": IMAGE})
    assert response.status_code == 200 and response.data == PNG and response.mimetype == "image/png"
    assert client.get("/img", query_string={"u": IMAGE}).status_code == 200
    assert fetcher.calls == [IMAGE]  # the second answer came from the cache
    assert len(list((tmp_path / "data" / "imgcache").iterdir())) == 2


@pytest.mark.parametrize("content_type", ["text/html", "image/svg+xml"])
def test_image_proxy_refuses_non_images(
    tmp_path: Path, seeded: sessionmaker[Session], now: datetime, content_type: str
) -> None:
    client = make_app(tmp_path, seeded, now, FakeFetcher(content_type)).test_client()
    assert client.get("/img", query_string={"u": IMAGE}).status_code == 403


def test_image_url_allowed() -> None:
    assert image_url_allowed(IMAGE) and image_url_allowed("http://mmbiz.qlogo.cn/x")
    assert not image_url_allowed("https://MMBIZ.qpic.cn.evil/x")
    assert not image_url_allowed("https://mmbiz.qpic.cn/\x00")


def test_snapshot_is_sandboxed_with_its_charset(client: FlaskClient, seeded: sessionmaker[Session]) -> None:
    with seeded() as db:
        snap = db.scalars(select(Snapshot).where(Snapshot.encoding == "gbk")).first()
        assert snap is not None
    response = client.get(f"/snapshot/{snap.sha256}")
    csp = response.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;") and "script-src 'none'" in csp and "default-src 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Type"] == "text/html; charset=gbk"
    assert "财政" in response.data.decode("gbk")


def test_story_body_is_sanitized_and_images_proxied(client: FlaskClient) -> None:
    page = client.get("/story/guid-notice").get_data(as_text=True)
    assert "<script>alert" not in page
    assert 'src="/img?u=https%3A%2F%2Fmmbiz.qpic.cn%2Fmmbiz_jpg%2Fabc%2F640"' in page
    assert "script-src 'none'" in client.get("/").headers["Content-Security-Policy"]


def test_login_and_health(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    token = csrf(client, "/login")
    wrong = client.post("/login", data={"password": "guess", "csrf_token": token})
    assert wrong.status_code == 403 and "密码不正确" in wrong.get_data(as_text=True)
    assert client.post("/login", data={"password": PASSWORD}).status_code == 400  # no CSRF token
    assert client.post("/login", data={"password": PASSWORD, "csrf_token": "forged"}).status_code == 400
    assert client.get("/health").status_code == 302
    login(client)
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert "采集源" in client.get("/health").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf(client, "/health")})
    assert client.get("/health").status_code == 302


def test_login_disabled_without_password(
    tmp_path: Path, seeded: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZHUANLAN_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("ZHUANLAN_ADMIN_PASSWORD_FILE", raising=False)
    client = make_app(tmp_path, seeded, now).test_client()
    assert "登录已停用" in client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"password": "", "csrf_token": "x"})
    assert response.status_code == 400
    assert client.get("/health").status_code == 302


def test_unsubscribe_needs_csrf_and_records_opt_out(
    client: FlaskClient, seeded: sessionmaker[Session], now: datetime
) -> None:
    assert client.post("/unsubscribe/tok-123").status_code == 400
    with seeded() as db:
        assert db.scalars(select(Recipient)).one().opted_out_at is None
    token = csrf(client, "/unsubscribe/tok-123")
    response = client.post("/unsubscribe/tok-123", data={"csrf_token": token})
    assert response.status_code == 200 and "已为" in response.get_data(as_text=True)
    with seeded() as db:
        opted = db.scalars(select(Recipient)).one().opted_out_at
        assert opted is not None and opted.astimezone(SHANGHAI) == now


class _ImageHandler(BaseHTTPRequestHandler):
    referers: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _ImageHandler.referers.append(self.headers.get("Referer", ""))
        routes = {
            "/ok.png": (200, "image/png", PNG, {}),
            "/page": (200, "text/html", b"<html></html>", {}),
            "/big.png": (200, "image/png", b"\x00" * 2048, {}),
            "/away": (302, "text/plain", b"", {"Location": "http://localhost:1/internal.png"}),
            "/missing.png": (404, "text/plain", b"", {}),
        }
        status, ctype, body, extra = routes.get(self.path, (404, "text/plain", b"", {}))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def image_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    assert not images.image_url_allowed(f"{base}/ok.png")
    # Only for this test: the local server stands in for the allow-listed hosts.
    monkeypatch.setattr(images, "image_url_allowed", lambda url: url.startswith(base))
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_image_sends_referer_and_enforces_type_size_and_redirects(image_server: str) -> None:
    data, ctype = images.fetch_image(f"{image_server}/ok.png")
    assert data == PNG and ctype == "image/png"
    assert _ImageHandler.referers[-1] == "https://mp.weixin.qq.com/"
    with pytest.raises(images.ImageRefused):
        images.fetch_image(f"{image_server}/page")
    with pytest.raises(images.ImageRefused):
        images.fetch_image(f"{image_server}/big.png", limit=1024)
    with pytest.raises(images.ImageRefused):  # a redirect off the allow-list is never followed
        images.fetch_image(f"{image_server}/away")
    with pytest.raises(images.ImageFetchError):
        images.fetch_image(f"{image_server}/missing.png")


def test_feed_directory_page_is_served_with_its_own_policy(
    tmp_path: Path, seeded: sessionmaker[Session], now: datetime
) -> None:
    app = make_app(tmp_path, seeded, now, FakeFetcher())
    client = app.test_client()
    assert client.get("/feeds/").status_code == 404  # not published yet
    page = "<!DOCTYPE html><html><head><style>body{margin:0}</style></head><body>订阅源目录</body></html>"
    (tmp_path / "public" / "feeds" / "index.html").write_text(page, encoding="utf-8")
    for url in ("/feeds/", "/feeds/index.html"):
        response = client.get(url)
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert "订阅源目录" in response.get_data(as_text=True)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
