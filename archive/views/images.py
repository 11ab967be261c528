"""The image proxy: WeChat images shown through us, because WeChat refuses them to other sites.

Owns which image URLs may be fetched (allow-listed hosts only: never an open proxy), fetching
them with WeChat's Referer, refusing what is not a plain image or is too large, and the disk
cache under the data directory. Must not fetch anything a URL parser could read as another host.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import unicodedata
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from flask import Blueprint, Response, abort, request, send_file

if TYPE_CHECKING:
    from pathlib import Path

    from archive.views.context import ViewContext

ALLOWED_IMAGE_HOSTS = frozenset({"mmbiz.qpic.cn", "mmbiz.qlogo.cn"})
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_REFERER = "https://mp.weixin.qq.com/"
IMAGE_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
IMAGE_CSP = "default-src 'none'; sandbox"


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


def fetch_image(url: str, *, timeout: float = 15.0, limit: int = MAX_IMAGE_BYTES) -> tuple[bytes, str]:
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


def blueprint(ctx: ViewContext) -> Blueprint:
    images = Blueprint("images", __name__)

    @images.get("/img")
    def image() -> Response:
        url = request.args.get("u", "")
        if not image_url_allowed(url):
            abort(403, description="只代理微信图片（mmbiz.qpic.cn、mmbiz.qlogo.cn）。")
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        path, type_path = ctx.image_cache_dir / key, ctx.image_cache_dir / f"{key}.type"
        if not (path.is_file() and type_path.is_file()):
            try:
                data, content_type = ctx.image_fetcher(url)
                check_image(content_type, len(data))
            except ImageRefused as exc:
                abort(403, description=f"拒绝代理：{exc}")
            except ImageFetchError as exc:
                abort(502, description=f"图片获取失败：{exc}")
            ctx.image_cache_dir.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, data)
            _write_atomically(type_path, content_type.encode("ascii", "replace"))
        content_type = type_path.read_text(encoding="ascii", errors="replace").strip()
        response = send_file(path, mimetype=content_type, max_age=7 * 86400, conditional=True)
        response.headers["Content-Security-Policy"] = IMAGE_CSP
        return response

    return images
