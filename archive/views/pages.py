"""The reader's pages: home, search, a unit's contributions by week, the digest archive.

Owns reading request parameters safely (control characters dropped, lengths and numbers capped,
bad dates and bad queries shown as a message, never an error page) and the queries behind these
pages. Reads only; the search itself is `archive.search`'s.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, abort, render_template, request, send_file
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import selectinload

from archive.export import Selection, export, more_than
from archive.search import SORTS, STATES, Filters, SearchResult, search
from archive.search_syntax import QueryError
from archive.views.visibility import show_deleted
from pipeline.corpus.models import Article, Delivery, Digest, Source, Tag, Unit

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from flask.wrappers import Response

    from archive.views.context import ViewContext

SEARCH_PARAMS = ("q", "unit", "author", "topic", "column", "kind", "from", "to", "state", "sort")
# What the search page offers to download: all hits of the search, not only the page shown.
DOWNLOADS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


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


def blueprint(ctx: ViewContext) -> Blueprint:
    pages = Blueprint("pages", __name__)

    def visible() -> list[ColumnElement[bool]]:
        """The condition this request's lists add: no stories deleted at source for the public."""
        return [] if show_deleted(ctx) else [Article.state != "deleted"]

    @pages.get("/")
    def home() -> str:
        with ctx.session_factory() as db:
            latest = db.scalars(
                select(Article)
                .where(*visible())
                .options(selectinload(Article.unit))
                .order_by(Article.published_at.desc().nulls_last(), Article.id.desc())
                .limit(20)
            ).all()
            units = db.scalars(select(Unit).order_by(Unit.sort_order, Unit.name)).all()
            total = db.scalar(select(func.count(Article.id)).where(*visible())) or 0
            # The feeds by name (base.html and the template read the published directory).
            return render_template("home.html", latest=latest, units=units, total=total)

    def search_request() -> tuple[dict[str, str], Selection, str | None]:
        """The search this request asks for (its parameters, cleaned), or a message saying why not."""
        args = {name: clean_param(request.args.get(name)) for name in SEARCH_PARAMS}
        error = None
        date_from, date_to = _parse_day(args["from"]), _parse_day(args["to"])
        if (args["from"] and date_from is None) or (args["to"] and date_to is None):
            error = "日期格式应为 YYYY-MM-DD / dates must be YYYY-MM-DD"
        states = STATES if show_deleted(ctx) else tuple(s for s in STATES if s != "deleted")
        args["state"] = args["state"] if args["state"] in states else ""
        args["sort"] = args["sort"] if args["sort"] in SORTS else ""
        filters = Filters(
            unit=args["unit"] or None,
            author=args["author"] or None,
            topic=args["topic"] or None,
            column=args["column"] or None,
            source_kind=args["kind"] or None,
            date_from=date_from,
            date_to=date_to,
            state=args["state"] or "any",
            hide_deleted=not show_deleted(ctx),
        )
        return args, Selection(filters=filters, query=args["q"], order=args["sort"] or "relevance"), error

    @pages.get("/search")
    def search_page() -> str:
        args, selection, error = search_request()
        page = _parse_int(request.args.get("page"), 1, 10_000)
        states = STATES if show_deleted(ctx) else tuple(s for s in STATES if s != "deleted")
        result: SearchResult | None = None
        with ctx.session_factory() as db:
            if error is None:
                try:
                    result = search(
                        db, selection.query, selection.filters, page=page, per_page=20, sort=selection.order, tz=ctx.tz
                    )
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
            "search.html",
            args=args,
            kept=kept,
            result=result,
            error=error,
            options=options,
            states=states,
            export_limit=ctx.config.web.export_limit,
        )

    @pages.get("/search/export")
    def search_export() -> Response | tuple[str, int]:
        """Every hit of the search the page shows (same parameters), as a CSV or JSON Lines download."""
        _, selection, error = search_request()
        fmt = request.args.get("format", "")
        if fmt not in DOWNLOADS:
            error = error or "请选择导出格式（csv 或 jsonl）/ format must be csv or jsonl"
        with tempfile.TemporaryDirectory(prefix="zhuanlan-export-") as tmp:
            out = Path(tmp) / f"search.{fmt}"
            if error is None:
                limit = ctx.config.web.export_limit
                try:
                    with ctx.session_factory() as db:
                        # Anyone may download: one request must not write the whole corpus.
                        if more_than(db, selection, limit, tz=ctx.tz):
                            error = (
                                f"检索结果超过 {limit} 篇，网页导出以 {limit} 篇为限：请增加检索条件缩小范围，"
                                f"或在服务器上用命令行 zhuanlan export 导出全部。"
                            )
                        else:
                            export(db, fmt, selection, out, tz=ctx.tz)
                except QueryError as exc:
                    error = exc.message
            if error is not None:
                return render_template("error.html", code=400, title="无法导出", description=error), 400
            # Opened before the directory goes: the download streams from the unlinked file.
            fh = out.open("rb")
        stamp = ctx.now().astimezone(ctx.tz).strftime("%Y%m%d-%H%M")
        response = send_file(
            fh,
            mimetype=DOWNLOADS[fmt],
            as_attachment=True,
            download_name=f"zhuanlan-search-{stamp}.{fmt}",
            max_age=0,
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Length"] = str(os.fstat(fh.fileno()).st_size)
        return response

    @pages.get("/unit/<int:unit_id>")
    def unit_page(unit_id: int) -> str:
        with ctx.session_factory() as db:
            unit = db.get(Unit, unit_id) if unit_id < 2**31 else None
            if unit is None:
                abort(404, description="没有这个单位。")
            articles = list(
                db.scalars(
                    select(Article)
                    .where(Article.unit_id == unit.id, *visible())
                    .order_by(Article.published_at.desc().nulls_last(), Article.id.desc())
                    .limit(1000)
                )
            )
            return render_template(
                "unit.html", unit=unit, weeks=weekly_contributions(articles, ctx.tz), total=len(articles)
            )

    @pages.get("/digests")
    def digests() -> str:
        with ctx.session_factory() as db:
            rows = db.scalars(select(Digest).order_by(Digest.week.desc(), Digest.column).limit(200)).all()
            counts: dict[int, Counter[str]] = defaultdict(Counter)
            for digest_id, status, n in db.execute(
                select(Delivery.digest_id, Delivery.status, func.count()).group_by(Delivery.digest_id, Delivery.status)
            ):
                counts[digest_id][status] = n
            return render_template("digests.html", digests=rows, counts=counts)

    return pages
