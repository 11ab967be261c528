"""The archive web app: a thin Flask shell over `archive.search` and the corpus models.

Owns what every page shares: the app's settings, the security headers, the error page, the CSRF
check on every POST form (except an RFC 8058 one-click unsubscribe, which its URL's token
authenticates), the operator's session read from its cookie (`archive.auth`), redirects that never
name the Host header's host, and the template helpers; the pages themselves are the view modules
in `archive.views`, registered here. Configuration and the clock enter through `create_app`;
secrets come from the environment (`ZHUANLAN_ADMIN_PASSWORD`, `ZHUANLAN_SECRET_KEY`, each also
as `_FILE`). The database writes are a recipient's opt-out and the operator's corrections.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, abort, g, make_response, render_template, request, session
from werkzeug.exceptions import HTTPException

from archive.auth import SESSION_COOKIE, Sessions
from archive.views import digest_review, feeds, images, operator, pages, reports, review, story, subscribers
from archive.views.context import ViewContext
from archive.views.images import fetch_image, image_src
from pipeline.corpus.corrections import unit_text
from zhuanlan_config import WebConf, secret_from_env

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: https: http:; style-src 'self'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_STATE_NAMES = {"any": "全部", "live": "在线", "deleted": "源站已删除", "edited": "源站已修改"}
_ERROR_TITLES = {
    400: "请求有误",
    403: "禁止访问",
    404: "页面不存在",
    405: "不支持的请求方式",
    413: "请求过大",
    429: "请求过于频繁",
    502: "上游出错",
    503: "暂时无法处理",
}


def create_app(
    config: Config,
    session_factory: sessionmaker[Session],
    *,
    now: Callable[[], datetime],
    image_fetcher: Callable[[str], tuple[bytes, str]] = fetch_image,
) -> Flask:
    """The archive web app. `now` gives the current tz-aware time (opt-outs are stamped with it);
    `image_fetcher` is how the image proxy fetches (tests pass a fake)."""
    app = Flask(__name__)
    tz = config.tz
    admin_password = secret_from_env("ZHUANLAN_ADMIN_PASSWORD")
    app.config.update(
        # Without a configured key every process gets its own: sessions end at restart, never forged.
        SECRET_KEY=secret_from_env("ZHUANLAN_SECRET_KEY") or secrets.token_hex(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.web.base_url.startswith("https://"),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    ctx = ViewContext(
        config=config,
        session_factory=session_factory,
        now=now,
        image_fetcher=image_fetcher,
        # Absolute: Flask resolves relative file paths against the package, not the working directory.
        feeds_dir=(config.public_dir / "feeds").absolute(),
        image_cache_dir=(config.data_dir / "imgcache").absolute(),
        admin_password=admin_password,
    )

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return str(session["csrf"])

    def fmt_dt(value: datetime | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(tz).strftime(pattern) if value else "—"

    app.jinja_env.globals.update(
        csrf_token=csrf_token, state_names=_STATE_NAMES, image_src=image_src, unit_text=unit_text
    )
    app.jinja_env.filters["dt"] = fmt_dt
    # Stored URLs are data from other sites: only http(s) ones become links (no javascript:).
    app.jinja_env.filters["http_url"] = lambda url: url if str(url).lower().startswith(("http://", "https://")) else "#"

    @app.before_request
    def check_csrf() -> None:
        if request.routing_exception is not None:
            return  # no view runs: a 404, or a 405 with Allow, answers first
        if request.endpoint == "subscribers.unsubscribe" and request.form.get("List-Unsubscribe") == "One-Click":
            return  # RFC 8058: a mail provider's one-click POST; the token in the URL authenticates it
        if request.method == "POST":
            sent = request.form.get("csrf_token", "")
            expected = session.get("csrf", "")
            if not sent or not expected or not hmac.compare_digest(str(expected).encode(), sent.encode()):
                abort(400, description="表单已失效或缺少校验码（CSRF），请返回刷新页面后重试。")

    @app.before_request
    def load_operator() -> None:
        g.operator = False
        token = request.cookies.get(SESSION_COOKIE)
        if token and admin_password is not None:
            with session_factory() as db:
                g.operator = Sessions(str(app.secret_key)).check(db, token, admin_password, now())

    @app.after_request
    def security_headers(response: Response) -> Response:
        location = response.headers.get("Location")
        if location:
            parts = urlsplit(location)
            if parts.scheme or parts.netloc:
                # Werkzeug's own redirects (a missing trailing slash, merged slashes) name the host
                # from the Host header; every Location we send is relative to this site instead.
                path = "/" + parts.path.lstrip("/")
                response.headers["Location"] = urlunsplit(("", "", path, parts.query, parts.fragment))
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        title = _ERROR_TITLES.get(code, "出错了")
        response = make_response(
            render_template("error.html", code=code, title=title, description=exc.description), code
        )
        for name, value in exc.get_headers():  # Allow on a 405, Retry-After on a 429 or 503
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    for blueprint in (
        pages.blueprint(ctx),
        story.blueprint(ctx),
        feeds.blueprint(ctx),
        images.blueprint(ctx),
        subscribers.blueprint(ctx),
        operator.blueprint(ctx),
        review.blueprint(ctx),
        digest_review.blueprint(ctx),
        reports.blueprint(ctx),
    ):
        app.register_blueprint(blueprint)
    return app


def proxy_options(web: WebConf) -> dict[str, Any]:
    """waitress's settings for the reverse proxy in front of the app (`web.trusted_proxy`).

    Behind nginx every connection comes from nginx: without these, every visitor has nginx's
    address, so five wrong passwords from anyone lock the operator's login for everyone, and the
    per-address rate limit is shared by all. From the trusted address only, waitress takes the
    client's address from X-Forwarded-For (the `trusted_proxy_count`-th entry from the right: the
    one our proxy appended, not what the client sent) and the scheme from X-Forwarded-Proto; from any
    other address those headers are removed, so a client cannot name its own address."""
    if web.trusted_proxy is None:
        return {}
    return {
        "trusted_proxy": web.trusted_proxy,
        "trusted_proxy_count": web.trusted_proxy_count,
        "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"},
        "clear_untrusted_proxy_headers": True,
    }


def bind(app: Flask, host: str, port: int, web: WebConf | None = None) -> Any:
    """The app's waitress server, its socket already bound (OSError when the port is taken): call
    `.run()` to serve. A caller that says where to open the app binds first, so the address it
    prints answers."""
    import waitress.server  # imported here: only the serving process needs it

    return waitress.server.create_server(app, host=host, port=port, threads=8, **proxy_options(web or WebConf()))


def serve(app: Flask, host: str, port: int, web: WebConf | None = None) -> None:
    """Run the app with waitress (a production WSGI server, no debugger), as `waitress.serve` does."""
    import logging

    logging.basicConfig()  # waitress' own warnings (a full task queue) reach stderr
    server = bind(app, host, port, web)
    server.print_listen("Serving on http://{}:{}")
    server.run()
