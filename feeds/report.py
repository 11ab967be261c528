"""What a period report of a column holds: per-unit counts and ranks, the 明细 rows, the 汇编's articles.

The office sends a 统计表 and a 汇编 at every quarter's and year's end (考核). This module decides
what goes in them; `feeds.report_files` writes them as xlsx, docx and csv. The rules:

- Only column members count: `articles.column` is the column (an appearance in the column's
  album or configured list). A column *candidate* (a title rule's proposal) does not.
- A story is in the period when its 首发 date (`articles.published_at`, in the configured time
  zone) falls between the two dates, both inclusive. A story without a date is in no period.
- Each story counts once, whatever number of places it appeared in.
- Units are listed in the configured order, every one of them (0 for a silent unit); equal counts
  share a rank (competition ranking: 1, 2, 2, 4).
- A story no unit could be read for is listed apart and counted for no unit.

`load_report` reads the corpus (reads only); `build_report` and the rest are pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pipeline.corpus.corrections import NO_UNIT, no_unit_confirmed
from pipeline.corpus.models import Appearance, Article, Unit

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from sqlalchemy.orm import Session

    from zhuanlan_config import Config

UNATTRIBUTED = "未识别单位"
ORIGINAL, REPOST = "首发", "转载"
SUMMARY_HEADER = ("序号", "单位", "篇数", "排名", "主要负责同志篇数")
DETAIL_HEADER = ("序号", "刊发日期", "单位", "作者", "职务", "标题", "链接", "首发/转载")

# The titles of whoever heads a unit (its 主要负责同志). A deputy (副…) never does.
HEAD_TITLES = frozenset(
    ("书记", "党组书记", "党委书记", "局长", "主任", "主席", "院长", "部长", "检察长", "行长", "校长", "会长")
)


def is_head_position(position: str) -> bool:
    """Whether a position, as stored on a story's author, is a unit's top position (主要负责同志).

    The rule: the position is one of the head titles of `HEAD_TITLES` (书记, 党组书记, 党委书记,
    局长, 主任, 主席, 院长, 部长, 检察长, 行长, 校长, 会长) as a whole, after removing spaces,
    and holds no 副. So 「党组书记」 and 「局长」 are; 「副局长」, 「党组副书记」, 「党组成员」 are not,
    and neither are the heads of a part of the unit — 「机关党委书记」, 「办公室主任」 — nor a
    position named with its organisation (「组织部部长」), which the byline reader keeps apart
    from the unit's name anyway.
    """
    title = "".join(position.split())
    return "副" not in title and title in HEAD_TITLES


@dataclass(frozen=True)
class Author:
    name: str
    positions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportArticle:
    """One column story as the report shows it."""

    guid: str
    title: str
    unit: str | None  # None: unattributed
    authors: tuple[Author, ...]
    published_at: datetime  # 首发, in the configured time zone
    link: str  # the WeChat appearance's URL when there is one, else the first appearance's
    original: bool | None  # the linked appearance is the 首发 (True) or a 转载 (False); None: no appearance
    body_text: str
    no_unit: bool = False  # no unit because the office decided it is nobody's (a correction), not unread

    @property
    def unit_cell(self) -> str:
        """The 单位 cell: the unit, or why there is none (「不属于任何单位」, or 「未识别单位」)."""
        return self.unit or (NO_UNIT if self.no_unit else UNATTRIBUTED)

    @property
    def published(self) -> date:
        return self.published_at.date()

    @property
    def by_head(self) -> bool:
        """Written by the unit's 主要负责同志: an author holds a top position."""
        return any(is_head_position(p) for a in self.authors for p in a.positions)

    @property
    def author_names(self) -> str:
        return "、".join(a.name for a in self.authors if a.name)

    @property
    def position_text(self) -> str:
        """The 职务 cell: the positions of a single author; with several, each author's, named."""
        named = [a for a in self.authors if a.positions]
        if len(self.authors) <= 1:
            return "、".join(named[0].positions) if named else ""
        return "；".join(f"{a.name}：{'、'.join(a.positions)}" for a in named)

    @property
    def byline(self) -> str:
        """Unit and authors with their positions: 「市教育局　陈思远（党组书记、局长）」."""
        people = "、".join(f"{a.name}（{'、'.join(a.positions)}）" if a.positions else a.name for a in self.authors)
        return "　".join(part for part in (self.unit or "", people) if part)

    @property
    def kind(self) -> str:
        return "" if self.original is None else ORIGINAL if self.original else REPOST


@dataclass(frozen=True)
class UnitRow:
    number: int  # 序号: the configured order
    unit: str
    count: int
    rank: int
    head_count: int  # 主要负责同志篇数


