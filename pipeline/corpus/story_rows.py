"""A new story's rows (article, its original appearance, the fetch's snapshot, its tag rows) in
one PostgreSQL statement.

The rows point at each other (`articles.first_appearance_id` → appearance, `appearances.snapshot_id`
→ snapshot, `snapshots.appearance_id` → appearance), so inserted one at a time they take five
statements: three inserts and two updates to close the circle, five round trips to the server on
the hot path of a backfill. Here the article and appearance ids are drawn from their sequences
first (a CTE), and the three inserts of data-modifying CTEs carry the final ids. PostgreSQL checks
foreign keys that are not deferred at the end of the statement, when all three rows exist, so the
constraints hold as before. The article's tag rows (`article_tags`, whose tag ids the caller has
already: `tagstore.tag_ids`) ride along as one more CTE over one JSON array, instead of an
executemany of their own after the story: one round trip less per new story. One parameter, not an
array per field: psycopg keeps its parsed form of a statement only up to 50 parameters, and with
a parameter per field the statement had 51, so it was parsed again for every new story.

A snapshot whose bytes are stored already (the unique sha256) is not inserted again: the appearance
points at the stored one. The one case this statement cannot see is a snapshot of the same bytes
inserted by a concurrent transaction that committed while this statement waited for it (the
statement's snapshot predates that commit): the appearance then comes back without a snapshot and
`insert_story_rows` sets it with a second statement, as the row-by-row path does.

SQLite has no data-modifying CTEs; the store inserts row by row there (`pipeline.store`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import JSON, Connection, Float, Integer, String, Table, bindparam, column, func, select, true, update
from sqlalchemy.dialects.postgresql import insert

from pipeline.corpus.models import Appearance, Article, ArticleTag, Snapshot

ARTICLES = cast(Table, Article.__table__)
APPEARANCES = cast(Table, Appearance.__table__)
SNAPSHOTS = cast(Table, Snapshot.__table__)
ARTICLE_TAGS = cast(Table, ArticleTag.__table__)

# Columns set by the statement itself (the drawn ids and the pointers between the rows).
_LINKS = {"id", "first_appearance_id", "article_id", "snapshot_id", "appearance_id"}
_SNAPSHOT_BY_SHA = select(SNAPSHOTS.c.id).where(SNAPSHOTS.c.sha256 == bindparam("digest"))
_SET_SNAPSHOT = (
    update(APPEARANCES).where(APPEARANCES.c.id == bindparam("appearance")).values(snapshot_id=bindparam("snapshot"))
)


@functools.cache
def _columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if c.name not in _LINKS)


@functools.cache
def _parameters(table: Table, prefix: str) -> tuple[frozenset[str], tuple[tuple[str, str, Any], ...]]:
    """The table's insertable columns, and (column, parameter name, Python-side default) of each."""
    names = _columns(table)
    return frozenset(names), tuple((name, f"{prefix}{name}", table.c[name].default) for name in names)


def _full(table: Table, prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every other column at its Python-side default (a Core INSERT … SELECT does not
    apply those), keyed by the statement's parameter names."""
    names, columns = _parameters(table, prefix)
    unknown = values.keys() - names
    if unknown:
        raise ValueError(f"{table.name} has no columns {sorted(unknown)} to insert")
    out: dict[str, Any] = {}
    for name, parameter, default in columns:
        if name in values:
            value = values[name]
        else:
            arg = getattr(default, "arg", None)
            value = arg(None) if callable(arg) else arg
        out[parameter] = value
    return out


def _typed(table: Table, prefix: str) -> list[Any]:
    return [bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in _columns(table)]


@functools.cache
def _statement(with_snapshot: bool, with_tags: bool) -> Any:
    ids = select(
        func.nextval(func.pg_get_serial_sequence("articles", "id")).label("article"),
        func.nextval(func.pg_get_serial_sequence("appearances", "id")).label("appearance"),
    ).cte("ids")
    article = (
        insert(ARTICLES)
        .from_select(
            ["id", "first_appearance_id", *_columns(ARTICLES)],
            select(ids.c.article, ids.c.appearance, *_typed(ARTICLES, "a_")),
        )
        .cte("new_article")
    )
    ctes: list[Any] = [ids, article]
    snapshot_id: Any = None
    if with_snapshot:
        snapshot = (
            insert(SNAPSHOTS)
            .from_select(["appearance_id", *_columns(SNAPSHOTS)], select(ids.c.appearance, *_typed(SNAPSHOTS, "s_")))
            .on_conflict_do_nothing()
            .returning(SNAPSHOTS.c.id)
            .cte("new_snapshot")
        )
        ctes.append(snapshot)
        stored = select(SNAPSHOTS.c.id).where(SNAPSHOTS.c.sha256 == bindparam("s_sha256")).scalar_subquery()
        snapshot_id = func.coalesce(select(snapshot.c.id).scalar_subquery(), stored)
    if with_tags:
        rows = (
            func.json_to_recordset(bindparam("t_rows", type_=JSON))
            .table_valued(column("tag_id", Integer), column("origin", String), column("weight", Float))
            .render_derived(name="given", with_types=True)
        )
        ctes.append(
            insert(ARTICLE_TAGS)
            .from_select(
                ["article_id", "tag_id", "origin", "weight"],
                select(ids.c.article, rows.c.tag_id, rows.c.origin, rows.c.weight).select_from(ids.join(rows, true())),
            )
            .cte("new_tags")
        )
    return (
        insert(APPEARANCES)
        .from_select(
            ["id", "article_id", "snapshot_id", *_columns(APPEARANCES)],
            select(ids.c.appearance, ids.c.article, snapshot_id, *_typed(APPEARANCES, "p_")),
        )
        .add_cte(*ctes)
        .returning(APPEARANCES.c.article_id, APPEARANCES.c.id, APPEARANCES.c.snapshot_id)
    )


def insert_story_rows(
    connection: Connection,
    article: dict[str, Any],
    appearance: dict[str, Any],
    snapshot: dict[str, Any] | None,
    tags: Sequence[tuple[int, str, float]] = (),
) -> tuple[int, int]:
    """Insert the rows (column → value, without ids and links) and the article's `tags`
    ((tag id, origin, weight) each); the new (article id, appearance id).

    A unique violation (the canonical key stored by a concurrent crawl) raises IntegrityError and
    inserts nothing, as a failed statement does.
    """
    params = {**_full(ARTICLES, "a_", article), **_full(APPEARANCES, "p_", appearance)}
    if snapshot is not None:
        params.update(_full(SNAPSHOTS, "s_", snapshot))
    if tags:
        params["t_rows"] = [{"tag_id": tag_id, "origin": origin, "weight": weight} for tag_id, origin, weight in tags]
    statement = _statement(snapshot is not None, bool(tags))
    article_id, appearance_id, snapshot_id = connection.execute(statement, params).one()
    if snapshot is not None and snapshot_id is None:
        stored = connection.execute(_SNAPSHOT_BY_SHA, {"digest": snapshot["sha256"]}).scalar_one()
        connection.execute(_SET_SNAPSHOT, {"appearance": appearance_id, "snapshot": stored})
    return int(article_id), int(appearance_id)
