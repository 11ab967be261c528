"""Writing `Tags` into the corpus: the one place tags become rows.

Owns `apply_tags`: the article's unit/author/positions/column and its `ArticleTag` rows of
origin "rule" (topics, column, positions) and "keyword" (jieba keywords). Manual tags (origin
"manual") are never removed or overwritten. The store pipeline and the retag command both call
it, so a story tagged at crawl time and one retagged later get exactly the same rows.

Runs inside the caller's transaction; never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from pipeline.models import Article, ArticleTag, Tag, Unit

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from sqlalchemy.orm import Session

    from pipeline.record import Tags

ORIGIN_RULE = "rule"
ORIGIN_KEYWORD = "keyword"
ORIGIN_MANUAL = "manual"
MACHINE_ORIGINS = frozenset({ORIGIN_RULE, ORIGIN_KEYWORD})

KIND_TOPIC = "topic"
KIND_KEYWORD = "keyword"
KIND_COLUMN = "column"
KIND_POSITION = "position"

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


def _insert_ignoring_duplicates(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING: a crawl and a retag may create the same tag at once."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(model).values(rows).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(model).values(rows).on_conflict_do_nothing())
    else:
        raise NotImplementedError(f"tag storage supports SQLite and PostgreSQL, not {dialect}")


def ensure_tags(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Tag]:
    """The Tag rows for (kind, name) keys, created when missing."""
    by_kind: dict[str, set[str]] = {}
    for kind, name in keys:
        by_kind.setdefault(kind, set()).add(name)
    found: dict[tuple[str, str], Tag] = {}
    for kind, names in sorted(by_kind.items()):
        ordered = sorted(names)
        existing = session.scalars(select(Tag).where(Tag.kind == kind, Tag.name.in_(ordered))).all()
        missing = [n for n in ordered if n not in {t.name for t in existing}]
        if missing:
            _insert_ignoring_duplicates(session, Tag, [{"kind": kind, "name": n} for n in missing])
            existing = session.scalars(select(Tag).where(Tag.kind == kind, Tag.name.in_(ordered))).all()
        found.update(((t.kind, t.name), t) for t in existing)
    return found


def unit_id_for(session: Session, name: str | None) -> int | None:
    """The id of the unit named `name`, creating a bare row when the config names a unit the
    table does not have yet (the config sync fills in aliases and order)."""
    if not name:
        return None
    unit_id = session.scalar(select(Unit.id).where(Unit.name == name))
    if unit_id is None:
        _insert_ignoring_duplicates(session, Unit, [{"name": name, "aliases": [], "sort_order": 0}])
        unit_id = session.scalar(select(Unit.id).where(Unit.name == name))
    return unit_id


def apply_tags(session: Session, article: Article, tags: Tags, *, now: datetime | None = None) -> bool:
    """Make the article's fields and machine tags say exactly what `tags` says; True if anything changed.

    Replaces rows of origin "rule" and "keyword"; keeps "manual" rows, and never adds a machine
    row for a tag the article already has manually. Sets `updated_at` to `now` on a change.
    The article must be in `session`; for a new article, flush it first so it has an id.
    """
    changed = False
    unit_id = unit_id_for(session, tags.unit)
    fields: dict[str, Any] = {
        "unit_id": unit_id,
        "author": tags.author[:100] if tags.author else None,
        "positions": list(tags.positions),
        "column": tags.column[:200] if tags.column else None,
    }
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
        rows = ensure_tags(session, new_keys)
        for key in new_keys:
            want = wanted[key]
            article.tags.append(ArticleTag(tag=rows[key], origin=want.origin, weight=want.weight))
        changed = True
    if changed and now is not None:
        article.updated_at = now
    return changed
