"""`SampleSources`: the sample WeChat album and unit websites served on one local port.

Owns the HTTP shell: routing a request to a page renderer, encodings and Content-Type headers as
the real sites send them, ETag/Last-Modified with 304 answers on the websites, robots.txt, and the
request log. Pages come from `wechat_pages` and `site_pages`; what exists comes from `catalog`.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from crawler.samples import site_pages as sp
from crawler.samples import wechat_pages as wp
from crawler.samples.catalog import (
    DELETED_MSGID,
    Catalog,
    Truth,
    album_url,
    build_catalog,
    current_anchor,
    truth_from_catalog,
)
from crawler.samples.content import ALBUM_ID, BIZ
from crawler.samples.sample_config import sample_config_toml

__all__ = ["Reply", "SampleSources"]

HTML_UTF8 = "text/html; charset=utf-8"
ROBOTS = b"User-agent: *\nAllow: /\n"


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str
    last_modified: datetime | None = None
    validators: bool = False  # send ETag/Last-Modified and honour conditional requests
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:20] + '"'  # a validator, not security


def _not_found() -> Reply:
    return Reply(
        404, b"<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1></body></html>", HTML_UTF8
    )


def _int(params: Mapping[str, list[str]], name: str, default: int | None = None) -> int | None:
    values = params.get(name)
    if not values or not values[0].strip():
        return default
    try:
        return int(values[0])
    except ValueError:
        return default


def _str(params: Mapping[str, list[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        value = candidate.strip().removeprefix("W/")
        if value in ("*", etag):
            return True
    return False


def _not_modified(reply: Reply, headers: Mapping[str, str]) -> bool:
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, reply.etag)  # takes precedence over If-Modified-Since
    since = headers.get("if-modified-since")
    if since and reply.last_modified is not None:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        return reply.last_modified.replace(microsecond=0) <= when
    return False


class SampleSources:
    """The sample sources on one local port. `anchor` is "today" for the publish offsets (default:
    `catalog.current_anchor`: today in Asia/Shanghai, or yesterday before today's samples are due). Thread-safe; pages are rendered per request from the current catalog."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, anchor: date | None = None) -> None:
        self.host = host
        self.port = port
        self.anchor = anchor or current_anchor()
        self.base_url = ""
        self.request_log: list[str] = []
        self._lock = threading.Lock()
        self._hidden: set[str] = set()
        self._deleted: set[str] = set()
        self._edits: dict[str, str] = {}
        self._verification = False
        self._catalog = build_catalog(self.anchor)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> str:
        """Bind and serve in a background thread; returns the base URL ("http://127.0.0.1:PORT")."""
        if self._server is not None:
            raise RuntimeError("the sample sources are already running at " + self.base_url)
        try:
            server = _Server((self.host, self.port), _Handler)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot serve the sample sources on {self.host}:{self.port}: {exc.strerror} "
                "(is another process using this port? pass another --port, or 0 for a free one)",
            ) from exc
        server.sources = self
        self._server = server
        self.port = server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="zhuanlan-samples", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SampleSources:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what exists ---------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def set_hidden(self, story_key: str, hidden: bool = True) -> None:
        """Make a story not exist yet (absent from every list, its pages 404): for "something new
        appeared" tests, hide it for the first crawl and show it before the second."""
        with self._lock:
            (self._hidden.add if hidden else self._hidden.discard)(story_key)
            self._rebuild()

    def set_deleted(self, story_key: str, deleted: bool = True) -> None:
        """Delete a story at its sources: WeChat answers 该内容已被发布者删除 and drops it from the
        album; the websites drop it from their lists and answer 404."""
        with self._lock:
            (self._deleted.add if deleted else self._deleted.discard)(story_key)
            self._rebuild()

    def set_edited(self, story_key: str, note: str | None = "（本文有修改）") -> None:
        """Edit a story's WeChat article (an ordinary article, item_show_type 0) at the source: `note`
        becomes a new last paragraph of its body (None restores the original). URL and identity stay."""
        with self._lock:
            items = [i for i in self._catalog.wechat_all if i.story.key == story_key]
            if not items or any(i.show_type != 0 for i in items):
                raise ValueError(f"{story_key!r} is not an ordinary WeChat article of the samples")
            if note is None:
                self._edits.pop(story_key, None)
            else:
                self._edits[story_key] = note

    def set_verification(self, on: bool = True) -> None:
        """Make WeChat answer every album and article request with its verification page (环境异常)."""
        with self._lock:
            self._verification = on

    def _rebuild(self) -> None:
        self._catalog = build_catalog(self.anchor, frozenset(self._hidden), frozenset(self._deleted))

    def truth(self) -> Truth:
        """Ground truth for what is served now (hidden and deleted stories left out)."""
        return truth_from_catalog(self._catalog, self.base_url or "http://127.0.0.1:0")

    @property
    def album_url(self) -> str:
        return album_url(self.base_url)

    @property
    def deleted_article_url(self) -> str:
        return self.truth().deleted_article_url

    def config_toml(self, *, smtp_port: int, web_port: int, data_dir: str = "data", public_dir: str = "public") -> str:
        return sample_config_toml(
            self.base_url,
            smtp_port=smtp_port,
            web_port=web_port,
            data_dir=data_dir,
            public_dir=public_dir,
            anchor=self.anchor,
        )

    def requests_to(self, prefix: str) -> list[str]:
        with self._lock:
            return [p for p in self.request_log if p.startswith(prefix)]

    def _log(self, target: str) -> None:
        with self._lock:
            self.request_log.append(target)

    # --- routing (pure over the catalog; the handler only moves bytes) -------------------------

    def respond(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> Reply:
        """Answer one request. `headers` have lower-case names."""
        parts = urlsplit(target)
        params = parse_qs(parts.query, keep_blank_values=True)
        if method == "POST" and body:
            for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                params.setdefault(name, values)
        host = headers.get("host")
        base = f"http://{host}" if host else self.base_url
        reply = self._route(self._catalog, parts.path, params, base)
        if reply.validators:
            reply.headers.append(("ETag", reply.etag))
            if reply.last_modified is not None:
                reply.headers.append(
                    ("Last-Modified", format_datetime(reply.last_modified.astimezone(UTC), usegmt=True))
                )
            if method in ("GET", "HEAD") and _not_modified(reply, headers):
                return Reply(304, b"", reply.content_type, reply.last_modified, False, reply.headers)
        return reply

    def _route(self, catalog: Catalog, path: str, params: Mapping[str, list[str]], base: str) -> Reply:
        if path == "/robots.txt":
            return Reply(200, ROBOTS, "text/plain")
        if path == "/mp/appmsgalbum":
            return self._album(catalog, params, base)
        if path == "/s":
            return self._wechat_article(catalog, params, base)
        if path.startswith("/jgdj/"):
            return self._committee(catalog, path)
        if path.startswith("/kjj/"):
            return self._hanweb(catalog, path, params)
        if path.startswith("/czj/"):
            return self._trs(catalog, path)
        if path.startswith("/jyj/"):
            return self._gbk(catalog, path, params)
        if path.startswith("/wjw/"):
            return self._labels(catalog, path, params)
        return _not_found()

    # WeChat

    def _album(self, catalog: Catalog, params: Mapping[str, list[str]], base: str) -> Reply:
        if self._verification:
            return Reply(200, wp.render_verification().encode(), HTML_UTF8)
        biz = _str(params, "__biz")
        valid = _str(params, "action") == "getalbum" and _str(params, "album_id") == ALBUM_ID and biz in ("", BIZ)
        as_json = _str(params, "f") == "json"
        if as_json:
            if not valid:
                return Reply(200, wp.dumps(wp.album_error_json(200002)).encode(), "application/json; charset=UTF-8")
            data = wp.album_json(
                catalog.album,
                base,
                count=_int(params, "count", 10) or 10,
                begin_msgid=_int(params, "begin_msgid"),
                begin_itemidx=_int(params, "begin_itemidx"),
                reverse=_str(params, "is_reverse") == "1",
            )
            return Reply(200, wp.dumps(data).encode(), "application/json; charset=UTF-8")
        if not valid:
            return Reply(200, wp.render_not_found().encode(), HTML_UTF8)
        return Reply(200, wp.render_album_html(catalog.album, base).encode(), HTML_UTF8)

    def _wechat_article(self, catalog: Catalog, params: Mapping[str, list[str]], base: str) -> Reply:
        if self._verification:
            return Reply(200, wp.render_verification().encode(), HTML_UTF8)
        mid, idx = _int(params, "mid"), _int(params, "idx", 1)
        if _str(params, "__biz") != BIZ or mid is None or idx is None:
            return Reply(200, wp.render_not_found().encode(), HTML_UTF8)
        if mid == DELETED_MSGID:
            return Reply(200, wp.render_deleted().encode(), HTML_UTF8)
        item = catalog.wechat_item(mid, idx)
        sn = _str(params, "sn")
        if item is None or (sn and sn != item.sn):
            return Reply(200, wp.render_not_found().encode(), HTML_UTF8)
        if item.story.key in catalog.deleted:
            return Reply(200, wp.render_deleted().encode(), HTML_UTF8)
        page = wp.render_article(item, base, len(catalog.album))
        note = self._edits.get(item.story.key)
        if note is not None:
            page = wp.add_paragraph(page, note)
        return Reply(200, page.encode(), HTML_UTF8)

    # websites

    @staticmethod
    def _site_page(catalog: Catalog, code: str, path: str, content_type: str) -> Reply:
        item = catalog.site_item_by_path(path)
        if item is None or item.site != code or item.story.key in catalog.deleted:
            return _not_found()
        text = sp.render_site_article(catalog, item)
        return Reply(200, text.encode(sp.article_encoding(item)), content_type, item.published, True)

    @staticmethod
    def _list_reply(catalog: Catalog, code: str, text: str, content_type: str, encoding: str = "utf-8") -> Reply:
        return Reply(200, text.encode(encoding), content_type, catalog.site_last_modified(code), True)

    def _committee(self, catalog: Catalog, path: str) -> Reply:
        for page in range(1, catalog.page_count("jgdj") + 1):
            if path == sp.committee_list_path(page):
                return self._list_reply(catalog, "jgdj", sp.render_committee_list(catalog, page), HTML_UTF8)
        return self._site_page(catalog, "jgdj", path, HTML_UTF8)

    def _hanweb(self, catalog: Catalog, path: str, params: Mapping[str, list[str]]) -> Reply:
        content_type = "text/html;charset=UTF-8"
        if path == sp.HANWEB_LIST_PATH:
            return self._list_reply(catalog, "kjj", sp.render_hanweb_list(catalog), content_type)
        if path == sp.DATAPROXY_PATH:
            per = _int(params, "perpage", 3) or 3
            start = _int(params, "startrecord")
            if start is None:
                start = ((_int(params, "page", 1) or 1) - 1) * per + 1
            end = _int(params, "endrecord", start + per - 1) or start
            text = sp.render_dataproxy(catalog, start, end)
            return self._list_reply(catalog, "kjj", text, "text/xml;charset=UTF-8")
        return self._site_page(catalog, "kjj", path, content_type)

    def _trs(self, catalog: Catalog, path: str) -> Reply:
        if path == sp.TRS_PAGE_JS_PATH:
            return Reply(200, sp.TRS_PAGE_JS.encode(), "application/javascript")
        for index in range(catalog.page_count("czj")):
            if path == sp.trs_list_path(index):
                return self._list_reply(catalog, "czj", sp.render_trs_list(catalog, index), HTML_UTF8)
        return self._site_page(catalog, "czj", path, HTML_UTF8)

    def _gbk(self, catalog: Catalog, path: str, params: Mapping[str, list[str]]) -> Reply:
        # The old ASP site sends no charset at all: the client must detect GBK from the bytes.
        if path == "/jyj/news/list.asp":
            page = min(max(1, _int(params, "page", 1) or 1), catalog.page_count("jyj"))
            return self._list_reply(catalog, "jyj", sp.render_gbk_list(catalog, page), "text/html", "gbk")
        if path == "/jyj/news/show.asp":
            return self._site_page(catalog, "jyj", f"{path}?id={_int(params, 'id', 0)}", "text/html")
        return _not_found()

    def _labels(self, catalog: Catalog, path: str, params: Mapping[str, list[str]]) -> Reply:
        # No charset in the header either: the page's own <meta> decides (and one of them lies).
        if path == sp.LABELS_LIST_PATH:
            page = max(1, _int(params, "pageNum", 1) or 1)
            return self._list_reply(catalog, "wjw", sp.render_labels_list(catalog, page), "text/html")
        return self._site_page(catalog, "wjw", path, "text/html")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()
    sources: SampleSources

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a crawl stopped by Ctrl-C) is no error of the server's: no
        traceback on the demo's terminal. Anything else is reported as the standard server does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30

    def version_string(self) -> str:
        return "nginx"

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        sources = self.server.sources
        sources._log(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = sources.respond(method, self.path, headers, body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.status != 304:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if method != "HEAD" and reply.status != 304:
            self.wfile.write(reply.body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: object) -> None:
        return  # the request log is `SampleSources.request_log`; keep test output quiet
