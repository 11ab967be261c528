"""The operator's pages: login, logout, and the health view of the scheduler, sources, crawl runs and logins.

Owns the admin login (a password from `ZHUANLAN_ADMIN_PASSWORD`, read by `create_app`; without
one, login is disabled): its rate limits (flask-limiter: per client address and for the account,
counted where `archive.login_limits` says), its lockout and its server-side session
(`archive.auth`). Must not change rows other than those of the login: corrections are
`archive.views.review`'s.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
from typing import TYPE_CHECKING, cast

from flask import Blueprint, current_app, redirect, render_template, request, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from archive.auth import (
    ACCOUNT,
    DEVICE_COOKIE,
    DEVICE_LIFETIME,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    Sessions,
    is_operator,
    known_device,
    locked_until,
    new_device_cookie,
    recent_events,
    record_failure,
    record_success,
)
from archive.login_limits import FallbackWatch, storage_options
from archive.views.review import candidate_count, unattributed_count
from pipeline.corpus import labels
from pipeline.corpus.heartbeat import next_runs, scheduler_state
from pipeline.corpus.models import CrawlRun, Source, SourceRun

if TYPE_CHECKING:
    from datetime import datetime

    from flask import Flask
    from flask_limiter import RequestLimit
    from werkzeug.wrappers import Response as BaseResponse

    from archive.views.context import ViewContext

log = logging.getLogger("zhuanlan.web.auth")

# Login attempts (POSTs) a client address, and the account from all addresses, may make a minute;
# what the refusal page says (flask-limiter's own text is its English limit, "10 per 1 minute").
ADDRESS_PER_MINUTE = 10
ACCOUNT_PER_MINUTE = 30
ADDRESS_RATE = f"{ADDRESS_PER_MINUTE} per minute"
ACCOUNT_RATE = f"{ACCOUNT_PER_MINUTE} per minute"
ADDRESS_REFUSAL = f"登录尝试过于频繁：同一地址每分钟最多登录 {ADDRESS_PER_MINUTE} 次，请一分钟后再试。"
ACCOUNT_REFUSAL = f"登录尝试过于频繁：管理员账号每分钟最多登录 {ACCOUNT_PER_MINUTE} 次，请一分钟后再试。"


def operator_sessions() -> Sessions:
    """The session store, keyed with this app's secret key."""
    return Sessions(str(current_app.secret_key))


def _log_breach(limit: RequestLimit) -> None:
    log.warning("login rate limit hit (%s) from %s", limit.limit, get_remote_address())


def blueprint(ctx: ViewContext) -> Blueprint:
    operator = Blueprint("operator", __name__)
    # Counts live in the installation's Redis when it has one, so that all web apps share them;
    # else in this process's memory (`archive.login_limits`). A window forgotten at a restart is
    # fine for a rate limit: the lockout, which must outlive one, is in the database.
    dist = ctx.config.distributed
    limiter = Limiter(get_remote_address, headers_enabled=True, on_breach=_log_breach, **storage_options(dist))
    operator.record_once(lambda state: limiter.init_app(cast("Flask", state.app)))
    if dist.redis_url:
        operator.after_request(FallbackWatch(limiter, dist.redis_url))

    def refused(until: datetime, now: datetime) -> tuple[str, int, dict[str, str]]:
        wait = max(1, math.ceil((until - now).total_seconds()))
        error = f"登录失败次数过多，已暂时锁定，请于 {until.astimezone(ctx.tz):%H:%M:%S} 后再试。"
        return render_template("login.html", disabled=False, error=error), 429, {"Retry-After": str(wait)}

    def device() -> str | None:
        """The id of the device cookie of a browser that logged in before (`archive.auth`)."""
        return known_device(request.cookies.get(DEVICE_COOKIE), str(current_app.secret_key))

    @operator.route("/login", methods=["GET", "POST"])
    @limiter.limit(ADDRESS_RATE, methods=["POST"], error_message=ADDRESS_REFUSAL)
    # The account's window is for guesses spread over addresses: a known browser is not held up by them.
    @limiter.limit(
        ACCOUNT_RATE,
        key_func=lambda: ACCOUNT,
        methods=["POST"],
        exempt_when=lambda: device() is not None,
        error_message=ACCOUNT_REFUSAL,
    )
    def login() -> BaseResponse | tuple[str, int] | tuple[str, int, dict[str, str]]:
        if ctx.admin_password is None:
            return render_template("login.html", disabled=True, error=None), 200
        if request.method == "GET":
            return render_template("login.html", disabled=False, error=None), 200
        client = get_remote_address() or "unknown"
        known = device()
        now = ctx.now()
        with ctx.session_factory() as db:
            until = locked_until(db, client, now, known)
            if until is not None:  # the password is not even compared while locked
                log.warning("login refused from %s: locked until %s", client, until.isoformat())
                return refused(until, now)
            given = request.form.get("password", "")
            if not hmac.compare_digest(given.encode("utf-8"), ctx.admin_password.encode("utf-8")):
                until = record_failure(db, client, now, known)
                if until is not None:
                    return refused(until, now)
                return render_template("login.html", disabled=False, error="密码不正确。"), 403
            record_success(db, client, known)
            token = operator_sessions().start(db, ctx.admin_password, client, now)
        session.clear()  # a fresh CSRF token after login: no fixation
        session["csrf"] = secrets.token_urlsafe(32)
        response = redirect("/health")
        secure = ctx.config.web.base_url.startswith("https://")
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path="/",
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
        response.set_cookie(
            DEVICE_COOKIE,
            new_device_cookie(str(current_app.secret_key)),
            max_age=int(DEVICE_LIFETIME.total_seconds()),
            path="/login",  # read by the login alone
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
        return response

    @operator.post("/logout")
    def logout() -> BaseResponse:
        with ctx.session_factory() as db:
            operator_sessions().revoke(db, request.cookies.get(SESSION_COOKIE, ""), ctx.now())
        session.clear()
        response = redirect("/")
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax")
        return response

    @operator.get("/health")
    def health() -> BaseResponse | str:
        if not is_operator():
            return redirect("/login")
        with ctx.session_factory() as db:
            sources = db.scalars(select(Source).options(selectinload(Source.unit)).order_by(Source.key)).all()
            runs = db.scalars(
                select(CrawlRun)
                .options(selectinload(CrawlRun.source_runs).selectinload(SourceRun.source))
                .order_by(CrawlRun.started_at.desc())
                .limit(10)
            ).all()
            now = ctx.now()
            state = scheduler_state(db, now)
            jobs = next_runs(db) if state.alive else {}
            return render_template(
                "health.html",
                labels=labels,
                scheduler=state,
                scheduler_line=labels.scheduler_line(state, now, ctx.tz),
                next_runs=[(job, jobs[job]) for job in labels.JOBS if job in jobs],
                sources=sources,
                runs=runs,
                now=now,
                unattributed=unattributed_count(db),
                candidates=candidate_count(db),
                login_events=recent_events(db),
            )

    return operator
