"""The archive web app: a thin Flask shell over `archive.search` and the corpus models.

Owns the HTTP surface for people: pages (home, search, story, unit, digests), the archived
originals (sandboxed), the published feed files (conditional GET), the image proxy for WeChat
images (allow-listed hosts only: never an open proxy), the unsubscribe page, and the operator's
login and health view. Configuration and the clock enter through `create_app`; secrets come
from the environment (`ZHUANLAN_ADMIN_PASSWORD`, `ZHUANLAN_SECRET_KEY`, each also as `_FILE`).
Every POST form carries a CSRF token. The database writes are a recipient's opt-out and the
operator's corrections (`archive.review`).
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import http.client
import os
import re
import secrets
import unicodedata
import urllib.error
import urllib.request
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import nh3
from flask import Flask, Response, abort, redirect, render_template, request, send_file, send_from_directory, session
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException

from archive.query import QueryError
from archive.review import COLUMN_REASON_NAMES, FIELD_NAMES, UNIT_FROM_NAMES, candidate_count, unattributed_count
from archive.review import create_blueprint as create_review
from archive.search import STATES, Filters, SearchResult, search
from pipeline.corpus.corrections import history as correction_history
from pipeline.corpus.models import (
    Appearance,
    Article,
    ArticleTag,
    CrawlRun,
    Delivery,
    Digest,
    Recipient,
    Snapshot,
    Source,
    SourceRun,
    Tag,
    Unit,
)
from zhuanlan_config import secret_from_env

if TYPE_CHECKING:
    from collections.abc import Callable
    from zoneinfo import ZoneInfo

    from sqlalchemy.orm import Session, sessionmaker
    from werkzeug.wrappers import Response as BaseResponse

    from zhuanlan_config import Config

ALLOWED_IMAGE_HOSTS = frozenset({"mmbiz.qpic.cn", "mmbiz.qlogo.cn"})
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_REFERER = "https://mp.weixin.qq.com/"
IMAGE_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
FEED_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".opml": "text/x-opml",
}
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: https: http:; style-src 'self'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SNAPSHOT_CSP = "sandbox; script-src 'none'"
FEED_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'none'; base-uri 'none'"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_STATE_NAMES = {"any": "全部", "live": "在线", "deleted": "源站已删除", "edited": "源站已修改"}


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


def clean_param(value: str | None, limit: int = 200) -> str:
    """A GET/POST parameter without control characters (PostgreSQL refuses NUL), length-capped."""
    if not value:
        return ""
    value = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co"} else ch for ch in value)
    return value.strip()[:limit]


def _parse_day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _parse_int(value: str | None, default: int, maximum: int = 1_000_000) -> int:
    if value and value.isascii() and value.isdigit() and len(value) <= 9:
        return min(int(value), maximum)
    return default


@dataclass(frozen=True)
class WeekCount:
    week: str
    count: int
    articles: list[Article]


def weekly_contributions(articles: list[Article], tz: ZoneInfo) -> list[WeekCount]:
    """Articles grouped by ISO week of publication in `tz`, newest week first (pure)."""
    weeks: dict[str, list[Article]] = defaultdict(list)
    for article in articles:
        if article.published_at is None:
            continue
        year, week, _ = article.published_at.astimezone(tz).isocalendar()
        weeks[f"{year}-W{week:02d}"].append(article)
    return [WeekCount(week=w, count=len(items), articles=items) for w, items in sorted(weeks.items(), reverse=True)]


def feed_files(feeds_dir: Path, limit: int = 500) -> list[str]:
    """Relative paths of the published feed files, for the feed directory."""
    if not feeds_dir.is_dir():
        return []
    found = sorted(
        p.relative_to(feeds_dir).as_posix() for p in feeds_dir.rglob("*") if p.is_file() and p.suffix in FEED_TYPES
    )
    return found[:limit]


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
    # Absolute: Flask resolves relative file paths against the package, not the working directory.
    feeds_dir = (config.public_dir / "feeds").absolute()
    image_cache = (config.data_dir / "imgcache").absolute()

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return str(session["csrf"])

    def fmt_dt(value: datetime | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(tz).strftime(pattern) if value else "—"

    def image_src(url: str) -> str:
        return "/img?u=" + quote(url, safe="")

    def clean_body(body_html: str) -> str:
        """The stored sanitized HTML, sanitized again (defence in depth), WeChat images proxied."""

        def attribute_filter(element: str, attribute: str, value: str) -> str | None:
            if element == "img" and attribute == "src" and image_url_allowed(value):
                return image_src(value)
            return value

        return nh3.clean(body_html, attribute_filter=attribute_filter)

    app.jinja_env.globals.update(csrf_token=csrf_token, state_names=_STATE_NAMES, image_src=image_src)
    app.jinja_env.filters["dt"] = fmt_dt
    # Stored URLs are data from other sites: only http(s) ones become links (no javascript:).
    app.jinja_env.filters["http_url"] = lambda url: url if str(url).lower().startswith(("http://", "https://")) else "#"

    @app.before_request
    def check_csrf() -> None:
        if request.method == "POST":
            sent = request.form.get("csrf_token", "")
            expected = session.get("csrf", "")
            if not sent or not expected or not hmac.compare_digest(str(expected).encode(), sent.encode()):
                abort(400, description="表单已失效或缺少校验码（CSRF），请返回刷新页面后重试。")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int]:
        messages = {400: "请求有误", 403: "禁止访问", 404: "页面不存在", 405: "不支持的请求方式", 413: "请求过大"}
        code = exc.code or 500
        title = messages.get(code, "出错了")
        return render_template("error.html", code=code, title=title, description=exc.description), code

    # --- pages -----------------------------------------------------------------------------

    @app.get("/")
    def home() -> str:
        with session_factory() as db:
            latest = db.scalars(
                select(Article)
                .options(selectinload(Article.unit))
                .order_by(Article.published_at.desc().nulls_last(), Article.id.desc())
                .limit(20)
            ).all()
            units = db.scalars(select(Unit).order_by(Unit.sort_order, Unit.name)).all()
            total = db.scalar(select(func.count(Article.id))) or 0
            return render_template("home.html", latest=latest, units=units, total=total, feeds=feed_files(feeds_dir))

    @app.get("/search")
    def search_page() -> str:
        args = {name: clean_param(request.args.get(name)) for name in (
            "q", "unit", "author", "topic", "column", "kind", "from", "to", "state")}  # fmt: skip
        page = _parse_int(request.args.get("page"), 1, 10_000)
        error = None
        date_from, date_to = _parse_day(args["from"]), _parse_day(args["to"])
        if (args["from"] and date_from is None) or (args["to"] and date_to is None):
            error = "日期格式应为 YYYY-MM-DD / dates must be YYYY-MM-DD"
        state = args["state"] if args["state"] in STATES else "any"
        filters = Filters(
            unit=args["unit"] or None,
            author=args["author"] or None,
            topic=args["topic"] or None,
            column=args["column"] or None,
            source_kind=args["kind"] or None,
            date_from=date_from,
            date_to=date_to,
            state=state,
        )
        result: SearchResult | None = None
        with session_factory() as db:
            if error is None:
                try:
                    result = search(db, args["q"], filters, page=page, per_page=20, tz=tz)
                except QueryError as exc:
                    error = exc.message
            options = {
                "units": db.scalars(select(Unit).order_by(Unit.sort_order, Unit.name)).all(),
                "topics": db.scalars(select(Tag.name).where(Tag.kind == "topic").order_by(Tag.name)).all(),
                "columns": db.scalars(
                    select(Article.column).distinct().where(Article.column.is_not(None)).order_by(Article.column)
                ).all(),
                "kinds": db.scalars(select(Source.kind).distinct().order_by(Source.kind)).all(),
            }
        kept = {k: v for k, v in args.items() if v}
        return render_template(
            "search.html", args=args, kept=kept, result=result, error=error, options=options, states=STATES
        )

    @app.get("/story/<guid>")
    def story(guid: str) -> str:
        if len(guid) > 64:
            abort(404)
        with session_factory() as db:
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
            is_admin = bool(session.get("admin"))
            return render_template(
                "story.html",
                article=article,
                body=clean_body(article.body_html),
                tags=tags,
                versions=versions,
                corrections=correction_history(db, article.id),
                units=db.scalars(select(Unit).order_by(Unit.sort_order, Unit.name)).all() if is_admin else [],
                columns=[c.name for c in config.columns],
                is_admin=is_admin,
                unit_from_names=UNIT_FROM_NAMES,
                reason_names=COLUMN_REASON_NAMES,
                field_names=FIELD_NAMES,
            )

    @app.get("/snapshot/<sha256>")
    def snapshot(sha256: str) -> Response:
        if not _SHA256.match(sha256):
            abort(404)
        with session_factory() as db:
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

    @app.get("/unit/<int:unit_id>")
    def unit_page(unit_id: int) -> str:
        with session_factory() as db:
            unit = db.get(Unit, unit_id) if unit_id < 2**31 else None
            if unit is None:
                abort(404, description="没有这个单位。")
            articles = list(
                db.scalars(
                    select(Article)
                    .where(Article.unit_id == unit.id)
                    .order_by(Article.published_at.desc().nulls_last(), Article.id.desc())
                    .limit(1000)
                )
            )
            return render_template(
                "unit.html", unit=unit, weeks=weekly_contributions(articles, tz), total=len(articles)
            )

    @app.get("/digests")
    def digests() -> str:
        with session_factory() as db:
            rows = db.scalars(select(Digest).order_by(Digest.week.desc()).limit(200)).all()
            counts: dict[int, Counter[str]] = defaultdict(Counter)
            for digest_id, status, n in db.execute(
                select(Delivery.digest_id, Delivery.status, func.count()).group_by(Delivery.digest_id, Delivery.status)
            ):
                counts[digest_id][status] = n
            return render_template("digests.html", digests=rows, counts=counts)

    # --- files ------------------------------------------------------------------------------

    @app.get("/feeds/")
    def feed_directory() -> Response:
        """The feed directory page that `zhuanlan feeds` writes beside the feeds."""
        if not (feeds_dir / "index.html").is_file():
            abort(404, description="还没有生成订阅源：请先运行 zhuanlan feeds。")
        response = send_from_directory(feeds_dir, "index.html", mimetype="text/html", max_age=300)
        # The page carries its own inline <style>; scripts stay forbidden.
        response.headers["Content-Security-Policy"] = FEED_PAGE_CSP
        return response

    @app.get("/feeds/<path:name>")
    def feed(name: str) -> Response:
        if name == "index.html":
            return feed_directory()
        mimetype = FEED_TYPES.get(Path(name).suffix)
        if mimetype is None:
            abort(404)
        # send_from_directory joins safely (no "..", no absolute paths) and answers
        # If-None-Match / If-Modified-Since with 304 using its ETag and Last-Modified.
        # (Werkzeug adds "; charset=utf-8" to the XML types itself.)
        return send_from_directory(feeds_dir, name, mimetype=mimetype, max_age=300)

    @app.get("/img")
    def image() -> Response:
        url = request.args.get("u", "")
        if not image_url_allowed(url):
            abort(403, description="只代理微信图片（mmbiz.qpic.cn、mmbiz.qlogo.cn）。")
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        path, type_path = image_cache / key, image_cache / f"{key}.type"
        if not (path.is_file() and type_path.is_file()):
            try:
                data, content_type = image_fetcher(url)
                check_image(content_type, len(data))
            except ImageRefused as exc:
                abort(403, description=f"拒绝代理：{exc}")
            except ImageFetchError as exc:
                abort(502, description=f"图片获取失败：{exc}")
            image_cache.mkdir(parents=True, exist_ok=True)
            for target, payload in ((path, data), (type_path, content_type.encode("ascii", "replace"))):
                partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
                partial.write_bytes(payload)
                os.replace(partial, target)
        content_type = type_path.read_text(encoding="ascii", errors="replace").strip()
        response = send_file(path, mimetype=content_type, max_age=7 * 86400, conditional=True)
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response

    # --- unsubscribe -------------------------------------------------------------------------

    @app.route("/unsubscribe/<token>", methods=["GET", "POST"])
    def unsubscribe(token: str) -> str:
        if len(token) > 64:
            abort(404)
        with session_factory() as db:
            recipient = db.scalar(
                select(Recipient).where(Recipient.unsubscribe_token == token).options(selectinload(Recipient.unit))
            )
            if recipient is None:
                abort(404, description="退订链接无效或已过期。")
            done = False
            if request.method == "POST":
                if recipient.opted_out_at is None:
                    recipient.opted_out_at = now()
                    db.commit()
                done = True
            return render_template("unsubscribe.html", recipient=recipient, token=token, done=done)

    # --- operator ----------------------------------------------------------------------------

    @app.route("/login", methods=["GET", "POST"])
    def login() -> BaseResponse | tuple[str, int]:
        if admin_password is None:
            return render_template("login.html", disabled=True, error=None), 200
        if request.method == "POST":
            given = request.form.get("password", "")
            if hmac.compare_digest(given.encode("utf-8"), admin_password.encode("utf-8")):
                session.clear()  # a fresh session (and CSRF token) after login: no fixation
                session["admin"] = True
                return redirect("/health")
            return render_template("login.html", disabled=False, error="密码不正确。"), 403
        return render_template("login.html", disabled=False, error=None), 200

    @app.post("/logout")
    def logout() -> BaseResponse:
        session.clear()
        return redirect("/")

    @app.get("/health")
    def health() -> BaseResponse | str:
        if not session.get("admin"):
            return redirect("/login")
        with session_factory() as db:
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
                now=now(),
                unattributed=unattributed_count(db),
                candidates=candidate_count(db),
            )

    app.register_blueprint(create_review(session_factory, now=now))
    return app


def serve(app: Flask, host: str, port: int) -> None:
    """Run the app with waitress (a production WSGI server, no debugger)."""
    import waitress  # imported here: only the serving process needs it

    waitress.serve(app, host=host, port=port, threads=8)
