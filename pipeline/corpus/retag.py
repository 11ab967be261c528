"""Retagging the whole corpus after the vocabulary changed: one call, safe to interrupt.

Owns `retag_corpus`: recomputes every stored story's tags with the tagging rules from what is
stored (its text, the 来源/byline/author/column its appearances recorded in `meta`, their sources'
kinds and units) and writes them with `pipeline.corpus.tagstore.apply_tags`, which keeps the operator's
corrections in force.

Works in batches ordered by article id, one transaction per batch: an interruption loses at
most the batch in flight, and because applying the same tags twice changes nothing, a rerun
from the start (or from `RetagResult.last_id`) finishes the job. Never touches manual tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from pipeline.corpus.db import transaction
from pipeline.corpus.models import Appearance, Article, ArticleTag, Source
from pipeline.corpus.tagstore import apply_tags
from pipeline.tagging.rules import compute_tags, merge_tags

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from sqlalchemy.orm import Session, sessionmaker

    from pipeline.record import Tags
    from pipeline.tagging.rules import Vocabulary


@dataclass(frozen=True)
class RetagResult:
    articles: int  # articles retagged by this call
    batches: int  # transactions committed
    changed: int  # articles whose fields or machine tags changed
    last_id: int  # highest article id done: pass as `after_id` to resume without redoing work


def _first_appearance(article: Article) -> Appearance | None:
    for appearance in article.appearances:
        if appearance.id == article.first_appearance_id:
            return appearance
    return article.appearances[0] if article.appearances else None


def _meta_text(appearance: Appearance, key: str) -> str | None:
    value = (appearance.meta or {}).get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _appearance_tags(article: Article, appearance: Appearance, vocab: Vocabulary, keyword_count: int) -> Tags:
    """What the rules say of the story as this appearance showed it (its labels, source, column)."""
    source = appearance.source
    column = None
    if appearance.in_column:
        column = _meta_text(appearance, "column") or source.column
    extra = (appearance.meta or {}).get("extra")
    return compute_tags(
        title=article.title,
        body_text=article.body_text,
        vocab=vocab,
        byline=_meta_text(appearance, "byline"),
        author=_meta_text(appearance, "author"),
        source_label=_meta_text(appearance, "source_label"),
        item_column=column,
        owning_unit=source.unit.name if source.unit is not None else None,
        source_kind=source.kind,
        by_title_rule=isinstance(extra, dict) and extra.get("column_rule") == "title",
        keyword_count=keyword_count,
    )


def tags_for_article(article: Article, vocab: Vocabulary) -> Tags:
    """What the tag rules say of a stored story (appearances loaded, with their sources' units):
    its original's tags, with a unit and column membership the other appearances add (the same
    merge the store makes when a repost arrives)."""
    first = _first_appearance(article)
    if first is None:
        return compute_tags(title=article.title, body_text=article.body_text, vocab=vocab)
    tags = _appearance_tags(article, first, vocab, keyword_count=8)
    for appearance in article.appearances:
        if appearance is not first:
            tags = merge_tags(tags, _appearance_tags(article, appearance, vocab, keyword_count=0))
    return tags


def _load_batch(session: Session, after_id: int, batch_size: int) -> list[Article]:
    statement = (
        select(Article)
        .where(Article.id > after_id)
        .order_by(Article.id)
        .limit(batch_size)
        .options(
            selectinload(Article.appearances).selectinload(Appearance.source).selectinload(Source.unit),
            selectinload(Article.tags).selectinload(ArticleTag.tag),
        )
    )
    return list(session.scalars(statement).all())


def retag_corpus(
    session_factory: sessionmaker[Session],
    vocab: Vocabulary,
    *,
    batch_size: int = 200,
    progress: Callable[[int, int], None] | None = None,
    now: datetime,
    after_id: int = 0,
) -> RetagResult:
    """Retag every article with id > `after_id`; `progress(done, total)` after each committed batch.

    An exception (from the rules, the database or `progress`) stops the run; batches already
    committed stay committed, and a rerun completes the rest.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    with session_factory() as session:
        total = int(session.scalar(select(func.count(Article.id)).where(Article.id > after_id)) or 0)
    done = changed = batches = 0
    last_id = after_id
    while True:
        with transaction(session_factory) as session:
            articles = _load_batch(session, last_id, batch_size)
            for article in articles:
                if apply_tags(session, article, tags_for_article(article, vocab), now=now):
                    changed += 1
            batch_last = articles[-1].id if articles else last_id
        if not articles:
            break
        last_id = batch_last
        done += len(articles)
        batches += 1
        if progress is not None:
            progress(done, max(total, done))
        if len(articles) < batch_size:
            break
    return RetagResult(articles=done, batches=batches, changed=changed, last_id=last_id)


def describe(result: RetagResult) -> dict[str, Any]:
    """The result as plain data, for the command line's summary line."""
    return {
        "articles": result.articles,
        "batches": result.batches,
        "changed": result.changed,
        "last_id": result.last_id,
    }
