"""The operator's pages: login, logout, and the health view of sources and crawl runs.

Owns the admin session (a password from `ZHUANLAN_ADMIN_PASSWORD`, read by `create_app`; without
one, login is disabled). Must not change rows: corrections are `archive.views.review`'s.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from flask import Blueprint, redirect, render_template, request, session
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from archive.views.review import candidate_count, unattributed_count
from pipeline.corpus.models import CrawlRun, Source, SourceRun

if TYPE_CHECKING:
    from werkzeug.wrappers import Response as BaseResponse

    from archive.views.context import ViewContext


def blueprint(ctx: ViewContext) -> Blueprint:
    operator = Blueprint("operator", __name__)

    @operator.route("/login", methods=["GET", "POST"])
    def login() -> BaseResponse | tuple[str, int]:
        if ctx.admin_password is None:
            return render_template("login.html", disabled=True, error=None), 200
        if request.method == "POST":
            given = request.form.get("password", "")
            if hmac.compare_digest(given.encode("utf-8"), ctx.admin_password.encode("utf-8")):
                session.clear()  # a fresh session (and CSRF token) after login: no fixation
                session["admin"] = True
                return redirect("/health")
            return render_template("login.html", disabled=False, error="密码不正确。"), 403
        return render_template("login.html", disabled=False, error=None), 200

    @operator.post("/logout")
    def logout() -> BaseResponse:
        session.clear()
        return redirect("/")

    @operator.get("/health")
    def health() -> BaseResponse | str:
        if not session.get("admin"):
            return redirect("/login")
        with ctx.session_factory() as db:
            sources = db.scalars(select(Source).options(selectinload(Source.unit)).order_by(Source.key)).all()
            runs = db.scalars(
                select(CrawlRun)
                .options(selectinload(CrawlRun.source_runs).selectinload(SourceRun.source))
                .order_by(CrawlRun.started_at.desc())
                .limit(10)
            ).all()
            return render_template(
                "health.html",
                sources=sources,
                runs=runs,
                now=ctx.now(),
                unattributed=unattributed_count(db),
                candidates=candidate_count(db),
            )

    return operator
