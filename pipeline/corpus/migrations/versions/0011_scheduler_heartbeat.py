"""scheduler heartbeat: whether a scheduler is alive, readable from any machine

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

One row (`scheduler_heartbeats`, id 1) that a running scheduler rewrites every few seconds: its
host and pid, when it started, its last beat and its beat interval, and when it stopped cleanly.
`zhuanlan status` and the health page judge from it whether a scheduler runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.corpus.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_heartbeats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("beat_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("scheduler_heartbeats")
