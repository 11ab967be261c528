"""a digest per column: digests keyed by (column, week), recipients' column subscriptions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Every configured column gets its own weekly digest, so a digest row is keyed by (column, week)
instead of week alone; a delivery stays one per (digest, recipient), hence one per (recipient,
column, week). The digests that exist were the only column's: they move to the first configured
column (handed in by `zhuanlan init` as the `first_column` attribute), else to the column most
stored stories belong to, so a week already sent is not sent again under its column's key.
`recipients.columns` holds `[[recipients]] columns` (NULL: every column).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# SQLite keeps the old UNIQUE (week) unnamed; batch mode names it with this convention to drop it.
_CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _first_column(bind: sa.Connection) -> str:
    given = context.config.attributes.get("first_column")
    if isinstance(given, str) and given:
        return given
    found = bind.execute(
        sa.text(
            'SELECT "column" FROM articles WHERE "column" IS NOT NULL AND "column" <> \'\' '
            'GROUP BY "column" ORDER BY count(*) DESC, "column" LIMIT 1'
        )
    ).scalar()
    return str(found or "")


@contextmanager
def _deliveries_aside(bind: sa.Connection) -> Iterator[None]:
    """SQLite changes a constraint by copying the table and dropping the old one, which the
    deliveries' foreign key (enforced, inside the migration's transaction) forbids while they
    point at it: hold them aside meanwhile and put them back unchanged, ids included."""
    deliveries = sa.Table("deliveries", sa.MetaData(), autoload_with=bind)
    rows = [dict(r) for r in bind.execute(sa.select(deliveries)).mappings()]
    bind.execute(deliveries.delete())
    yield
    if rows:
        bind.execute(deliveries.insert(), rows)


def _drop_week_unique(bind: sa.Connection) -> None:
    if bind.dialect.name == "sqlite":
        with _deliveries_aside(bind), op.batch_alter_table("digests", naming_convention=_CONVENTION) as batch_op:
            batch_op.drop_constraint("uq_digests_week", type_="unique")
            batch_op.create_unique_constraint("uq_digest_column_week", ["column", "week"])
        return
    for uq in sa.inspect(bind).get_unique_constraints("digests"):
        if uq["column_names"] == ["week"] and uq["name"]:
            op.drop_constraint(uq["name"], "digests", type_="unique")
    op.create_unique_constraint("uq_digest_column_week", "digests", ["column", "week"])


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("digests") as batch_op:
        batch_op.add_column(sa.Column("column", sa.String(length=200), server_default="", nullable=False))
    op.execute(sa.text('UPDATE digests SET "column" = :column').bindparams(column=_first_column(bind)))
    _drop_week_unique(bind)
    with op.batch_alter_table("recipients") as batch_op:
        batch_op.add_column(sa.Column("columns", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Going back keeps one digest per week, the oldest (the one made first, which is the first
    # column's for weeks sent before this migration); the others and their deliveries go.
    bind = op.get_bind()
    others = "SELECT id FROM digests WHERE id NOT IN (SELECT min(id) FROM digests GROUP BY week)"
    op.execute(sa.text(f"DELETE FROM deliveries WHERE digest_id IN ({others})"))
    op.execute(sa.text(f"DELETE FROM digests WHERE id IN ({others})"))
    with _deliveries_aside(bind):
        with op.batch_alter_table("recipients") as batch_op:
            batch_op.drop_column("columns")
        with op.batch_alter_table("digests") as batch_op:
            batch_op.drop_constraint("uq_digest_column_week", type_="unique")
            batch_op.create_unique_constraint("uq_digests_week", ["week"])
            batch_op.drop_column("column")
