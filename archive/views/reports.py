"""The period reports in the web app: the 统计表, 汇编 and 明细 of a column as downloads (login required).

Owns the form and the download. What a report holds is `feeds.report`'s and its files are
`feeds.report_files`' — the same calls as `zhuanlan report`, so the web app and the command line
give the same files. Reads only; the download is a GET (it changes nothing), so it needs no CSRF token.
"""

from __future__ import annotations

import io
from datetime import date
from typing import TYPE_CHECKING

from flask import Blueprint, redirect, render_template, request, send_file

from archive.auth import is_operator
from feeds.report import load_report
from feeds.report_files import FORMATS, MIME_TYPES, file_name, render

if TYPE_CHECKING:
    from werkzeug.wrappers import Response as BaseResponse

    from archive.views.context import ViewContext

FORMAT_NAMES = {"xlsx": "统计表（Excel）", "docx": "文章汇编（Word）", "csv": "明细（CSV）"}


def blueprint(ctx: ViewContext) -> Blueprint:
    reports = Blueprint("reports", __name__)

    def form(error: str | None = None, status: int = 200) -> tuple[str, int]:
        today = ctx.now().astimezone(ctx.tz).date()
        quarter_start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        page = render_template(
            "reports.html",
            columns=[c.name for c in ctx.config.columns],
            formats=[(f, FORMAT_NAMES[f]) for f in FORMATS],
            values={
                "from": request.args.get("from") or quarter_start.isoformat(),
                "to": request.args.get("to") or today.isoformat(),
                "format": request.args.get("format") or "xlsx",
                "column": request.args.get("column") or "",
            },
            error=error,
        )
        return page, status

    @reports.get("/reports")
    def reports_page() -> BaseResponse | tuple[str, int]:
        if not is_operator():
            return redirect("/login")
        return form()

    @reports.get("/reports/download")
    def download() -> BaseResponse | tuple[str, int]:
        if not is_operator():
            return redirect("/login")
        columns = [c.name for c in ctx.config.columns]
        fmt = request.args.get("format", "")
        column = request.args.get("column") or (columns[0] if columns else "")
        try:
            date_from = date.fromisoformat(request.args.get("from", ""))
            date_to = date.fromisoformat(request.args.get("to", ""))
        except ValueError:
            return form("请填写起止日期（如 2026-10-01）。", 400)
        if date_to < date_from:
            return form("截止日期早于起始日期。", 400)
        if fmt not in FORMATS:
            return form("请选择文件格式。", 400)
        if column not in columns:
            return form("请选择已配置的专栏。", 400)
        with ctx.session_factory() as db:
            report = load_report(db, ctx.config, column, date_from, date_to)
        # send_file names a Chinese file name the RFC 6266 way (filename*=UTF-8'').
        response = send_file(
            io.BytesIO(render(report, fmt)),
            mimetype=MIME_TYPES[fmt],
            as_attachment=True,
            download_name=file_name(report, fmt),
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    return reports
