"""The operator's corrections: a story's unit, authors and column membership, set by hand.

Owns the `corrected` overrides of an article (what is in force) and the `corrections` rows (the
history: who, when, old → new). `overlay` is the pure rule that makes a correction win over the
tagging rules; `pipeline.corpus.tagstore.apply_tags` calls it, so a correction survives `zhuanlan retag`,
an edit or a re-crawl of the story, and every reader (feeds, digest, search, exports) sees the
corrected fields because they are the article's own columns. `correct` records one correction.

Runs inside the caller's transaction; never commits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from pipeline.corpus.models import Article, Correction, Unit
from pipeline.record import Author, Tags

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session

FIELD_UNIT = "unit"
FIELD_AUTHORS = "authors"
FIELD_COLUMN = "column"
MANUAL = "manual"

# How a story without a unit is named where the office reads it: decided by a correction, or not yet.
NO_UNIT = "不属于任何单位"
UNIT_UNKNOWN = "单位未识别"


class CorrectionError(ValueError):
    """A correction that cannot be made (an unknown unit, an empty author name)."""


def authors_to_json(authors: list[Author] | tuple[Author, ...]) -> list[dict[str, Any]]:
    return [{"name": a.name, "positions": list(a.positions)} for a in authors]


def authors_from_json(value: object) -> list[Author]:
    if not isinstance(value, list):
        return []
    authors: list[Author] = []
    for entry in value:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip():
            positions = entry.get("positions") or []
            authors.append(Author(entry["name"].strip(), tuple(str(p) for p in positions if str(p).strip())))
    return authors


def _positions(authors: list[Author]) -> list[str]:
    seen: list[str] = []
    for author in authors:
        seen.extend(p for p in author.positions if p not in seen)
    return seen


def no_unit_confirmed(unit_id: int | None, unit_from: str | None) -> bool:
    """Whether the office decided that a story belongs to no unit (a unit correction to none), as
    against a unit nobody has read or decided yet. `overlay` marks every unit correction "manual",
    and a correction that names a unit always gives the story that unit's id."""
    return unit_id is None and unit_from == MANUAL


def awaiting_unit() -> ColumnElement[bool]:
    """SQL: the stories with no unit that nobody has decided on yet (`no_unit_confirmed` is false)."""
    return and_(Article.unit_id.is_(None), or_(Article.unit_from.is_(None), Article.unit_from != MANUAL))


def confirmed_no_unit() -> ColumnElement[bool]:
    """SQL: the stories the office decided belong to no unit (`no_unit_confirmed` is true)."""
    return and_(Article.unit_id.is_(None), Article.unit_from == MANUAL)


def unit_text(unit: str | None, unit_from: str | None) -> str:
    """A story's unit as the web pages show it: its name, 「不属于任何单位」 when the office decided
    so, else 「单位未识别」 (still to be decided)."""
    if unit:
        return unit
    return NO_UNIT if unit_from == MANUAL else UNIT_UNKNOWN


def overlay(tags: Tags, corrected: dict[str, Any] | None) -> Tags:
    """`tags` with the corrections in force put over them (a correction always wins)."""
    if not corrected:
        return tags
    if FIELD_UNIT in corrected:
        unit = corrected[FIELD_UNIT]
        tags = replace(tags, unit=unit if isinstance(unit, str) and unit else None, unit_from=MANUAL)
    if FIELD_AUTHORS in corrected:
        authors = authors_from_json(corrected[FIELD_AUTHORS])
        tags = replace(
            tags, authors=authors, author="、".join(a.name for a in authors) or None, positions=_positions(authors)
        )
    column = corrected.get(FIELD_COLUMN)
    if isinstance(column, dict):
        if column.get("in") and isinstance(column.get("name"), str):
            tags = replace(tags, column=column["name"], column_candidate=None, column_reason=MANUAL)
        else:
            tags = replace(tags, column=None, column_candidate=None, column_reason=MANUAL)
    return tags


@dataclass(frozen=True)
class Change:
    """What one call of `correct` asks for; None leaves a field as it is."""

    unit: str | None = None
    unattributed: bool = False  # set the unit to none (the office decided it is nobody's)
    authors: tuple[Author, ...] | None = None
    in_column: bool | None = None
    column: str | None = None  # which column, when `in_column`; default the story's candidate


def _in_force(field: str, new: dict[str, Any]) -> Any:
    """What `corrected[field]` holds once the change `new` of a `corrections` row is in force."""
    return new[field] if field in (FIELD_UNIT, FIELD_AUTHORS) else new


def _unit_of(session: Session, article: Article) -> str | None:
    if article.unit_id is None:
        return None
    return session.scalar(select(Unit.name).where(Unit.id == article.unit_id))


