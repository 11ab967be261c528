"""ingest indexes: appearances by content hash

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

The deduplicate stage asks, for every new article, whether any appearance already holds the same
content hash (an article whose text was replaced still owns its old copies). Without an index
that is a scan of the whole appearances table per article: at 2,000 stored pages it was most of
the stage's database time, and it grows with the corpus.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_appearances_content_hash", "appearances", ["content_hash"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_appearances_content_hash", table_name="appearances")
