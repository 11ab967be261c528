"""How PostgreSQL stores what the ingest writes (migration 0016): the values pglz never compressed
(a body's search vector, a zlib-compressed snapshot) go out of line without the attempt, and the
article's HTML and text are compressed with LZ4 where the server has it."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from pipeline.corpus.db import alembic_config, make_engine, upgrade
from tests.servers import postgresql_schema, require_postgresql

_SETTINGS = text(
    "SELECT c.relname || '.' || a.attname, a.attstorage, a.attcompression FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = current_schema()::regnamespace "
    "AND (c.relname, a.attname) IN (('article_search', 'body_tsv'), ('snapshots', 'content'), "
    "('articles', 'body_html'), ('articles', 'body_text'))"
)
_LZ4 = text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")


def test_uncompressible_values_are_stored_out_of_line_as_they_are() -> None:
    with postgresql_schema(require_postgresql()) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            with engine.connect() as conn:
                settings = {name: (storage, compression) for name, storage, compression in conn.execute(_SETTINGS)}
                lz4 = "l" if conn.execute(_LZ4).scalar() else ""
                assert settings == {
                    "article_search.body_tsv": ("e", ""),
                    "snapshots.content": ("e", ""),
                    "articles.body_html": ("x", lz4),
                    "articles.body_text": ("x", lz4),
                }
                # A search vector of a long body, in a table stored as article_search is: out of line, uncompressed.
                conn.execute(text("CREATE TEMP TABLE probe (LIKE article_search INCLUDING STORAGE)"))
                body = " ".join(f"{chr(0x4E00 + i % 3000)}{chr(0x4E00 + (i * 7) % 3000)}" for i in range(1500))
                conn.execute(
                    text("INSERT INTO probe VALUES (1, to_tsvector('simple', 'a'), to_tsvector('simple', :b))"),
                    {"b": body},
                )
                assert conn.execute(text("SELECT pg_column_compression(body_tsv) FROM probe")).scalar() is None

            # Downgraded, the columns are as before; upgraded again, as now.
            command.downgrade(alembic_config(engine), "0015")
            with engine.connect() as conn:
                before = {name: (storage, compression) for name, storage, compression in conn.execute(_SETTINGS)}
            assert before == dict.fromkeys(settings, ("x", ""))
            upgrade(engine)
            with engine.connect() as conn:
                assert {n: (s, c) for n, s, c in conn.execute(_SETTINGS)} == settings
        finally:
            engine.dispose()
