"""Serving the published feed files and their directory page, as `zhuanlan feeds` wrote them.

Owns which files under `<public_dir>/feeds/` are served (feed types only, never a path outside
that folder) and answering conditional GETs. Must not build or rewrite feeds: the `feeds`
package does that.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, send_from_directory

if TYPE_CHECKING:
    from archive.views.context import ViewContext

FEED_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".opml": "text/x-opml",
}
FEED_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'none'; base-uri 'none'"


def feed_files(feeds_dir: Path, limit: int = 500) -> list[str]:
    """Relative paths of the published feed files, for the feed directory."""
    if not feeds_dir.is_dir():
        return []
    found = sorted(
        p.relative_to(feeds_dir).as_posix() for p in feeds_dir.rglob("*") if p.is_file() and p.suffix in FEED_TYPES
    )
    return found[:limit]


def blueprint(ctx: ViewContext) -> Blueprint:
    feeds = Blueprint("feeds", __name__)

    @feeds.get("/feeds/")
    def feed_directory() -> Response:
        """The feed directory page that `zhuanlan feeds` writes beside the feeds."""
        if not (ctx.feeds_dir / "index.html").is_file():
            abort(404, description="还没有生成订阅源：请先运行 zhuanlan feeds。")
        response = send_from_directory(ctx.feeds_dir, "index.html", mimetype="text/html", max_age=300)
        # The page carries its own inline <style>; scripts stay forbidden.
        response.headers["Content-Security-Policy"] = FEED_PAGE_CSP
        return response

    @feeds.get("/feeds/<path:name>")
    def feed(name: str) -> Response:
        if name == "index.html":
            return feed_directory()
        mimetype = FEED_TYPES.get(Path(name).suffix)
        if mimetype is None:
            abort(404)
        # send_from_directory joins safely (no "..", no absolute paths) and answers
        # If-None-Match / If-Modified-Since with 304 using its ETag and Last-Modified.
        # (Werkzeug adds "; charset=utf-8" to the XML types itself.)
        return send_from_directory(ctx.feeds_dir, name, mimetype=mimetype, max_age=300)

    return feeds
