"""drop the articles index on unit_id alone: the unit/story-date index answers the same lookups

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

`ix_articles_unit_id` (unit_id) came with the first schema. Migration 0010 added
`ix_articles_unit_story_date` (unit_id, story date, id), whose first column is the same, so every
lookup by unit (a unit's stories, the foreign key's check when a unit row is deleted, the counts
per unit) can walk that index instead, and both databases' planners do. The old index only cost
a write for every new or re-attributed story and its space on disk.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_articles_unit_id", table_name="articles")


def downgrade() -> None:
    op.create_index("ix_articles_unit_id", "articles", ["unit_id"])
