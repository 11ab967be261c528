"""The weekly 刊发情况 digest's content: week arithmetic and the per-recipient mail (HTML + text).

Pure: it renders `DigestData` (loaded by `feeds.selection.load_digest_data`) for one recipient.
The HTML uses inline CSS only, one column of at most 600px (mail clients drop <style> and
phones are narrow); the plain-text part carries the same content. Must not query the
database or talk to SMTP (`feeds.mail` does that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from html import escape
from typing import TYPE_CHECKING

from feeds.report import Author

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from pipeline.corpus.models import Recipient
    from zhuanlan_config import Config

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def iso_week_bounds(week: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00 in `tz` of an ISO week such as `2026-W48`."""
    m = _WEEK.match(week)
    if not m:
        raise ValueError(f"expected an ISO week such as 2026-W48, got {week!r}")
    monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    # Built from dates, not by adding 7×24h, so a DST change inside the week cannot shift the end.
    start = datetime.combine(monday, time(0), tzinfo=tz)
    end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=tz)
    return start, end


def week_of(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def previous_week(now: datetime) -> str:
    """The ISO week before the one `now` falls in (in `now`'s own time zone)."""
    if now.tzinfo is None:
        raise ValueError("now must be tz-aware")
    return week_of(now - timedelta(days=7))


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def send_time(week: str, config: Config) -> datetime:
    """When `week`'s digest is due: the configured weekday and time after the week ended (config.tz)."""
    _, end = iso_week_bounds(week, config.tz)
    hour, minute = (int(x) for x in config.schedule.digest_time.split(":"))
    day = end.date() + timedelta(days=_WEEKDAYS.index(config.schedule.digest_weekday))
    return datetime.combine(day, time(hour, minute), tzinfo=config.tz)


def owed_grace(config: Config) -> timedelta:
    """How late a digest may still go out: `digest.grace_days`, but never less than the
    scheduler's misfire grace, so a run APScheduler still fires is never a run that sends nothing
    (it fires the digest job up to the larger of the two after its slot, see `scheduler.job_defs`)."""
    return max(timedelta(days=config.digest.grace_days), timedelta(hours=config.schedule.misfire_grace_hours))


def owed_weeks(now: datetime, config: Config) -> list[str]:
    """Every ISO week whose digest is due (send time <= now) and not stale (send time >=
    now - grace, see `owed_grace`), oldest first. After downtime this is what must still go
    out; a week due longer ago than the grace is not sent any more (old news)."""
    if now.tzinfo is None:
        raise ValueError("now must be tz-aware")
    local = now.astimezone(config.tz)
    oldest = local - owed_grace(config)
    # A week's send time falls 7 to 14 days after its Monday: start two weeks before the oldest
    # moment that may still be owed and walk forward week by week to the week `now` falls in.
    monday = (oldest - timedelta(days=14)).date()
    monday -= timedelta(days=monday.weekday())
    owed = []
    while monday <= local.date():
        week = week_of(datetime.combine(monday, time(12), tzinfo=config.tz))
        if oldest <= send_time(week, config) <= local:
            owed.append(week)
        monday += timedelta(days=7)
    return owed


@dataclass(frozen=True)
class DigestArticle:
    title: str
    unit: str | None
    authors: tuple[Author, ...]  # in byline order, each with the positions the byline gives
    published: datetime  # 首发, tz-aware, in the digest's time zone
    excerpt: str
    link: str  # the column's WeChat post when there is one, else the unit-site page
    archive_link: str  # the story's page in our archive
    guid: str = ""  # the story's id: what the office's review pins or leaves out (feeds.review)
    no_unit: bool = False  # no unit because the office decided it is nobody's (a correction), not unread

    @property
    def author(self) -> str | None:
        return "、".join(a.name for a in self.authors if a.name) or None

    @property
    def people(self) -> str:
        """作者及职务: 「陈思远（党组书记、局长）、李文（办公室主任）」."""
        return "、".join(f"{a.name}（{'、'.join(a.positions)}）" if a.positions else a.name for a in self.authors)


@dataclass(frozen=True)
class UnitSummary:
    """One unit's line: this week's column articles, counts this week / since the column started,
    its rank by the latter, and what it published only on its own site (not counted)."""

    unit_id: int
    name: str
    week_count: int
    total_count: int
    articles: tuple[DigestArticle, ...]
    rank: int = 1
    site_articles: tuple[DigestArticle, ...] = ()  # 本单位网站刊发: not in the column, not counted
    source_failed: bool = False  # a source of this unit failed this week (its last run was not ok)

    @property
    def status(self) -> str:
        """This week: 刊发, or 采集异常 when nothing was seen but a source failed, else 未刊发."""
        if self.week_count:
            return "刊发"
        return "采集异常" if self.source_failed else "未刊发"


@dataclass(frozen=True)
class FailedSource:
    key: str
    unit: str | None
    failures: int  # source runs with a status other than ok in the period
    last_status: str
    last_error: str | None
    last_at: datetime


@dataclass(frozen=True)
class DigestData:
    """One column's week. Counting follows `feeds.report`: only column members, each story once
    by its 首发 date, stories deleted at source left out, unattributed ones apart."""

    week: str
    period_start: datetime
    period_end: datetime
    units: tuple[UnitSummary, ...]  # every configured unit, in the configured order
    failed_sources: tuple[FailedSource, ...]
    total_week: int  # attributed column stories this week
    total_so_far: int  # attributed column stories since the column started
    generated_at: datetime
    column_start: date | None = None
    column: str = ""
    issue: int = 1  # 第N期: weeks since the column's start week, the start week being 1
    unattributed: tuple[DigestArticle, ...] = ()  # this week's column stories of no known unit
    unattributed_total: int = 0
    no_unit_total: int = 0  # of `unattributed_total`, those the office decided belong to no unit
    column_source_failed: bool = False  # a source of the whole column (no unit) failed this week
    intro: str | None = None  # the office's words for this issue (feeds.review), shown first
    pinned: tuple[DigestArticle, ...] = ()  # stories the office put on top (本期推荐)

    @property
    def contributed_week(self) -> list[UnitSummary]:
        return [u for u in self.units if u.week_count > 0]

    @property
    def contributed_so_far(self) -> list[UnitSummary]:
        return [u for u in self.units if u.total_count > 0]

    @property
    def not_yet(self) -> list[UnitSummary]:
        return [u for u in self.units if u.total_count == 0]

    @property
    def silent_week(self) -> list[UnitSummary]:
        """本周未刊发单位: no column article this week and no failed source to blame."""
        return [u for u in self.units if u.status == "未刊发"]

    @property
    def failed_week(self) -> list[UnitSummary]:
        """No column article this week, but a source of the unit failed: 采集异常, not 未刊发."""
        return [u for u in self.units if u.status == "采集异常"]

    @property
    def ranking(self) -> list[UnitSummary]:
        """累计刊发 ranking: by rank, equal ranks in the configured order."""
        order = {u.unit_id: i for i, u in enumerate(self.units)}
        return sorted(self.units, key=lambda u: (u.rank, order[u.unit_id]))

    def unit(self, unit_id: int | None) -> UnitSummary | None:
        for u in self.units:
            if unit_id is not None and u.unit_id == unit_id:
                return u
        return None


def issue_number(period_start: datetime, column_start: date | None) -> int:
    """第N期: the week holding the column's first day is 1. A week before the start is an error."""
    if column_start is None:
        return 1
    first_monday = column_start - timedelta(days=column_start.weekday())
    n = (period_start.date() - first_monday).days // 7 + 1
    if n < 1:
        raise ValueError(f"the week of {period_start.date()} is before the column started ({column_start})")
    return n


@dataclass(frozen=True)
class DigestRecipient:
    """Who a digest is rendered for; the operator copy has no unit and no unsubscribe token."""

    name: str
    email: str
    unit_id: int | None = None
    unit_name: str | None = None
    unsubscribe_token: str | None = None

    @classmethod
    def from_model(cls, r: Recipient) -> DigestRecipient:
        return cls(
            name=r.name, email=r.email, unit_id=r.unit_id, unit_name=r.unit.name, unsubscribe_token=r.unsubscribe_token
        )


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    html: str
    text: str
    unsubscribe_url: str | None


def _greeting(recipient: DigestRecipient, operator: bool) -> str:
    return "运维副本（含未计入单位的文章和采集异常详情）" if operator else f"{recipient.name}同志：您好！"


def _md(d: date | datetime) -> str:
    return f"{d.month}月{d.day}日"


def _ymd(d: date | datetime) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def period_text(start: datetime, end: datetime) -> str:
    """「11月23日—11月29日」; with the years when the week crosses into a new year."""
    last_day = (end - timedelta(days=1)).date()
    if start.year != last_day.year:
        return f"{_ymd(start)}—{_ymd(last_day)}"
    return f"{_md(start)}—{_md(last_day)}"


def _column_name(data: DigestData) -> str:
    return data.column or "专栏"


def _week_label(data: DigestData) -> str:
    return f"第{data.issue}期（{period_text(data.period_start, data.period_end)}）"


def digest_subject(data: DigestData) -> str:
    return (
        f"【{_column_name(data)}】刊发情况周报{_week_label(data)}："
        f"本周刊发{data.total_week}篇，{len(data.contributed_week)}个单位"
    )


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url}/unsubscribe/{token}"


