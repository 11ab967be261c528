"""Read queries over `pipeline.corpus.models` that select the stories of each feed and of the digest.

Owns which stories a feed or a digest shows and turns rows into the plain data that
`feeds.build` and `feeds.digest` render. Reads only; never writes rows.

"A story's date" is its published_at, or the time we first stored it when the source gave
no date, so an undated story is still shown rather than lost.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import selectinload

from feeds.build import FeedItem, FeedSpec, entry_updated, feed_key, make_summary
from feeds.digest import DigestArticle, DigestData, FailedSource, UnitSummary, iso_week_bounds, issue_number
from feeds.report import column_post, competition_ranks, story_authors
from feeds.slugs import assign_slugs
from pipeline.corpus.corrections import confirmed_no_unit, no_unit_confirmed
from pipeline.corpus.models import Appearance, Article, ArticleTag, Source, SourceRun, Tag, Unit, UTCDateTime
from pipeline.tagging.attribution import excerpt_text

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zhuanlan_config import Config

DIGEST_EXCERPT_CHARS = 80


def _story_date() -> ColumnElement[datetime]:
    return func.coalesce(Article.published_at, Article.created_at, type_=UTCDateTime)


def _tagged(kind: str, name: str | None = None) -> ColumnElement[bool]:
    """The story has a tag of `kind` (named `name`). Asked per story (EXISTS on the tag's primary
    key), so that a feed walks its newest stories down the story-date index and stops at its
    limit, instead of first collecting every story of a tag held by a third of the corpus.

    The OFFSET 0 keeps it per story on PostgreSQL: an EXISTS under an OR (the column feed's
    "column = … OR tagged") was otherwise planned as a hash of every story with the tag, built
    before the first row (210 ms at a million stories, against 1 ms)."""
    conds = [ArticleTag.article_id == Article.id, Tag.kind == kind]
    if name is not None:
        conds.append(Tag.name == name)
    return select(ArticleTag.tag_id).join(Tag).where(*conds).offset(0).exists()


def _in_column(name: str | None = None) -> ColumnElement[bool]:
    """Column membership: the story's column, or a column tag (the tagger may set either)."""
    if name is None:
        return or_(Article.column.is_not(None), _tagged("column"))
    return or_(Article.column == name, _tagged("column", name))


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for n in names:
        if n and n not in seen:
            seen[n] = None
    return list(seen)


def plan_feeds(session: Session, config: Config) -> list[FeedSpec]:
    """Every feed to publish: all, each column, each unit, each topic (configured or seen),
    each with its URL slug (`feeds.slugs`: configured, else pinyin; unique per kind)."""
    prefix = config.feeds.title_prefix
    specs = [FeedSpec(feed_key("all"), f"{prefix}·全部文章", "all", None)]
    stored_columns = session.scalars(select(Article.column).where(Article.column.is_not(None)).distinct()).all()
    column_tags = session.scalars(select(Tag.name).where(Tag.kind == "column")).all()
    columns = _unique([c.name for c in config.columns] + sorted({c for c in stored_columns if c} | set(column_tags)))
    configured = {c.name: c.slug for c in config.columns}
    slugs = assign_slugs((c, configured.get(c)) for c in columns)
    specs += [FeedSpec(feed_key("column", c), f"{prefix}·{c}", "column", c, slugs[c], c) for c in columns]
    units = session.scalars(select(Unit).order_by(Unit.sort_order, Unit.id)).all()
    configured = {u.name: u.slug for u in config.units}
    slugs = assign_slugs((u.name, configured.get(u.name)) for u in units)
    for unit in units:
        specs.append(
            FeedSpec(feed_key("unit", unit.id), f"{prefix}·{unit.name}", "unit", unit.id, slugs[unit.name], unit.name)
        )
    topic_tags = session.scalars(select(Tag.name).where(Tag.kind == "topic")).all()
    topics = _unique([t.name for t in config.topics] + sorted(topic_tags))
    configured = {t.name: t.slug for t in config.topics}
    slugs = assign_slugs((t, configured.get(t)) for t in topics)
    specs += [FeedSpec(feed_key("topic", t), f"{prefix}·主题：{t}", "topic", t, slugs[t], t) for t in topics]
    return specs


def _link(article: Article, base_url: str) -> str:
    """The first-published appearance's URL; the earliest appearance if that is unset."""
    for app in article.appearances:
        if app.id == article.first_appearance_id:
            return app.url
    if article.appearances:
        epoch = datetime.min.replace(tzinfo=article.created_at.tzinfo)
        first = min(article.appearances, key=lambda a: (not a.is_original, a.published_at or epoch, a.id))
        return first.url
    # No appearance at all should not happen; the archive's own page is the only honest link.
    return f"{base_url}/story/{article.guid}"