@dataclass(frozen=True)
class Report:
    column: str
    date_from: date
    date_to: date
    units: tuple[UnitRow, ...]
    articles: tuple[ReportArticle, ...]  # attributed, by 首发 time
    unattributed: tuple[ReportArticle, ...]  # listed apart, counted for no unit

    @property
    def total(self) -> int:
        return sum(u.count for u in self.units)

    @property
    def head_total(self) -> int:
        return sum(u.head_count for u in self.units)

    @property
    def no_unit_count(self) -> int:
        """Of the unattributed, the stories the office decided belong to no unit."""
        return sum(1 for s in self.unattributed if s.no_unit)

    @property
    def compiled(self) -> tuple[ReportArticle, ...]:
        """The 汇编's articles in order: the attributed ones by date, then the unattributed ones."""
        return self.articles + self.unattributed

    @property
    def period(self) -> str:
        """「2026年10月1日至2026年12月31日」."""
        return f"{_cn_date(self.date_from)}至{_cn_date(self.date_to)}"


def _cn_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def competition_ranks(counts: Sequence[int]) -> list[int]:
    """Rank each count, highest first; equal counts share a rank and the next rank skips (1, 2, 2, 4)."""
    return [1 + sum(1 for other in counts if other > n) for n in counts]


def build_report(
    column: str, date_from: date, date_to: date, unit_names: Sequence[str], stories: Iterable[ReportArticle]
) -> Report:
    """The report from the period's column stories (in any order) and the configured units in order.

    A story of a unit that is no longer configured gets a row after the configured ones, so no
    counted story goes missing from the table.
    """
    ordered = sorted(stories, key=lambda s: s.published_at)  # stable: ties keep the given order
    names = list(dict.fromkeys(unit_names))
    names += list(dict.fromkeys(s.unit for s in ordered if s.unit is not None and s.unit not in names))
    counts = {name: 0 for name in names}
    heads = {name: 0 for name in names}
    for story in ordered:
        if story.unit is not None:
            counts[story.unit] += 1
            heads[story.unit] += story.by_head
    ranks = competition_ranks([counts[n] for n in names])
    return Report(
        column=column,
        date_from=date_from,
        date_to=date_to,
        units=tuple(
            UnitRow(number=i + 1, unit=name, count=counts[name], rank=rank, head_count=heads[name])
            for i, (name, rank) in enumerate(zip(names, ranks, strict=True))
        ),
        articles=tuple(s for s in ordered if s.unit is not None),
        unattributed=tuple(s for s in ordered if s.unit is None),
    )


def detail_rows(report: Report) -> list[tuple[Any, ...]]:
    """The 明细 rows (`DETAIL_HEADER`): the attributed stories, then the unattributed ones
    (单位 「未识别单位」, or 「不属于任何单位」 when the office decided so), numbered on; 刊发日期
    is a `date`."""
    return [
        (n, s.published, s.unit_cell, s.author_names, s.position_text, s.title, s.link, s.kind)
        for n, s in enumerate(report.compiled, start=1)
    ]


# --- reading the corpus ---------------------------------------------------------------------


def period_bounds(date_from: date, date_to: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """00:00 of the first day to 00:00 after the last day, in `tz` (both days included)."""
    if date_to < date_from:
        raise ValueError(f"the period ends ({date_to}) before it starts ({date_from})")
    start = datetime.combine(date_from, time(0), tzinfo=tz)
    return start, datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=tz)


def story_authors(article: Article) -> tuple[Author, ...]:
    people = tuple(
        Author(str(a.get("name") or ""), tuple(str(p) for p in a.get("positions") or ()))
        for a in article.authors or ()
        if isinstance(a, dict)
    )
    if people:
        return people
    if article.author:  # stored before authors were recorded one by one (until `zhuanlan retag`)
        names = article.author.split("、")
        positions = tuple(article.positions or ())
        return tuple(Author(name, positions if i == 0 else ()) for i, name in enumerate(names))
    return ()


def column_post(article: Article) -> Appearance | None:
    """The WeChat appearance (the 首发 one first) when there is one, else the first appearance."""
    wechat = [a for a in article.appearances if a.source is not None and a.source.kind == "wechat_album"]
    if wechat:
        return min(wechat, key=lambda a: (not a.is_original, a.id))
    for appearance in article.appearances:
        if appearance.id == article.first_appearance_id:
            return appearance
    return min(article.appearances, key=lambda a: a.id) if article.appearances else None


def load_report(session: Session, config: Config, column: str, date_from: date, date_to: date) -> Report:
    """The report of `column` for the days `date_from`..`date_to` (inclusive, in the configured zone)."""
    tz = config.tz
    start, end = period_bounds(date_from, date_to, tz)
    names = {u.id: u.name for u in session.scalars(select(Unit))}
    rows = session.scalars(
        select(Article)
        .options(selectinload(Article.appearances).selectinload(Appearance.source))
        .where(Article.column == column, Article.published_at >= start, Article.published_at < end)
        .order_by(Article.published_at, Article.id)
    )
    stories = []
    for article in rows:
        assert article.published_at is not None  # the query's condition
        linked = column_post(article)
        stories.append(
            ReportArticle(
                guid=article.guid,
                title=article.title,
                unit=names.get(article.unit_id) if article.unit_id is not None else None,
                authors=story_authors(article),
                published_at=article.published_at.astimezone(tz),
                link=linked.url if linked is not None else "",
                original=linked.is_original if linked is not None else None,
                body_text=article.body_text or "",
                no_unit=no_unit_confirmed(article.unit_id, article.unit_from),
            )
        )
    return build_report(column, date_from, date_to, [u.name for u in config.units], stories)
