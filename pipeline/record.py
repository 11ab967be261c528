"""What flows between the item pipelines: the spider's item plus each stage's result.

normalize → `Record` (sanitized HTML, normalized text, hashes, MinHash signature)
deduplicate → `Record.decision` (what storing this record means)
tag → `Record.tags`
store → writes rows as the decision says, in one transaction per record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crawler.items import ArticleItem

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
    unit_from: str | None = None  # byline | label | author_field | source_owner | manual
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
    # Computed ahead by the crawl process when the worker is behind (`pipeline.ahead`); the store
    # computes them itself when they are None.
    snapshot: tuple[str, bytes] | None = None  # (sha256 hex, zlib) of item.raw_body
    search: tuple[str, str] | None = None  # (title, body_text) in the search index's form
