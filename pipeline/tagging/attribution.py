"""Attribution: which configured unit a story belongs to, who wrote it, and where that was read.

Owns `attribute`: the unit with its provenance (`unit_from`: the byline, a 来源 label, the
headline, the page's author field, or the source's owning unit) and the list of authors with their
positions, from the byline reader's `Credits` of the body and the page's own label and author
fields; and `column_membership`: whether a story is in a column (an appearance in the column's album
or configured list) or only a candidate (a title keyword or a banner line, for the office to confirm).

The order of trust: the byline (top, end, 作者系 / 作者单位 notes), then a 来源 label (the page's
field, then 来源 / 供稿 lines of the body), then the headline's lead-in or subject (`title_unit`),
then the page's author field, then — on a unit's own website only — the source's owning unit. On
the 工委's album a story with no readable unit stays unattributed (unit None): it is never counted
for the album's owner.

Must not touch the database, Scrapy or the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crawler.parsing.bylines import (
    IN_FIELD,
    Byline,
    Credits,
    Person,
    author_names,
    fold,
    is_byline,
    looks_like_unit,
    names_only,
    parse_byline,
    read_credits,
    squash,
    text_start,
)
from pipeline.record import Author
from pipeline.tagging.vocabulary import Vocabulary

FROM_BYLINE = "byline"
FROM_LABEL = "label"
FROM_TITLE = "title"
FROM_AUTHOR_FIELD = "author_field"
FROM_SOURCE_OWNER = "source_owner"
FROM_MANUAL = "manual"
UNIT_FROM = (FROM_BYLINE, FROM_LABEL, FROM_TITLE, FROM_AUTHOR_FIELD, FROM_SOURCE_OWNER, FROM_MANUAL)

# Source kinds whose owning unit may stand in for an unreadable byline: a unit's own website.
OWNER_FALLBACK_KINDS = frozenset({"site_column"})


@dataclass(frozen=True)
class Attribution:
    unit: str | None = None  # configured unit name; None: unattributed
    unit_from: str | None = None  # one of UNIT_FROM
    authors: tuple[Author, ...] = ()

    @property
    def names(self) -> list[str]:
        return [author.name for author in self.authors]

    @property
    def positions(self) -> list[str]:
        """Every author's positions, in order, without repeats."""
        seen: list[str] = []
        for author in self.authors:
            seen.extend(p for p in author.positions if p not in seen)
        return seen


def _field_byline(author_field: str | None, vocab: Vocabulary) -> Byline | None:
    if not author_field or not author_field.strip():
        return None
    parsed = parse_byline(author_field, vocab.matcher.ends_with_unit, where=IN_FIELD)
    if parsed.people or parsed.org:
        return parsed
    return None


# What sets a headline's lead-in apart from the rest (after `fold`: ：→ :, ｜ and 丨 → |, ［］→ []).
_TITLE_SEPARATORS = re.compile(r"[:|]")
# A lead-in in brackets: 【市财政局】…, 〔学习贯彻…〕….
_TITLE_BRACKETED = re.compile(r"^[【〔\[]([^】〕\]]{1,40})[】〕\]]")


def title_unit(title: str | None, vocab: Vocabulary) -> str | None:
    """The configured unit a headline presents its story as from: the unit its lead-in starts with
    (「市财政局：…」, 「【市财政局】…」, 「学习贯彻…｜市财政局：…」) or the unit that is its subject
    (「市财政局召开党组理论学习中心组学习会」). The part after the last separator counts only with
    something after the unit: a bare unit name there is a signature or a site's name, not a lead-in.
    """
    if not title:
        return None
    text = _TITLE_BRACKETED.sub(lambda m: m.group(1) + "|", fold(title))
    parts = [part.strip() for part in _TITLE_SEPARATORS.split(text)]
    matcher = vocab.matcher
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if not part or (last and index > 0 and matcher.names_unit(part)):
            continue
        unit = matcher.leading(part)
        if unit is not None:
            return unit
    return None


def _unit_of(
    credits: Credits, page_label: str | None, field: Byline | None, vocab: Vocabulary, title: str = ""
) -> tuple[str | None, str | None, bool]:
    """(unit, unit_from, foreign): foreign when the byline names an organisation that looks like a
    unit but is none of ours (甘州区科技局): then the source's owner must not stand in for it."""
    matcher = vocab.matcher
    foreign = False
    for byline in (credits.byline, credits.note):
        if byline is None or not byline.org:
            continue
        unit = matcher.match(byline.org)
        if unit is not None:
            return unit, FROM_BYLINE, False
        foreign = foreign or looks_like_unit(byline.org)
    for label in (page_label, *credits.labels):
        unit = matcher.match(label)
        if unit is not None:
            return unit, FROM_LABEL, foreign
    unit = title_unit(title, vocab)
    if unit is not None:
        return unit, FROM_TITLE, foreign
    if field is not None:
        unit = matcher.match(field.org) or matcher.match(field.text)
        if unit is not None:
            return unit, FROM_AUTHOR_FIELD, foreign
    return None, None, foreign


