"""published files: the feeds and their directory in the database, for web apps on other machines

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

`zhuanlan feeds` wrote the feeds only into `<public_dir>/feeds/` on the scheduler's machine, and
every web app served them from its own disk: a web app on a second machine (docs/scaling.md, N
machines) had no feeds at all, and its pages no feed links. `published_files` holds each published
file's bytes, digest and time; every web app serves from it. Empty after this migration: the web
app serves the files on its disk until the next `zhuanlan feeds` fills it (that run rewrites every
feed it finds missing here).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.corpus.models import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "published_files",
        sa.Column("path", sa.String(length=400), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("published_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("path"),
    )


def downgrade() -> None:
    op.drop_table("published_files")
