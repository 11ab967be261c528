"""how PostgreSQL stores the values it cannot compress: out of line at once, without trying

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

Every new story stores a search vector of its body's bigrams (about 9 KB) and the fetched page
already compressed with zlib (`snapshots.content`). PostgreSQL tried to compress both with pglz
before moving them out of line, and never once succeeded (measured on the generated site's
2,000 pages): the attempt cost about 35 µs of the server's CPU a story, a fortieth of what it
spends on one. They are now stored out of line as they are (STORAGE EXTERNAL); the bytes on disk
do not change. The article's HTML and text are compressed with LZ4 where the server has it
(PostgreSQL 14 and newer, built with lz4): on those 2,000 pages, whose random text pglz could not
compress, twice as fast and a little smaller (10 MB instead of 11 MB). On real article pages pglz
does compress the text, 13 % smaller than LZ4 (the HTML 1 %), at about five times LZ4's CPU: the
server's time per story is what this trades for that space.
Values stored before keep their form; new ones take the new one. SQLite has no such settings.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_LZ4 = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE article_search ALTER COLUMN body_tsv SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE snapshots ALTER COLUMN content SET STORAGE EXTERNAL")
    if bind.exec_driver_sql(_LZ4).scalar():
        op.execute("ALTER TABLE articles ALTER COLUMN body_html SET COMPRESSION lz4, ALTER COLUMN body_text SET COMPRESSION lz4")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE article_search ALTER COLUMN body_tsv SET STORAGE EXTENDED")
    op.execute("ALTER TABLE snapshots ALTER COLUMN content SET STORAGE EXTENDED")
    op.execute("ALTER TABLE articles ALTER COLUMN body_html SET COMPRESSION default, ALTER COLUMN body_text SET COMPRESSION default")