def _authors(credits: Credits, field: Byline | None, author_field: str | None) -> tuple[Author, ...]:
    people: dict[str, tuple[str, ...]] = {}
    for read in (credits.note, credits.byline):
        for person in read.people if read is not None else ():
            people[person.name] = person.positions
    names = author_names(credits)
    if len(names) == 1 and not people.get(names[0]) and credits.note is not None:
        people[names[0]] = credits.note.positions  # 「叶其炎」 or 「文/叶其炎」 on top, 「（作者系…局长）」 at the end
    if not names and author_field:
        # The page's author field: a name (or a short byline); an editor's name there is no author.
        field_people: list[Person] = list(field.people) if field is not None else []
        if not field_people:
            field_people = [Person(name=n) for n in names_only(author_field)]
        for person in field_people:
            if person.name not in credits.editors:
                names.append(person.name)
                people.setdefault(person.name, person.positions)
    return tuple(Author(name=name, positions=people.get(name, ())) for name in names)


def attribute(
    *,
    body_text: str,
    title: str,
    vocab: Vocabulary,
    page_label: str | None = None,
    author_field: str | None = None,
    byline_field: str | None = None,
    source_kind: str | None = None,
    owning_unit: str | None = None,
) -> Attribution:
    """The unit and authors of one page: its body's credits, its 来源 field, its author field.

    `byline_field` is a byline the spider found outside the body (a configured selector); it is
    read only when the body has none.
    """
    credits = read_credits(body_text, title, vocab.matcher.ends_with_unit)
    if credits.byline is None and byline_field and byline_field.strip():
        extra = parse_byline(byline_field, vocab.matcher.ends_with_unit)
        if is_byline(extra, byline_field, vocab.matcher.ends_with_unit):
            credits = Credits(
                byline=extra,
                note=credits.note,
                labels=credits.labels,
                authors=credits.authors,
                editors=credits.editors,
                signoff=credits.signoff,
            )
    field = _field_byline(author_field, vocab)
    unit, unit_from, foreign = _unit_of(credits, page_label, field, vocab, title)
    if unit is None and owning_unit and source_kind in OWNER_FALLBACK_KINDS and not foreign:
        unit, unit_from = owning_unit, FROM_SOURCE_OWNER
    return Attribution(unit=unit, unit_from=unit_from, authors=_authors(credits, field, author_field))


def excerpt_text(body_text: str, title: str) -> str:
    """What an excerpt of a story starts from (feeds' summaries, the digest): its body without the
    byline, name, 来源 and banner lines above the first line of text."""
    return text_start(body_text, title)


# --- column membership -------------------------------------------------------------------------

IN_ALBUM = "album"  # an appearance in the column's WeChat album (合集)
IN_LIST = "list"  # an appearance in the column's configured list on a website
BY_TITLE = "title"  # a title keyword: a candidate only
BY_BANNER = "banner"  # the column's name as a banner line at the top of the body: a candidate only
BY_MANUAL = "manual"


@dataclass(frozen=True)
class Membership:
    column: str | None = None  # the column the story is in (counts)
    candidate: str | None = None  # a column the story may be in, for the office to confirm
    reason: str | None = None  # IN_ALBUM | IN_LIST | BY_TITLE | BY_BANNER | BY_MANUAL


def _configured(named: str, vocab: Vocabulary) -> str:
    for column in vocab.columns:
        if named == column.name or named in column.title_keywords:
            return column.name
    return named


def column_membership(
    *,
    item_column: str | None,
    source_kind: str | None,
    title: str,
    body_text: str,
    vocab: Vocabulary,
    by_title_rule: bool = False,
) -> Membership:
    """In the column when the page was listed by the column's album or configured list; a candidate
    when only a title keyword (or a source's title filter) or a banner line points at it."""
    if item_column and item_column.strip():
        named = _configured(item_column.strip(), vocab)
        if by_title_rule:
            return Membership(candidate=named, reason=BY_TITLE)
        return Membership(column=named, reason=IN_ALBUM if source_kind == "wechat_album" else IN_LIST)
    for column in vocab.columns:
        if any(keyword and keyword in title for keyword in column.title_keywords):
            return Membership(candidate=column.name, reason=BY_TITLE)
    # WeChat column posts often open with the column's name as a banner line (see the seed).
    head = [squash(line) for line in body_text.splitlines()[:3]]
    for column in vocab.columns:
        banners = {squash(k) for k in (column.name, *column.title_keywords) if k}
        if any(line in banners for line in head if line):
            return Membership(candidate=column.name, reason=BY_BANNER)
    return Membership()


def page_item_fields(fields: dict[str, object]) -> dict[str, str | None]:
    """What a spider puts in an item's attribution fields, from `zhuanlan extract`'s parsed fields:
    the site parser's author field (not its display names) or WeChat's author variable, the byline
    as printed, and the page's 来源 label."""

    def text(key: str) -> str | None:
        value = fields.get(key)
        return value if isinstance(value, str) and value.strip() else None

    author = text("author_field") if fields.get("kind") == "site" else text("author")
    return {"author": author, "byline": text("byline"), "source_label": text("source_label")}
