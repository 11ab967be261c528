"""text fidelity: stored article text gets the page's own characters back

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Until now `normalize_text` folded the stored text with NFKC, so full-width punctuation, letters,
digits and spaces (，：（）；！？ＡＢＣ１２３, U+3000) were stored, shown, mailed and exported as ASCII.
The page's characters are still in `articles.body_html` (sanitized, never folded), or in the newest
snapshot when the HTML has no text: `pipeline.normalize.restore_original_characters` aligns that
text with the stored one and puts back every character whose fold is what was stored; where the two
differ the stored text stays as it is. Nothing else changes: `content_hash` and the near-duplicate
signatures are made from folded text, which is the same before and after. A summary that was the
start of the stored text is taken from the restored text. The search index now folds titles too:
an index row whose title tokens change is rewritten (bodies were indexed folded already).

Articles are read in batches by id, so memory stays flat on a large corpus. The downgrade folds the
text again as the older code expects it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import sqlalchemy as sa
from alembic import op

from pipeline.normalize import restore_original_characters, snapshot_text, stored_html_text
from pipeline.corpus.textsplit import fold_for_matching, split_text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BATCH = 500
SUMMARY_CHARS = 200  # pipeline.store.SUMMARY_CHARS when this revision was written: a summary made from the text

_ARTICLES = sa.text(
    "SELECT id, title, summary, body_text, body_html FROM articles WHERE id > :last ORDER BY id LIMIT :n"
)
_NEWEST_SNAPSHOT = sa.text(
    "SELECT s.content, s.encoding FROM snapshots s JOIN appearances a ON a.snapshot_id = s.id "
    "WHERE a.article_id = :id ORDER BY s.fetched_at DESC, s.id DESC LIMIT 1"
)
_UPDATE = sa.text("UPDATE articles SET body_text = :body, summary = :summary WHERE id = :id")


def _articles(bind: sa.Connection) -> Any:
    """Every article row, a batch at a time (keyset on id)."""
    last = 0
    while True:
        rows = bind.execute(_ARTICLES, {"last": last, "n": BATCH}).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _original_text(bind: sa.Connection, article_id: int, body_html: str) -> str:
    text = stored_html_text(body_html or "")
    if text:
        return text
    row = bind.execute(_NEWEST_SNAPSHOT, {"id": article_id}).first()
    return snapshot_text(row.content, row.encoding) if row is not None and row.content else ""


def _new_summary(summary: str | None, old_body: str, new_body: str) -> str | None:
    if summary and summary == old_body[:SUMMARY_CHARS]:
        return new_body[:SUMMARY_CHARS]
    return summary


def _reindex_titles(bind: sa.Connection, titles: dict[int, str]) -> None:
    """Rewrite the index rows whose title, folded now, splits into other tokens than are indexed."""
    if not titles:
        return
    split = {article_id: split_text(title) for article_id, title in titles.items()}
    if bind.dialect.name == "postgresql":
        bind.execute(
            sa.text(
                "UPDATE article_search SET title_tsv = to_tsvector('simple', :t) "
                "WHERE article_id = :id AND title_tsv <> to_tsvector('simple', :t)"
            ),
            [{"id": article_id, "t": tokens} for article_id, tokens in split.items()],
        )
        return
    indexed = bind.execute(
        sa.text("SELECT rowid AS id, title, body FROM article_fts WHERE rowid IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        ),
        {"ids": list(split)},
    ).all()
    for row in indexed:
        if row.title != split[row.id]:
            bind.execute(sa.text("DELETE FROM article_fts WHERE rowid = :id"), {"id": row.id})
            bind.execute(
                sa.text("INSERT INTO article_fts (rowid, title, body) VALUES (:id, :t, :b)"),
                {"id": row.id, "t": split[row.id], "b": row.body},
            )


def upgrade() -> None:
    bind = op.get_bind()
    for rows in _articles(bind):
        updates = []
        for row in rows:
            body = row.body_text or ""
            restored = restore_original_characters(body, _original_text(bind, row.id, row.body_html)) if body else body
            if restored != body:
                updates.append({"id": row.id, "body": restored, "summary": _new_summary(row.summary, body, restored)})
        if updates:
            bind.execute(_UPDATE, updates)
        _reindex_titles(bind, {row.id: row.title for row in rows if fold_for_matching(row.title or "") != row.title})


_LINE_SPACES = re.compile(r"[^\S\n]+")


def _fold_as_before(text: str) -> str:
    """What the older normalize_text stored: NFKC, whitespace runs in a line as one space."""
    lines = (_LINE_SPACES.sub(" ", line).strip() for line in unicodedata.normalize("NFKC", text).split("\n"))
    return "\n".join(line for line in lines if line)


def downgrade() -> None:
    # The title index stays folded: older code finds as much with it as before, and more.
    bind = op.get_bind()
    for rows in _articles(bind):
        updates = []
        for row in rows:
            body = row.body_text or ""
            folded = _fold_as_before(body)
            if folded != body:
                updates.append({"id": row.id, "body": folded, "summary": _new_summary(row.summary, body, folded)})
        if updates:
            bind.execute(_UPDATE, updates)
