"""The weekly digest's content: ISO week arithmetic and the per-recipient mail (HTML + text).

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
    author: str | None
    published: datetime  # tz-aware, in the digest's time zone
    excerpt: str
    link: str
    guid: str = ""  # the story's id: what the office's review pins or leaves out (feeds.review)


@dataclass(frozen=True)
class UnitSummary:
    """One unit's line: this week's articles and counts this week / since the column started."""

    unit_id: int | None  # None: articles whose unit could not be attributed
    name: str
    week_count: int
    total_count: int
    articles: tuple[DigestArticle, ...]


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
    week: str
    period_start: datetime
    period_end: datetime
    units: tuple[UnitSummary, ...]  # every configured unit, in sort order (plus "unattributed" if any)
    failed_sources: tuple[FailedSource, ...]
    total_week: int
    total_so_far: int
    generated_at: datetime
    column_start: date | None = None
    intro: str | None = None  # the office's words for this issue (feeds.review), shown first
    pinned: tuple[DigestArticle, ...] = ()  # stories the office put on top (本期推荐)

    @property
    def contributed_week(self) -> list[UnitSummary]:
        return [u for u in self.units if u.unit_id is not None and u.week_count > 0]

    @property
    def contributed_so_far(self) -> list[UnitSummary]:
        return [u for u in self.units if u.unit_id is not None and u.total_count > 0]

    @property
    def not_yet(self) -> list[UnitSummary]:
        return [u for u in self.units if u.unit_id is not None and u.total_count == 0]

    def unit(self, unit_id: int | None) -> UnitSummary | None:
        for u in self.units:
            if unit_id is not None and u.unit_id == unit_id:
                return u
        return None


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
    return "运维副本（含采集异常情况）" if operator else f"{recipient.name}同志：您好！"


def _md(d: date | datetime) -> str:
    return f"{d.month}月{d.day}日"


def _week_label(data: DigestData) -> str:
    year, week, _ = data.period_start.isocalendar()
    last_day = (data.period_end - timedelta(days=1)).date()
    return f"{year}年第{week}周（{_md(data.period_start)}—{_md(last_day)}）"


def digest_subject(data: DigestData) -> str:
    return f"【专栏周报】{_week_label(data)}：本周{data.total_week}篇，{len(data.contributed_week)}个单位"


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url}/unsubscribe/{token}"


# --- HTML ------------------------------------------------------------------------------

_FONT = "font-family:-apple-system,'PingFang SC','Hiragino Sans GB','Microsoft YaHei',sans-serif;"
_H2 = f"{_FONT}font-size:18px;color:#b71c1c;margin:24px 0 8px;padding-bottom:4px;border-bottom:2px solid #b71c1c;"
_H3 = f"{_FONT}font-size:16px;color:#333;margin:16px 0 6px;"
_P = f"{_FONT}font-size:15px;line-height:1.7;color:#333;margin:6px 0;"
_META = f"{_FONT}font-size:13px;color:#888;margin:2px 0;"
_TD = f"{_FONT}font-size:14px;padding:6px 8px;border-bottom:1px solid #eee;"


def _article_html(a: DigestArticle) -> str:
    by = "　".join(x for x in (a.author or "", a.published.strftime("%Y-%m-%d")) if x)
    return (
        f'<div style="margin:0 0 14px;">'
        f'<p style="{_P}font-weight:bold;"><a href="{escape(a.link)}" style="color:#0b5394;text-decoration:none;">'
        f"{escape(a.title)}</a></p>"
        f'<p style="{_META}">{escape(by)}</p>'
        f'<p style="{_P}color:#555;">{escape(a.excerpt)}</p>'
        f"</div>"
    )


def _own_unit_html(data: DigestData, recipient: DigestRecipient) -> str:
    own = data.unit(recipient.unit_id)
    if own is None:
        return ""
    parts = [f'<h2 style="{_H2}">本单位情况：{escape(own.name)}</h2>']
    if own.week_count:
        parts.append(
            f'<p style="{_P}">本周刊发 <b>{own.week_count}</b> 篇，专栏开设以来累计 <b>{own.total_count}</b> 篇。</p>'
        )
        parts.extend(_article_html(a) for a in own.articles)
    elif own.total_count:
        parts.append(
            f'<p style="{_P}">本周暂无稿件刊发，专栏开设以来累计 <b>{own.total_count}</b> 篇，欢迎继续踊跃投稿。</p>'
        )
    else:
        parts.append(f'<p style="{_P}">本单位尚未在专栏刊发稿件，请抓紧组织撰写学习体会并投稿。</p>')
    return "".join(parts)


def _participation_html(data: DigestData) -> str:
    rows = "".join(
        f'<tr><td style="{_TD}">{escape(u.name)}</td>'
        f'<td style="{_TD}text-align:right;">{u.week_count}</td>'
        f'<td style="{_TD}text-align:right;">{u.total_count}</td></tr>'
        for u in data.units
        if u.unit_id is not None
    )
    not_yet = "、".join(u.name for u in data.not_yet) or "无"
    return (
        f'<h2 style="{_H2}">各单位投稿情况</h2>'
        f'<p style="{_P}">本周投稿单位 {len(data.contributed_week)} 个，累计投稿单位 {len(data.contributed_so_far)} 个，'
        f"尚未投稿单位 {len(data.not_yet)} 个。</p>"
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        f'style="border-collapse:collapse;width:100%;">'
        f'<tr><th style="{_TD}text-align:left;">单位</th><th style="{_TD}text-align:right;">本周</th>'
        f'<th style="{_TD}text-align:right;">累计</th></tr>{rows}</table>'
        f'<p style="{_P}"><b>尚未投稿：</b>{escape(not_yet)}</p>'
    )


def _failed_sources_html(data: DigestData) -> str:
    parts = [f'<h2 style="{_H2}">采集异常（仅运维）</h2>']
    if not data.failed_sources:
        parts.append(f'<p style="{_P}">本周各采集源运行正常。</p>')
        return "".join(parts)
    for f in data.failed_sources:
        unit = f"（{f.unit}）" if f.unit else ""
        parts.append(
            f'<p style="{_P}"><b>{escape(f.key)}</b>{escape(unit)}：{f.failures} 次异常，'
            f"最近 {escape(f.last_at.strftime('%m-%d %H:%M'))} 状态 {escape(f.last_status)}"
            f"{'：' + escape(f.last_error) if f.last_error else ''}</p>"
        )
    return "".join(parts)


def _unattributed(data: DigestData) -> UnitSummary | None:
    return next((u for u in data.units if u.unit_id is None), None)


def _unattributed_html(data: DigestData, base_url: str) -> str:
    parts = [f'<h2 style="{_H2}">单位未识别（仅运维，待确认）</h2>']
    pending = _unattributed(data)
    if pending is None or not pending.total_count:
        parts.append(f'<p style="{_P}">所有文章均已识别所属单位。</p>')
        return "".join(parts)
    parts.append(
        f'<p style="{_P}">本周 <b>{pending.week_count}</b> 篇、累计 <b>{pending.total_count}</b> 篇文章读不出所属单位，'
        f"未计入任何单位。请在 "
        f'<a href="{escape(base_url)}/review" style="color:#1565c0;">{escape(base_url)}/review</a> 指定单位。</p>'
    )
    parts.extend(_article_html(a) for a in pending.articles)
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
        f'<h1 style="{_FONT}font-size:22px;color:#b71c1c;margin:0 0 4px;">专栏周报</h1>',
        f'<p style="{_META}">{escape(_week_label(data))}</p>',
        f'<p style="{_P}">{escape(_greeting(recipient, operator))}</p>',
        f'<p style="{_P}">本周专栏共刊发文章 <b>{data.total_week}</b> 篇，来自 <b>{len(data.contributed_week)}</b> 个单位；'
        f"专栏开设以来累计刊发 <b>{data.total_so_far}</b> 篇。</p>",
        *_review_html(data),
        _own_unit_html(data, recipient),
        f'<h2 style="{_H2}">本周文章（按单位）</h2>',
    ]
    listed = [u for u in data.units if u.articles]
    if not listed:
        sections.append(f'<p style="{_P}">本周暂无新刊发文章。</p>')
    for u in listed:
        sections.append(f'<h3 style="{_H3}">{escape(u.name)}（本周 {u.week_count} 篇，累计 {u.total_count} 篇）</h3>')
        sections.extend(_article_html(a) for a in u.articles)
    sections.append(_participation_html(data))
    if operator:
        sections.append(_unattributed_html(data, base_url))
        sections.append(_failed_sources_html(data))
    footer = [f'订阅源：<a href="{escape(base_url)}/feeds/" style="color:#888;">{escape(base_url)}/feeds/</a>']
    if unsub:
        footer.append(f'不想再收到周报？<a href="{escape(unsub)}" style="color:#888;">退订</a>')
    sections.append(f'<hr style="border:none;border-top:1px solid #ddd;margin:24px 0 8px;"><p style="{_META}">')
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
        f'<tr><td style="padding:20px 16px;">{body}</td></tr></table></td></tr></table></body></html>'
    )


# --- text ------------------------------------------------------------------------------


def _article_text(a: DigestArticle) -> list[str]:
    by = "　".join(x for x in (a.author or "", a.published.strftime("%Y-%m-%d")) if x)
    return [f"・{a.title}", f"  {by}", f"  {a.excerpt}", f"  {a.link}", ""]


def _render_text(data: DigestData, recipient: DigestRecipient, operator: bool, base_url: str, unsub: str | None) -> str:
    lines = [
        f"专栏周报　{_week_label(data)}",
        "",
        _greeting(recipient, operator),
        f"本周专栏共刊发文章 {data.total_week} 篇，来自 {len(data.contributed_week)} 个单位；"
        f"专栏开设以来累计刊发 {data.total_so_far} 篇。",
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
        lines += [f"【本单位情况：{own.name}】"]
        if own.week_count:
            lines += [f"本周刊发 {own.week_count} 篇，专栏开设以来累计 {own.total_count} 篇。", ""]
            for a in own.articles:
                lines += _article_text(a)
        elif own.total_count:
            lines += [f"本周暂无稿件刊发，专栏开设以来累计 {own.total_count} 篇，欢迎继续踊跃投稿。", ""]
        else:
            lines += ["本单位尚未在专栏刊发稿件，请抓紧组织撰写学习体会并投稿。", ""]
    lines += ["【本周文章（按单位）】"]
    listed = [u for u in data.units if u.articles]
    if not listed:
        lines += ["本周暂无新刊发文章。", ""]
    for u in listed:
        lines += [f"{u.name}（本周 {u.week_count} 篇，累计 {u.total_count} 篇）"]
        for a in u.articles:
            lines += _article_text(a)
    lines += [
        "【各单位投稿情况】",
        f"本周投稿单位 {len(data.contributed_week)} 个，累计投稿单位 {len(data.contributed_so_far)} 个，"
        f"尚未投稿单位 {len(data.not_yet)} 个。",
        "单位　本周　累计",
    ]
    lines += [f"{u.name}　{u.week_count}　{u.total_count}" for u in data.units if u.unit_id is not None]
    lines += [f"尚未投稿：{'、'.join(u.name for u in data.not_yet) or '无'}", ""]
    if operator:
        pending = _unattributed(data)
        lines += ["【单位未识别（仅运维，待确认）】"]
        if pending is None or not pending.total_count:
            lines += ["所有文章均已识别所属单位。", ""]
        else:
            lines += [
                f"本周 {pending.week_count} 篇、累计 {pending.total_count} 篇文章读不出所属单位，未计入任何单位。"
                f"请在 {base_url}/review 指定单位。",
                "",
            ]
            for a in pending.articles:
                lines += _article_text(a)
        lines += ["【采集异常（仅运维）】"]
        if not data.failed_sources:
            lines += ["本周各采集源运行正常。"]
        for f in data.failed_sources:
            unit = f"（{f.unit}）" if f.unit else ""
            error = f"：{f.last_error}" if f.last_error else ""
            lines += [
                f"{f.key}{unit}：{f.failures} 次异常，最近 {f.last_at.strftime('%m-%d %H:%M')} 状态 {f.last_status}{error}"
            ]
        lines += [""]
    lines += ["--", f"订阅源：{base_url}/feeds/"]
    if unsub:
        lines += [f"退订：{unsub}"]
    return "\n".join(lines) + "\n"


def render_digest(data: DigestData, recipient: DigestRecipient, *, operator: bool, base_url: str) -> RenderedDigest:
    """The digest for one recipient. The operator copy adds the failed-sources section."""
    unsub = unsubscribe_url(base_url, recipient.unsubscribe_token) if recipient.unsubscribe_token else None
    return RenderedDigest(
        subject=digest_subject(data),
        html=_render_html(data, recipient, operator, base_url, unsub),
        text=_render_text(data, recipient, operator, base_url, unsub),
        unsubscribe_url=unsub,
    )
