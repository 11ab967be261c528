"""Writing `Tags` into the corpus: the one place tags become rows.

Owns `apply_tags`: the article's unit (with `unit_from`), authors, positions, column (and column
candidate) and its `ArticleTag` rows of origin "rule" (topics, column, positions) and "keyword"
(jieba keywords), with the operator's corrections (`pipeline.corpus.corrections.overlay`) put over the
rules. Manual tags (origin "manual") are never removed or overwritten. The store stage and the retag command both call
it, so a story tagged at crawl time and one retagged later get exactly the same rows; a story
the store has just inserted takes the short way (`article_fields` + `insert_new_article_tags`:
no read of its rows, one executemany) to the same rows.

With the ingest's `Batch` (`pipeline.corpus.batch`), tag and unit ids met before are not asked
for again (the tables only ever grow), so a crawl asks the database only for names it has not seen.

Runs inside the caller's transaction; never commits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, Table, bindparam, insert, select

from pipeline.corpus.batch import Ids
from pipeline.corpus.corrections import authors_to_json, overlay
from pipeline.corpus.db import insert_or_ignore, shared_rows_engine
from pipeline.corpus.models import Article, ArticleTag, Tag, Unit

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from sqlalchemy.orm import Session

    from pipeline.corpus.batch import Batch
    from pipeline.record import Tags

ORIGIN_RULE = "rule"
ORIGIN_KEYWORD = "keyword"
ORIGIN_MANUAL = "manual"
MACHINE_ORIGINS = frozenset({ORIGIN_RULE, ORIGIN_KEYWORD})

KIND_TOPIC = "topic"
KIND_KEYWORD = "keyword"
KIND_COLUMN = "column"
KIND_POSITION = "position"

TAGS = cast(Table, Tag.__table__)
UNITS = cast(Table, Unit.__table__)
ARTICLE_TAGS = cast(Table, ArticleTag.__table__)

_NAME_MAX = 200  # tags.name is String(200)
_WEIGHT_EPSILON = 1e-9


@dataclass(frozen=True)
class _Wanted:
    kind: str
    name: str
    origin: str
    weight: float


def wanted_tags(tags: Tags) -> dict[tuple[str, str], _Wanted]:
    """(kind, name) → the ArticleTag row `tags` asks for. Keywords weigh by rank (first = 1.0)."""
    wanted: dict[tuple[str, str], _Wanted] = {}

    def add(kind: str, name: str, origin: str, weight: float) -> None:
        name = name.strip()[:_NAME_MAX]
        if name and (kind, name) not in wanted:
            wanted[(kind, name)] = _Wanted(kind, name, origin, round(float(weight), 6))

    for topic, score in tags.topics.items():
        add(KIND_TOPIC, topic, ORIGIN_RULE, score)
    if tags.column:
        add(KIND_COLUMN, tags.column, ORIGIN_RULE, 1.0)
    for position in tags.positions:
        add(KIND_POSITION, position, ORIGIN_RULE, 1.0)
    count = len(tags.keywords)
    for rank, keyword in enumerate(tags.keywords):
        add(KIND_KEYWORD, keyword, ORIGIN_KEYWORD, (count - rank) / count)
    return wanted


@functools.cache
def _insert_tags_returning(dialect: str) -> Any:
    """The tags' insert-or-ignore, giving back (id, kind, name) of the rows it inserted (not of the ignored ones)."""
    return insert_or_ignore(dialect, TAGS).returning(TAGS.c.id, TAGS.c.kind, TAGS.c.name)


