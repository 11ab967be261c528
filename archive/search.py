"""Searching the corpus on SQLite (FTS5) and PostgreSQL (tsvector), with filters.

Owns turning a parsed query plus filters into SQL and the results into hits with snippets and
highlights made in Python over the original text (the index holds only bigrams). User text
reaches the database only as bound parameters and as tokens re-quoted by `archive.search_syntax`.
Must not write anything.

The index and the query are folded alike (`pipeline.corpus.textsplit.fold_for_matching`: full-width
letters, digits and punctuation as ASCII); the stored text is not. Highlights are found in the
folded text and mapped back to the original characters (`fold_with_offsets`), and a LIKE scan
looks for a Latin word or number both as typed and in full-width letters.

SQLite: when FTS5 can express the whole query it is one MATCH ranked by
`bm25(article_fts, 10.0, 1.0)` (title weighs ten times the body). Otherwise (a lone Han
character, which exists in the index only inside bigrams) every term becomes its own
condition: an `id IN (MATCH …)` subquery, or a LIKE scan for lone characters, composed with
AND/OR/NOT in SQL and ranked by the positive terms. PostgreSQL always composes per term
(`title_tsv @@ q OR body_tsv @@ q`, so an AND may be satisfied across title and body, as in
FTS5) and ranks with `ts_rank_cd`, title weighted ten times.

A common term (issue 20): ranking every match of a word found in half a million stories cannot
fit in a page view. When the query is one indexed term, with no filter but the story's state, and
the index's own statistics say it is in more than `exact_limit` (10,000) stories, the page lists
the matching stories newest first instead of best first: the newest stories are walked down the
`published_at` index and each is checked against the index by its id, so the work is the page,
not the matches, and the total is that estimate, shown as 「约 N 条」. The estimate on SQLite comes
from where the (limit + 1)-th match by id lies among the ids (FTS5 reads a term's matches in id
order and stops there), and on PostgreSQL it is the planner's row estimate from the GIN statistics. When the walk finds fewer stories than the page needs (the
estimate was too high: a phrase of common bigrams that are rarely adjacent) the exact path runs.
On PostgreSQL ranking costs more (`ts_rank_cd` reads every match's tsvector: 300 ms for 2,000
matches at 100,000 stories), so the limit there is `PG_RANK_LIMIT` (1,000). Since the planner's
estimate of a rare bigram is low, a term it does not put far above that is read through the GIN
indexes (the stories holding every token of it, up to 5,000: no row's positions read): that many
is the total, and the date walk runs against them as one array. A phrase is then checked on the
walk's few candidates only, in a statement of its own: reading a story's positions costs about
50 µs at a million stories, and the planner, inside one statement, checks it on every candidate.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    TextClause,
    and_,
    any_,
    bindparam,
    cast,
    column,
    false,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session, load_only, selectinload

from archive.search_syntax import (
    And,
    Node,
    Not,
    Query,
    QueryError,
    Term,
    fts5_phrase,
    highlight_pattern,
    parse_query,
    to_fts5,
    tsquery_all,
    tsquery_phrase,
)
from pipeline.corpus.models import Appearance, Article, ArticleTag, Source, Tag, Unit
from pipeline.corpus.textsplit import fold_pieces, fold_with_offsets
from pipeline.tagging.attribution import excerpt_text

if TYPE_CHECKING:
    from sqlalchemy.sql.selectable import Subquery

STATES = ("any", "live", "deleted", "edited")
# How hits are ordered: best match first (newest first among equals, and for an empty query), or
# newest first whatever the match.
SORTS = ("relevance", "date")
ORDERS = (*SORTS, "oldest")  # exports also read like a ledger: oldest first
MAX_PER_PAGE = 100
MAX_PAGE = 10_000
EXACT_COUNT_LIMIT = 10_000  # above this many estimated matches, a lone term lists newest first
PG_RANK_LIMIT = 1_000  # PostgreSQL: ts_rank_cd reads each match's tsvector, so fewer are ranked
_TRUSTED_ESTIMATE = 10  # PostgreSQL: a planner's estimate this many times the limit is not counted
SET_MATCH_LIMIT = 50_000  # a common term in up to this many stories is read from the index as a set
SNIPPET_CHARS = 160
_MIN_DAY, _MAX_DAY = date(1900, 1, 1), date(9998, 12, 31)
# A snippet is one line: whitespace runs become a space, but a full-width space is the author's text.
_SNIPPET_SPACES = re.compile(r"[^\S\u3000]+")


@dataclass(frozen=True)
class Filters:
    """What narrows a search or an export. `unit` is a unit id or a name, short name or alias;
    dates are calendar days in the given time zone, both ends inclusive."""

    unit: str | None = None
    author: str | None = None
    topic: str | None = None
    column: str | None = None
    source_kind: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    state: str = "any"
    hide_deleted: bool = False  # leave out stories deleted at source (the public's view)


@dataclass(frozen=True)
class Snippet:
    """A one-line window of a story's text around the first match, as plain text; `spans` are the
    matches in it, as [start, end) offsets in Unicode code points. The web page shows the same
    window with each span in `<mark>`; `zhuanlan search --format json` prints text and spans."""

    text: str
    spans: tuple[tuple[int, int], ...]

    def html(self) -> Markup:
        out, pos = [], 0
        for start, end in self.spans:
            out.append(html.escape(self.text[pos:start]))
            out.append(f"<mark>{html.escape(self.text[start:end])}</mark>")
            pos = end
        out.append(html.escape(self.text[pos:]))
        return Markup("".join(out))


@dataclass(frozen=True)
class Hit:
    article_id: int
    guid: str
    title: str
    title_html: Markup
    snippet: Snippet
    unit: str | None
    author: str | None
    published_at: datetime | None
    score: float | None
    url: str | None = None  # where the story first appeared (its 首发 appearance)
    unit_from: str | None = None  # where the unit was read; "manual" with no unit: decided to be nobody's

    @property
    def snippet_html(self) -> Markup:
        return self.snippet.html()


@dataclass(frozen=True)
class SearchResult:
    total: int
    hits: list[Hit]
    page: int = 1
    per_page: int = 20
    query: Query = field(default_factory=lambda: Query(text="", root=None))
    estimated: bool = False  # `total` is the index's estimate (a common term, listed newest first)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


# --- filters ------------------------------------------------------------------------------


def _day_start(day: date, tz: tzinfo) -> datetime:
    # Clamped: the first and last representable days overflow once shifted to UTC.
    day = min(max(day, _MIN_DAY), _MAX_DAY)
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def resolve_units(session: Session, value: str) -> list[int]:
    """Unit ids matching an id, a name, a short name or an alias."""
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 9:  # longer would overflow INTEGER
        return [int(value)]
    ids = []
    for unit in session.scalars(select(Unit)):
        if value in (unit.name, unit.short_name) or value in (unit.aliases or []):
            ids.append(unit.id)
    return ids


def filter_conditions(session: Session, filters: Filters, tz: tzinfo) -> list[ColumnElement[bool]]:
    """SQL conditions on `Article` for the filters; raises QueryError for an unknown state."""
    conds: list[ColumnElement[bool]] = []
    if filters.state not in STATES:
        raise QueryError(f"未知的状态 {filters.state!r}，可选：{'、'.join(STATES)} / unknown state")
    if filters.state != "any":
        conds.append(Article.state == filters.state)
    if filters.hide_deleted:
        conds.append(Article.state != "deleted")
    if filters.unit:
        ids = resolve_units(session, filters.unit)
        conds.append(Article.unit_id.in_(ids) if ids else false())
    if filters.author:
        # `author` holds every author's name, 「、」-joined: match any one of them exactly.
        name = filters.author.strip().replace("\\", "").replace("%", "").replace("_", "")
        conds.append(
            or_(
                Article.author == name,
                Article.author.like(f"{name}、%"),
                Article.author.like(f"%、{name}"),
                Article.author.like(f"%、{name}、%"),
            )
        )
    if filters.column:
        conds.append(Article.column == filters.column.strip())
    if filters.topic:
        topic_ids = select(ArticleTag.article_id).join(Tag, Tag.id == ArticleTag.tag_id)
        conds.append(Article.id.in_(topic_ids.where(Tag.kind == "topic", Tag.name == filters.topic.strip())))
    if filters.source_kind:
        kind_ids = select(Appearance.article_id).join(Source, Source.id == Appearance.source_id)
        conds.append(Article.id.in_(kind_ids.where(Source.kind == filters.source_kind.strip())))
    if filters.date_from:
        conds.append(Article.published_at >= _day_start(filters.date_from, tz))
    if filters.date_to:
        conds.append(Article.published_at < _day_start(min(filters.date_to, _MAX_DAY) + timedelta(days=1), tz))
    return conds


# --- query → SQL --------------------------------------------------------------------------


# The PostgreSQL index table (created by the migration, not mapped): conditions and ranks are
# written against one row of it, so a whole query is a single pass with GIN bitmap scans.
_PG_INDEX = table("article_search", column("article_id", Integer), column("title_tsv"), column("body_tsv"))
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")
_NO_SCORE = cast(null(), Float).label("score")


def _pg_holds(tsquery: ColumnElement[Any]) -> ColumnElement[bool]:
    """The search row's title or body matches `tsquery` (each has its GIN index)."""
    return or_(_PG_INDEX.c.title_tsv.bool_op("@@")(tsquery), _PG_INDEX.c.body_tsv.bool_op("@@")(tsquery))


