"""a partial index of the stories deleted at source: search counts them among a term's matches

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

The public search leaves out stories deleted at source. On SQLite a ranked search counts and
ranks a term's matches in the FTS5 table alone (`archive.search._fts5_page`) and subtracts the
deleted ones; this index holds just those few rows, so that subtraction reads them, not the
articles of every match (issue 20).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_DELETED = sa.text("state = 'deleted'")


def upgrade() -> None:
    op.create_index("ix_articles_deleted", "articles", ["id"], sqlite_where=_DELETED, postgresql_where=_DELETED)


def downgrade() -> None:
    op.drop_index("ix_articles_deleted", table_name="articles")
