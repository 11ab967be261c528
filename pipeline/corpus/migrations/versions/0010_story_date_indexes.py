"""story date indexes: feeds and the digest read the newest stories without sorting the corpus

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-03

`feeds.selection` orders and bounds by "a story's date", `coalesce(published_at, created_at)`.
Without an index on that expression every feed rebuild and every digest sorted the whole
articles table (at 100,000 stories a scan per feed). These two expression indexes let the all,
topic and column feeds walk the newest stories (and the digest read one week's range), and a
unit's feed read just that unit's newest (issue 20).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None

_STORY_DATE = sa.text("coalesce(published_at, created_at)")


def upgrade() -> None:
    op.create_index("ix_articles_story_date", "articles", [_STORY_DATE, "id"], unique=False)
    op.create_index("ix_articles_unit_story_date", "articles", ["unit_id", _STORY_DATE, "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_articles_unit_story_date", table_name="articles")
    op.drop_index("ix_articles_story_date", table_name="articles")