def _summary_line(data: DigestData) -> str:
    return (
        f"本周专栏刊发文章 {data.total_week} 篇，涉及 {len(data.contributed_week)} 个单位；"
        f"专栏开设以来累计刊发 {data.total_so_far} 篇。"
    )


def _own_lines(own: UnitSummary) -> str:
    if own.week_count:
        return f"本周刊发 {own.week_count} 篇，专栏开设以来累计 {own.total_count} 篇，累计排名第 {own.rank} 位。"
    if own.source_failed:
        return (
            f"本周本单位网站采集异常，暂未看到刊发文章，待恢复后核实；专栏开设以来累计 {own.total_count} 篇，"
            f"累计排名第 {own.rank} 位。"
        )
    if own.total_count:
        return f"本周暂无文章刊发，专栏开设以来累计 {own.total_count} 篇，累计排名第 {own.rank} 位。"
    return "本单位尚未在专栏刊发文章，请抓紧组织撰写学习体会。"


def _names(units: list[UnitSummary]) -> str:
    return "、".join(u.name for u in units) or "无"


_COLUMN_FAILED = "本周专栏采集源采集异常，以上情况可能不完整，待恢复后核实。"
_FAILED_NOTE = "（本周采集异常，是否刊发待核实）"


def _week_cell(u: UnitSummary) -> str:
    return "采集异常" if u.status == "采集异常" else str(u.week_count)


