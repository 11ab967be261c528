"""The operator's review of a weekly issue before it is sent (issue 19): preview, edit, approve.

Owns `/digest/review` (login required): the issue of a (column, week) as each kind of recipient
will get it — the exact mail HTML from `feeds.digest.render_digest`, served by
`/digest/review/preview` into a sandboxed frame — its state, the intro, pinned and left-out
stories, the unattributed stories that block approval (fixed through `archive.views.review`'s
correction flow) and the approval itself. The writes are `feeds.review_store`'s; the app's CSRF
check guards every POST.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from archive.auth import is_operator
from archive.views.review import candidate_count
from feeds.digest import DigestRecipient, digest_subject, iso_week_bounds, previous_week, render_digest
from feeds.mail import digest_done
from feeds.review import default_column
from feeds.review_store import ReviewError, approve, load_issue, set_intro, set_story
from pipeline.corpus.models import Recipient, Unit

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session
    from werkzeug.wrappers import Response as BaseResponse

    from archive.views.context import ViewContext
    from feeds.review_store import Issue

# The mail as mail clients show it: inline styles, no scripts, nothing that could act on the app.
PREVIEW_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
KINDS = {"with": "有本周刊发的单位", "without": "本周无刊发的单位", "operator": "运维副本"}
ACTOR = "管理员（网页）"


def _recipient_for(db: Session, issue: Issue, who: str, operator_email: str | None) -> tuple[DigestRecipient, bool]:
    """The recipient a preview is rendered for: a kind (`with`, `without`, `operator`) or `r<id>`.
    A kind takes the first active recipient of such a unit, or stands in for one if none has any."""
    if who == "operator":
        return DigestRecipient(name="运维值班", email=operator_email or "operator@localhost"), True
    recipients = db.scalars(
        select(Recipient).options(selectinload(Recipient.unit)).where(Recipient.active).order_by(Recipient.id)
    ).all()
    if who.startswith("r") and who[1:].isdigit():
        for r in recipients:
            if r.id == int(who[1:]):
                return DigestRecipient.from_model(r), False
        abort(404, description="没有这个收件人。")
    if who not in ("with", "without"):
        abort(400, description=f"未知的收件人类型：{who}")
    wanted = {u.unit_id for u in issue.data.units if u.unit_id is not None and (u.week_count > 0) == (who == "with")}
    for r in recipients:
        if r.unit_id in wanted:
            return DigestRecipient.from_model(r), False
    unit = next((u for u in issue.data.units if u.unit_id in wanted), None)
    if unit is None:
        abort(404, description=f"本期没有{KINDS[who]}。")
    return DigestRecipient(
        name="（示例收件人）", email="example@localhost", unit_id=unit.unit_id, unit_name=unit.name
    ), False


def blueprint(ctx: ViewContext) -> Blueprint:
    bp = Blueprint("digest_review", __name__)

    def require_operator() -> None:
        if not is_operator():
            abort(403, description="请先登录管理员账号。")

    def week_and_column() -> tuple[str, str]:
        week = request.values.get("week") or previous_week(ctx.now().astimezone(ctx.tz))
        try:
            iso_week_bounds(week, ctx.tz)
        except ValueError:
            abort(400, description=f"周次应形如 2026-W48：{week}")
        column = request.values.get("column") or default_column(ctx.config)
        if ctx.config.columns and column not in {c.name for c in ctx.config.columns}:
            abort(404, description=f"没有配置名为「{column}」的专栏。")
        return week, column

    def issue_for(db: Session, week: str, column: str) -> Issue:
        sent = digest_done(ctx.session_factory, ctx.config, week)
        return load_issue(db, ctx.config, week, column, ctx.now(), sent=sent)

    @bp.get("/digest/review")
    def page(error: str | None = None, status: int = 200) -> BaseResponse | tuple[str, int]:
        if not is_operator():
            return redirect("/login")
        week, column = week_and_column()
        who = request.values.get("who", "with")
        with ctx.session_factory() as db:
            issue = issue_for(db, week, column)
            recipients = db.scalars(
                select(Recipient).options(selectinload(Recipient.unit)).where(Recipient.active).order_by(Recipient.id)
            ).all()
            excluded = set(issue.review.excluded if issue.review else ())
            body = render_template(
                "digest_review.html",
                issue=issue,
                week=week,
                column=column,
                columns=[c.name for c in ctx.config.columns] or [column],
                who=who,
                kinds=KINDS,
                recipients=recipients,
                excluded=sorted(excluded),
                pinned=set(issue.review.pinned if issue.review else ()),
                candidates=candidate_count(db),
                units=db.scalars(select(Unit).order_by(Unit.sort_order, Unit.name)).all(),
                review_mode=ctx.config.digest.review,
                error=error,
                subject=digest_subject(issue.data),
                events=[(datetime.fromisoformat(e["at"]), e.get("by", ""), e.get("what", "")) for e in issue.events],
            )
        return body, status

    @bp.get("/digest/review/preview")
    def preview() -> Response:
        require_operator()
        week, column = week_and_column()
        with ctx.session_factory() as db:
            issue = issue_for(db, week, column)
            who = request.values.get("who", "with")
            recipient, operator = _recipient_for(db, issue, who, ctx.config.digest.operator_email)
        rendered = render_digest(issue.data, recipient, operator=operator, base_url=ctx.config.web.base_url)
        response = Response(rendered.html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = PREVIEW_CSP
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        return response

    def edit(write: Callable[[Issue], None]) -> BaseResponse | tuple[str, int]:
        """One operator edit of the issue named by the form: made, or the page again with why not."""
        require_operator()
        week, column = week_and_column()
        with ctx.session_factory() as db:
            issue = issue_for(db, week, column)
        try:
            write(issue)
        except ReviewError as exc:
            return page(error=str(exc), status=409)
        return redirect(url_for("digest_review.page", week=week, column=column))

    @bp.post("/digest/review/intro")
    def intro() -> BaseResponse | tuple[str, int]:
        text = request.form.get("intro", "")
        return edit(lambda issue: set_intro(ctx.session_factory, issue, text, by=ACTOR, now=ctx.now()))

    @bp.post("/digest/review/story")
    def story() -> BaseResponse | tuple[str, int]:
        guid, action = request.form.get("guid", ""), request.form.get("action", "")
        return edit(lambda issue: set_story(ctx.session_factory, issue, guid, action, by=ACTOR, now=ctx.now()))

    @bp.post("/digest/review/approve")
    def approve_issue() -> BaseResponse | tuple[str, int]:
        by = request.form.get("by", "").strip()
        who = f"{by}（网页）" if by else ACTOR
        mark = request.form.get("mark") or ""
        return edit(lambda issue: approve(ctx.session_factory, issue, by=who, now=ctx.now(), seen_mark=mark))

    return bp
