"""The period report as files: the 统计表 (xlsx), the 汇编 (docx) and the 明细 (csv).

Pure: each writer renders a `feeds.report.Report` into a binary stream; what the report holds is
`feeds.report`'s. The command line and the web app both call `render`, so both give the same
files. Text from the crawled pages is data: control characters that XML cannot carry are dropped,
and a cell that a spreadsheet would run as a formula stays text.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from typing import IO, TYPE_CHECKING, Any, Literal
from xml.sax.saxutils import escape, quoteattr

from feeds.report import DETAIL_HEADER, SUMMARY_HEADER, UNATTRIBUTED, Report, detail_rows
from pipeline.corpus.corrections import NO_UNIT

if TYPE_CHECKING:
    from collections.abc import Callable

    from docx.text.paragraph import Paragraph

Format = Literal["xlsx", "docx", "csv"]
FORMATS: tuple[Format, ...] = ("xlsx", "docx", "csv")
MIME_TYPES: dict[Format, str] = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "csv": "text/csv; charset=utf-8",
}
_KINDS: dict[Format, str] = {"xlsx": "统计表", "docx": "汇编", "csv": "明细"}

SUMMARY_WIDTHS = (6, 30, 8, 8, 18)
DETAIL_WIDTHS = (6, 12, 24, 14, 24, 48, 56, 10)
DATE_FORMAT = "yyyy-mm-dd"

# XML 1.0 cannot carry these; openpyxl and python-docx refuse them rather than drop them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# The elements of word/settings.xml that come after <w:updateFields> (the schema fixes their order).
_AFTER_UPDATE_FIELDS = (
    "w:hdrShapeDefaults", "w:footnotePr", "w:endnotePr", "w:compat", "w:docVars", "w:rsids", "m:mathPr",
    "w:attachedSchema", "w:themeFontLang", "w:clrSchemeMapping", "w:doNotIncludeSubdocsInStats",
    "w:doNotAutoCompressPictures", "w:forceUpgrade", "w:captions", "w:readModeInkLockDown", "w:smartTagType",
    "sl:schemaLibrary", "w:shapeDefaults", "w:doNotEmbedSmartTags", "w:decimalSymbol", "w:listSeparator",
)  # fmt: skip


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def as_csv_text(cell: str) -> str:
    """A csv cell that Excel or WPS opens as text: a leading quote before what would start a formula."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def file_name(report: Report, fmt: Format) -> str:
    """「学习贯彻…精神-统计表-2026-10-01至2026-12-31.xlsx」."""
    return f"{report.column}-{_KINDS[fmt]}-{report.date_from.isoformat()}至{report.date_to.isoformat()}.{fmt}"


def render(report: Report, fmt: Format) -> bytes:
    buffer = io.BytesIO()
    WRITERS[fmt](report, buffer)
    return buffer.getvalue()


# --- xlsx --------------------------------------------------------------------------------------


def _no_unit_counts(report: Report) -> str:
    """「未识别单位文章 2 篇、不属于任何单位的文章 1 篇」: the stories of no unit, by why."""
    decided = report.no_unit_count
    unread = len(report.unattributed) - decided
    parts = [f"{UNATTRIBUTED}文章 {unread} 篇" if unread else "", f"{NO_UNIT}的文章 {decided} 篇" if decided else ""]
    return "、".join(part for part in parts if part)


