"""Serving the published feed files and their directory page, as `zhuanlan feeds` wrote them.

Owns which published files are served (feed types only, never a path outside feeds/), answering
conditional GETs, `?limit=N` (the newest N entries of the published file, cut here), the 301 from
the file names earlier releases published (`unit-3.atom`, `topic-<hash>.atom`) to today's
readable URLs, and what the pages show of the feeds: it reads the directory the publisher writes
(`index.json`), so the pages link exactly the files that exist. Must not build or rewrite feeds:
the `feeds` package does that.

A file is served from the database's copy (`published_files`, which `feeds.publish` keeps with
every file it writes), so that a web app on any machine serves the same bytes, with its digest as
the ETag and its publication time as Last-Modified: a feed reader polling through a pool of web
machines gets a 304 from each. A file without a copy (published by a release before the copies, or
by hand) is served from `<public_dir>/feeds/` as before.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from flask import Blueprint, Response, abort, redirect, request, send_from_directory
from lxml import etree  # type: ignore[import-untyped]
from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.security import safe_join

from pipeline.corpus.models import PUBLISHED_PATH_LENGTH, PublishedFile

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker
    from werkzeug.wrappers import Response as BaseResponse

    from archive.views.context import ViewContext

log = logging.getLogger(__name__)

FEED_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".opml": "text/x-opml",
}
FEED_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'none'; base-uri 'none'"
FORMATS = ("atom", "rss", "json")  # what the pages offer, Atom first (the autodiscovery type)
KIND_NAMES = {"all": "全部文章", "column": "专栏", "unit": "单位", "topic": "主题"}
_ATOM_ENTRY = "{http://www.w3.org/2005/Atom}entry"


@dataclass(frozen=True)
class FeedLink:
    """One published feed as the pages show it (from the publisher's index.json)."""

    key: str  # the file name earlier releases used (unit-3, topic-<hash>): redirected to `path`
    kind: str  # all | column | unit | topic
    name: str  # the unit's, column's or topic's name; "" for all
    title: str
    filter: str | int | None  # column name, unit id, topic name
    path: str  # all, unit/<slug>, ...: the URL is /feeds/<path>.<ext>

    def href(self, ext: str = "atom") -> str:
        return f"/feeds/{quote(self.path)}.{ext}"


@dataclass(frozen=True)
class FeedDirectory:
    feeds: tuple[FeedLink, ...] = ()

    @functools.cached_property
    def _by_key(self) -> dict[str, FeedLink]:
        return {f.key: f for f in self.feeds}

    @functools.cached_property
    def _by_filter(self) -> dict[tuple[str, str], FeedLink]:
        return {(f.kind, str(f.filter)): f for f in self.feeds}

    def site(self) -> FeedLink | None:
        return self._by_key.get("all")

    def legacy(self, key: str) -> FeedLink | None:
        """The feed an earlier release published as `<key>.<ext>`, when its URL is now another."""
        found = self._by_key.get(key)
        return found if found is not None and found.path != key else None

    def find(self, kind: str, value: str | int | None) -> FeedLink | None:
        """The feed of a unit (by id), a column or a topic (by name)."""
        return self._by_filter.get((kind, str(value)))

    def groups(self) -> list[tuple[str, list[FeedLink]]]:
        """(kind's Chinese name, feeds) in the publisher's order, kinds without feeds left out."""
        out = []
        for kind, label in KIND_NAMES.items():
            members = [f for f in self.feeds if f.kind == kind]
            if members:
                out.append((label, members))
        return out


_lock = threading.Lock()
_loaded: dict[Path, tuple[tuple[int, int], FeedDirectory]] = {}


def _parse_directory(raw: bytes) -> FeedDirectory:
    doc = json.loads(raw)
    feeds = []
    for f in doc.get("feeds", []):
        path = str(f["path"])
        if ".." in path.split("/") or path.startswith("/"):
            continue  # never link outside /feeds/, whatever the file says
        feeds.append(
            FeedLink(
                key=str(f["key"]),
                kind=str(f["kind"]),
                name=str(f.get("name") or ""),
                title=str(f.get("title") or ""),
                filter=f.get("filter"),
                path=path,
            )
        )
    return FeedDirectory(tuple(feeds))


def feed_directory(feeds_dir: Path) -> FeedDirectory:
    """The published feeds (empty before the first `zhuanlan feeds`); re-read only when the
    publisher replaced index.json, so a page pays one stat() for it."""
    path = feeds_dir / "index.json"
    try:
        st = path.stat()
    except OSError:
        return FeedDirectory()
    stamp = (st.st_mtime_ns, st.st_size)
    with _lock:
        cached = _loaded.get(feeds_dir)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    try:
        directory = _parse_directory_or_empty(path.read_bytes())
    except OSError:
        directory = FeedDirectory()
    with _lock:
        _loaded[feeds_dir] = (stamp, directory)
    return directory


@dataclass(frozen=True)
class Copy:
    """The database's copy of one published file."""

    sha256: str
    published_at: datetime
    content: bytes


class _Recent:
    """A small LRU map, safe across the web server's threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_PUBLISHED = cast(Table, PublishedFile.__table__)
_DIGEST = select(_PUBLISHED.c.sha256, _PUBLISHED.c.published_at)
_WHOLE = select(_PUBLISHED.c.sha256, _PUBLISHED.c.published_at, _PUBLISHED.c.content)


class PublishedCopies:
    """The published files as the database holds them: a request reads a file's digest and time
    (one small row), its bytes come from memory while that digest is current."""

    def __init__(self, session_factory: sessionmaker[Session], cached_files: int = 64) -> None:
        self.session_factory = session_factory
        self._content = _Recent(cached_files)  # (path, sha256) → bytes
        self._directories = _Recent(4)  # sha256 of index.json → FeedDirectory

    def get(self, path: str) -> Copy | None:
        """The copy of `path` (relative to feeds/), or None if the database has none."""
        # Core statements on the table: a reader's poll pays for a row, not for the ORM's machinery
        # (measured on SQLite: 65 µs instead of 150).
        with self.session_factory() as session:
            row = session.execute(_DIGEST.where(_PUBLISHED.c.path == path)).first()
            if row is None:
                return None
            content = self._content.get((path, row.sha256))
            if content is not None:
                return Copy(row.sha256, row.published_at, content)
            full = session.execute(_WHOLE.where(_PUBLISHED.c.path == path)).first()
        if full is None:
            return None
        self._content.put((path, full.sha256), full.content)
        return Copy(full.sha256, full.published_at, full.content)

    def get_or_disk(self, path: str, feeds_dir: Path) -> Copy | None:
        """`get`, or None when the database cannot be read: the caller then serves the file on
        disk, as a web app did before the copies (feeds outlive a database outage where it runs
        beside the publisher)."""
        try:
            return self.get(path)
        except SQLAlchemyError as exc:
            log.warning(
                "published file %s served from %s: the database's copy is unreadable (%s)", path, feeds_dir, exc
            )
            return None

    def directory(self, feeds_dir: Path) -> FeedDirectory:
        """The published feeds from the copy of index.json; from the file on disk while there is no
        copy, or while the database cannot be read (a page must not fail for its feed links)."""
        copy = self.get_or_disk("index.json", feeds_dir)
        if copy is None:
            return feed_directory(feeds_dir)
        directory: FeedDirectory | None = self._directories.get(copy.sha256)
        if directory is None:
            directory = _parse_directory_or_empty(copy.content)
            self._directories.put(copy.sha256, directory)
        return directory


def _parse_directory_or_empty(raw: bytes) -> FeedDirectory:
    try:
        return _parse_directory(raw)
    except (ValueError, KeyError, TypeError, AttributeError):
        return FeedDirectory()  # half-written by hand or from another version: no links, no error page


@functools.lru_cache(maxsize=32)
def _limited(path: str, stamp: tuple[int, int], ext: str, limit: int) -> bytes:
    """The published document at `path` with only its first `limit` entries (newest first, as
    published). Cached per file version: a reader polling every few minutes costs one parse."""
    return _cut(Path(path).read_bytes(), ext, limit)


_limited_copies = _Recent(32)  # (sha256, ext, limit) → bytes


def _limited_copy(copy: Copy, ext: str, limit: int) -> bytes:
    """`_limited` for a database copy, cached per digest."""
    key = (copy.sha256, ext, limit)
    data: bytes | None = _limited_copies.get(key)
    if data is None:
        data = _cut(copy.content, ext, limit)
        _limited_copies.put(key, data)
    return data


def _cut(data: bytes, ext: str, limit: int) -> bytes:
    """A published document with only its first `limit` entries."""
    if ext == "json":
        doc: dict[str, Any] = json.loads(data)
        doc["items"] = list(doc.get("items") or [])[:limit]
        return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")
    # Our own file, but parsed as if it were not: no entities, no network, no huge trees.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(data, parser)
    if ext == "atom":
        entries = root.findall(_ATOM_ENTRY)
    else:
        channel = root.find("channel")
        entries = channel.findall("item") if channel is not None else []
    for entry in entries[limit:]:
        parent = entry.getparent()
        if parent is not None:
            parent.remove(entry)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _parse_limit(value: str, maximum: int) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 6) or not 1 <= int(value) <= maximum:
        abort(400, description=f"limit 应为 1 到 {maximum} 之间的整数 / limit must be an integer from 1 to {maximum}")
    return int(value)


def _copy_response(copy: Copy, mimetype: str, data: bytes | None = None, etag: str | None = None) -> BaseResponse:
    """A database copy (or `data` cut from it) as a cacheable response that answers conditional GETs."""
    response = Response(copy.content if data is None else data, mimetype=mimetype)
    response.set_etag(etag or copy.sha256)
    response.last_modified = copy.published_at
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response.make_conditional(request)


def blueprint(ctx: ViewContext) -> Blueprint:
    feeds = Blueprint("feeds", __name__)
    copies = PublishedCopies(ctx.session_factory)

    @feeds.app_context_processor
    def feed_links() -> dict[str, Any]:
        """Every template can link the published feeds (base.html's autodiscovery needs `site_feed`)."""
        directory = copies.directory(ctx.feeds_dir)
        return {"feed_directory": directory, "site_feed": directory.site()}

    @feeds.get("/feeds/")
    def feed_directory_page() -> BaseResponse:  # endpoint feeds.feed_directory_page
        """The feed directory page that `zhuanlan feeds` writes beside the feeds."""
        copy = copies.get_or_disk("index.html", ctx.feeds_dir)
        if copy is not None:
            response = _copy_response(copy, "text/html")
        elif (ctx.feeds_dir / "index.html").is_file():
            response = send_from_directory(ctx.feeds_dir, "index.html", mimetype="text/html", max_age=300)
        else:
            abort(404, description="还没有生成订阅源：请先运行 zhuanlan feeds。")
        # The page carries its own inline <style>; scripts stay forbidden.
        response.headers["Content-Security-Policy"] = FEED_PAGE_CSP
        return response

    @feeds.get("/feeds/<path:name>")
    def feed(name: str) -> BaseResponse:
        if name == "index.html":
            return feed_directory_page()
        suffix = Path(name).suffix
        mimetype = "application/json" if name == "index.json" else FEED_TYPES.get(suffix)
        if mimetype is None or len(name) > PUBLISHED_PATH_LENGTH or not name.isprintable():
            abort(404)  # not a type we publish, or a name no published file has (a NUL, a control character)
        ext = suffix[1:]
        # A published file is never at a name earlier releases used: look for it first, so that a
        # reader's poll costs one lookup.
        copy = copies.get_or_disk(name, ctx.feeds_dir)
        moved = None
        if copy is None and ext in FORMATS:
            moved = copies.directory(ctx.feeds_dir).legacy(name[: -len(suffix)])
        if moved is not None:
            # Relative to this site: never built from the request's Host header.
            target = moved.href(ext)
            if request.query_string:
                target += "?" + request.query_string.decode("ascii", "replace")
            return redirect(target, code=301)
        limit = request.args.get("limit")
        wanted = _parse_limit(limit, ctx.config.feeds.items_per_feed) if limit is not None and ext in FORMATS else None
        if copy is not None:
            if wanted is None:
                return _copy_response(copy, mimetype)
            try:
                data = _limited_copy(copy, ext, wanted)
            except (ValueError, etree.XMLSyntaxError):
                abort(404)  # not a feed we published
            return _copy_response(copy, mimetype, data, f"{copy.sha256}-{wanted}")
        if wanted is not None:
            return _limited_response(name, ext, wanted, mimetype)
        # send_from_directory joins safely (no "..", no absolute paths) and answers
        # If-None-Match / If-Modified-Since with 304 using its ETag and Last-Modified.
        # (Werkzeug adds "; charset=utf-8" to the XML types itself.)
        return send_from_directory(ctx.feeds_dir, name, mimetype=mimetype, max_age=300)

    def _limited_response(name: str, ext: str, limit: int, mimetype: str) -> BaseResponse:
        # The same safe join as send_from_directory: a 404 for anything outside feeds/.
        joined = safe_join(str(ctx.feeds_dir), name)
        if joined is None or not Path(joined).is_file():
            abort(404)
        st = Path(joined).stat()
        try:
            data = _limited(joined, (st.st_mtime_ns, st.st_size), ext, limit)
        except (ValueError, etree.XMLSyntaxError):
            abort(404)  # not a feed we published
        response = Response(data, mimetype=mimetype)
        response.set_etag(f"{st.st_mtime_ns:x}-{st.st_size:x}-{limit}")
        response.last_modified = datetime.fromtimestamp(st.st_mtime, UTC)
        response.cache_control.public = True
        response.cache_control.max_age = 300
        return response.make_conditional(request)

    return feeds
