"""The image proxy: WeChat images shown through us, because WeChat refuses them to other sites.

Owns which image URLs may be fetched (allow-listed hosts only: never an open proxy), fetching
them with WeChat's Referer, refusing what is not a plain image or is too large, and the disk
cache under the data directory, capped in size (`[web] image_cache_mb`, least recently used
images go first). Fetches run on their own few threads (`MAX_FETCHES`), never more at once: a
request waits for its fetch at most `FETCH_WAIT` seconds and is told to come back (503 with
Retry-After) when all are busy, so slow upstreams never hold the threads that serve pages.
Must not fetch anything a URL parser could read as another host, nor show upstream error text.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import secrets
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from flask import Blueprint, Response, abort, request, send_file

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from archive.views.context import ViewContext

ALLOWED_IMAGE_HOSTS = frozenset({"mmbiz.qpic.cn", "mmbiz.qlogo.cn"})
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_REFERER = "https://mp.weixin.qq.com/"
IMAGE_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
IMAGE_CSP = "default-src 'none'; sandbox"
FETCH_TIMEOUT = 5.0  # seconds for the upstream's connect and each read
MAX_FETCHES = 2  # upstream fetches at once, per web app
FETCH_WAIT = 2.0  # seconds a request waits for its own fetch before answering 503
RETRY_AFTER = 5  # seconds, in the 503's Retry-After

log = logging.getLogger("zhuanlan.web.images")


class ImageRefused(ValueError):
    """The image is not one we proxy (host, type or size): answered with 403."""


class ImageFetchError(RuntimeError):
    """The upstream image could not be fetched: answered with 502."""


def image_url_allowed(url: str) -> bool:
    """Only plain http(s) URLs on the allow-listed hosts; anything a URL parser might read two
    ways (userinfo, backslashes, control characters, odd ports) is refused."""
    if not url or len(url) > 2048 or "\\" in url or any(unicodedata.category(ch)[0] in "CZ" for ch in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and "@" not in parts.netloc
        and (parts.hostname or "") in ALLOWED_IMAGE_HOSTS
        and port in (None, 80, 443)
    )


def image_src(url: str) -> str:
    """The proxy's URL for an image."""
    return "/img?u=" + quote(url, safe="")


