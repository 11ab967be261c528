"""The operator's attribution review in the web app: what needs a decision, and corrections.

Owns the pages and forms (login required) where the office sees the stories nobody could
attribute yet (and apart, those it decided belong to no unit, to change its mind) and the column
candidates a title rule proposed, and sets a story's unit, authors or
column membership. Every change goes through `pipeline.corpus.corrections.correct_story`, the same path
as `zhuanlan correct`, so it is recorded (who, when, old → new), shown on the story page and kept
by retag and re-crawls. The app's CSRF check guards every POST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, abort, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from archive.auth import is_operator
from pipeline.corpus.corrections import (
    Change,
    CorrectionError,
    awaiting_unit,
    confirmed_no_unit,
    correct_story,
    parse_author,
)
from pipeline.corpus.db import transaction
from pipeline.corpus.models import Appearance, Article, Unit

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from werkzeug.wrappers import Response as BaseResponse

    from archive.views.context import ViewContext

UNIT_FROM_NAMES = {
    "byline": "署名",
    "label": "来源标注",
    "title": "标题",
    "author_field": "页面作者栏",
    "source_owner": "采集源所属单位（本单位网站）",
    "manual": "人工更正",
}
COLUMN_REASON_NAMES = {
    "album": "刊于专栏合集",
    "list": "列于专栏栏目页",
    "title": "标题含专栏关键词（待确认）",
    "banner": "正文首行为专栏名（待确认）",
    "manual": "人工确认",
}
FIELD_NAMES = {"unit": "单位", "authors": "作者", "column": "专栏"}
ACTOR = "管理员（网页）"
REVIEW_LIMIT = 200


def unattributed_count(db: Session) -> int:
    """Stories with no unit still to be decided (not those the office settled as nobody's)."""
    return int(db.scalar(select(func.count(Article.id)).where(awaiting_unit())) or 0)


def candidate_count(db: Session) -> int:
    return int(
        db.scalar(select(func.count(Article.id)).where(Article.column.is_(None), Article.column_candidate.is_not(None)))
        or 0
    )


def blueprint(ctx: ViewContext) -> Blueprint:
    """The review pages; `ctx.now` stamps the corrections."""
    review = Blueprint("review", __name__)

    def require_admin() -> None:
        if not is_operator():
            abort(403, description="请先登录管理员账号。")

    @review.get("/review")
    def review_page() -> BaseResponse | str:
        if not is_operator():
            return redirect("/login")
        with ctx.session_factory() as db:
            options = (selectinload(Article.appearances).selectinload(Appearance.source),)
            newest = (Article.published_at.desc().nulls_last(), Article.id.desc())
            unattributed = db.scalars(
                select(Article).where(awaiting_unit()).options(*options).order_by(*newest).limit(REVIEW_LIMIT)
            ).all()
            settled = db.scalars(
                select(Article).where(confirmed_no_unit()).options(*options).order_by(*newest).limit(REVIEW_LIMIT)
            ).all()
            candidates = db.scalars(
                select(Article)
                .where(Article.column.is_(None), Article.column_candidate.is_not(None))
                .options(selectinload(Article.unit))
                .order_by(Article.published_at.desc().nulls_last(), Article.id.desc())
                .limit(REVIEW_LIMIT)
            ).all()
            units = db.scalars(select(Unit).order_by(Unit.sort_order, Unit.name)).all()
            return render_template(
                "review.html",
                unattributed=unattributed,
                candidates=candidates,
                units=units,
                unattributed_total=unattributed_count(db),
                settled=settled,
                settled_total=int(db.scalar(select(func.count(Article.id)).where(confirmed_no_unit())) or 0),
                candidate_total=candidate_count(db),
                reasons=COLUMN_REASON_NAMES,
            )

    @review.post("/story/<guid>/correct")
    def correct(guid: str) -> BaseResponse:
        require_admin()
        if len(guid) > 64:
            abort(404)
        form = request.form
        unit = form.get("unit", "").strip()
        authors_text = form.get("authors", "")
        column = form.get("column", "").strip()
        try:
            change = Change(
                unit=unit if unit and unit != "__none__" else None,
                unattributed=unit == "__none__",
                authors=(
                    tuple(parse_author(line) for line in authors_text.splitlines() if line.strip())
                    if form.get("set_authors")
                    else None
                ),
                in_column={"in": True, "out": False}.get(column),
                column=form.get("column_name", "").strip() or None,
            )
            with transaction(ctx.session_factory) as db:
                correct_story(db, guid, change, actor=ACTOR, now=ctx.now(), note=form.get("note", "").strip() or None)
        except CorrectionError as exc:
            abort(400, description=f"无法更正：{exc}")
        back = form.get("next", "")
        # Only back to the review pages of this site (never an address from elsewhere).
        to_issue = back.startswith("/digest/review?") and "//" not in back and "\\" not in back
        return redirect(back if back == "/review" or to_issue else url_for("story.story", guid=guid))

    return review