# --- HTML ------------------------------------------------------------------------------
# Kept small: Gmail clips an HTML part over 102 KB (as sent, base64), and a 60-unit column's
# week must fit. Fonts and colours are set once on the outer cell and inherited.

_FONT = "font-family:-apple-system,'PingFang SC','Hiragino Sans GB','Microsoft YaHei',sans-serif;"
_H2 = "font-size:17px;color:#b71c1c;margin:22px 0 8px;padding-bottom:3px;border-bottom:2px solid #b71c1c;"
_P = "margin:6px 0;"
_META = "font-size:13px;color:#777;"
_LINK = "color:#0b5394;text-decoration:none;"
_TD = "padding:3px 6px;border-top:1px solid #eee;"


def _h2(title: str) -> str:
    return f'<h2 style="{_H2}">{escape(title)}</h2>'


def _p(html: str) -> str:
    return f'<p style="{_P}">{html}</p>'


def _article_html(a: DigestArticle) -> str:
    meta = "　".join(x for x in (a.people, f"{_md(a.published)}刊发") if x)
    return (
        f'<p style="margin:0 0 12px;"><a href="{escape(a.link)}" style="{_LINK}font-weight:bold;">{escape(a.title)}</a>'
        f'<br><span style="{_META}">{escape(meta)}　<a href="{escape(a.archive_link)}" style="color:#777;">存档</a>'
        f"</span><br>{escape(a.excerpt)}</p>"
    )


