"""story date indexes: feeds and the digest read the newest stories without sorting the corpus

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

`feeds.selection` orders and bounds by "a story's date", `coalesce(published_at, created_at)`.
Without an index on that expression every feed rebuild and every digest sorted the whole
articles table (at 100,000 stories a scan per feed). These two expression indexes let the all,
topic and column feeds walk the newest stories (and the digest read one week's range), and a
unit's feed read just that unit's newest (issue 20).

PostgreSQL: the GIN indexes of the search table get their pending list back (0002 took it away),
and the ingest merges it once per batch before committing (`pipeline.corpus.search_index`):
writing each article's bigrams straight into the index was the largest part of storing it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_STORY_DATE = sa.text("coalesce(published_at, created_at)")
_GIN = ("ix_article_search_title", "ix_article_search_body")


def upgrade() -> None:
    op.create_index("ix_articles_story_date", "articles", [_STORY_DATE, "id"], unique=False)
    op.create_index("ix_articles_unit_story_date", "articles", ["unit_id", _STORY_DATE, "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for index in _GIN:
            op.execute(f"ALTER INDEX {index} SET (fastupdate = on)")
        # A longer list of most common bigrams: the planner's estimate of a term's matches is the
        # total archive.search shows for a common term (the default list misses 2 % bigrams).
        for col in ("title_tsv", "body_tsv"):
            op.execute(f"ALTER TABLE article_search ALTER COLUMN {col} SET STATISTICS 1000")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for index in _GIN:
            op.execute(f"ALTER INDEX {index} SET (fastupdate = off)")
        for col in ("title_tsv", "body_tsv"):
            op.execute(f"ALTER TABLE article_search ALTER COLUMN {col} SET STATISTICS -1")
    op.drop_index("ix_articles_unit_story_date", table_name="articles")
    op.drop_index("ix_articles_story_date", table_name="articles")