def _pg_every_token(term: Term) -> Select[Any]:
    """The ids of the stories holding every token of `term`, from the GIN indexes alone (for one
    token: the term's matches; for a phrase, at least its matches)."""
    return select(_PG_INDEX.c.article_id).where(_pg_holds(func.to_tsquery(_SIMPLE, tsquery_all(term))))


class _Compiler:
    """Per-term SQL conditions for the general path."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.counter = itertools.count()

    def _fts5_ids(self, term: Term) -> TextClause:
        name = f"m{next(self.counter)}"  # numbered: several MATCH subqueries in one statement
        sql = f"SELECT rowid AS id FROM article_fts WHERE article_fts MATCH :{name}"
        return text(sql).bindparams(**{name: fts5_phrase(term)})

    def condition(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, Term):
            if node.needs_scan:
                # Run texts hold only Han characters, letters and digits: nothing to escape for LIKE.
                patterns = [f"%{like}%" for like in node.like_texts()]
                return or_(*(c.ilike(p) for p in patterns for c in (Article.title, Article.body_text)))
            if self.dialect == "postgresql":
                tsquery = func.to_tsquery(_SIMPLE, tsquery_phrase(node))
                return _pg_holds(tsquery)
            return Article.id.in_(self._fts5_ids(node).columns(id=Integer))
        if isinstance(node, Not):
            return not_(self.condition(node.child))
        parts = [self.condition(child) for child in node.children]
        return and_(*parts) if isinstance(node, And) else or_(*parts)

    def pg_score(self, positives: list[Term]) -> ColumnElement[Any]:
        """ts_rank_cd over the positive indexed terms, the title counting ten times the body."""
        indexed = [t for t in positives if not t.needs_scan]
        if not indexed:
            return _NO_SCORE
        tsquery = func.to_tsquery(_SIMPLE, " | ".join(tsquery_phrase(t) for t in indexed))
        score = func.ts_rank_cd(_PG_INDEX.c.title_tsv, tsquery) * 10 + func.ts_rank_cd(_PG_INDEX.c.body_tsv, tsquery)
        return cast(score, Float).label("score")

    def fts5_rank(self, expr: str) -> Subquery:
        """(rid, score) of the documents an FTS5 expression matches; higher score is better."""
        name = f"m{next(self.counter)}"
        sql = f"SELECT rowid AS rid, -bm25(article_fts, 10.0, 1.0) AS score FROM article_fts WHERE article_fts MATCH :{name}"
        return text(sql).bindparams(**{name: expr}).columns(rid=Integer, score=Float).subquery("rank")


def _statement(session: Session, query: Query, conds: list[ColumnElement[bool]]) -> Select[Any]:
    """SELECT article id, published_at, score over the matching, filtered articles (not yet ordered)."""
    if query.root is None:
        return select(Article.id, Article.published_at, _NO_SCORE).where(*conds)
    compiler = _Compiler(session.get_bind().dialect.name)
    positives = query.terms(positive=True)
    if compiler.dialect == "postgresql":
        stmt = select(Article.id, Article.published_at, compiler.pg_score(positives))
        stmt = stmt.join(_PG_INDEX, _PG_INDEX.c.article_id == Article.id)
        return stmt.where(compiler.condition(query.root), *conds)
    expr = to_fts5(query.root)
    if expr is None:  # a lone Han character, or a NOT FTS5 cannot place: compose per term, rank the positives
        indexed = [t for t in positives if not t.needs_scan]
        condition = compiler.condition(query.root)
        if not indexed:
            return select(Article.id, Article.published_at, _NO_SCORE).where(condition, *conds)
        expr, outer = "(" + " OR ".join(fts5_phrase(t) for t in indexed) + ")", True
    else:
        condition, outer = None, False
    rank = compiler.fts5_rank(expr)
    stmt = select(Article.id, Article.published_at, rank.c.score.label("score"))
    stmt = stmt.outerjoin(rank, rank.c.rid == Article.id) if outer else stmt.join(rank, rank.c.rid == Article.id)
    return stmt.where(*([condition] if condition is not None else []), *conds)


# --- common terms: newest first, estimated total ---------------------------------------------


def _estimate(session: Session, term: Term, limit: int) -> int:
    """How many stories the index thinks hold `term`, without reading all its matches (0: at most
    `limit` on SQLite, where the count is then exact on the ranked path)."""
    if session.get_bind().dialect.name == "postgresql":
        tsquery = func.to_tsquery(_SIMPLE, tsquery_phrase(term))
        probe: Select[Any] = select(literal_column("1")).select_from(_PG_INDEX)
        probe = probe.where(_pg_holds(tsquery))
        compiled = probe.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = session.execute(text(f"EXPLAIN (FORMAT JSON) {compiled}")).scalar_one()
        return int(plan[0]["Plan"]["Plan Rows"])
    # FTS5 reads a term's matches in id order and stops early: where the (limit + 1)-th newest
    # match lies says what share of the ids hold the term.
    nth = session.scalar(
        text("SELECT rowid FROM article_fts WHERE article_fts MATCH :q ORDER BY rowid DESC LIMIT 1 OFFSET :k"),
        {"q": fts5_phrase(term), "k": limit},
    )
    if nth is None:
        return 0
    top = int(session.scalar(select(func.max(Article.id))) or 0)
    return (limit + 1) * top // max(1, top - int(nth) + 1)


def _pg_holders(session: Session, term: Term, cap: int) -> list[int]:
    """`_pg_every_token`, at most `cap` ids, read without any row's positions (a phrase's own
    matches would need every candidate's: 50 µs each at a million stories). As one array value:
    4,000 ids cost 6 ms as rows and 4 ms as an array, before SQLAlchemy makes a row of each."""
    ids = _pg_every_token(term).limit(cap).subquery()
    return list(session.scalar(select(func.array_agg(ids.c.article_id))) or [])


def _match_by_id(session: Session, term: Term, article_id: Any) -> ColumnElement[bool]:
    """Whether the story `article_id` holds `term`, looked up in the index by id."""
    if session.get_bind().dialect.name == "postgresql":
        tsquery = func.to_tsquery(_SIMPLE, tsquery_phrase(term))
        probe = select(_PG_INDEX.c.article_id).where(
            _PG_INDEX.c.article_id == article_id,
            _pg_holds(tsquery),
        )
        return probe.exists()
    fts = table("article_fts", column("rowid", Integer))
    match = literal_column("article_fts").op("MATCH")(bindparam("common_term", fts5_phrase(term)))
    return select(fts.c.rowid).where(match, fts.c.rowid == article_id).exists()


def _in_matches(session: Session, term: Term) -> ColumnElement[bool]:
    """Whether a story is among the term's matches, read from the index once as a set: on
    PostgreSQL the stories holding every token of the term (GIN alone, no row read; a phrase is
    checked afterwards, on the page's candidates only), on SQLite FTS5's own matches."""
    if session.get_bind().dialect.name == "postgresql":
        return Article.id.in_(_pg_every_token(term))
    matches = text("SELECT rowid FROM article_fts WHERE article_fts MATCH :common_term")
    # `id + 0`, not `id`: SQLite would otherwise look every match up by its id and sort them all
    # (60 ms for 20,000 matches at a million stories) instead of walking the date index against
    # the set (5 ms).
    return (Article.id + 0).in_(matches.bindparams(common_term=fts5_phrase(term)).columns(rowid=Integer))


def _int_array(ids: list[int]) -> ColumnElement[Any]:
    """`ids` as a PostgreSQL integer array literal (ids are ints: nothing to escape)."""
    return literal_column("ARRAY[" + ",".join(str(int(i)) for i in ids) + "]::integer[]")


def _common_term_page(
    session: Session,
    parsed: Query,
    filters: Filters,
    conds: list[ColumnElement[bool]],
    page: int,
    per_page: int,
    limit: int,
) -> tuple[int, list[int]] | None:
    """(estimated total, ids newest first) for a lone indexed term in more than `limit` stories;
    None when the exact, ranked path must answer (see the module's docstring)."""
    term = parsed.root
    narrowed = Filters(state=filters.state, hide_deleted=filters.hide_deleted) != filters
    if not isinstance(term, Term) or term.needs_scan or narrowed:
        return None
    estimate = _estimate(session, term, limit)
    postgresql = session.get_bind().dialect.name == "postgresql"
    holders: list[int] | None = None  # PostgreSQL: every story holding the term's tokens, when read
    if postgresql:
        # Ranking reads every match's tsvector (about 0.15 ms each): above PG_RANK_LIMIT matches
        # the page lists newest first. The planner's estimate of a rare bigram is low, so unless
        # it is far above the limit the stories are read through the index (up to a cap).
        limit = min(limit, PG_RANK_LIMIT)
        if estimate <= _TRUSTED_ESTIMATE * limit:
            cap = _TRUSTED_ESTIMATE * limit // 2
            holders = _pg_holders(session, term, cap)
            if len(holders) <= limit:
                return None  # ranked; a phrase's exact matches are counted there
            estimate = max(estimate, len(holders))
            if len(holders) == cap:
                holders = None  # not all of them
    if estimate <= limit:
        return None
    need = page * per_page
    if holders is not None:
        return _holders_page(session, term, holders, conds, page, per_page, estimate)
    stories = int(session.scalar(select(func.max(Article.id))) or 0)
    window = need * stories // estimate * 4 + 200  # four times the rows the estimate says hold `need`
    if window >= stories:
        return None
    dated = [Article.published_at.is_not(None), *conds]
    newest_first = (Article.published_at.desc(), Article.id.desc())
    # The walk stops at the page's last hit; the date of the `window`-th newest story bounds it.
    cutoff = session.scalar(select(Article.published_at).where(*dated).order_by(*newest_first).offset(window).limit(1))
    if cutoff is None:
        return None
    # A term in few enough stories is read from the index once, as a set, and the window walked
    # against it; in more, each story of the window is looked up in the index by its id.
    as_set = estimate <= SET_MATCH_LIMIT
    match = _in_matches(session, term) if as_set else _match_by_id(session, term, Article.id)
    walk = select(Article.id).where(*dated, Article.published_at >= cutoff, match).order_by(*newest_first).limit(need)
    if postgresql and as_set and len(term.tokens) > 1:
        # The set holds the stories with every token; the phrase is checked on the window's
        # candidates alone, in a statement of its own (inside one the planner checks it first,
        # on every candidate of the whole set), and the page taken from what holds it.
        candidates = list(session.scalars(walk.limit(None)).all())
        found = _pg_phrase_holders(session, term, candidates)[:need]
    else:
        found = list(session.scalars(walk).all())
    ids = found[(page - 1) * per_page : need]
    if len(ids) < per_page:
        return None
    return estimate, ids


def _pg_phrase_holders(session: Session, term: Term, candidates: list[int]) -> list[int]:
    """Those of `candidates` (stories holding every token of `term`) that hold the phrase, in order."""
    if not candidates:
        return []
    phrase = func.to_tsquery(_SIMPLE, tsquery_phrase(term))
    # Through coalesce(), which no index holds: each candidate is looked up by id and its
    # positions read, instead of the GIN indexes rechecking every candidate of the phrase.
    title, body = (
        func.coalesce(c, literal_column("''::tsvector")) for c in (_PG_INDEX.c.title_tsv, _PG_INDEX.c.body_tsv)
    )
    held = set(
        session.scalars(
            select(_PG_INDEX.c.article_id).where(
                _PG_INDEX.c.article_id == any_(_int_array(candidates)),
                or_(title.bool_op("@@")(phrase), body.bool_op("@@")(phrase)),
            )
        ).all()
    )
    return [i for i in candidates if i in held]


def _holders_page(
    session: Session,
    term: Term,
    holders: list[int],
    conds: list[ColumnElement[bool]],
    page: int,
    per_page: int,
    estimate: int,
) -> tuple[int, list[int]] | None:
    """`_common_term_page` for a term whose stories (every token's holders, all of them) were read:
    the date index is walked newest first against them until the page is full.

    The holders go into the statement as one array literal, not bound: a prepared statement's
    generic plan cannot see its size. The planner then knows how many stories it holds and walks
    the date index (left to a subquery it estimates a rare term at one story, and looks 4,000
    stories up by id: 30 ms at a million stories, against 2 ms for the walk). No cutoff date is
    needed to bound the walk: with the count exact, its end is where the estimate says. For a
    phrase the walk takes a few more candidates than the page needs, and more when too few hold
    the phrase itself."""
    need = page * per_page
    match = Article.id == any_(_int_array(holders))
    walk = (
        select(Article.id)
        .where(Article.published_at.is_not(None), *conds, match)
        .order_by(Article.published_at.desc(), Article.id.desc())
    )
    phrase = len(term.tokens) > 1
    take = need + per_page if phrase else need
    while True:
        candidates = list(session.scalars(walk.limit(take)).all())
        found = _pg_phrase_holders(session, term, candidates) if phrase else candidates
        if len(found) >= need or len(candidates) < take:
            break
        take *= 4  # few of the candidates hold the phrase: a wider walk
    ids = found[(page - 1) * per_page : need]
    if len(ids) < per_page:
        return None
    return estimate, ids


# --- highlighting ---------------------------------------------------------------------------


def _spans(value: str, patterns: list[re.Pattern[str]]) -> list[tuple[int, int]]:
    """Where the patterns match `value`, merged: found in the folded text (as the index saw it) and
    mapped back to the characters of `value` they were folded from."""
    folded, starts, ends = fold_with_offsets(value)
    found = sorted(
        (starts[m.start()], ends[m.end() - 1]) for p in patterns for m in p.finditer(folded) if m.end() > m.start()
    )
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _first_match(value: str, patterns: list[re.Pattern[str]]) -> int | None:
    """Where the first match in `value` starts (as `_spans` would say), without mapping every
    character: when each piece that folds keeps its length (the usual page: a full-width mark
    folds to one character), the folded text lines up with `value`. A search page makes twenty
    snippets of bodies of thousands of characters; only the window is mapped (`_spans`)."""
    pieces = fold_pieces(value)
    if any(len(folded) != end - start for start, end, folded in pieces):
        spans = _spans(value, patterns)
        return spans[0][0] if spans else None
    parts, pos = [], 0
    for start, end, folded in pieces:
        parts += [value[pos:start], folded]
        pos = end
    parts.append(value[pos:])
    text = "".join(parts)
    found = [m.start() for p in patterns for m in [p.search(text)] if m is not None and m.end() > m.start()]
    return min(found) if found else None


def highlight_html(value: str, patterns: list[re.Pattern[str]]) -> Markup:
    """`value` HTML-escaped, with `<mark>` around every match of any pattern."""
    return Snippet(value, tuple(_spans(value, patterns))).html()


def snippet(
    value: str,
    patterns: list[re.Pattern[str]],
    width: int = SNIPPET_CHARS,
    *,
    lead: Callable[[str], str] | None = None,
) -> Snippet:
    """A window of the text around the first match, with the matches in it; with no match, its
    start (of `lead(value)` when given: the text without the lines above its first paragraph). An
    ellipsis (…) marks text cut off before or after the window."""
    raw, value = value, _SNIPPET_SPACES.sub(" ", value).strip()
    first = _first_match(value, patterns)
    if first is None and lead is not None:
        value = _SNIPPET_SPACES.sub(" ", lead(raw)).strip()
    start = max(0, first - width // 4) if first is not None else 0
    end = min(len(value), start + width)
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(value) else ""
    # Matched again in the window: a match cut by the window's edge is marked as far as it shows.
    inner = _spans(value[start:end], patterns)
    shift = len(prefix)
    return Snippet(prefix + value[start:end] + suffix, tuple((a + shift, b + shift) for a, b in inner))


def snippet_html(value: str, patterns: list[re.Pattern[str]], width: int = SNIPPET_CHARS) -> Markup:
    """`snippet` as HTML, escaped and highlighted."""
    return snippet(value, patterns, width).html()


def patterns_for(query: Query) -> list[re.Pattern[str]]:
    return [highlight_pattern(term) for term in query.terms(positive=True)]


# --- the entry point ------------------------------------------------------------------------


def _order(sub: Subquery, sort: str) -> list[ColumnElement[Any]]:
    if sort not in ORDERS:
        raise QueryError(f"未知的排序 {sort!r}，可选：{'、'.join(SORTS)} / unknown sort order")
    if sort == "oldest":
        return [sub.c.published_at.asc().nulls_last(), sub.c.id.asc()]
    newest: list[ColumnElement[Any]] = [sub.c.published_at.desc().nulls_last(), sub.c.id.desc()]
    return newest if sort == "date" else [sub.c.score.desc().nulls_last(), *newest]


# What a hit shows: not the stored HTML (twice the text's size), nor the other columns.
_HIT_COLUMNS = (
    load_only(
        Article.id, Article.guid, Article.title, Article.author, Article.unit_id, Article.unit_from,
        Article.published_at, Article.body_text, Article.first_appearance_id,
    ),
    selectinload(Article.unit),
)  # fmt: skip


@dataclass(frozen=True)
class _Row:
    id: int
    score: float | None


def ranked_ids(session: Session, query: str, filters: Filters, *, sort: str = "relevance", tz: tzinfo) -> Select[Any]:
    """SELECT id of every matching article, in the order `search` pages through them.

    Raises `QueryError` as `search` does.
    """
    sub = _statement(session, parse_query(query), filter_conditions(session, filters, tz)).subquery()
    return select(sub.c.id).order_by(*_order(sub, sort))


def first_urls(session: Session, articles: list[Article]) -> dict[int, str]:
    """Article id → the URL of its first (首发) appearance, or of its oldest one if none is marked."""
    wanted = {a.id: a.first_appearance_id for a in articles}
    found: dict[int, str] = {}
    if wanted:
        rows = session.execute(
            select(Appearance.article_id, Appearance.id, Appearance.url)
            .where(Appearance.article_id.in_(wanted))
            .order_by(Appearance.id)
        )
        for article_id, appearance_id, url in rows:
            if article_id not in found or appearance_id == wanted[article_id]:
                found[article_id] = url
    return found


def search(
    session: Session,
    query: str,
    filters: Filters,
    *,
    page: int = 1,
    per_page: int = 20,
    sort: str = "relevance",
    tz: tzinfo,
    exact_limit: int = EXACT_COUNT_LIMIT,
) -> SearchResult:
    """One page of matching articles, best first (newest first for an empty query, or with
    `sort="date"`, and for a lone term the index estimates in more than `exact_limit` stories,
    whose total is then estimated).

    Raises `QueryError` with a message for the user when the query, a filter or the sort is unusable.
    """
    parsed = parse_query(query)
    page = min(max(1, page), MAX_PAGE)
    per_page = min(max(1, per_page), MAX_PER_PAGE)
    conds = filter_conditions(session, filters, tz)
    # A lone common term is listed newest first from the date index (its total estimated): that is
    # the date order, and what relevance falls back to when every story matches about equally.
    common = (
        _common_term_page(session, parsed, filters, conds, page, per_page, exact_limit) if sort != "oldest" else None
    )
    fast = None if common is not None else _fts5_page(session, parsed, filters, page, per_page, sort)
    if common is not None:
        total, rows = common[0], [_Row(i, None) for i in common[1]]
    elif fast is not None:
        total, rows = fast
    else:
        total, rows = _ranked_page(session, parsed, conds, page, per_page, sort)
    ids = [row.id for row in rows]
    articles = {a.id: a for a in session.scalars(select(Article).options(*_HIT_COLUMNS).where(Article.id.in_(ids)))}
    patterns = patterns_for(parsed)
    urls = first_urls(session, list(articles.values()))
    hits = []
    for row in rows:
        article = articles[row.id]
        hits.append(
            Hit(
                article_id=article.id,
                guid=article.guid,
                title=article.title,
                title_html=highlight_html(article.title, patterns),
                snippet=snippet(article.body_text, patterns, lead=partial(excerpt_text, title=article.title)),
                url=urls.get(article.id),
                unit=article.unit.name if article.unit else None,
                unit_from=article.unit_from,
                author=article.author,
                published_at=article.published_at.astimezone(tz) if article.published_at else None,
                score=float(row.score) if row.score is not None else None,
            )
        )
    return SearchResult(
        total=total, hits=hits, page=page, per_page=per_page, query=parsed, estimated=common is not None
    )


_FTS5_MARGIN = 20  # rows fetched past the page, to see that no tie crosses its end


def _fts5_page(
    session: Session, parsed: Query, filters: Filters, page: int, per_page: int, sort: str
) -> tuple[int, list[_Row]] | None:
    """SQLite, a query FTS5 expresses whole and no filter but hiding deleted stories: (exact total,
    the page's rows best first) from the FTS5 table alone; None when the general path must answer.

    The general path joins every match to its article (for the filters and the date that breaks
    ties) and counts them in a window: about 20 µs a match, 0.1 s for 5,000 matches. Here the
    total is FTS5's own count (no positions read) less the deleted matches (few: a partial index),
    and the page is the best `page * per_page + margin` rows by bm25 alone; only those are joined,
    to drop deleted ones and to order ties by date. The page is exact when the score of its last
    row is above the lowest score fetched: every row not fetched ranks below it."""
    if session.get_bind().dialect.name != "sqlite" or sort != "relevance" or parsed.root is None:
        return None
    if filters not in (Filters(), Filters(hide_deleted=True)):
        return None
    expr = to_fts5(parsed.root)
    if expr is None:
        return None
    match = {"q": expr}
    total = int(session.scalar(text("SELECT count(*) FROM article_fts WHERE article_fts MATCH :q"), match) or 0)
    if filters.hide_deleted:
        total -= int(
            session.scalar(
                text(
                    "SELECT count(*) FROM articles WHERE state = 'deleted' AND id IN "
                    "(SELECT rowid FROM article_fts WHERE article_fts MATCH :q)"
                ),
                match,
            )
            or 0
        )
    need = page * per_page
    fetch = need + _FTS5_MARGIN
    ranked = session.execute(
        text(
            "SELECT rowid, -bm25(article_fts, 10.0, 1.0) AS score FROM article_fts "
            "WHERE article_fts MATCH :q ORDER BY score DESC LIMIT :n"
        ),
        {**match, "n": fetch},
    ).all()
    if not ranked:
        return total, []
    known = {
        row.id: row
        for row in session.execute(
            select(Article.id, Article.published_at, Article.state).where(Article.id.in_([r[0] for r in ranked]))
        )
    }
    kept = [
        (float(score), known[rid].published_at, int(rid))
        for rid, score in ranked
        if rid in known and not (filters.hide_deleted and known[rid].state == "deleted")
    ]
    kept.sort(key=lambda r: (-r[0], r[1] is None, -(r[1].timestamp() if r[1] is not None else 0.0), -r[2]))
    complete = len(ranked) < fetch  # every match was fetched
    if not complete and (len(kept) < need or kept[need - 1][0] <= float(ranked[-1][1])):
        return None  # a tie, or deleted stories, reach past what was fetched
    start = (page - 1) * per_page
    return total, [_Row(rid, score) for score, _, rid in kept[start : start + per_page]]


def _ranked_page(
    session: Session, parsed: Query, conds: list[ColumnElement[bool]], page: int, per_page: int, sort: str
) -> tuple[int, list[_Row]]:
    """(exact total, the page's rows in `sort` order): every match is ranked."""
    sub = _statement(session, parsed, conds).subquery()
    # The total rides along as a window count: the match is evaluated once, not once more for counting.
    rows = session.execute(
        select(sub.c.id, sub.c.score, func.count().over().label("total"))
        .order_by(*_order(sub, sort))
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    # Past the last page (or nothing found) there is no row to carry the total: count separately.
    total = int(rows[0].total) if rows else int(session.scalar(select(func.count()).select_from(sub)) or 0)
    return total, [_Row(row.id, row.score) for row in rows]