def _insert_ignoring_duplicates(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """One executemany of the prepared insert-or-ignore: a crawl and a retag may create the same row at once."""
    if rows:
        session.connection().execute(insert_or_ignore(session.get_bind().dialect.name, table), rows)


def _shared_writers(session: Session) -> bool:
    bind = session.get_bind()
    return bind.dialect.name == "postgresql" and isinstance(bind, Engine)


def _commit_shared_rows(session: Session, statement: Any, rows: list[dict[str, Any]]) -> list[Any]:
    """Insert-or-ignore `rows` of a table every writer shares (tags, units) and commit them at once,
    on a connection of their own (PostgreSQL).

    Inside an ingest's batch such an insert would hold its index entries until the batch commits,
    and two writers' batches inserting the same names in different orders wait for each other:
    a deadlock, and PostgreSQL rolls one batch back (measured with two crawl workers). Committed at
    once, the insert waits at most for another such short transaction. These rows are never
    deleted, so a row whose batch later rolls back is merely unused. The rows made come back (with
    a RETURNING statement); names already there are read on the batch's connection, which sees them.
    """
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    # One autocommit statement on `shared_rows_engine`, not flushed to disk before it returns (a
    # wait of a few ms, on nearly every article of a backfill: keywords are new names): the WAL is
    # written in order, so the synchronous commit of the batch that refers to these rows makes them
    # durable first; a crash before it loses the rows together with every row that refers to them.
    with shared_rows_engine(engine).connect() as connection:
        result = connection.execute(statement, rows)
        out = list(result) if result.returns_rows else []
    return out


# --- ids of tags and units ----------------------------------------------------------------


def tag_ids(
    session: Session, keys: Iterable[tuple[str, str]], batch: Batch | None = None
) -> dict[tuple[str, str], int]:
    """(kind, name) → tags.id, creating the missing rows: one insert-or-ignore returning the ids of
    the rows it made, then one select per kind for the names that were there already. With a
    `batch` (the ingest's), ids it knows are not asked for again."""
    found: dict[tuple[str, str], int] = {}
    missing: set[tuple[str, str]] = set()
    for key in keys:
        tag_id = batch.tag_id(key) if batch is not None else None
        if tag_id is None:
            missing.add(key)
        else:
            found[key] = tag_id
    if not missing:
        return found
    # Insert first: on a backfill most names are new, and their ids come back in the same statement.
    # With concurrent writers (PostgreSQL) the new rows are committed at once, on a connection of
    # their own (`_commit_shared_rows`): their ids are then shared like any committed row's.
    shared = _shared_writers(session)
    statement = _insert_tags_returning(session.get_bind().dialect.name)
    rows = [{"kind": kind, "name": name} for kind, name in sorted(missing)]
    made = _commit_shared_rows(session, statement, rows) if shared else session.connection().execute(statement, rows)
    inserted = {(kind, name): int(tag_id) for tag_id, kind, name in made}
    found.update(inserted)
    existing = missing - inserted.keys()
    fresh = _select_tag_ids(session, existing) if existing else {}
    found.update(fresh)
    if batch is not None:
        (batch.found if shared else batch.inserted)(Ids(tags=inserted))
        batch.found(Ids(tags=fresh))
    return found


_SELECT_TAGS = select(TAGS.c.id, TAGS.c.name).where(
    TAGS.c.kind == bindparam("kind"), TAGS.c.name.in_(bindparam("names", expanding=True))
)
_SELECT_UNIT = select(UNITS.c.id).where(UNITS.c.name == bindparam("name"))
_INSERT_ARTICLE_TAGS = insert(ARTICLE_TAGS)


def _select_tag_ids(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    by_kind: dict[str, list[str]] = {}
    for kind, name in keys:
        by_kind.setdefault(kind, []).append(name)
    out: dict[tuple[str, str], int] = {}
    connection = session.connection()
    for kind, names in sorted(by_kind.items()):
        rows = connection.execute(_SELECT_TAGS, {"kind": kind, "names": sorted(names)}).all()
        out.update(((kind, name), int(tag_id)) for tag_id, name in rows)
    return out


def unit_id_for(session: Session, name: str | None, batch: Batch | None = None) -> int | None:
    """The id of the unit named `name`, creating a bare row when the config names a unit the
    table does not have yet (the config sync fills in aliases and order)."""
    if not name:
        return None
    cached = batch.unit_id(name) if batch is not None else None
    if cached is not None:
        return cached
    unit_id = session.connection().execute(_SELECT_UNIT, {"name": name}).scalar()
    if unit_id is not None:
        if batch is not None:
            batch.found(Ids(units={name: int(unit_id)}))
        return int(unit_id)
    row = {"name": name, "aliases": [], "sort_order": 0}
    shared = _shared_writers(session)
    if shared:
        _commit_shared_rows(session, insert_or_ignore(session.get_bind().dialect.name, UNITS), [row])
    else:
        _insert_ignoring_duplicates(session, UNITS, [row])
    unit_id = session.connection().execute(_SELECT_UNIT, {"name": name}).scalar()
    if unit_id is None:
        return None
    if batch is not None:
        (batch.found if shared else batch.inserted)(Ids(units={name: int(unit_id)}))
    return int(unit_id)


def unit_name(session: Session, unit_id: int | None) -> str | None:
    """The name of the unit with id `unit_id` (None for None)."""
    if unit_id is None:
        return None
    return session.scalar(select(Unit.name).where(Unit.id == unit_id))


def article_fields(session: Session, tags: Tags, batch: Batch | None = None) -> dict[str, Any]:
    """The article columns `tags` decides: unit and where it was read, authors, positions, column."""
    return {
        "unit_id": unit_id_for(session, tags.unit, batch),
        "unit_from": tags.unit_from,
        "author": tags.author[:100] if tags.author else None,
        "authors": authors_to_json(tags.authors),
        "positions": list(tags.positions),
        "column": tags.column[:200] if tags.column else None,
        "column_candidate": tags.column_candidate[:200] if tags.column_candidate else None,
        "column_reason": tags.column_reason,
    }


def new_article_tag_rows(session: Session, tags: Tags, batch: Batch | None = None) -> list[tuple[int, str, float]]:
    """(tag id, origin, weight) of each tag row a new article gets: exactly the rows `apply_tags`
    would give it. Creates the tag rows that do not exist yet."""
    wanted = wanted_tags(tags)
    if not wanted:
        return []
    ids = tag_ids(session, wanted, batch)
    return [(ids[key], want.origin, want.weight) for key, want in wanted.items()]


def insert_new_article_tags(session: Session, article_id: int, tags: Tags, batch: Batch | None = None) -> None:
    """The tag rows of an article that has none yet (just inserted): one executemany, no reads
    of the article's rows."""
    rows = new_article_tag_rows(session, tags, batch)
    if rows:
        session.connection().execute(
            _INSERT_ARTICLE_TAGS,
            [
                {"article_id": article_id, "tag_id": tag_id, "origin": origin, "weight": weight}
                for tag_id, origin, weight in rows
            ],
        )


def apply_tags(
    session: Session, article: Article, tags: Tags, *, now: datetime | None = None, batch: Batch | None = None
) -> bool:
    """Make the article's fields and machine tags say exactly what `tags` says; True if anything changed.

    Replaces rows of origin "rule" and "keyword"; keeps "manual" rows, and never adds a machine
    row for a tag the article already has manually. Sets `updated_at` to `now` on a change.
    The article must be in `session`; for a new article, flush it first so it has an id.
    """
    changed = False
    tags = overlay(tags, article.corrected)  # the operator's corrections win over the rules
    fields = article_fields(session, tags, batch)
    for attr, value in fields.items():
        if getattr(article, attr) != value:
            setattr(article, attr, value)
            changed = True

    wanted = wanted_tags(tags)
    current = list(article.tags)
    manual = {(row.tag.kind, row.tag.name) for row in current if row.origin == ORIGIN_MANUAL}
    for key in manual:
        wanted.pop(key, None)
    kept: set[tuple[str, str]] = set()
    for row in current:
        if row.origin not in MACHINE_ORIGINS:
            continue
        key = (row.tag.kind, row.tag.name)
        want = wanted.get(key)
        if want is None:
            article.tags.remove(row)  # delete-orphan cascade deletes the row
            changed = True
            continue
        kept.add(key)
        if row.origin != want.origin or abs(row.weight - want.weight) > _WEIGHT_EPSILON:
            row.origin, row.weight = want.origin, want.weight
            changed = True
    new_keys = [key for key in wanted if key not in kept]
    if new_keys:
        ids = tag_ids(session, new_keys, batch)
        for key in new_keys:
            want = wanted[key]
            article.tags.append(ArticleTag(tag_id=ids[key], origin=want.origin, weight=want.weight))
        changed = True
    if changed and now is not None:
        article.updated_at = now
    return changed