def write_xlsx(report: Report, out: IO[bytes]) -> None:
    """Sheet 统计 (every unit, 合计, the unattributed apart) and sheet 明细 (one row per story)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.properties.title = f"{report.column} 刊发情况统计（{report.period}）"
    bold = Font(bold=True)

    def sheet(title: str, header: tuple[str, ...], widths: tuple[int, ...], rows: list[tuple[Any, ...]]) -> Any:
        ws = book.create_sheet(title)
        ws.append(header)
        for cell in ws[1]:
            cell.font = bold
            cell.alignment = Alignment(horizontal="center")
        for values in rows:
            ws.append([_clean(v) if isinstance(v, str) else v for v in values])
            for cell in ws[ws.max_row]:
                if isinstance(cell.value, date):
                    cell.number_format = DATE_FORMAT
                elif isinstance(cell.value, str) and cell.value.startswith("="):
                    cell.data_type = "s"  # crawled text, never a formula
        for i, width in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(i)].width = width
        ws.freeze_panes = "A2"
        return ws

    book.remove(book.active)
    summary: list[tuple[Any, ...]] = [(u.number, u.unit, u.count, u.rank, u.head_count) for u in report.units]
    summary.append((None, "合计", report.total, None, report.head_total))
    stats = sheet("统计", SUMMARY_HEADER, SUMMARY_WIDTHS, summary)
    for cell in stats[stats.max_row]:
        cell.font = bold
    notes = [f"专栏：{report.column}", f"统计期间：{report.period}（按首发日期）"]
    if report.unattributed:
        notes.append(f"另有{_no_unit_counts(report)}，未计入上表，见明细表末尾。")
    stats.append(())
    for note in notes:
        stats.append((None, note))
    details = sheet("明细", DETAIL_HEADER, DETAIL_WIDTHS, detail_rows(report))
    for (link,) in details.iter_rows(min_row=2, min_col=7, max_col=7):
        if isinstance(link.value, str) and link.value.lower().startswith(("http://", "https://")):
            link.hyperlink = link.value
    book.save(out)


# --- docx --------------------------------------------------------------------------------------


def _field(paragraph: Paragraph, instruction: str, placeholder: str = "") -> None:
    """A Word field (TOC, PAGE) that Word computes: begin, instruction, separate, shown text, end."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    def fld_char(kind: str) -> None:
        element = OxmlElement("w:fldChar")
        element.set(qn("w:fldCharType"), kind)
        paragraph.add_run()._r.append(element)

    fld_char("begin")
    instr = OxmlElement("w:instrText")
    instr.set(qn("xml:space"), "preserve")
    instr.text = f" {instruction} "
    paragraph.add_run()._r.append(instr)
    fld_char("separate")
    paragraph.add_run(placeholder)
    fld_char("end")


def _paragraph_xml(style_id: str, text: str) -> str:
    """One paragraph of a style, holding `text` (cleaned and escaped), as WordprocessingML."""
    run = f'<w:r><w:t xml:space="preserve">{escape(_clean(text))}</w:t></w:r>' if text else ""
    return f"<w:p><w:pPr><w:pStyle w:val={quoteattr(style_id)}/></w:pPr>{run}</w:p>"


def _east_asian(style: Any, name: str) -> None:
    from docx.oxml.ns import qn

    style.font.name = name
    style.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), name)