def _categories(article: Article) -> tuple[tuple[str, str], ...]:
    cats: list[tuple[str, str]] = []
    if article.unit is not None:
        cats.append(("unit", article.unit.name))
    if article.column:
        cats.append(("column", article.column))
    for at in sorted(article.tags, key=lambda t: (t.tag.kind, t.tag.name)):
        if at.tag.kind in ("column", "topic"):
            cats.append((at.tag.kind, at.tag.name))
    return tuple(_unique_pairs(cats))


def _unique_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(pairs))


def _spec_filter(spec: FeedSpec) -> ColumnElement[bool] | None:
    if spec.kind == "all":
        return None
    if spec.kind == "unit":
        return Article.unit_id == int(spec.filter or 0)
    if spec.kind == "column":
        return _in_column(str(spec.filter))
    if spec.kind == "topic":
        return _tagged("topic", str(spec.filter))
    raise ValueError(f"unknown feed kind {spec.kind!r}")


def load_feed_items(session: Session, spec: FeedSpec, config: Config) -> list[FeedItem]:
    """The newest `feeds.items_per_feed` stories of a feed, newest first; stories deleted at
    source only when `feeds.show_deleted`."""
    stmt = (
        select(Article)
        .options(
            selectinload(Article.unit),
            selectinload(Article.appearances),
            selectinload(Article.tags).selectinload(ArticleTag.tag),
        )
        .order_by(_story_date().desc(), Article.id.desc())
        .limit(config.feeds.items_per_feed)
    )
    where = _spec_filter(spec)
    if where is not None:
        stmt = stmt.where(where)
    if not config.feeds.show_deleted:
        stmt = stmt.where(Article.state != "deleted")
    items = []
    for a in session.scalars(stmt):
        items.append(
            FeedItem(
                guid=a.guid,
                title=a.title,
                link=_link(a, config.web.base_url),
                published=a.published_at or a.created_at,
                updated=entry_updated(a.published_at or a.created_at, a.created_at, a.updated_at),
                author=a.author,
                unit=a.unit.name if a.unit is not None else None,
                categories=_categories(a),
                text=_excerpt_source(a),
                body_html=a.body_html or "",
                content_hash=a.content_hash,
            )
        )
    return items


# --- digest ----------------------------------------------------------------------------


def digest_columns(session: Session, config: Config) -> list[str]:
    """The columns that get a digest: the configured ones in order, else every column stored."""
    if config.columns:
        return [c.name for c in config.columns]
    stored = session.scalars(select(Article.column).where(Article.column.is_not(None)).distinct()).all()
    return sorted(c for c in stored if c)


def _column_start(session: Session, config: Config, column: str) -> date | None:
    """The configured start, else the 首发 day of the column's first story (stable once stored)."""
    start = config.column_start(column)
    if start is not None:
        return start
    first = session.scalar(
        select(func.min(Article.published_at)).where(Article.column == column, Article.state != "deleted")
    )
    return first.astimezone(config.tz).date() if first is not None else None


def column_started(session: Session, config: Config, column: str, week: str) -> bool:
    """Whether `week` ends after the column's start (a column that has not started has no digest)."""
    start = _column_start(session, config, column)
    return start is None or iso_week_bounds(week, config.tz)[1].date() > start


def _failed_sources(
    session: Session, start: datetime, end: datetime, config: Config
) -> tuple[tuple[FailedSource, ...], dict[int, Source]]:
    """Sources with failed runs in the period, and those whose last run in it failed (by id)."""
    runs = session.execute(
        select(SourceRun, Source)
        .join(Source, SourceRun.source_id == Source.id)
        .options(selectinload(Source.unit))
        .where(SourceRun.started_at >= start, SourceRun.started_at < end)
        .order_by(SourceRun.started_at, SourceRun.id)
    ).all()
    by_source: dict[int, list[tuple[SourceRun, Source]]] = defaultdict(list)
    for run, source in runs:
        by_source[source.id].append((run, source))
    out = []
    still_failing: dict[int, Source] = {}
    for rows in by_source.values():
        failed = [(run, source) for run, source in rows if run.status != "ok"]
        if rows[-1][0].status != "ok":
            still_failing[rows[-1][1].id] = rows[-1][1]
        if not failed:
            continue
        last, source = failed[-1]
        out.append(
            FailedSource(
                key=source.key,
                unit=source.unit.name if source.unit is not None else None,
                failures=len(failed),
                last_status=last.status,
                last_error=last.error_summary or source.last_error,
                last_at=last.started_at.astimezone(config.tz),
            )
        )
    return tuple(sorted(out, key=lambda f: f.key)), still_failing


def _excerpt_source(article: Article) -> str:
    """What a feed summary or a digest excerpt is cut from: the text from its first paragraph on,
    else the page's own summary."""
    return excerpt_text(article.body_text, article.title) if article.body_text else (article.summary or "")


