"""digest review: each (column, week) issue is a draft until the office approves it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

`digest_reviews` holds one row per (column, ISO week) once the operator touches that issue: the
intro, the stories pinned or left out, who approved it and when (with the mark of the content
approved, so a later change shows and sends nothing), the reminder mail sent when nobody
approved it in time, and when the deadline passed unapproved. `events` is the audit trail.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.corpus.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("column", sa.String(length=200), nullable=False),
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("intro", sa.Text(), nullable=True),
        sa.Column("pinned", sa.JSON(), nullable=False),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("approved_by", sa.String(length=100), nullable=True),
        sa.Column("approved_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("approved_mark", sa.String(length=64), nullable=True),
        sa.Column("reminder_sent_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminder_message_id", sa.String(length=300), nullable=True),
        sa.Column("skipped_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("column", "week", name="uq_digest_review_column_week"),
    )


def downgrade() -> None:
    op.drop_table("digest_reviews")