def write_docx(report: Report, out: IO[bytes]) -> None:
    """The 汇编: cover, table of contents, each article (title, byline, date, text), page numbers."""
    from docx import Document
    from docx.enum.style import WD_STYLE_TYPE
    from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK
    from docx.oxml import OxmlElement, parse_xml
    from docx.oxml.ns import nsdecls, qn
    from docx.shared import Mm, Pt, RGBColor

    doc = Document()
    doc.core_properties.title = f"{report.column} 文章汇编"
    section = doc.sections[0]  # A4, as the office prints it
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin, section.bottom_margin, section.left_margin, section.right_margin = (
        Mm(37),
        Mm(35),
        Mm(28),
        Mm(26),
    )
    doc.core_properties.subject = report.period
    normal = doc.styles["Normal"]
    _east_asian(normal, "仿宋")
    normal.font.size = Pt(14)
    heading = doc.styles["Heading 1"]
    _east_asian(heading, "黑体")
    heading.font.size = Pt(18)
    heading.font.color.rgb = RGBColor(0, 0, 0)
    heading.paragraph_format.alignment = WD_ALIGN_PARAGRAPH.CENTER
    heading.paragraph_format.page_break_before = True  # each article on a page of its own
    body = doc.styles.add_style("汇编正文", WD_STYLE_TYPE.PARAGRAPH)
    body.style_id = "ReportBody"  # ASCII ids, as Word writes them
    body.base_style = normal
    body.paragraph_format.first_line_indent = Pt(28)  # two characters
    body.paragraph_format.space_after = Pt(0)
    body.paragraph_format.line_spacing = 1.5
    byline = doc.styles.add_style("汇编署名", WD_STYLE_TYPE.PARAGRAPH)
    byline.style_id = "ReportByline"
    byline.base_style = normal
    byline.paragraph_format.alignment = WD_ALIGN_PARAGRAPH.CENTER
    byline.paragraph_format.space_after = Pt(0)

    def centered(text: str, size: int, *, bold: bool = False, before: int = 0) -> Paragraph:
        paragraph = doc.add_paragraph()
        paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
        paragraph.paragraph_format.space_before = Pt(before)
        run = paragraph.add_run(_clean(text))
        run.font.size = Pt(size)
        run.bold = bold
        return paragraph

    # Cover
    centered(report.column, 26, bold=True, before=160)
    centered("文章汇编", 22, bold=True, before=24)
    centered(report.period, 16, before=120)
    centered(f"共 {len(report.compiled)} 篇", 16).add_run().add_break(WD_BREAK.PAGE)
    # Table of contents: Word fills it in from the Heading 1 titles (it updates fields on opening).
    centered("目　录", 18, bold=True)
    _field(
        doc.add_paragraph(), r'TOC \o "1-1" \h \z \u', "（打开文档时更新目录；如未更新，请右键点击此处选择“更新域”。）"
    )
    update = OxmlElement("w:updateFields")
    update.set(qn("w:val"), "true")
    doc.settings.element.insert_element_before(update, *_AFTER_UPDATE_FIELDS)  # where the schema wants it

    # The articles are most of the document: their paragraphs are written as XML and parsed at
    # once (python-docx's add_paragraph searches the body for its end at every call: a year's
    # 汇编 took seconds in that search alone).
    paragraphs: list[str] = []
    for article in report.compiled:
        day = article.published
        paragraphs.append(_paragraph_xml(heading.style_id, article.title))
        paragraphs.append(_paragraph_xml(byline.style_id, article.byline or article.unit_cell))
        paragraphs.append(_paragraph_xml(byline.style_id, f"{day.year}年{day.month}月{day.day}日"))
        paragraphs.append(_paragraph_xml(byline.style_id, ""))
        paragraphs += [
            _paragraph_xml(body.style_id, line.strip()) for line in article.body_text.split("\n") if line.strip()
        ]
    fragment = parse_xml(f"<w:body {nsdecls('w')}>{''.join(paragraphs)}</w:body>")
    end = doc.element.body.sectPr  # the document's last child: new paragraphs go before it
    for paragraph in list(fragment):
        if end is not None:
            end.addprevious(paragraph)
        else:
            doc.element.body.append(paragraph)

    footer = doc.sections[0].footer.paragraphs[0]
    footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _field(footer, "PAGE", "1")
    doc.save(out)


# --- csv ---------------------------------------------------------------------------------------


def write_csv(report: Report, out: IO[bytes]) -> None:
    """The 明细 rows, UTF-8 with a BOM (so Excel reads Chinese right); dates as YYYY-MM-DD."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(DETAIL_HEADER)
    for row in detail_rows(report):
        writer.writerow([v.isoformat() if isinstance(v, date) else as_csv_text(str(v)) for v in row])
    out.write(text.getvalue().encode("utf-8-sig"))


WRITERS: dict[Format, Callable[[Report, IO[bytes]], None]] = {
    "xlsx": write_xlsx,
    "docx": write_docx,
    "csv": write_csv,
}
