"""the publish-date index also holds the story id: the date walk of search reads the index alone

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03

Search lists a common term's stories newest first (`archive.search._common_term_page`), ordered by
publish date and then id, and first finds the date of the N-th newest story. With the date alone
in the index, PostgreSQL read every one of those N rows from the table for its id (130 ms for
20,000 at a million stories); with (published_at, id) it reads the index only. SQLite's index
already held the id (the rowid); the index is the same on both for one schema.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_articles_published_at_id", "articles", ["published_at", "id"])
    op.drop_index("ix_articles_published_at", table_name="articles")


def downgrade() -> None:
    op.create_index("ix_articles_published_at", "articles", ["published_at"])
    op.drop_index("ix_articles_published_at_id", table_name="articles")