def _own_unit_html(data: DigestData, recipient: DigestRecipient) -> str:
    own = data.unit(recipient.unit_id)
    if own is None:
        return ""
    parts = [_h2(f"本单位情况：{own.name}"), _p(escape(_own_lines(own)))]
    parts += [_article_html(a) for a in own.articles]
    if own.site_articles:
        parts.append(_p("<b>本单位网站刊发</b>（未在专栏刊发，不计入统计）："))
        parts += [_article_html(a) for a in own.site_articles]
    return "".join(parts)


def _silent_html(data: DigestData) -> str:
    parts = [
        _h2(f"本周未刊发单位（{len(data.silent_week)}个）"),
        _p(escape(_names(data.silent_week))),
    ]
    if data.failed_week:
        parts.append(_p(escape(f"采集异常（{len(data.failed_week)}个）：{_names(data.failed_week)}{_FAILED_NOTE}")))
    if data.column_source_failed:
        parts.append(_p(escape(_COLUMN_FAILED)))
    return "".join(parts)


def _ranking_html(data: DigestData) -> str:
    rows = "".join(
        f'<tr><td style="{_TD}">{u.rank}</td><td style="{_TD}">{escape(u.name)}</td>'
        f'<td style="{_TD}" align="right">{_week_cell(u)}</td><td style="{_TD}" align="right">{u.total_count}</td></tr>'
        for u in data.ranking
    )
    head = "".join(
        f'<th style="{_TD}" align="{a}">{t}</th>'
        for t, a in (("排名", "left"), ("单位", "left"), ("本周", "right"), ("累计", "right"))
    )
    return (
        _h2("累计刊发排名")
        + _p(
            f"本周刊发单位 {len(data.contributed_week)} 个，累计刊发单位 {len(data.contributed_so_far)} 个，"
            f"尚未刊发单位 {len(data.not_yet)} 个。"
        )
        + '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        f'style="border-collapse:collapse;width:100%;font-size:14px;"><tr>{head}</tr>{rows}</table>'
    )


def _site_articles_html(data: DigestData) -> str:
    units = [u for u in data.units if u.site_articles]
    if not units:
        return ""
    parts = [_h2("本单位网站刊发（未在专栏刊发，不计入统计；仅运维）")]
    for u in units:
        parts.append(_p(f"<b>{escape(u.name)}</b>"))
        parts += [_article_html(a) for a in u.site_articles]
    return "".join(parts)


def _failed_sources_html(data: DigestData) -> str:
    parts = [_h2("采集异常详情（仅运维）")]
    if not data.failed_sources:
        parts.append(_p("本周各采集源运行正常。"))
        return "".join(parts)
    for f in data.failed_sources:
        parts.append(_p(escape(_failed_line(f))))
    return "".join(parts)


def _failed_line(f: FailedSource) -> str:
    unit = f"（{f.unit}）" if f.unit else ""
    error = f"：{f.last_error}" if f.last_error else ""
    return f"{f.key}{unit}：{f.failures} 次异常，最近 {f.last_at.strftime('%m-%d %H:%M')} 状态 {f.last_status}{error}"


UNATTRIBUTED_HEADING = "未计入任何单位（仅运维）"
ALL_ATTRIBUTED = "所有专栏文章均已计入所属单位。"


def _unattributed_lead(data: DigestData, base_url: str) -> list[str]:
    """The operator's summary of the column stories counted for no unit: those nobody could
    attribute (to decide on the review page), and those the office decided belong to no unit."""
    waiting_week = sum(1 for a in data.unattributed if not a.no_unit)
    settled_week = len(data.unattributed) - waiting_week
    waiting_total = data.unattributed_total - data.no_unit_total
    lines = []
    if waiting_week or waiting_total:
        lines.append(
            f"本周 {waiting_week} 篇、累计 {waiting_total} 篇专栏文章读不出所属单位，未计入任何单位，待确认。"
            f"请在 {base_url}/review 指定单位。"
        )
    if settled_week or data.no_unit_total:
        lines.append(
            f"本周 {settled_week} 篇、累计 {data.no_unit_total} 篇专栏文章经更正确认不属于任何单位，不计入各单位的刊发数。"
        )
    return lines


