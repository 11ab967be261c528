"""appearances.printed_published_at: a publish time after the fetch, kept as printed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

A page that prints a publish time after the moment we fetched it (a typo, a post scheduled for
later, a clock set wrong) used to be stored as printed and sorted first in every list and feed.
The ingest now stores the fetch time as `published_at` and keeps what the page printed here;
a non-null value is the flag the story page and `zhuanlan status` show to the operator.
Existing rows keep their dates (NULL: as printed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.corpus.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("appearances", sa.Column("printed_published_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("appearances") as batch:
        batch.drop_column("printed_published_at")