def _column_state(article: Article) -> dict[str, Any]:
    return {"in": article.column is not None, "name": article.column or article.column_candidate}


def correct(
    session: Session, article: Article, change: Change, *, actor: str, now: datetime, note: str | None = None
) -> list[Correction]:
    """Record `change` on `article` and put it in force: one `corrections` row per field changed.

    Returns the rows added (none for a correction already in force). The article's
    fields and tag rows are rewritten by the caller through `tagstore.apply_tags` with the article's
    current tags (see `current_tags`), so the same code path writes corrections and rules.
    """
    if not actor.strip():
        raise CorrectionError("a correction needs the name of who makes it")
    corrected = dict(article.corrected or {})
    rows: list[Correction] = []

    def record(field: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        # Nothing to record when that very correction is in force already.
        if field not in corrected or corrected[field] != _in_force(field, new):
            rows.append(
                Correction(
                    article_id=article.id,
                    field=field,
                    old_value=old,
                    new_value=new,
                    actor=actor.strip()[:100],
                    note=note,
                    created_at=now,
                )
            )

    if change.unit is not None or change.unattributed:
        name = None
        if change.unit is not None:
            name = session.scalar(select(Unit.name).where(Unit.name == change.unit))
            if name is None:
                raise CorrectionError(f"no configured unit is named {change.unit!r}")
        record(FIELD_UNIT, {"unit": _unit_of(session, article), "from": article.unit_from}, {"unit": name})
    if change.authors is not None:
        if any(not a.name.strip() for a in change.authors):
            raise CorrectionError("an author needs a name")
        new_authors = authors_to_json(change.authors)
        record(FIELD_AUTHORS, {"authors": list(article.authors or [])}, {"authors": new_authors})
    if change.in_column is not None:
        name = change.column or article.column or article.column_candidate
        if change.in_column and not name:
            raise CorrectionError("name the column (--column): the story has no candidate column")
        new = {"in": change.in_column, "name": name if change.in_column else None}
        record(FIELD_COLUMN, _column_state(article), new)
    for row in rows:
        session.add(row)
        corrected[row.field] = _in_force(row.field, row.new_value)
    if rows:
        article.corrected = corrected
    return rows


def current_tags(article: Article, unit: str | None) -> Tags:
    """The tags an article holds now (its fields and machine tag rows), for rewriting it after a
    correction without running the rules again. `unit` is the name of its unit."""
    from pipeline.corpus.tagstore import KIND_KEYWORD, KIND_TOPIC, MACHINE_ORIGINS

    topics = {
        row.tag.name: row.weight for row in article.tags if row.tag.kind == KIND_TOPIC and row.origin in MACHINE_ORIGINS
    }
    keywords = [
        row.tag.name
        for row in sorted(article.tags, key=lambda r: -r.weight)
        if row.tag.kind == KIND_KEYWORD and row.origin in MACHINE_ORIGINS
    ]
    authors = authors_from_json(article.authors)
    return Tags(
        unit=unit,
        unit_from=article.unit_from,
        author=article.author,
        authors=authors,
        positions=list(article.positions or []),
        column=article.column,
        column_candidate=article.column_candidate,
        column_reason=article.column_reason,
        topics=topics,
        keywords=keywords,
    )


def history(session: Session, article_id: int) -> list[Correction]:
    """The corrections of one story, oldest first."""
    return list(
        session.scalars(select(Correction).where(Correction.article_id == article_id).order_by(Correction.id)).all()
    )


def correct_story(
    session: Session, guid: str, change: Change, *, actor: str, now: datetime, note: str | None = None
) -> list[Correction]:
    """Correct the story `guid`: record the change and rewrite its fields and tag rows with it in
    force (the one path the command line and the web app share). Raises `CorrectionError`."""
    from pipeline.corpus.tagstore import apply_tags, unit_name

    article = session.scalar(select(Article).where(Article.guid == guid))
    if article is None:
        raise CorrectionError(f"no story has the id {guid!r}")
    rows = correct(session, article, change, actor=actor, now=now, note=note)
    if rows:
        apply_tags(session, article, current_tags(article, unit_name(session, article.unit_id)), now=now)
    return rows


def parse_author(text: str) -> Author:
    """「叶其炎」 or 「叶其炎：党组书记、局长」 (also with ASCII : and commas) as an `Author`."""
    name, _, rest = text.replace("：", ":").partition(":")
    positions = tuple(p.strip() for p in rest.replace("，", "、").replace(",", "、").split("、") if p.strip())
    if not name.strip():
        raise CorrectionError(f"an author needs a name, got {text!r}")
    return Author(name.strip(), positions)
