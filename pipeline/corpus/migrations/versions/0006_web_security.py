"""web app security: server-side operator sessions, login lockout state and login events

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

The operator's login becomes a row (`operator_sessions`: the hash of the cookie's random id, the
fingerprint of the password it was made under, its times, when it was revoked) so that logout and
a password change end it. Failed logins are counted per client address and per account in
`login_locks`, which survives a restart, and every failure and lockout is kept in `login_events`
for the health page.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.corpus.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("password_mark", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_operator_sessions_created_at", "operator_sessions", ["created_at"], unique=False)
    op.create_table(
        "login_locks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "login_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("locked_until", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_events_at", "login_events", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_login_events_at", table_name="login_events")
    op.drop_table("login_events")
    op.drop_table("login_locks")
    op.drop_index("ix_operator_sessions_created_at", table_name="operator_sessions")
    op.drop_table("operator_sessions")
