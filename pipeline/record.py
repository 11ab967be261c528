"""What flows through the ingest: the spider's page, then each stage's result on a `Record`.

A spider yields a `Page` (an article, a problem of its source, a list page's validators).
normalize turns an article into a `Record` (sanitized HTML, the page's text, its content hash);
the page-only work (`pipeline.precompute`: signature, snapshot digest, search text) fills in
what no one computed yet; deduplicate sets `Record.decision`; tag sets `Record.tags`; store writes
the rows the decision means. `pipeline.ingest.Ingest.handle` runs them in that order and answers
with an `Outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from crawler.items import ArticleItem, ListPageItem, ProblemItem

# Decision kinds.
NEW_STORY = "new_story"  # nothing like it stored: a new article and its first appearance
NEW_APPEARANCE = "new_appearance"  # same story seen at a new place (repost or exact copy)
EDIT = "edit"  # a known appearance whose content changed: keep the old snapshot as a version
UNCHANGED = "unchanged"  # a known appearance, same content: refresh fetch time only
STATE_CHANGE = "state_change"  # a known appearance now deleted / violation at the source


@dataclass
class Decision:
    kind: str
    article_id: int | None = None  # the existing story, for every kind but NEW_STORY
    appearance_id: int | None = None  # the existing appearance, for EDIT / UNCHANGED / STATE_CHANGE
    similarity: float | None = None  # the confirmed overlap for near-duplicate matches
    reason: str = ""  # e.g. "same key", "same content hash", "near duplicate 0.83"


@dataclass(frozen=True)
class Author:
    """One author of a story, with the positions the byline gives them."""

    name: str
    positions: tuple[str, ...] = ()


@dataclass
class Tags:
    unit: str | None = None  # configured unit name; None: unattributed
    author: str | None = None  # the authors' names, 「、」-joined (what lists and the author filter show)
    positions: list[str] = field(default_factory=list)  # every author's positions, in order
    column: str | None = None  # the column the story is in (an appearance in its album or list)
    topics: dict[str, float] = field(default_factory=dict)  # topic -> score
    keywords: list[str] = field(default_factory=list)
    unit_from: str | None = None  # byline | label | title | author_field | source_owner | manual
    authors: list[Author] = field(default_factory=list)
    column_candidate: str | None = None  # a column a title keyword or banner proposes, unconfirmed
    column_reason: str | None = None  # album | list | title | banner | manual


@dataclass
class Record:
    item: ArticleItem
    title: str  # cleaned title
    body_html: str  # sanitized HTML
    body_text: str  # normalized plain text, the page's own characters (matching folds it for itself)
    content_hash: str  # sha256 hex of the folded text without whitespace (`pipeline.normalize.content_hash`)
    minhash: bytes | None = None  # serialized signature (see pipeline.dedup)
    decision: Decision | None = None
    tags: Tags | None = None
    # Page-only work (`pipeline.precompute`): done by the crawl process when the worker is the slower
    # side, else by the ingest before it deduplicates.
    snapshot: tuple[str, bytes] | None = None  # (sha256 hex, zlib) of item.raw_body
    search: tuple[str, str] | None = None  # (title, body_text) in the search index's form
    # The page's publish time when it was after the fetch (`item.published_at` then holds the fetch
    # time: `pipeline.normalize.plausible_published`); None when the printed time was plausible.
    printed_published_at: datetime | None = None


# What a spider yields, and what reaches the ingest (an article already normalized — and maybe
# tagged and precomputed — by the crawl process arrives as a `Record`).
Page = ArticleItem | ProblemItem | ListPageItem
Prepared = Record | ProblemItem | ListPageItem


class Outcome(Enum):
    """What `Ingest.handle` did with one page."""

    STORED = "stored"  # went through every stage (stored, or recorded as a problem / list page)
    REJECTED = "rejected"  # a stage refused it (no title, no text, a verification page); recorded
    DROPPED = "dropped"  # nothing to store: a state page (deleted…) of an article never stored
    FAILED = "failed"  # a stage raised; recorded on the source's run as a fatal problem


@dataclass(frozen=True)
class SourceRef:
    """The crawled source as the stages need it: its key and the definition the spider carries."""

    key: str
    kind: str = ""
    url: str = ""
    unit: str | None = None  # the owning unit's configured name
    column: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_definition(cls, key: str, definition: Mapping[str, Any] | None) -> SourceRef:
        """From a spider's `source` dict (key, kind, url, unit, column, options)."""
        data = dict(definition or {})
        unit, column = data.get("unit"), data.get("column")
        return cls(
            key=key,
            kind=str(data.get("kind") or ""),
            url=str(data.get("url") or ""),
            unit=unit if isinstance(unit, str) and unit else None,
            column=column if isinstance(column, str) and column else None,
            options=dict(data.get("options") or {}),
        )
