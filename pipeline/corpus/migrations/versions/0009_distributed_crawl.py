"""distributed crawl: which crawl worker ran a source's run, and the handover when one died

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

`source_runs.worker` names the `zhuanlan worker` that crawled the source in this run (NULL for a
crawl run by `zhuanlan crawl` itself). `source_runs.handover` is set on the run of a worker whose
lease on the source ended (it died or hung): which worker had it, when the lease ended, which
worker took it over and when. That run's status becomes "handed_over".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("source_runs") as batch:
        batch.add_column(sa.Column("worker", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("handover", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_runs") as batch:
        batch.drop_column("handover")
        batch.drop_column("worker")