class _AllowListRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect may not leave the allow-list (it would make us fetch internal addresses)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if not image_url_allowed(newurl):
            raise ImageRefused(f"redirect to a host that is not allowed: {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_image(url: str, *, timeout: float = FETCH_TIMEOUT, limit: int = MAX_IMAGE_BYTES) -> tuple[bytes, str]:
    """(bytes, content type) of an allow-listed image, fetched with WeChat's Referer."""
    if not image_url_allowed(url):
        raise ImageRefused(f"host not allowed: {url}")
    opener = urllib.request.build_opener(_AllowListRedirects())
    req = urllib.request.Request(url, headers={"Referer": IMAGE_REFERER, "User-Agent": IMAGE_USER_AGENT})
    try:
        with opener.open(req, timeout=timeout) as resp:
            content_type = resp.headers.get_content_type()
            check_image(content_type, int(resp.headers.get("Content-Length") or 0), limit)
            data: bytes = resp.read(limit + 1)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise ImageFetchError(f"cannot fetch {url}: {exc}") from exc
    check_image(content_type, len(data), limit)
    return data, content_type


def check_image(content_type: str, size: int, limit: int = MAX_IMAGE_BYTES) -> None:
    # SVG can carry script and would run in our origin if opened directly: not proxied.
    if not content_type.startswith("image/") or content_type == "image/svg+xml":
        raise ImageRefused(f"not an image: {content_type}")
    if size > limit:
        raise ImageRefused(f"image larger than {limit} bytes")


def _write_atomically(target: Path, payload: bytes) -> None:
    # Another request may read the cache at the same moment: it sees the whole file or none.
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    partial.write_bytes(payload)
    os.replace(partial, target)


class ImageCache:
    """Cached images on disk, one data file and one `.type` file per URL hash, at most
    `max_bytes` in all: a write that passes the cap removes the least recently used images
    (a file's modification time is its last use: reads touch it)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._trim_lock = threading.Lock()

    def paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.directory / key, self.directory / f"{key}.type"

    def get(self, url: str) -> tuple[Path, str] | None:
        path, type_path = self.paths(url)
        try:
            content_type = type_path.read_text(encoding="ascii", errors="replace").strip()
            os.utime(path)  # a use: this image is now the most recently used
        except FileNotFoundError:
            return None
        return path, content_type

    def put(self, url: str, data: bytes, content_type: str) -> None:
        path, type_path = self.paths(url)
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(type_path, content_type.encode("ascii", "replace"))
        _write_atomically(path, data)
        self.trim()

    def size(self) -> int:
        return sum(entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file())

    def trim(self) -> None:
        """Remove least recently used images until the cache is within its cap."""
        with self._trim_lock:
            entries: list[tuple[float, int, str]] = []
            total = 0
            for entry in os.scandir(self.directory):
                if not entry.is_file() or entry.name.startswith("."):
                    continue
                stat = entry.stat()
                total += stat.st_size
                if not entry.name.endswith(".type"):
                    entries.append((stat.st_mtime, stat.st_size, entry.name))
            if total <= self.max_bytes:
                return
            for _, size, name in sorted(entries):
                type_file = self.directory / f"{name}.type"
                type_size = type_file.stat().st_size if type_file.exists() else 0
                (self.directory / name).unlink(missing_ok=True)
                type_file.unlink(missing_ok=True)
                total -= size + type_size
                if total <= self.max_bytes:
                    break


class Fetches:
    """Upstream fetches on `limit` threads of their own, one per URL at a time, filling `cache`.

    Hand-written rather than a library's: the bound must refuse at once (never queue a request
    behind slow upstreams) and a fetch a request stopped waiting for must still fill the cache
    for the next visit; a plain ThreadPoolExecutor would queue, a semaphore would hold the
    request's thread for the whole fetch."""

    def __init__(self, fetcher: Callable[[str], tuple[bytes, str]], cache: ImageCache, limit: int) -> None:
        self._fetcher = fetcher
        self._cache = cache
        self._limit = limit
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="zhuanlan-img")
        self._lock = threading.Lock()
        self._running: dict[str, Future[None]] = {}

    def start(self, url: str) -> Future[None] | None:
        """The new fetch of `url`, or None when `url` is being fetched already or all fetchers are busy."""
        with self._lock:
            if url in self._running or len(self._running) >= self._limit:
                return None
            future = self._executor.submit(self._fetch, url)
            self._running[url] = future
            return future

    def _fetch(self, url: str) -> None:
        try:
            data, content_type = self._fetcher(url)
            check_image(content_type, len(data))
            self._cache.put(url, data, content_type)
        finally:
            with self._lock:
                self._running.pop(url, None)


def blueprint(ctx: ViewContext) -> Blueprint:
    images = Blueprint("images", __name__)
    cache = ImageCache(ctx.image_cache_dir, ctx.config.web.image_cache_mb * 1024 * 1024)
    fetches = Fetches(ctx.image_fetcher, cache, MAX_FETCHES)

    def busy() -> Response:
        response = Response("图片正在获取，请稍后刷新。", status=503, mimetype="text/plain")
        response.headers["Retry-After"] = str(RETRY_AFTER)
        response.headers["Cache-Control"] = "no-store"
        return response

    @images.get("/img")
    def image() -> Response:
        url = request.args.get("u", "")
        if not image_url_allowed(url):
            abort(403, description="只代理微信图片（mmbiz.qpic.cn、mmbiz.qlogo.cn）。")
        cached = cache.get(url)
        if cached is None:
            future = fetches.start(url)
            if future is None:
                return busy()
            started = time.monotonic()
            try:
                future.result(timeout=FETCH_WAIT)
            except FutureTimeout:
                return busy()  # the fetch goes on and fills the cache for the next visit
            except ImageRefused as exc:
                log.info("image refused: %s", exc)  # the reason names upstream details: log only
                abort(403, description="拒绝代理：不是可代理的图片。")
            except ImageFetchError as exc:
                log.warning("image fetch failed after %.1fs: %s", time.monotonic() - started, exc)
                abort(502, description="图片获取失败，请稍后再试。")
            cached = cache.get(url)
            if cached is None:  # trimmed away at once (a cap smaller than the image)
                return busy()
        path, content_type = cached
        try:
            response = send_file(path, mimetype=content_type, max_age=7 * 86400, conditional=True)
        except FileNotFoundError:  # another request trimmed it just now
            return busy()
        response.headers["Content-Security-Policy"] = IMAGE_CSP
        return response

    return images
