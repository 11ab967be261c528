"""A story's page and the archived originals of the pages it appeared on.

Owns how a stored story is shown: its body sanitized again with WeChat images proxied, its tags,
its appearances with their snapshot versions, its correction history (and, for the operator,
the correction form that `archive.views.review` handles). An archived original is someone
else's HTML: it is served sandboxed, never as a page of ours.
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections import defaultdict
from typing import TYPE_CHECKING

import nh3
from flask import Blueprint, Response, abort, render_template
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from archive.auth import is_operator
from archive.views.images import image_src, image_url_allowed
from archive.views.review import COLUMN_REASON_NAMES, FIELD_NAMES, UNIT_FROM_NAMES
from archive.views.visibility import show_deleted
from pipeline.corpus.corrections import history as correction_history
from pipeline.corpus.corrections import no_unit_confirmed
from pipeline.corpus.models import Appearance, Article, ArticleTag, Snapshot, Unit

if TYPE_CHECKING:
    from archive.views.context import ViewContext

# Someone else's page loads nothing at all: no script, and no image, style sheet or font from
# any origin (each would tell a third party who reads the archive, and when); inline styles stay.
SNAPSHOT_CSP = (
    "sandbox; default-src 'none'; script-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "form-action 'none'; base-uri 'none'"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def clean_body(body_html: str) -> str:
    """The stored sanitized HTML, sanitized again (defence in depth), WeChat images proxied."""

    def attribute_filter(element: str, attribute: str, value: str) -> str | None:
        if element == "img" and attribute == "src" and image_url_allowed(value):
            return image_src(value)
        return value

    return nh3.clean(body_html, attribute_filter=attribute_filter)


def blueprint(ctx: ViewContext) -> Blueprint:
    story_pages = Blueprint("story", __name__)

    @story_pages.get("/story/<guid>")
    def story(guid: str) -> str | tuple[str, int]:
        if len(guid) > 64:
            abort(404)
        with ctx.session_factory() as db:
            article = db.scalar(
                select(Article)
                .where(Article.guid == guid)
                .options(
                    selectinload(Article.unit),
                    selectinload(Article.tags).selectinload(ArticleTag.tag),
                    selectinload(Article.appearances).selectinload(Appearance.source),
                    selectinload(Article.appearances).selectinload(Appearance.snapshot),
                )
            )
            if article is None:
                abort(404, description="没有这篇文章。")
            if article.state == "deleted" and not show_deleted(ctx):
                # Gone, not unknown: the archive keeps it for the operator, the public gets a notice.
                notice = "这篇文章已被原发布处删除，不再公开展示。"
                return render_template("error.html", code=410, title="文章已在源站删除", description=notice), 410
            versions: dict[int, list[Snapshot]] = defaultdict(list)
            ids = [a.id for a in article.appearances]
            if ids:
                for snap in db.scalars(
                    select(Snapshot).where(Snapshot.appearance_id.in_(ids)).order_by(Snapshot.fetched_at)
                ):
                    if snap.appearance_id is not None:
                        versions[snap.appearance_id].append(snap)
            tags: dict[str, list[str]] = defaultdict(list)
            for link in article.tags:
                tags[link.tag.kind].append(link.tag.name)
            is_admin = is_operator()
            return render_template(
                "story.html",
                article=article,
                body=clean_body(article.body_html),
                tags=tags,
                versions=versions,
                corrections=correction_history(db, article.id),
                units=db.scalars(select(Unit).order_by(Unit.sort_order, Unit.name)).all() if is_admin else [],
                columns=[c.name for c in ctx.config.columns],
                is_admin=is_admin,
                no_unit_confirmed=no_unit_confirmed(article.unit_id, article.unit_from),
                unit_from_names=UNIT_FROM_NAMES,
                reason_names=COLUMN_REASON_NAMES,
                field_names=FIELD_NAMES,
            )

    @story_pages.get("/snapshot/<sha256>")
    def snapshot(sha256: str) -> Response:
        if not _SHA256.match(sha256):
            abort(404)
        with ctx.session_factory() as db:
            snap = db.scalar(select(Snapshot).where(Snapshot.sha256 == sha256))
            if snap is None:
                abort(404, description="没有这个快照。")
            content, encoding = zlib.decompress(snap.content), snap.encoding
        try:
            charset = codecs.lookup(encoding or "utf-8").name
        except LookupError:
            charset = "utf-8"
        response = Response(content, content_type=f"text/html; charset={charset}")
        # The original page is someone else's HTML: no script, no same-origin access, no sniffing.
        response.headers["Content-Security-Policy"] = SNAPSHOT_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, max-age=86400"
        return response

    return story_pages