def _unattributed_groups(data: DigestData) -> list[tuple[str, list[DigestArticle]]]:
    """This week's stories of no unit, those still to decide first, each group with its label."""
    groups = [
        ("待确认：", [a for a in data.unattributed if not a.no_unit]),
        ("已确认不属于任何单位：", [a for a in data.unattributed if a.no_unit]),
    ]
    return [(label, articles) for label, articles in groups if articles]


def _unattributed_html(data: DigestData, base_url: str) -> str:
    parts = [_h2(UNATTRIBUTED_HEADING)]
    if not data.unattributed_total:
        parts.append(_p(ALL_ATTRIBUTED))
        return "".join(parts)
    parts += [_p(escape(line)) for line in _unattributed_lead(data, base_url)]
    for label, articles in _unattributed_groups(data):
        parts.append(_p(escape(label)))
        parts += [_article_html(a) for a in articles]
    return "".join(parts)


def _review_html(data: DigestData) -> list[str]:
    """The office's intro (one paragraph per line) and pinned stories, when the issue has them."""
    parts = [f'<p style="{_P}">{escape(line)}</p>' for line in (data.intro or "").splitlines() if line.strip()]
    if data.pinned:
        parts.append(f'<h2 style="{_H2}">本期推荐</h2>')
        parts.extend(_article_html(a) for a in data.pinned)
    return parts


def _render_html(data: DigestData, recipient: DigestRecipient, operator: bool, base_url: str, unsub: str | None) -> str:
    sections = [
        f'<h1 style="font-size:21px;color:#b71c1c;margin:0 0 4px;">{escape(_column_name(data))}·刊发情况周报</h1>',
        f'<p style="{_P}{_META}">{escape(_week_label(data))}</p>',
        _p(escape(_greeting(recipient, operator))),
        _p(escape(_summary_line(data))),
        *_review_html(data),
        _own_unit_html(data, recipient),
        _h2("本周刊发文章（按单位）"),
    ]
    listed = data.contributed_week
    if not listed:
        sections.append(_p("本周暂无新刊发文章。"))
    for u in listed:
        sections.append(
            f'<h3 style="font-size:15px;margin:14px 0 6px;">{escape(u.name)}（本周 {u.week_count} 篇，累计 {u.total_count} 篇）</h3>'
        )
        sections += [_article_html(a) for a in u.articles]
    sections += [_silent_html(data), _ranking_html(data)]
    if operator:
        sections += [_site_articles_html(data), _unattributed_html(data, base_url), _failed_sources_html(data)]
    footer = [f'订阅源：<a href="{escape(base_url)}/feeds/" style="color:#777;">{escape(base_url)}/feeds/</a>']
    if unsub:
        footer.append(f'不想再收到周报？<a href="{escape(unsub)}" style="color:#777;">退订</a>')
    sections.append(f'<hr style="border:none;border-top:1px solid #ddd;margin:22px 0 8px;"><p style="{_META}">')
    sections.append("<br>".join(footer) + "</p>")
    body = "".join(sections)
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(digest_subject(data))}</title></head>"
        '<body style="margin:0;padding:0;background:#f5f5f5;">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f5f5f5;">'
        '<tr><td align="center" style="padding:12px;">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        'style="max-width:600px;width:100%;background:#ffffff;">'
        f'<tr><td style="padding:20px 16px;{_FONT}font-size:15px;line-height:1.7;color:#333;">{body}</td></tr>'
        "</table></td></tr></table></body></html>"
    )


# --- text ------------------------------------------------------------------------------