def _digest_article(article: Article, config: Config) -> DigestArticle:
    assert article.published_at is not None  # every digest query asks for a 首发 date
    linked = column_post(article)
    base_url = config.web.base_url
    return DigestArticle(
        title=article.title,
        unit=article.unit.name if article.unit is not None else None,
        authors=story_authors(article),
        published=article.published_at.astimezone(config.tz),
        excerpt=make_summary(_excerpt_source(article), DIGEST_EXCERPT_CHARS),
        link=linked.url if linked is not None else f"{base_url}/story/{article.guid}",
        archive_link=f"{base_url}/story/{article.guid}",
        guid=article.guid,
        no_unit=no_unit_confirmed(article.unit_id, article.unit_from),
    )


def _site_only(column: str) -> ColumnElement[bool]:
    """Not in the column, but proposed for it or found on a unit site configured for it."""
    on_site = Article.id.in_(
        select(Appearance.article_id)
        .join(Source, Appearance.source_id == Source.id)
        .where(Source.kind == "site_column", Source.column == column)
    )
    return and_(
        or_(Article.column.is_(None), Article.column != column),
        or_(Article.column_candidate == column, on_site),
    )


def load_digest_data(
    session: Session, week: str, config: Config, now: datetime, column: str | None = None
) -> DigestData:
    """One column's digest for an ISO week (default: the first digest column), counted as the
    reports count (`feeds.report`): only column members, each story once by its 首发 date,
    stories deleted at source left out, unattributed ones apart; plus each unit's site-only
    stories (not counted) and the sources that failed."""
    tz = config.tz
    start, end = iso_week_bounds(week, tz)
    if column is None:
        columns = digest_columns(session, config)
        column = columns[0] if columns else ""
    column_start = _column_start(session, config, column)
    counted = (Article.state != "deleted", Article.published_at.is_not(None))
    in_week = (Article.published_at >= start, Article.published_at < end)
    loads = (
        selectinload(Article.unit),
        selectinload(Article.appearances).selectinload(Appearance.source),
    )
    order = (Article.published_at, Article.id)

    week_articles = session.scalars(
        select(Article).options(*loads).where(Article.column == column, *counted, *in_week).order_by(*order)
    ).all()
    site_articles = session.scalars(
        select(Article)
        .options(*loads)
        .where(_site_only(column), Article.unit_id.is_not(None), *counted, *in_week)
        .order_by(*order)
    ).all()

    so_far = [Article.column == column, *counted, Article.published_at < end]
    if column_start is not None:
        so_far.append(Article.published_at >= datetime.combine(column_start, time(0), tzinfo=tz))
    totals_stmt = select(Article.unit_id, func.count()).where(*so_far).group_by(Article.unit_id)
    totals: dict[int | None, int] = {unit_id: n for unit_id, n in session.execute(totals_stmt).all()}
    no_unit_total = int(session.scalar(select(func.count()).where(*so_far, confirmed_no_unit())) or 0)

    by_unit: dict[int | None, list[DigestArticle]] = defaultdict(list)
    for a in week_articles:
        by_unit[a.unit_id].append(_digest_article(a, config))
    site_by_unit: dict[int | None, list[DigestArticle]] = defaultdict(list)
    for a in site_articles:
        site_by_unit[a.unit_id].append(_digest_article(a, config))

    failed, still_failing = _failed_sources(session, start, end, config)
    concerned = [s for s in still_failing.values() if s.column in (None, column)]
    failing_units = {s.unit_id for s in concerned if s.unit_id is not None}

    units = list(session.scalars(select(Unit).order_by(Unit.sort_order, Unit.id)))
    ranks = competition_ranks([totals.get(u.id, 0) for u in units])
    summaries = tuple(
        UnitSummary(
            unit_id=u.id,
            name=u.name,
            week_count=len(by_unit.get(u.id, [])),
            total_count=totals.get(u.id, 0),
            articles=tuple(by_unit.get(u.id, [])),
            rank=rank,
            site_articles=tuple(site_by_unit.get(u.id, [])),
            source_failed=u.id in failing_units,
        )
        for u, rank in zip(units, ranks, strict=True)
    )
    return DigestData(
        week=week,
        period_start=start,
        period_end=end,
        units=summaries,
        failed_sources=failed,
        total_week=sum(s.week_count for s in summaries),
        total_so_far=sum(s.total_count for s in summaries),
        generated_at=now,
        column_start=column_start,
        column=column,
        issue=issue_number(start, column_start),
        unattributed=tuple(by_unit.get(None, [])),
        unattributed_total=totals.get(None, 0),
        no_unit_total=no_unit_total,
        column_source_failed=any(s.unit_id is None for s in concerned),
    )
