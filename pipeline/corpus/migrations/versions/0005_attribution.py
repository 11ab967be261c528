"""attribution with provenance, several authors, column candidates, operator corrections

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

A story's unit now records where it was read (`unit_from`), keeps every author with their
positions (`authors`), tells a column member (an appearance in the column's album or list) from a
candidate a title rule proposes (`column_candidate`, `column_reason`), and carries the operator's
corrections in force (`corrected`), whose history is the new `corrections` table.

Existing stories get their one author as a one-element `authors` list; their provenance and
candidates are filled in by `zhuanlan retag` (the rules need the config, which a migration has not).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.corpus.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("authors", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("unit_from", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("column_candidate", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("column_reason", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("corrected", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=20), nullable=False),
        sa.Column("old_value", sa.JSON(), nullable=False),
        sa.Column("new_value", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_corrections_article_id", "corrections", ["article_id"], unique=False)
    # One statement, no rows through Python: a corpus of a million stories migrates in seconds.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE articles SET authors = json_build_array(json_build_object('name', author, "
            "'positions', positions::json)) WHERE author IS NOT NULL"
        )
    else:
        op.execute(
            "UPDATE articles SET authors = json_array(json_object('name', author, "
            "'positions', json(positions))) WHERE author IS NOT NULL"
        )


def downgrade() -> None:
    op.drop_index("ix_corrections_article_id", table_name="corrections")
    op.drop_table("corrections")
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("corrected")
        batch.drop_column("column_reason")
        batch.drop_column("column_candidate")
        batch.drop_column("unit_from")
        batch.drop_column("authors")