def _article_text(a: DigestArticle) -> list[str]:
    meta = "　".join(x for x in (a.people, f"{_md(a.published)}刊发") if x)
    return [f"・{a.title}", f"  {meta}", f"  {a.excerpt}", f"  原文：{a.link}", f"  存档：{a.archive_link}", ""]


def _render_text(data: DigestData, recipient: DigestRecipient, operator: bool, base_url: str, unsub: str | None) -> str:
    lines = [
        f"{_column_name(data)}·刊发情况周报　{_week_label(data)}",
        "",
        _greeting(recipient, operator),
        _summary_line(data),
        "",
    ]
    lines += [line for line in (data.intro or "").splitlines() if line.strip()]
    lines += [""] if data.intro and data.intro.strip() else []
    if data.pinned:
        lines += ["【本期推荐】"]
        for a in data.pinned:
            lines += _article_text(a)
    own = data.unit(recipient.unit_id)
    if own is not None:
        lines += [f"【本单位情况：{own.name}】", _own_lines(own), ""]
        for a in own.articles:
            lines += _article_text(a)
        if own.site_articles:
            lines += ["本单位网站刊发（未在专栏刊发，不计入统计）：", ""]
            for a in own.site_articles:
                lines += _article_text(a)
    lines += ["【本周刊发文章（按单位）】"]
    if not data.contributed_week:
        lines += ["本周暂无新刊发文章。", ""]
    for u in data.contributed_week:
        lines += [f"{u.name}（本周 {u.week_count} 篇，累计 {u.total_count} 篇）"]
        for a in u.articles:
            lines += _article_text(a)
    lines += [f"【本周未刊发单位（{len(data.silent_week)}个）】", _names(data.silent_week)]
    if data.failed_week:
        lines += [f"采集异常（{len(data.failed_week)}个）：{_names(data.failed_week)}{_FAILED_NOTE}"]
    if data.column_source_failed:
        lines += [_COLUMN_FAILED]
    lines += [
        "",
        "【累计刊发排名】",
        f"本周刊发单位 {len(data.contributed_week)} 个，累计刊发单位 {len(data.contributed_so_far)} 个，"
        f"尚未刊发单位 {len(data.not_yet)} 个。",
        "排名　单位　本周　累计",
    ]
    lines += [f"{u.rank}　{u.name}　{_week_cell(u)}　{u.total_count}" for u in data.ranking]
    lines += [""]
    if operator:
        sites = [u for u in data.units if u.site_articles]
        if sites:
            lines += ["【本单位网站刊发（未在专栏刊发，不计入统计；仅运维）】"]
            for u in sites:
                lines += [u.name]
                for a in u.site_articles:
                    lines += _article_text(a)
        lines += [f"【{UNATTRIBUTED_HEADING}】"]
        if not data.unattributed_total:
            lines += [ALL_ATTRIBUTED, ""]
        else:
            lines += [*_unattributed_lead(data, base_url), ""]
            for label, articles in _unattributed_groups(data):
                lines += [label]
                for a in articles:
                    lines += _article_text(a)
        lines += ["【采集异常详情（仅运维）】"]
        if not data.failed_sources:
            lines += ["本周各采集源运行正常。"]
        lines += [_failed_line(f) for f in data.failed_sources]
        lines += [""]
    lines += ["--", f"订阅源：{base_url}/feeds/"]
    if unsub:
        lines += [f"退订：{unsub}"]
    return "\n".join(lines) + "\n"


def render_digest(data: DigestData, recipient: DigestRecipient, *, operator: bool, base_url: str) -> RenderedDigest:
    """One column's digest for one recipient. Only the operator copy lists the unattributed
    stories, every unit's site-only stories and the failed sources' details."""
    unsub = unsubscribe_url(base_url, recipient.unsubscribe_token) if recipient.unsubscribe_token else None
    return RenderedDigest(
        subject=digest_subject(data),
        html=_render_html(data, recipient, operator, base_url, unsub),
        text=_render_text(data, recipient, operator, base_url, unsub),
        unsubscribe_url=unsub,
    )
